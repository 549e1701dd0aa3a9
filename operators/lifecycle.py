"""One order's lifecycle as compact entries: what happened, when, and why.

Customer service asks "where is my order and why". The answer is spread over five topics (the
order's own events, the routing decisions, the dead letters, the carriers' tracking updates and
the alerts that named it); the tracking flow turns each such message into zero or more `Entry`s
here, and `state/lifecycle.py` keeps them per order.

Pure logic (plain bytes in, plain data out), so it is tested without a broker or Redis:

    >>> p = parse("decisions", raw, Source("fulfil.decisions", 0, 7, 0))  # doctest: +SKIP
    >>> p.outcome, [e.step for e in p.entries]                               # doctest: +SKIP
    ('recorded', [<Step.ROUTED: 'routed'>])

Replays must add nothing. An entry is stored as its `member()` bytes in a per-order sorted set
scored by `at_ms`, so the *content* is its identity: everything in it is derived from the message
alone (never from the time the tracking flow read it), and `ref` names the message's own identity
— the event id, the decision id, or for dead letters (re-emitted with a new `at` on every replay)
the source coordinates of the rejected input. The same message read twice gives the same member.

Errors are data: `parse` never raises. An input that is not this flow's business (an inventory
dead letter, a lane update) is `skipped`; one that breaks its contract is `invalid` (orders and
carrier events: the routing flow dead-letters those, and the dead letter is what gets recorded) or
`undecodable` (not JSON at all). The caller counts every outcome.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from schemas.enums import (
    CarrierEventType,
    DeadLetterCode,
    DecisionStatus,
    OrderEventType,
    OrderStatus,
    PayloadEncoding,
    TrackingStatus,
)
from schemas.errors import ValidationError
from schemas.topics import TopicName, topic
from schemas.validation import decode_and_validate

#: Registry names of the topics the tracking flow reads. `alerts` is not in the registry yet (its
#: schema belongs to the alerting work, issue 8); until then its events are read leniently.
TRACKED_TOPICS = (TopicName.ORDERS, TopicName.DECISIONS, TopicName.DEAD_LETTERS,
                  TopicName.CARRIER_STATUS)
ALERTS_TOPIC = "alerts"
MAX_ID_CHARS = 256
MAX_NOTE_CHARS = 200
MAX_ALERT_ORDERS = 1000
_ID = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_ID_CHARS}}}")


class Step(StrEnum):
    """What happened to the order. Declaration order is lifecycle order: it breaks time ties."""

    RECEIVED = "received"
    ADDRESS_CHANGE = "address-change-requested"
    CANCEL_REQUEST = "cancel-requested"
    REJECTED = "rejected"
    HELD = "held"
    APPROVED = "approved"
    APPROVAL_REJECTED = "approval-rejected"
    ROUTED = "routed"
    REROUTE_REQUEST = "reroute-requested"
    MERGE_REQUEST = "merge-requested"
    SPLIT_REQUEST = "split-requested"
    REROUTED = "re-routed"
    UNROUTABLE = "unroutable"
    CANCELLED = "cancelled"
    SHIPPED = "shipped"
    IN_TRANSIT = "in-transit"
    OUT_FOR_DELIVERY = "out-for-delivery"
    DELIVERY_FAILED = "delivery-failed"
    SHIPMENT_EXCEPTION = "shipment-exception"
    DELIVERED = "delivered"
    ALERT = "alert"


STEP_RANK = {step: i for i, step in enumerate(Step)}

#: An order whose creation was rejected (a status beyond `schemas.enums.OrderStatus`, whose
#: values a contract test pins); held orders use OrderStatus.HELD.
REJECTED_STATUS = "rejected"
HELD_STATUS = OrderStatus.HELD

_TRACKING_STEPS: Mapping[str, tuple[Step, str | None]] = {
    TrackingStatus.PICKED_UP: (Step.SHIPPED, OrderStatus.SHIPPED),
    TrackingStatus.IN_TRANSIT: (Step.IN_TRANSIT, None),
    TrackingStatus.OUT_FOR_DELIVERY: (Step.OUT_FOR_DELIVERY, None),
    TrackingStatus.DELIVERED: (Step.DELIVERED, OrderStatus.DELIVERED),
    TrackingStatus.FAILED_ATTEMPT: (Step.DELIVERY_FAILED, None),
    TrackingStatus.EXCEPTION: (Step.SHIPMENT_EXCEPTION, None),
}


class Source(NamedTuple):
    """Where a message came from; `timestamp_ms` is the broker's, used when the event has none."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One step of one order: compact, deterministic, self-describing."""

    order_id: str
    at_ms: int
    step: Step
    ref: str
    version: int | None = None
    status: str | None = None
    nodes: tuple[str, ...] = ()
    carriers: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    note: str = ""
    source: str = ""

    def member(self) -> bytes:
        """The stored form (without order id and time: they are the key and the score)."""
        d: dict[str, Any] = {"step": self.step.value, "ref": self.ref}
        for name, value in (("v", self.version), ("status", self.status),
                            ("nodes", list(self.nodes)), ("carriers", list(self.carriers)),
                            ("reasons", list(self.reasons)), ("note", self.note),
                            ("src", self.source)):
            if value not in (None, "", []):
                d[name] = value
        return orjson.dumps(d)

    @classmethod
    def from_member(cls, order_id: str, at_ms: int, member: bytes) -> Entry | None:
        """The entry back from its stored form; None if it cannot be read (never raises)."""
        try:
            d = orjson.loads(member)
            return cls(order_id, int(at_ms), Step(d["step"]), str(d["ref"]), d.get("v"),
                       d.get("status"), tuple(d.get("nodes", ())), tuple(d.get("carriers", ())),
                       tuple(d.get("reasons", ())), d.get("note", ""), d.get("src", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape of one timeline event (HTTP endpoint, `fulfil order --json`)."""
        return {"at": self.at_ms, "step": self.step.value, "version": self.version,
                "status": self.status, "nodes": list(self.nodes),
                "carriers": list(self.carriers), "reasons": list(self.reasons),
                "note": self.note, "source": self.source, "ref": self.ref}


@dataclass(frozen=True, slots=True)
class DecisionSummary:
    """The parts of a decision customer service needs, kept per version beside the timeline."""

    order_id: str
    version: int
    fields: Mapping[str, Any]

    def member(self) -> bytes:
        return orjson.dumps(self.fields, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one message means for the read model; `outcome` is always set (and counted)."""

    outcome: str  # recorded | skipped | invalid | undecodable
    entries: tuple[Entry, ...] = ()
    decision: DecisionSummary | None = None


SKIPPED = Parsed("skipped")


def valid_id(value: Any) -> bool:
    """An id usable as (part of) a Redis key: a short string without control characters."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _clip(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_NOTE_CHARS else text[: MAX_NOTE_CHARS - 1] + "…"


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


# -- one function per topic -----------------------------------------------------------------------


#: Order events after `order.created` that ask for something; the decision that follows says
#: how it ended (a cancellation is the fallback for a type this table does not know yet).
_REQUESTS = {
    OrderEventType.CANCELLED: Step.CANCEL_REQUEST,
    OrderEventType.APPROVED: Step.APPROVED,
    OrderEventType.REJECTED: Step.APPROVAL_REJECTED,
    OrderEventType.REROUTE_REQUESTED: Step.REROUTE_REQUEST,
    OrderEventType.SPLIT_REQUESTED: Step.SPLIT_REQUEST,
}


def from_order_event(ev: Mapping[str, Any], src: Source) -> Parsed:
    """order.created -> received (validated: it passed the same contract routing checks);
    later events (address change, cancellation, approval, re-route / merge / split request) ->
    the request (its decision says how it ended)."""
    kind = ev["type"]
    if kind == OrderEventType.CREATED:
        step, status = Step.RECEIVED, OrderStatus.VALIDATED
        region = ev["destination"].get("region") or ev["destination"].get("postal_code", "")
        note = f"{len(ev['lines'])} line(s) via {ev.get('channel', '?')} to {region}".rstrip()
    elif kind == OrderEventType.ADDRESS_CHANGED:
        step, status = Step.ADDRESS_CHANGE, None
        dest = ev["destination"]
        note = f"to {dest.get('region') or dest.get('postal_code') or 'new address'}"
    elif kind == OrderEventType.MERGE_REQUESTED:
        step, status = Step.MERGE_REQUEST, None
        note = _clip("with " + ", ".join(str(o) for o in ev.get("with", ())))
    else:
        step, status = _REQUESTS.get(kind, Step.CANCEL_REQUEST), None
        said = str(ev.get("reason") or ev.get("note") or "")
        note = _clip(f"by {ev['by']}" + (f": {said}" if said else "") if ev.get("by") else said)
    entry = Entry(ev["order_id"], _int(ev.get("occurred_at"), src.timestamp_ms), step,
                  f"e:{ev['event_id']}", status=status, note=note, source=TopicName.ORDERS)
    return Parsed("recorded", (entry,))


def from_decision(d: Mapping[str, Any], src: Source) -> Parsed:
    """A decision -> routed / re-routed (version > 1) / unroutable / cancelled / held, plus its
    summary (the current decision is the one with the highest version)."""
    version = int(d["version"])
    status = d["status"]
    if status == DecisionStatus.ROUTED:
        step = Step.ROUTED if version <= 1 else Step.REROUTED
        order_status: str = OrderStatus.ROUTED
    elif status == DecisionStatus.UNROUTABLE:
        step, order_status = Step.UNROUTABLE, OrderStatus.UNROUTABLE
    elif status == DecisionStatus.CANCELLED:
        step, order_status = Step.CANCELLED, OrderStatus.CANCELLED
    elif status == HELD_STATUS:
        step, order_status = Step.HELD, HELD_STATUS
    else:
        return Parsed("invalid")
    shipments = d.get("shipments") or []
    timings = d.get("timings") or {}
    # Decided at the engine's clock, caused by an event stamped by the channel's: if that clock
    # runs ahead, the decision would sort before its own cause. Never let it (equal times are
    # broken by lifecycle order: received before routed, a request before its outcome).
    at = max(_int(timings.get("decided_at"), src.timestamp_ms),
             _int(timings.get("event_time"), 0))
    nodes = tuple(dict.fromkeys(s["node_id"] for s in shipments))
    carriers = tuple(dict.fromkeys(f"{s['carrier']}/{s['service']}" for s in shipments))
    entry = Entry(d["order_id"], at, step, d["decision_id"], version, order_status, nodes,
                  carriers, tuple(str(r) for r in d.get("reasons", ())),
                  _eta_note(d), TopicName.DECISIONS)
    summary = {
        "decision_id": d["decision_id"], "version": version, "status": status,
        "event_type": d.get("event_type"), "decided_at": at,
        "promised_by": d.get("promised_by"), "estimated_delivery": d.get("estimated_delivery"),
        "on_time": d.get("on_time"), "reasons": list(entry.reasons),
        "shipments": [{"node_id": s["node_id"], "carrier": s["carrier"], "service": s["service"],
                       "estimated_delivery": s.get("estimated_delivery"),
                       "lines": [{"line_id": ln["line_id"], "sku": ln["sku"], "qty": ln["qty"]}
                                 for ln in s.get("lines", ())]}
                      for s in shipments],
    }
    return Parsed("recorded", (entry,), DecisionSummary(d["order_id"], version, summary))


def _eta_note(d: Mapping[str, Any]) -> str:
    eta, on_time = d.get("estimated_delivery"), d.get("on_time")
    if not isinstance(eta, int):
        return ""
    when = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(eta / 1000))
    return f"eta {when}" + ("" if on_time is None else (" on time" if on_time else " late"))


def from_dead_letter(dl: Mapping[str, Any], src: Source, topic_prefix: str) -> Parsed:
    """A rejected order or carrier event -> `rejected` for the order it names.

    The order id comes from the original payload, or (orders topic only: it is keyed by order id)
    from the message key, so even an undecodable order event reaches its timeline. Unroutable
    dead letters are skipped: the order's `unroutable` decision already records them.
    """
    error = dl["error"]
    code = error["code"]
    source = dl["source"]
    short = source["topic"].removeprefix(topic_prefix)
    if code == DeadLetterCode.UNROUTABLE or short not in (TopicName.ORDERS,
                                                          TopicName.CARRIER_STATUS):
        return SKIPPED
    payload = _payload_object(dl)
    order_id = payload.get("order_id")
    if not valid_id(order_id) and short == TopicName.ORDERS:
        order_id = source.get("key")
    if not valid_id(order_id):
        return SKIPPED
    # Only a rejected creation means the order does not exist; a rejected change leaves it as
    # it was (and a payload too broken to say what it was sets no status either).
    created = short == TopicName.ORDERS and payload.get("type") == OrderEventType.CREATED
    ref = f"dl:{source['topic']}/{source.get('partition')}/{source.get('offset')}"
    what = payload.get("type") if isinstance(payload.get("type"), str) else "event"
    reasons = tuple(r for r in (code, error.get("field"), error.get("rule")) if r)
    entry = Entry(order_id, _int(dl.get("at"), src.timestamp_ms), Step.REJECTED, ref,
                  status=REJECTED_STATUS if created else None, reasons=reasons,
                  note=_clip(f"{what} rejected by {dl['step']}: {error.get('message', '')}"),
                  source=TopicName.DEAD_LETTERS)
    return Parsed("recorded", (entry,))


def _payload_object(dl: Mapping[str, Any]) -> dict[str, Any]:
    if dl.get("payload_encoding", PayloadEncoding.UTF8) != PayloadEncoding.UTF8:
        return {}
    try:
        obj = orjson.loads(dl.get("payload") or b"")
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def from_carrier_event(ev: Mapping[str, Any], src: Source) -> Parsed:
    """Shipment tracking -> shipped (picked up), in transit, ..., delivered. Lane updates name no
    order: skipped (alerts derived from them name the orders)."""
    if ev["type"] != CarrierEventType.SHIPMENT_TRACKING:
        return SKIPPED
    step, status = _TRACKING_STEPS[ev["status"]]
    entry = Entry(ev["order_id"], _int(ev.get("occurred_at"), src.timestamp_ms), step,
                  f"t:{ev['event_id']}", status=status,
                  nodes=(ev["node_id"],) if ev.get("node_id") else (),
                  carriers=(f"{ev['carrier']}/{ev['service']}" if ev.get("service")
                            else ev["carrier"],),
                  note=_clip(f"shipment {ev['shipment_id']}"),
                  source=TopicName.CARRIER_STATUS)
    return Parsed("recorded", (entry,))


def from_alert(alert: Mapping[str, Any], src: Source) -> Parsed:
    """An alert -> one `alert` entry per order it names (`affected_order_ids`,
    `sample_order_ids`). Read leniently: the alert contract is not fixed yet."""
    ids: list[str] = []
    for name in ("affected_order_ids", "sample_order_ids"):
        value = alert.get(name)
        if isinstance(value, list):
            ids.extend(v for v in value if valid_id(v))
    ids = list(dict.fromkeys(ids))[:MAX_ALERT_ORDERS]
    if not ids:
        return SKIPPED
    at = next((_int(alert[k], 0) for k in ("at", "last_seen", "occurred_at", "first_seen")
               if _int(alert.get(k), -1) >= 0), src.timestamp_ms)
    ident = next((str(alert[k]) for k in ("alert_id", "id", "dedup_key") if alert.get(k)),
                 f"{src.topic}/{src.partition}/{src.offset}")
    status = alert.get("status")
    reasons = tuple(str(alert[k]) for k in ("type", "severity", "status")
                    if isinstance(alert.get(k), str | int))
    note = _clip(alert.get("summary") or alert.get("title") or "")
    ref = f"a:{ident}:{status or ''}:{at}"
    return Parsed("recorded", tuple(
        Entry(oid, at, Step.ALERT, ref, reasons=reasons, note=note, source="alerts")
        for oid in ids
    ))


# -- dispatch -------------------------------------------------------------------------------------

_KINDS = {name: topic(name).kind for name in TRACKED_TOPICS}


def parse(topic_name: str | None, raw: bytes | None, src: Source,
          topic_prefix: str = "fulfil.") -> Parsed:
    """What the message `raw` read from registry topic `topic_name` means for the read model.

    Never raises on bad input: every outcome is data for the caller to count.
    """
    if topic_name == ALERTS_TOPIC:
        try:
            alert = orjson.loads(raw or b"")
        except orjson.JSONDecodeError:
            return Parsed("undecodable")
        return from_alert(alert, src) if isinstance(alert, dict) else Parsed("undecodable")
    kind = _KINDS.get(topic_name or "")
    if kind is None:
        return SKIPPED
    try:
        event = decode_and_validate(kind, raw)
    except ValidationError as exc:
        return Parsed("undecodable" if exc.code == DeadLetterCode.DECODE else "invalid")
    if topic_name == TopicName.ORDERS:
        return from_order_event(event, src)
    if topic_name == TopicName.DECISIONS:
        return from_decision(event, src)
    if topic_name == TopicName.DEAD_LETTERS:
        return from_dead_letter(event, src, topic_prefix)
    return from_carrier_event(event, src)


def timeline_order(entries: Iterable[Entry]) -> list[Entry]:
    """Event time first; at equal times, lifecycle order (received before routed ...)."""
    return sorted(entries, key=lambda e: (e.at_ms, STEP_RANK[e.step], e.ref))


def order_view(order_id: str, entries: Iterable[Entry],
               decisions: Iterable[DecisionSummary | Mapping[str, Any]]) -> dict[str, Any]:
    """The public JSON shape of one order: its timeline, status and current decision.

    `status` is that of the latest entry that sets one (`rejected` when the order's creation was
    only ever rejected); `current_decision` is the summary with the highest version (at equal
    versions — a re-plan after a crash — the later one).
    """
    timeline = timeline_order(entries)
    status = next((e.status for e in reversed(timeline) if e.status), None)
    if status is None and any(e.step == Step.REJECTED for e in timeline):
        status = REJECTED_STATUS
    summaries = [d.fields if isinstance(d, DecisionSummary) else d for d in decisions]
    current = max(summaries, key=lambda s: (_int(s.get("version"), -1),
                                            _int(s.get("decided_at"), -1)), default=None)
    return {"order_id": order_id, "status": status, "current_decision": current,
            "events": [e.to_dict() for e in timeline]}
