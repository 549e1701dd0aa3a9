"""The topic registry: complete, consistent with the schemas and the docs, keys per type."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import UnknownNameError, ValidationError
from schemas.topics import DEFAULT_PREFIX, TOPICS, Topic, TopicName, key_for, topic
from schemas.validation import KINDS, schema_path, validate

from . import CONTRACTS, DESIGN, doc_examples

EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {}
for _kind, _event in doc_examples(DESIGN) + doc_examples(CONTRACTS):
    EXAMPLES.setdefault(_event.get("type", _kind), (_kind, _event))  # the first of each type


def _example(name: str) -> dict[str, Any]:
    return copy.deepcopy(EXAMPLES[name][1])


def test_registry_has_every_topic_once() -> None:
    assert set(TOPICS) == set(TopicName)
    assert all(TOPICS[name].name is name for name in TopicName)
    full_names = [t.full_name() for t in TOPICS.values()]
    assert len(set(full_names)) == len(full_names)
    assert len({n.value for n in TopicName}) == len(TopicName)


def test_every_topic_kind_has_a_schema_file() -> None:
    for t in TOPICS.values():
        assert t.kind in KINDS
        assert Path(schema_path(t.kind)).is_file()
    assert {t.kind for t in TOPICS.values()} == set(KINDS)  # and every schema has a topic


def test_default_partitions_and_names() -> None:
    expected = {
        TopicName.ORDERS: ("fulfil.orders", 8),
        TopicName.INVENTORY: ("fulfil.inventory", 4),
        TopicName.CARRIER_STATUS: ("fulfil.carrier-status", 2),
        TopicName.DECISIONS: ("fulfil.decisions", 8),
        TopicName.DEAD_LETTERS: ("fulfil.dead-letters", 2),
        TopicName.APPROVALS: ("fulfil.approvals", 2),
        TopicName.CONFIG: ("fulfil.config", 1),
        TopicName.ALERTS: ("fulfil.alerts", 2),
    }
    assert {n: (t.full_name(), t.partitions) for n, t in TOPICS.items()} == expected
    assert DEFAULT_PREFIX == "fulfil."
    assert topic("orders").full_name("t7-ab12cd.") == "t7-ab12cd.orders"


def test_registry_matches_the_design_table() -> None:
    """docs/DESIGN.md's topic table names the same topics and value schemas as the registry."""
    rows = re.findall(r"^\| `(fulfil\.[\w-]+)` \|.*\| `(\w+)` \|[^|]*\|$", DESIGN.read_text(), re.M)
    assert sorted(rows) == sorted((t.full_name(), t.kind) for t in TOPICS.values())


def test_topic_lookup_by_enum_or_string() -> None:
    assert topic(TopicName.CARRIER_STATUS) is topic("carrier-status")
    with pytest.raises(UnknownNameError, match=r"unknown topic 'fulfil\.orders'") as info:
        topic("fulfil.orders")  # full names are not registry names
    assert isinstance(info.value, LookupError)


def test_registry_is_immutable() -> None:
    with pytest.raises(TypeError):
        TOPICS[TopicName.ORDERS] = TOPICS[TopicName.DECISIONS]  # type: ignore[index]
    with pytest.raises(AttributeError):
        TOPICS[TopicName.ORDERS].partitions = 1  # type: ignore[misc]


def test_topic_rejects_a_kind_without_schema() -> None:
    with pytest.raises(UnknownNameError):
        Topic(TopicName.ORDERS, kind="orders", key="order_id", partitions=1)


@pytest.mark.parametrize(
    ("name", "example", "key"),
    [
        (TopicName.ORDERS, "order.created", "o-1"),
        (TopicName.ORDERS, "order.cancelled", "o-1"),
        (TopicName.INVENTORY, "inventory.snapshot", "N01|sku-1"),
        (TopicName.INVENTORY, "inventory.adjusted", "N01|sku-1"),
        (TopicName.CARRIER_STATUS, "lane.status", "correios"),
        (TopicName.CARRIER_STATUS, "shipment.tracking", "o-1/N01"),
        (TopicName.DECISIONS, "decision", "o-1"),
        (TopicName.DEAD_LETTERS, "dead_letter", "fulfil.orders"),
    ],
)
def test_key_for_each_event_type(name: TopicName, example: str, key: str) -> None:
    event = _example(example)
    assert validate(topic(name).kind, copy.deepcopy(event))  # the example belongs on this topic
    assert key_for(name, event) == key
    assert key_for(name.value, event) == key


def test_key_for_a_missing_key_field_names_it() -> None:
    event = _example("inventory.adjusted")
    del event["sku"]
    with pytest.raises(ValidationError) as info:
        key_for(TopicName.INVENTORY, event)
    assert (info.value.field, info.value.rule) == ("sku", "required")
    tracking = _example("shipment.tracking")
    del tracking["shipment_id"]  # tracking is keyed by shipment, never falls back to carrier
    with pytest.raises(ValidationError, match="shipment_id"):
        key_for(TopicName.CARRIER_STATUS, tracking)
    dead = _example("dead_letter")
    dead["source"] = {}
    with pytest.raises(ValidationError) as info:
        key_for(TopicName.DEAD_LETTERS, dead)
    assert info.value.field == "source.topic"


def test_key_for_a_non_string_key_is_rejected() -> None:
    event = _example("order.created")
    event["order_id"] = 12345
    with pytest.raises(ValidationError) as info:
        key_for(TopicName.ORDERS, event)
    assert (info.value.field, info.value.rule) == ("order_id", "type")


def test_key_for_an_unknown_topic() -> None:
    with pytest.raises(UnknownNameError):
        key_for("shipments", {"order_id": "o-1"})
