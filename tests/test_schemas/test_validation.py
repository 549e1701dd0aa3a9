"""Validation: doc examples pass (with defaults filled), the public API and its errors, and
the schema files themselves. Broken rules are in test_validation_rules.py, decoding in
test_validation_decode.py, property-based robustness and agreement with the files in
test_validation_properties.py."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import fastjsonschema
import orjson
import pytest

from schemas.errors import ContractError, UnknownNameError, ValidationError
from schemas.validation import (
    KINDS,
    SCHEMA_DIR,
    decode_and_validate,
    load_schema,
    schema_path,
    validate,
    validator,
)

from .validation_helpers import ALL_EXAMPLES, BASES, _name

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


# -- API and errors -------------------------------------------------------------------------------


def test_public_api() -> None:
    files = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert set(KINDS) == files and len(KINDS) == len(files)  # every contract file, once
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
