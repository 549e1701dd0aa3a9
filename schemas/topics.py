"""The topic registry: the ONE place topic names, keys, schemas and partition counts live.

Flows, the CLI, the simulator and tests all read topics from here (like `Schemas.Topics` in the
Kafka Streams microservices examples), so no topic name is ever written inline and a topic's key
rule cannot drift between its writer and its readers.

    >>> topic(TopicName.ORDERS).full_name()
    'fulfil.orders'
    >>> key_for(TopicName.INVENTORY, {"node_id": "N01", "sku": "sku-1"})
    'N01|sku-1'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from schemas.enums import CarrierEventType
from schemas.errors import UnknownNameError, ValidationError, json_type, show
from schemas.validation import KINDS

#: Prefix of every topic's full name; tests pass their own to get fresh topics.
DEFAULT_PREFIX = "fulfil."


class TopicName(StrEnum):
    """Short topic names; the broker sees `prefix + name` (see `Topic.full_name`)."""

    ORDERS = "orders"
    INVENTORY = "inventory"
    CARRIER_STATUS = "carrier-status"
    DECISIONS = "decisions"
    DEAD_LETTERS = "dead-letters"
    APPROVALS = "approvals"
    CONFIG = "config"
    ALERTS = "alerts"


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic: what its values are (`kind`, a schema in schemas/json) and how they are keyed.

    The key decides the partition, so it decides what is ordered: everything about one order
    (orders, decisions), one node+sku (inventory), one carrier or one shipment (carrier-status)
    is consumed in the order it was produced.
    """

    name: TopicName
    kind: str
    key: str
    partitions: int
    compacted: bool = False
    description: str = ""
    writer: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnknownNameError(f"topic {self.name!r}: unknown schema kind {self.kind!r}")
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r}: partitions must be >= 1; got {self.partitions}")

    def full_name(self, prefix: str = DEFAULT_PREFIX) -> str:
        """The broker's name for this topic, e.g. 'fulfil.orders'."""
        return f"{prefix}{self.name.value}"


_ALL: tuple[Topic, ...] = (
    Topic(
        TopicName.ORDERS,
        kind="order_event",
        key="order_id",
        partitions=8,
        description="Order lifecycle events from sales channels: created, address changed, "
        "cancelled, merge/split requested; approvals and re-route requests from fulfil.",
        writer="upstream channels / simulator",
    ),
    Topic(
        TopicName.INVENTORY,
        kind="inventory_event",
        key="f'{node_id}|{sku}'",
        partitions=4,
        description="Stock snapshots and adjustments per node and sku, versioned by the "
        "warehouse system.",
        writer="warehouse systems / simulator",
    ),
    Topic(
        TopicName.CARRIER_STATUS,
        kind="carrier_event",
        key="carrier (lane.status), shipment_id (shipment.tracking) or node_id (node.closure)",
        partitions=2,
        description="Carrier lane health (delays, outages), node closures and shipment "
        "tracking updates.",
        writer="carriers / simulator",
    ),
    Topic(
        TopicName.DECISIONS,
        kind="decision",
        key="order_id",
        partitions=8,
        description="One routing decision per order version: shipments, or why unroutable.",
        writer="routing flow",
    ),
    Topic(
        TopicName.DEAD_LETTERS,
        kind="dead_letter",
        key="source topic full name",
        partitions=2,
        description="Inputs a flow could not process, with the original bytes and the reason.",
        writer="every flow",
    ),
    Topic(
        TopicName.APPROVALS,
        kind="approval",
        key="order_id",
        partitions=2,
        description="Orders a business rule held, waiting for approval or rejection.",
        writer="routing flow",
    ),
    Topic(
        TopicName.CONFIG,
        kind="config_record",
        key="name (e.g. 'rules')",
        partitions=1,
        compacted=True,
        description="Published configuration (business rules), newest record per name wins.",
        writer="fulfil rules publish",
    ),
    Topic(
        TopicName.ALERTS,
        kind="alert",
        key="dedup_key",
        partitions=2,
        description="Incidents the watchtower detects: one trigger per dedup key, updates, "
        "resolve.",
        writer="watchtower flow",
    ),
)

TOPICS: Mapping[TopicName, Topic] = MappingProxyType({t.name: t for t in _ALL})


def topic(name: TopicName | str) -> Topic:
    """The registry entry for a short name ('orders' or TopicName.ORDERS)."""
    try:
        return TOPICS[TopicName(name)]
    except ValueError:
        known = ", ".join(n.value for n in TopicName)
        raise UnknownNameError(f"unknown topic {name!r}; known: {known}") from None


# -- sales-channel topics ------------------------------------------------------------------------
# One topic per configured sales channel, `channel.<name>` (fulfil.channel.shopify): the raw
# webhook bodies the gateway verified, as the channel sent them. Their names come from
# configuration (channels.yaml), so they are built here rather than listed in TopicName; they
# have no JSON Schema (the channel's mapping file is their contract) and one writer, the gateway.

CHANNEL_TOPIC_PREFIX = "channel."
#: A channel name: lower-case letters, digits, '-' and '_' (it becomes part of a topic name).
CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ChannelTopic:
    """The raw-payload topic of sales channel `channel` (mapped into `orders` by the channels
    flow, `dataflows/channels.py`)."""

    channel: str
    partitions: int = 4
    key: str = "the channel's order id (gateway key_path), else its webhook id"
    writer: str = "webhook gateway"

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not CHANNEL_NAME.fullmatch(self.channel):
            raise UnknownNameError(f"channel name {self.channel!r} must be lower-case letters, "
                                   "digits, '-' or '_' (at most 64)")
        if self.partitions < 1:
            raise ValueError(f"channel {self.channel!r}: partitions must be >= 1")

    @property
    def name(self) -> str:
        """The short name, as `Config.topic()` takes it: 'channel.shopify'."""
        return f"{CHANNEL_TOPIC_PREFIX}{self.channel}"

    def full_name(self, prefix: str = DEFAULT_PREFIX) -> str:
        """The broker's name, e.g. 'fulfil.channel.shopify'."""
        return f"{prefix}{self.name}"


def channel_topic(channel: str, partitions: int = 4) -> ChannelTopic:
    """The topic of sales channel `channel` (raises UnknownNameError for a bad name)."""
    return ChannelTopic(channel, partitions)


# -- edge-site copies ------------------------------------------------------------------------------
# An edge site's uplink keeps, on the centre's broker, a verbatim copy of each edge topic it reads:
# `edge.<site>.<name>` (fulfil.edge.sul.orders), the centre's audit of what the edge did. Values
# keep the source topic's schema and key; every record carries the headers `fulfil-origin` and
# `fulfil-src` (the source record, which a reader dedupes on). One writer: that site's uplink.
# See docs/edge.md.

EDGE_TOPIC_PREFIX = "edge."


def edge_copy_topic(site: str, name: TopicName | str) -> str:
    """The short name of the centre's copy of edge site `site`'s topic `name`
    ('edge.sul.orders'; `Config.topic()` adds the prefix)."""
    return f"{EDGE_TOPIC_PREFIX}{site}.{topic(name).name.value}"


# -- message keys ---------------------------------------------------------------------------------


def _field(event: Mapping[str, Any], field: str) -> str:
    """event[field] as a key part; a missing or non-string one is a contract violation."""
    try:
        value = event[field]
    except (KeyError, TypeError):
        raise ValidationError(
            "schema", field, "required", f"{field} is required for the message key"
        ) from None
    if value.__class__ is not str:
        msg = f"{field} must be string to key the message; got {json_type(value)} {show(value)}"
        raise ValidationError("schema", field, "type", msg)
    return value


def _order_key(event: Mapping[str, Any]) -> str:
    return _field(event, "order_id")


def _inventory_key(event: Mapping[str, Any]) -> str:
    return f"{_field(event, 'node_id')}|{_field(event, 'sku')}"


def _carrier_key(event: Mapping[str, Any]) -> str:
    # Tracking updates of one shipment stay in order; lane updates of one carrier stay in order.
    if event.get("type") == CarrierEventType.SHIPMENT_TRACKING:
        return _field(event, "shipment_id")
    if event.get("type") == CarrierEventType.NODE_CLOSURE:  # one node's closures stay in order
        return _field(event, "node_id")
    return _field(event, "carrier")


def _dead_letter_key(event: Mapping[str, Any]) -> str:
    source = event.get("source")
    if not isinstance(source, Mapping):
        raise ValidationError("schema", "source", "required", "source is required for the key")
    try:
        return _field(source, "topic")
    except ValidationError as exc:
        raise ValidationError(exc.code, f"source.{exc.field}", exc.rule, f"source.{exc}") from None


_KEYS: Mapping[TopicName, Callable[[Mapping[str, Any]], str]] = MappingProxyType(
    {
        TopicName.ORDERS: _order_key,
        TopicName.INVENTORY: _inventory_key,
        TopicName.CARRIER_STATUS: _carrier_key,
        TopicName.DECISIONS: _order_key,
        TopicName.DEAD_LETTERS: _dead_letter_key,
        TopicName.APPROVALS: _order_key,
        TopicName.CONFIG: lambda event: _field(event, "name"),
        TopicName.ALERTS: lambda event: _field(event, "dedup_key"),
    }
)


def key_for(name: TopicName | str, event: Mapping[str, Any]) -> str:
    """The message key of `event` on topic `name`, per the registry (see `Topic.key`).

    Raises ValidationError if the event lacks the key's fields (validate it first), and
    UnknownNameError for a topic that is not in the registry.
    """
    try:
        keyer = _KEYS[name]  # type: ignore[index]  # a plain str equal to a member hashes alike
    except KeyError:
        keyer = _KEYS[topic(name).name]
    return keyer(event)
