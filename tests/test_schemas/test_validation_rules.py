"""Validation: each broken rule is named precisely (field, rule, a message that reads well)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from schemas.errors import ValidationError
from schemas.validation import KINDS, validate

from .validation_helpers import _del, _set

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
