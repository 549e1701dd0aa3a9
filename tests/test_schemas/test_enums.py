"""The enums in schemas/enums.py hold exactly the values the schema files allow."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson
import pytest

from schemas.enums import (
    CarrierEventType,
    CustomerTier,
    DeadLetterCode,
    DecisionStatus,
    InventoryEventType,
    LaneStatus,
    OrderEventType,
    OrderStatus,
    PayloadEncoding,
    TrackingStatus,
)
from schemas.validation import load_schema


def _at(kind: str, *path: str) -> list[Any]:
    node: Any = load_schema(kind)
    for step in path:
        node = node[step]
    return node


@pytest.mark.parametrize(
    ("enum", "allowed"),
    [
        (OrderEventType, _at("order_event", "properties", "type", "enum")),
        (InventoryEventType, _at("inventory_event", "properties", "type", "enum")),
        (CarrierEventType, _at("carrier_event", "properties", "type", "enum")),
        (CustomerTier, _at("order_event", "definitions", "customer", "properties", "tier", "enum")),
        (LaneStatus, _at("carrier_event", "definitions", "lane.status", "properties", "status",
                         "enum")),
        (TrackingStatus, _at("carrier_event", "definitions", "shipment.tracking", "properties",
                             "status", "enum")),
        (DecisionStatus, _at("decision", "properties", "status", "enum")),
        (DeadLetterCode, _at("dead_letter", "properties", "error", "properties", "code", "enum")),
        (PayloadEncoding, _at("dead_letter", "properties", "payload_encoding", "enum")),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else "",
)  # fmt: skip
def test_enum_matches_schema(enum: type[StrEnum], allowed: list[str]) -> None:
    assert [m.value for m in enum] == allowed


def test_order_status_covers_the_lifecycle_and_decision_outcomes() -> None:
    assert [s.value for s in OrderStatus] == [
        "received", "validated", "routed", "unroutable", "cancelled", "held", "shipped",
        "delivered",
    ]  # fmt: skip
    assert {s.value for s in DecisionStatus} <= {s.value for s in OrderStatus}


def test_members_are_plain_strings_on_the_wire() -> None:
    assert OrderEventType.CREATED == "order.created"
    assert orjson.dumps({"type": OrderEventType.CREATED}) == b'{"type":"order.created"}'
    assert {"order.created": 1}[OrderEventType.CREATED] == 1
