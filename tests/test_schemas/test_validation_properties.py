"""Validation under random input: nothing but ValidationError ever escapes, and the per-type
fast path agrees with the schema files."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import fastjsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import validation
from schemas.errors import ValidationError
from schemas.validation import decode_and_validate, load_schema, validate

from .validation_helpers import BASES

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
