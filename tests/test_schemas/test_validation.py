"""Validation: doc examples pass, each broken rule is named precisely, nothing but
ValidationError ever escapes, and the per-type fast path agrees with the schema files."""

from __future__ import annotations

import copy
import json
import pickle
import re
from collections.abc import Callable
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import validation
from schemas.errors import ContractError, UnknownNameError, ValidationError
from schemas.validation import (
    KINDS,
    decode,
    decode_and_validate,
    load_schema,
    schema_path,
    validate,
    validator,
)

from . import CONTRACTS, DESIGN, doc_examples

ALL_EXAMPLES = doc_examples(DESIGN) + doc_examples(CONTRACTS)


def _name(kind: str, event: dict[str, Any]) -> str:
    return event.get("type", kind)


def _bases() -> dict[str, tuple[str, dict[str, Any]]]:
    """The first doc example of each event type (or kind, for decision and dead_letter)."""
    bases: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind, event in ALL_EXAMPLES:
        bases.setdefault(_name(kind, event), (kind, event))
    return bases


BASES = _bases()


@pytest.fixture
def event_factory() -> Callable[[str], tuple[str, dict[str, Any]]]:
    """`event_factory("order.created")` -> (kind, a fresh deep copy of the doc example)."""

    def make(name: str) -> tuple[str, dict[str, Any]]:
        kind, event = BASES[name]
        return kind, copy.deepcopy(event)

    return make


_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


def _walk(obj: Any, path: str) -> tuple[Any, Any]:
    """(container, key) of the last step of a 'lines[0].qty'-style path."""
    tokens = [int(t[1:-1]) if t.startswith("[") else t for t in _TOKEN.findall(path)]
    for token in tokens[:-1]:
        obj = obj[token]
    return obj, tokens[-1]


def _set(obj: Any, path: str, value: Any) -> None:
    container, key = _walk(obj, path)
    container[key] = value


def _del(obj: Any, path: str) -> None:
    container, key = _walk(obj, path)
    del container[key]


# -- doc examples ---------------------------------------------------------------------------------


def test_docs_have_an_example_of_every_event_type() -> None:
    expected = {
        "order.created", "order.address_changed", "order.cancelled", "inventory.snapshot",
        "inventory.adjusted", "lane.status", "shipment.tracking", "decision", "dead_letter",
    }  # fmt: skip
    assert expected <= set(BASES)


@pytest.mark.parametrize(
    ("kind", "event"),
    [pytest.param(k, e, id=f"{k}:{_name(k, e)}:{i}") for i, (k, e) in enumerate(ALL_EXAMPLES)],
)
def test_doc_example_is_valid(kind: str, event: dict[str, Any]) -> None:
    assert validate(kind, copy.deepcopy(event))
    assert decode_and_validate(kind, orjson.dumps(event))


def test_validate_returns_the_same_object_with_defaults_filled(event_factory) -> None:
    kind, order = event_factory("order.created")
    del order["customer"], order["priority"]
    out = validate(kind, order)
    assert out is order
    assert out["customer"] == {"tier": "standard"}
    assert out["priority"] == 0


def test_customer_without_tier_gets_standard(event_factory) -> None:
    kind, order = event_factory("order.created")
    order["customer"] = {"id": "c-9"}
    assert validate(kind, order)["customer"] == {"id": "c-9", "tier": "standard"}


def test_integral_floats_in_integer_fields_become_ints(event_factory) -> None:
    kind, order = event_factory("order.created")
    order["lines"][0]["qty"] = 2.0
    order["occurred_at"] = 1795556252000.0
    out = validate(kind, order)
    assert out["lines"][0]["qty"] == 2 and type(out["lines"][0]["qty"]) is int
    assert type(out["occurred_at"]) is int
    kind, snap = event_factory("inventory.snapshot")
    snap["version"] = 17.0
    assert type(validate(kind, snap)["version"]) is int


# -- each rule broken names the right field and rule ----------------------------------------------

MANY_LINES = [{"line_id": str(i), "sku": "s", "qty": 1} for i in range(201)]
DUP_LINES = [{"line_id": "1", "sku": "a", "qty": 1}, {"line_id": "1", "sku": "b", "qty": 1}]

# (event type, "set"/"del", path, value, expected field, expected rule)
BROKEN = [
    ("order.created", "del", "lines", None, "lines", "required"),
    ("order.created", "set", "lines", [], "lines", "minItems"),
    ("order.created", "set", "lines", MANY_LINES, "lines", "maxItems"),
    ("order.created", "set", "lines[0].qty", 0, "lines[0].qty", "minimum"),
    ("order.created", "set", "lines[0].qty", 10001, "lines[0].qty", "maximum"),
    ("order.created", "set", "lines[0].qty", "2", "lines[0].qty", "type"),
    ("order.created", "set", "lines[0].qty", 2.5, "lines[0].qty", "type"),
    ("order.created", "set", "lines[0].qty", True, "lines[0].qty", "type"),
    ("order.created", "del", "lines[0].sku", None, "lines[0].sku", "required"),
    ("order.created", "set", "lines[0].sku", "", "lines[0].sku", "minLength"),
    ("order.created", "set", "lines[0].weight_g", -1, "lines[0].weight_g", "minimum"),
    ("order.created", "set", "lines[0]", "sku-1", "lines[0]", "type"),
    ("order.created", "set", "lines", DUP_LINES, "lines[1].line_id", "unique"),
    ("order.created", "del", "destination.lng", None, "destination.lng", "dependencies"),
    ("order.created", "del", "destination.lat", None, "destination.lat", "dependencies"),
    ("order.created", "set", "destination", {"region": "SP"}, "destination", "anyOf"),
    ("order.created", "set", "destination", {"lat": 1.0}, "destination.lng", "dependencies"),
    ("order.created", "set", "destination.lat", 90.5, "destination.lat", "maximum"),
    ("order.created", "set", "destination.lng", -180.5, "destination.lng", "minimum"),
    ("order.created", "set", "destination.lat", "-23.5", "destination.lat", "type"),
    ("order.created", "set", "destination.postal_code", "0131-0", "destination.postal_code",
     "pattern"),
    ("order.created", "set", "destination.postal_code", "1", "destination.postal_code", "pattern"),
    ("order.created", "set", "destination.postal_code", "1234567890", "destination.postal_code",
     "pattern"),
    ("order.created", "set", "destination.postal_code", 1310, "destination.postal_code", "type"),
    ("order.created", "set", "destination.region", "sp", "destination.region", "pattern"),
    ("order.created", "del", "destination", None, "destination", "required"),
    ("order.created", "set", "type", "order.shipped", "type", "enum"),
    ("order.created", "set", "type", ["order.created"], "type", "enum"),
    ("order.created", "del", "type", None, "type", "required"),
    ("order.created", "set", "customer.tier", "platinum", "customer.tier", "enum"),
    ("order.created", "set", "customer", "gold", "customer", "type"),
    ("order.created", "set", "priority", 10, "priority", "maximum"),
    ("order.created", "set", "priority", -1, "priority", "minimum"),
    ("order.created", "set", "occurred_at", "2026-11-24T10:00:00Z", "occurred_at", "type"),
    ("order.created", "set", "occurred_at", -1, "occurred_at", "minimum"),
    ("order.created", "set", "promised_by", 2**53, "promised_by", "maximum"),
    ("order.created", "set", "order_id", "", "order_id", "minLength"),
    ("order.created", "set", "order_id", 12345, "order_id", "type"),
    ("order.created", "set", "value.currency", "real", "value.currency", "pattern"),
    ("order.address_changed", "del", "destination", None, "destination", "required"),
    ("order.address_changed", "set", "destination", {}, "destination", "anyOf"),
    ("order.cancelled", "del", "order_id", None, "order_id", "required"),
    ("order.cancelled", "set", "reason", 42, "reason", "type"),
    ("inventory.snapshot", "set", "on_hand", -1, "on_hand", "minimum"),
    ("inventory.snapshot", "set", "version", -1, "version", "minimum"),
    ("inventory.snapshot", "set", "version", "17", "version", "type"),
    ("inventory.snapshot", "set", "version", 17.5, "version", "type"),
    ("inventory.snapshot", "set", "node_id", "N|01", "node_id", "pattern"),
    ("inventory.snapshot", "set", "node_id", "{N01}", "node_id", "pattern"),
    ("inventory.snapshot", "del", "on_hand", None, "on_hand", "required"),
    ("inventory.snapshot", "set", "type", "inventory.reserved", "type", "enum"),
    ("inventory.adjusted", "del", "version", None, "version", "required"),
    ("inventory.adjusted", "set", "delta", "-3", "delta", "type"),
    ("lane.status", "set", "status", "slow", "status", "enum"),
    ("lane.status", "set", "delay_hours", -1, "delay_hours", "minimum"),
    ("lane.status", "set", "capacity_factor", 1.5, "capacity_factor", "maximum"),
    ("lane.status", "set", "origin_region", "S", "origin_region", "pattern"),
    ("lane.status", "del", "carrier", None, "carrier", "required"),
    ("shipment.tracking", "set", "status", "lost", "status", "enum"),
    ("shipment.tracking", "del", "shipment_id", None, "shipment_id", "required"),
    ("decision", "set", "status", "maybe", "status", "enum"),
    ("decision", "set", "decision_id", "o-1:v2", "decision_id", "decision-id"),
    ("decision", "set", "shipments", [], "shipments", "minItems"),
    ("decision", "set", "shipments[0].lines[0].qty", 0, "shipments[0].lines[0].qty", "minimum"),
    ("decision", "del", "shipments[0].node_id", None, "shipments[0].node_id", "required"),
    ("decision", "set", "version", -1, "version", "minimum"),
    ("dead_letter", "set", "error.code", "oops", "error.code", "enum"),
    ("dead_letter", "set", "payload_encoding", "latin1", "payload_encoding", "enum"),
    ("dead_letter", "del", "at", None, "at", "required"),
    ("dead_letter", "set", "source.partition", -1, "source.partition", "minimum"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "op", "path", "value", "field", "rule"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}:{case[2]}={case[3]!r:.20}") for case in BROKEN],
)
def test_broken_rule_names_field_and_rule(
    event_factory, name: str, op: str, path: str, value: Any, field: str, rule: str
) -> None:
    kind, event = event_factory(name)
    _set(event, path, value) if op == "set" else _del(event, path)
    with pytest.raises(ValidationError) as info:
        validate(kind, event)
    err = info.value
    assert (err.code, err.field, err.rule) == ("schema", field, rule), err.message
    assert err.message.startswith(field or "event"), err.message
    assert "; got " in err.message
    assert str(err) == err.message


def test_unroutable_decision_needs_a_reason_and_no_shipments(event_factory) -> None:
    kind, decision = event_factory("decision")
    decision["status"] = "unroutable"
    with pytest.raises(ValidationError) as info:
        validate(kind, decision)
    assert (info.value.field, info.value.rule) == ("shipments", "maxItems")
    decision["shipments"], decision["reasons"] = [], []
    with pytest.raises(ValidationError) as info:
        validate(kind, decision)
    assert (info.value.field, info.value.rule) == ("reasons", "minItems")


def test_base64_dead_letter_payload_must_be_base64(event_factory) -> None:
    kind, dead = event_factory("dead_letter")
    dead["payload_encoding"] = "base64"
    with pytest.raises(ValidationError) as info:
        validate(kind, dead)
    assert (info.value.field, info.value.rule) == ("payload", "pattern")
    dead["payload"] = "/w=="
    assert validate(kind, dead)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("lines[0].qty", 0, "lines[0].qty must be >= 1; got 0"),
        ("lines[0].qty", "2", 'lines[0].qty must be integer; got string "2"'),
        (
            "customer.tier",
            "x",
            'customer.tier must be one of "standard", "silver", "gold", "vip"; got "x"',
        ),
        (
            "destination.postal_code",
            "0131-0",
            'destination.postal_code must match ^[0-9]{2,9}$; got "0131-0"',
        ),
        ("order_id", "", 'order_id must not be empty; got ""'),
    ],
)
def test_messages_read_well(event_factory, path: str, value: Any, message: str) -> None:
    kind, order = event_factory("order.created")
    _set(order, path, value)
    with pytest.raises(ValidationError, match=re.escape(message) + "$"):
        validate(kind, order)


def test_missing_field_message_names_it_and_the_others_missing(event_factory) -> None:
    kind, order = event_factory("order.created")
    del order["lines"], order["channel"]
    with pytest.raises(ValidationError) as info:
        validate(kind, order)
    assert info.value.field == "channel"  # schema order: the first missing required field
    assert info.value.message.startswith("channel is required (also missing: lines); got {")


def test_culprit_value_is_cut_to_80_chars(event_factory) -> None:
    kind, order = event_factory("order.created")
    order["order_id"] = ["x" * 500]
    with pytest.raises(ValidationError) as info:
        validate(kind, order)
    shown = info.value.message.split("; got array ", 1)[1]
    assert len(shown) == 80 and shown.endswith("...")


def test_non_object_event_is_a_root_type_error() -> None:
    for kind in KINDS:
        with pytest.raises(ValidationError) as info:
            validate(kind, [1, 2])
        assert (info.value.code, info.value.field, info.value.rule) == ("schema", "", "type")
        assert info.value.message.startswith("event must be object")


# -- decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        pytest.param(b'{"type": "order.created", ', "json", id="truncated"),
        pytest.param(b'{"type": NaN}', "json", id="nan"),
        pytest.param(b'{"a": 1e400}', "json", id="float-overflow"),
        pytest.param(b"\xef\xbb\xbf{}", "json", id="bom"),
        pytest.param(b"\xff\xfe\x00", "utf-8", id="not-utf8"),
        pytest.param(b'{"type": "order.created", "order_id": "o-\xe9"}', "utf-8", id="latin1"),
        pytest.param(b"[1, 2]", "type", id="array"),
        pytest.param(b'"order"', "type", id="string"),
        pytest.param(b"null", "type", id="null"),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(None, "empty", id="tombstone"),
        pytest.param(b"[" * 2000 + b"]" * 2000, "json", id="too-deep"),
    ],
)  # fmt: skip
def test_undecodable_payload_is_a_decode_error(raw: bytes | None, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        decode_and_validate("order_event", raw)
    assert (info.value.code, info.value.field, info.value.rule) == ("decode", "", rule)


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        (str(2**70), "lines[0].qty"),
        (str(2**64 - 1), "lines[0].qty"),  # orjson keeps this one exact, but it is not int64
        (str(2**63), "lines[0].qty"),
        (str(-(2**63) - 1), "lines[0].qty"),
        ("9" * 5000, "lines[0].qty"),  # beyond Python's int-from-str digit limit
    ],
)
def test_integer_beyond_64_bits_is_a_decode_error(event_factory, literal: str, field: str) -> None:
    _, order = event_factory("order.created")
    raw = orjson.dumps(order).replace(b'"qty":2', b'"qty":' + literal.encode())
    with pytest.raises(ValidationError) as info:
        decode_and_validate("order_event", raw)
    assert (info.value.code, info.value.field, info.value.rule) == ("decode", field, "int64")


def test_int64_edges_and_long_digit_strings_still_decode(event_factory) -> None:
    _, order = event_factory("order.created")
    order["order_id"] = "123456789012345678901234567890"  # a long numeric id, sent as a string
    order["shopify_id"] = 2**63 - 1  # extra field at the int64 edge
    order["refund"] = -(2**63)
    out = decode_and_validate("order_event", orjson.dumps(order))
    assert out["shopify_id"] == 2**63 - 1 and out["refund"] == -(2**63)


def test_deep_nesting_with_a_long_number_is_a_decode_error_not_a_crash() -> None:
    raw = b'{"type": "order.created", "x": ' + b"[" * 1000 + b"1" * 25 + b"]" * 1000 + b"}"
    with pytest.raises(ValidationError) as info:
        decode_and_validate("order_event", raw)
    assert info.value.code == "decode"


def test_decode_accepts_any_bytes_like(event_factory) -> None:
    _, order = event_factory("order.cancelled")
    raw = orjson.dumps(order)
    for value in (raw, bytearray(raw), memoryview(raw), raw.decode()):
        assert decode(value) == order


# -- API and errors -------------------------------------------------------------------------------


def test_public_api() -> None:
    assert KINDS == ("order_event", "inventory_event", "carrier_event", "decision", "dead_letter")
    for kind in KINDS:
        assert validator(kind) is validator(kind)  # compiled once
        assert schema_path(kind).name == f"{kind}.schema.json"
    assert issubclass(ValidationError, ContractError)
    assert issubclass(UnknownNameError, ContractError) and issubclass(UnknownNameError, LookupError)


def test_unknown_kind_is_a_caller_bug_not_a_validation_error() -> None:
    with pytest.raises(UnknownNameError, match="unknown schema kind 'orders'"):
        validate("orders", {})
    with pytest.raises(UnknownNameError):
        decode_and_validate("orders", b"{}")


def test_validation_error_pickles_and_exports_the_dead_letter_error() -> None:
    err = ValidationError("schema", "lines[0].qty", "minimum", "lines[0].qty must be >= 1; got 0")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.code, clone.field, clone.rule, clone.message) == (
        err.code, err.field, err.rule, err.message,
    )  # fmt: skip
    assert err.as_dict() == {
        "code": "schema", "field": "lines[0].qty", "rule": "minimum",
        "message": "lines[0].qty must be >= 1; got 0",
    }  # fmt: skip
    validate("dead_letter", {"source": {"topic": "fulfil.orders"}, "step": "validate-orders",
                             "error": err.as_dict(), "payload": "{}", "payload_encoding": "utf8",
                             "at": 0})  # fmt: skip


# -- schema files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_schema_file_is_a_documented_draft07_schema(kind: str) -> None:
    doc = load_schema(kind)
    assert doc["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert doc["$id"] == f"urn:fulfil:schemas:{kind}"
    assert doc["title"] == kind and doc["description"]
    for name, definition in doc.get("definitions", {}).items():
        assert definition.get("description"), f"definitions/{name} has no description"
    fastjsonschema.compile(doc)  # raises JsonSchemaDefinitionException on a malformed keyword


@pytest.mark.parametrize("kind", KINDS)
def test_schema_file_passes_the_draft07_metaschema(kind: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")  # not a project dependency
    jsonschema.Draft7Validator.check_schema(load_schema(kind))


def _refs_with_siblings(node: Any) -> list[set[str]]:
    found: list[set[str]] = []
    if isinstance(node, dict):
        if "$ref" in node:
            found.append(set(node) - {"$ref"})
        for value in node.values():
            found.extend(_refs_with_siblings(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_refs_with_siblings(value))
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_refs_carry_only_annotations(kind: str) -> None:
    """Draft-07 ignores keywords beside a $ref; a validation keyword there would be a silent
    no-op in other languages (and `inline_refs` would apply it), so allow annotations only."""
    for siblings in _refs_with_siblings(load_schema(kind)):
        assert siblings <= {"description", "default", "title"}, siblings


# -- robustness and agreement with the files ------------------------------------------------------

_whole_file: dict[str, Callable[[Any], Any]] = {}


def _file_verdict(kind: str, event: Any) -> bool:
    """Does the schema FILE, compiled as a whole (if/then union, anyOf and all), accept it?"""
    if kind not in _whole_file:
        _whole_file[kind] = fastjsonschema.compile(load_schema(kind))
    try:
        _whole_file[kind](copy.deepcopy(event))
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


# Values near the schemas' edges, so mutations hit real rules instead of just the `type` check.
EDGE_VALUES = st.sampled_from([
    0, -1, 1, 2, 9, 10, 200, 201, 10000, 10001, 2**53 - 1, 2**53, 1.5, 2.0, -90.5, 90.0, 180.5,
    "", "x", "SP", "sp", "BR", "BRL", "01310", "0131-0", "N|1", "{N}", "o-1", "o-1:v1",
    "order.created", "order.cancelled", "inventory.adjusted", "lane.status", "gold", "vip",
    "delayed", "delivered", "routed", "unroutable", "cancelled", "schema", "utf8", "base64",
    True, False, None, [], {},
])  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)  # fmt: skip
MUTANT_VALUES = EDGE_VALUES | JSON_VALUES


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


@st.composite
def mutated_events(draw: st.DrawFn, names: tuple[str, ...]) -> tuple[str, Any]:
    """A doc example after 1-4 random replacements, deletions or insertions anywhere in it."""
    kind, event = BASES[draw(st.sampled_from(names))]
    event = copy.deepcopy(event)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(event)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = event
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "replace":
            parent[path[-1]] = draw(MUTANT_VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(MUTANT_VALUES)
    if draw(st.integers(0, 20)) == 0:
        event = draw(JSON_VALUES)  # now and then, not even an object
    return kind, event


ORDER_TYPES = ("order.created", "order.address_changed", "order.cancelled")
ALL_NAMES = tuple(BASES)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events(ORDER_TYPES))
def test_mutated_orders_raise_nothing_but_validation_error(case: tuple[str, Any]) -> None:
    kind, event = case
    try:
        validate(kind, copy.deepcopy(event))
    except ValidationError as err:
        assert err.code == "schema" and isinstance(err.field, str) and err.rule and err.message
    raw = json.dumps(event).encode()  # stdlib: also writes NaN and ints beyond 64 bits
    try:
        decode_and_validate(kind, raw)
    except ValidationError as err:
        assert err.code in ("schema", "decode") and err.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events(ALL_NAMES))
def test_fast_path_agrees_with_the_schema_files(case: tuple[str, Any]) -> None:
    """Per-type dispatch + Python checks accept exactly what the file accepts, except for the
    checks JSON Schema cannot express (which only ever reject more)."""
    kind, event = case
    file_ok = _file_verdict(kind, event)
    try:
        validate(kind, copy.deepcopy(event))
    except ValidationError as err:
        assert not file_ok or err.rule in ("unique", "decision-id"), err
    else:
        assert file_ok, "accepted by the fast path, rejected by the schema file"


DESTINATION_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "lat": st.sampled_from([-23.56, 0, 90, 90.5, "1"]),
        "lng": st.sampled_from([-46.65, 0, -180, 180.5, None]),
        "postal_code": st.sampled_from(["01310", "0131-0", "1", 1310]),
        "region": st.sampled_from(["SP", "sp"]),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["order.created", "order.address_changed"]), DESTINATION_FIELDS)
def test_destination_rule_done_in_python_agrees_with_the_file(name: str, dest: dict) -> None:
    """The anyOf (lat+lng or postal_code) is left out of the compiled validator and checked in
    Python (PYTHON_ENFORCED); over every combination, the verdict must match the file's."""
    kind, event = BASES[name]
    event = {**copy.deepcopy(event), "destination": dest}
    try:
        validate(kind, copy.deepcopy(event))
    except ValidationError as err:
        assert not _file_verdict(kind, event), err
        assert err.field.startswith("destination"), err
    else:
        assert _file_verdict(kind, event), f"fast path accepted {dest}, the file rejects it"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.builds(lambda b: b'{"type":"order.created",' + b, st.binary()))
def test_random_bytes_raise_nothing_but_validation_error(raw: bytes) -> None:
    try:
        decode_and_validate("order_event", raw)
    except ValidationError as err:
        assert err.code in ("decode", "schema")


def test_python_enforced_keywords_are_still_in_the_files() -> None:
    """The compiled validators leave these out; the files (for other languages) must keep them."""
    for kind, definition, keyword in validation.PYTHON_ENFORCED:
        assert keyword in load_schema(kind)["definitions"][definition]
