"""Named values of the contracts: lifecycle states, event types and status codes.

Code compares against these members instead of writing the strings inline, so a typo is an
AttributeError at import instead of a branch that silently never runs. Every enum that mirrors a
schema `enum`/`const` is checked against the schema file by `tests/test_schemas/test_topics.py`,
so the JSON files stay the single source of the allowed values.

Members are `StrEnum`s: they compare equal to, hash like and serialize (orjson) as the plain string,
so events never need converting.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """Where an order is in its life, as the engine sees it."""

    RECEIVED = "received"
    VALIDATED = "validated"
    ROUTED = "routed"
    UNROUTABLE = "unroutable"
    CANCELLED = "cancelled"
    HELD = "held"
    SHIPPED = "shipped"
    DELIVERED = "delivered"


class DecisionStatus(StrEnum):
    """`decision.status`: what the routing flow concluded for one version of an order."""

    ROUTED = "routed"
    UNROUTABLE = "unroutable"
    CANCELLED = "cancelled"
    HELD = "held"


class DeadLetterCode(StrEnum):
    """`dead_letter.error.code`: the class of failure (decode/schema come from validation)."""

    DECODE = "decode"
    SCHEMA = "schema"
    UNROUTABLE = "unroutable"
    UNKNOWN_ORDER = "unknown-order"
    INVALID_STATE = "invalid-state"
    INTERNAL = "internal"


class OrderEventType(StrEnum):
    """`order_event.type`."""

    CREATED = "order.created"
    ADDRESS_CHANGED = "order.address_changed"
    CANCELLED = "order.cancelled"
    APPROVED = "order.approved"
    REJECTED = "order.rejected"
    REROUTE_REQUESTED = "order.reroute_requested"
    #: the customer asks to ship with other orders / on a parcel of its own (docs/predictive.md)
    MERGE_REQUESTED = "order.merge_requested"
    SPLIT_REQUESTED = "order.split_requested"


class InventoryEventType(StrEnum):
    """`inventory_event.type`."""

    SNAPSHOT = "inventory.snapshot"
    ADJUSTED = "inventory.adjusted"


class CarrierEventType(StrEnum):
    """`carrier_event.type`."""

    LANE_STATUS = "lane.status"
    SHIPMENT_TRACKING = "shipment.tracking"
    NODE_CLOSURE = "node.closure"


class CustomerTier(StrEnum):
    """`order.created customer.tier`; absent means STANDARD."""

    STANDARD = "standard"
    SILVER = "silver"
    GOLD = "gold"
    VIP = "vip"


class LaneStatus(StrEnum):
    """`lane.status status`."""

    NORMAL = "normal"
    DELAYED = "delayed"
    OUTAGE = "outage"


class TrackingStatus(StrEnum):
    """`shipment.tracking status`."""

    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    FAILED_ATTEMPT = "failed_attempt"
    EXCEPTION = "exception"


class PayloadEncoding(StrEnum):
    """`dead_letter.payload_encoding`: how the original bytes are carried in `payload`."""

    UTF8 = "utf8"
    BASE64 = "base64"


class AlertType(StrEnum):
    """`alert.type`: which watchtower detector raised the incident."""

    LANE_DISRUPTION = "lane-disruption"
    DELIVERY_RISK = "delivery-risk"
    STOCK_OUT_AHEAD = "stock-out-ahead"
    DEMAND_SURGE = "demand-surge"
    DEMAND_COLLAPSE = "demand-collapse"
    STUCK_ORDERS = "stuck-orders"
    ABNORMAL_ORDERS = "abnormal-orders"
    DATA_QUALITY = "data-quality"
    #: raised by an edge site's downlink, not the watchtower: a central claim on an edge node's
    #: stock that the edge had sold meanwhile (docs/edge.md#conflicts)
    EDGE_OVERSELL = "edge-oversell"


class AlertSeverity(StrEnum):
    """`alert.severity`, PagerDuty's scale (critical and error page by default)."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class AlertStatus(StrEnum):
    """`alert.status`: trigger opens or updates an incident, resolve closes it."""

    TRIGGER = "trigger"
    RESOLVE = "resolve"
