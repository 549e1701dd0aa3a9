"""Where each record goes when it crosses an edge link, and what it does to the ledger there.

Uplink (edge -> centre), per edge record (records the downlink brought are skipped):

* every record: a verbatim copy on `edge.<site>.<topic>`, the centre's audit of the edge;
* `decisions` -> `decisions`, plus reservation effects on the centre's copy of the site's nodes
  (force: the edge's sales stand) - except a handoff's decisions (the unroutable
  `order.created`, the handoff's cancel): the centre decides that order itself;
* `inventory` -> `inventory`, for the site's own nodes only (another node's is set aside);
* `dead-letters`: an order event the edge could not place (`unroutable`, `unknown-order`) ->
  its original bytes to `orders` (the handoff); any other dead letter -> `dead-letters`;
* `carrier-status`: `shipment.tracking` at the site's nodes -> `carrier-status`, and
  `picked_up` -> a ship effect (it consumes the reservation whenever that arrives);
* `approvals` -> `approvals`: an order a rule held at the edge waits in the centre's queue too;
* `alerts` -> `alerts`; `orders`: the copy only.

Downlink (centre -> edge): `decisions` of central orders that ship from (or, re-routed or
cancelled, may have held stock at) the site's nodes -> claim effects (check: they must fit);
`inventory` of the site's nodes born at the centre -> the edge's `inventory`; `config` -> the
edge's `config`; `orders`: only approval verdicts (`order.approved`, `order.rejected`), as
candidates the downlink forwards to the edge's `orders` when the order is the edge's (it reads
the edge's order book). Records born at an edge are never sent back to one.

Bad input never stops a link: what cannot be read becomes a dead letter with the reason.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from operators.deadletters import dead_letter
from operators.edge.messages import (
    CENTRE,
    HANDOFF,
    ORIGIN,
    REJECTED,
    SOURCE,
    EdgeEffect,
    LinkMsg,
    Routed,
    Send,
    decision_effects,
    edge_origin,
    handoff_cancel,
    mirror_topic,
)
from schemas.enums import DeadLetterCode, DecisionStatus, OrderEventType, TrackingStatus
from schemas.errors import ValidationError
from schemas.validation import decode_and_validate

#: Edge topics the uplink reads, and central topics the downlink reads.
UPLINK_TOPICS = ("orders", "decisions", "inventory", "dead-letters", "carrier-status", "alerts",
                 "approvals")
DOWNLINK_TOPICS = ("decisions", "inventory", "config", "orders")
_VERDICTS = (OrderEventType.APPROVED, OrderEventType.REJECTED)
_HANDOFF_CODES = (DeadLetterCode.UNROUTABLE, DeadLetterCode.UNKNOWN_ORDER)


@dataclass(frozen=True, slots=True)
class Site:
    """One edge site as the links see it: its id, its nodes, and both sides' topic prefixes
    (dead letters name their source topic by its full name)."""

    id: str
    nodes: frozenset[str]
    edge_prefix: str = "fulfil."
    centre_prefix: str = "fulfil."

    @property
    def origin(self) -> str:
        return edge_origin(self.id)

    @property
    def edge_orders(self) -> str:
        return f"{self.edge_prefix}orders"


def _headers(msg: LinkMsg, origin: str) -> tuple[tuple[str, bytes], ...]:
    return ((ORIGIN, origin.encode()), (SOURCE, msg.src(origin).encode()))


def _dead(msg: LinkMsg, site: Site, step: str, code: str, message: str, now_ms: int,
          field: str = "", rule: str = "") -> Send:
    """A dead letter filed by a link (key and `source.topic`: the source topic's full name)."""
    prefix = site.centre_prefix if step == "edge-downlink" else site.edge_prefix
    value = dead_letter(topic=f"{prefix}{msg.topic}", partition=msg.partition,
                        offset=msg.offset, key=msg.key, payload=msg.value, step=step, code=code,
                        message=message[:500], at_ms=now_ms, field=field, rule=rule)
    return Send("dead-letters", f"{prefix}{msg.topic}".encode(), value, ())


def _invalid(msg: LinkMsg, site: Site, step: str, kind: str, now_ms: int
             ) -> tuple[dict[str, Any] | None, Send | None]:
    try:
        return decode_and_validate(kind, msg.value or b""), None
    except ValidationError as exc:
        return None, _dead(msg, site, step, exc.code, exc.message, now_ms, exc.field, exc.rule)


# -- uplink ------------------------------------------------------------------------------------


def is_handoff_decision(decision: dict[str, Any]) -> bool:
    """An edge decision that only says "not served here": the centre decides that order."""
    if decision["status"] == DecisionStatus.UNROUTABLE:
        return decision["event_type"] == OrderEventType.CREATED
    return (decision["status"] == DecisionStatus.CANCELLED
            and str(decision["event_id"]).startswith(f"{HANDOFF}:"))


def _up_decision(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    decision, dead = _invalid(msg, site, "edge-uplink", "decision", now_ms)
    if decision is None:
        out.dead.append(dead)  # type: ignore[arg-type]
        return
    if is_handoff_decision(decision):
        return
    out.sends.append(Send("decisions", msg.key or decision["order_id"].encode(),
                          msg.value or b"", _headers(msg, site.origin)))
    out.effects += decision_effects(decision, site.nodes)


def _up_inventory(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    if msg.header(ORIGIN) not in (None, site.origin):
        return  # came down from the centre: it is already there
    event, dead = _invalid(msg, site, "edge-uplink", "inventory_event", now_ms)
    if event is None:
        out.dead.append(dead)  # type: ignore[arg-type]
    elif event["node_id"] not in site.nodes:
        out.dead.append(_dead(msg, site, "edge-uplink", DeadLetterCode.INVALID_STATE,
                              f"node_id {event['node_id']!r} is not a node of edge site "
                              f"{site.id!r}; its stock is not the edge's to report", now_ms,
                              "node_id", "edge-ownership"))
    else:
        out.sends.append(Send("inventory", msg.key or b"", msg.value or b"",
                              _headers(msg, site.origin)))


def _payload(record: dict[str, Any]) -> bytes | None:
    if record.get("payload_truncated"):
        return None
    text = record.get("payload") or ""
    if record.get("payload_encoding") == "base64":
        return base64.b64decode(text)
    return text.encode()


def _up_dead_letter(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    record, dead = _invalid(msg, site, "edge-uplink", "dead_letter", now_ms)
    if record is None:
        out.dead.append(dead)  # type: ignore[arg-type]
        return
    source = record.get("source") or {}
    handoff = (record["error"]["code"] in _HANDOFF_CODES
               and source.get("topic") == site.edge_orders)
    if not handoff:
        out.sends.append(Send("dead-letters", msg.key or b"", msg.value or b"",
                              _headers(msg, site.origin)))
        return
    payload = _payload(record)
    if payload is None:
        out.dead.append(_dead(msg, site, "edge-handoff", DeadLetterCode.INVALID_STATE,
                              "the order event was too large to be kept whole in its dead "
                              "letter; it cannot be handed to the centre", now_ms, "payload",
                              "truncated"))
        return
    key = str(source.get("key") or "").encode()
    out.sends.append(Send("orders", key, payload, _headers(msg, site.origin)))


def _up_carrier(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    event, dead = _invalid(msg, site, "edge-uplink", "carrier_event", now_ms)
    if event is None:
        out.dead.append(dead)  # type: ignore[arg-type]
        return
    if event["type"] != "shipment.tracking" or event.get("node_id") not in site.nodes:
        return
    out.sends.append(Send("carrier-status", msg.key or b"", msg.value or b"",
                          _headers(msg, site.origin)))
    if event["status"] == TrackingStatus.PICKED_UP:
        out.effects.append(EdgeEffect(event["node_id"], event["order_id"], op="ship"))


def _up_alert(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    out.sends.append(Send("alerts", msg.key or b"", msg.value or b"", _headers(msg, site.origin)))


def _up_approval(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    """A held order's approval request joins the centre's queue (verbatim; `fulfil-origin`
    says which site holds the order, and the verdict published centrally comes back down)."""
    request, dead = _invalid(msg, site, "edge-uplink", "approval", now_ms)
    if request is None:
        out.dead.append(dead)  # type: ignore[arg-type]
        return
    out.sends.append(Send("approvals", msg.key or request["order_id"].encode(),
                          msg.value or b"", _headers(msg, site.origin)))


_UP: dict[str, Callable[[LinkMsg, Site, Routed, int], None]] = {
    "decisions": _up_decision, "inventory": _up_inventory, "dead-letters": _up_dead_letter,
    "carrier-status": _up_carrier, "alerts": _up_alert, "approvals": _up_approval,
}


def uplink(msg: LinkMsg, site: Site, now_ms: int) -> Routed:
    """What the centre receives for one edge record (see the module docstring)."""
    out = Routed()
    if msg.header(ORIGIN) not in (None, site.origin):
        return out  # a record the downlink brought: the centre has it
    out.sends.append(Send(mirror_topic(site.id, msg.topic), msg.key or b"", msg.value or b"",
                          _headers(msg, site.origin)))
    step = _UP.get(msg.topic)
    if step is not None:
        step(msg, site, out, now_ms)
    return out


# -- downlink ----------------------------------------------------------------------------------


def needs_replan(decision: dict[str, Any], site: Site) -> bool:
    """A rejected claim's first re-route that ended `lost-races` (see `reroute_event`)."""
    return (str(decision["event_id"]).startswith(f"{REJECTED}:{site.id}:")
            and decision["status"] == DecisionStatus.UNROUTABLE
            and "lost-races" in decision["reasons"])


def _down_decision(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    decision, dead = _invalid(msg, site, "edge-downlink", "decision", now_ms)
    if decision is None:
        out.dead.append(dead)  # type: ignore[arg-type]
        return
    for effect in decision_effects(decision, site.nodes):
        out.effects.append(effect)
        out.claims[(effect.node_id, effect.order_id)] = decision
    if needs_replan(decision, site):
        out.replans.append(decision)


def _down_inventory(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    event, dead = _invalid(msg, site, "edge-downlink", "inventory_event", now_ms)
    if event is None:
        out.dead.append(dead)  # type: ignore[arg-type]
    elif event["node_id"] in site.nodes:
        out.sends.append(Send("inventory", msg.key or b"", msg.value or b"",
                              _headers(msg, CENTRE)))


def _down_config(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    out.sends.append(Send("config", msg.key or b"", msg.value or b"", _headers(msg, CENTRE)))


def _down_order(msg: LinkMsg, site: Site, out: Routed, now_ms: int) -> None:
    """An approval verdict published centrally may be for an order held at the edge: a
    candidate (the downlink checks the edge's order book). Any other order event, valid or not,
    is the centre's own business (its router decides it, or files it as a dead letter)."""
    try:
        event = decode_and_validate("order_event", msg.value or b"")
    except ValidationError:
        return
    if event["type"] in _VERDICTS:
        out.approvals.append((event, Send("orders", msg.key or event["order_id"].encode(),
                                          msg.value or b"", _headers(msg, CENTRE))))


_DOWN: dict[str, Callable[[LinkMsg, Site, Routed, int], None]] = {
    "decisions": _down_decision, "inventory": _down_inventory, "config": _down_config,
    "orders": _down_order,
}


def downlink(msg: LinkMsg, site: Site, now_ms: int) -> Routed:
    """What the edge receives for one central record (see the module docstring)."""
    out = Routed()
    origin = msg.header(ORIGIN)
    if origin is not None and origin != CENTRE:
        return out  # born at an edge: never sent back down
    step = _DOWN.get(msg.topic)
    if step is not None:
        step(msg, site, out, now_ms)
    return out


def verdict_outcome(event: dict[str, Any], known: tuple[str, str] | None) -> str:
    """What the downlink does with an approval verdict published centrally, given what the
    edge's order book holds for the order ((last event id, status), or None):

    * `central`: the edge does not know the order; it is the centre's (its router decides);
    * `duplicate`: the edge's last event for the order is this very verdict: it is in effect
      already (a link re-sending the batch in flight after a crash);
    * `closed`: the order is closed at the edge (rejected, cancelled, handed off to the centre):
      nothing to approve there; the centre's router, which does not know it either, files the
      verdict in its dead letters, where the approver sees it;
    * `forward`: to the edge's orders topic, where the edge's router takes it like a local
      verdict (a held order is routed or cancelled; one decided meanwhile is refused there as
      `invalid-state`, a dead letter the uplink brings back up).
    """
    if known is None:
        return "central"
    event_id, status = known
    if event_id == event["event_id"]:
        return "duplicate"
    if status == DecisionStatus.CANCELLED:
        return "closed"
    return "forward"


def _decided(msg: LinkMsg) -> tuple[int, str]:
    """(decided_at, decision id) of a decision record; (0, "") when it cannot be read."""
    try:
        d = orjson.loads(msg.value or b"")
        return int(d["timings"]["decided_at"]), str(d["decision_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0, ""


def downlink_batch(msgs: list[LinkMsg], site: Site, now_ms: int) -> Routed:
    """`downlink` for a batch, central decisions taken in the order the centre made them
    (decided_at, then decision id): the edge confirms claims in that order, so which claim loses
    a conflict does not depend on how the decision topic's partitions interleave."""
    decisions = sorted((m for m in msgs if m.topic == "decisions"), key=_decided)
    out = Routed()
    for msg in [*decisions, *(m for m in msgs if m.topic != "decisions")]:
        out.extend(downlink(msg, site, now_ms))
    return out


def uplink_batch(msgs: list[LinkMsg], site: Site, now_ms: int) -> Routed:
    """`uplink` for a batch, in consumption order (per partition, the edge's order)."""
    out = Routed()
    for msg in msgs:
        out.extend(uplink(msg, site, now_ms))
    return out


def handoff_cancel_for(value: bytes | None, site: Site) -> dict[str, Any] | None:
    """The cancel that closes, at the edge, an `order.created` handed to the centre (from the
    edge's `unroutable` dead letter of it); None for any other dead letter."""
    try:
        record = orjson.loads(value or b"")
        if (record["error"]["code"] != DeadLetterCode.UNROUTABLE
                or record["source"]["topic"] != site.edge_orders):
            return None
        event = orjson.loads(_payload(record) or b"")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if not isinstance(event, dict) or event.get("type") != OrderEventType.CREATED:
        return None
    order_id = event.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        return None
    return handoff_cancel(order_id, site.id, int(record.get("at") or 0))
