"""Routing decisions as bytes on the wire (schema `decision`).

Built once per decision and stored verbatim in the order book, so a replay re-emits exactly the
same bytes (same decision id, same content): consumers can deduplicate on `decision_id`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from operators.emissions import round_kg
from operators.orders import OrderData

if TYPE_CHECKING:
    from operators.network import Network
    from operators.planner import Plan
    from operators.rules import Hold

#: What business rules add to a decision: {"version", "hit", "tags"} and the priority, or None
#: when no rules are in force (the decision then carries neither field).
RulesInfo = Mapping[str, Any] | None


def _base(order: OrderData, version: int, event: Mapping[str, Any], status: str,
          received_ms: int, decided_ms: int, network_version: str) -> dict[str, Any]:
    d = {
        "decision_id": f"{order.order_id}:v{version}",
        "order_id": order.order_id,
        "version": version,
        "status": status,
        "event_id": event["event_id"],
        "event_type": event["type"],
        "channel": order.channel,
        "promised_by": order.promised_by,
        "timings": {
            "event_time": int(event["occurred_at"]),
            "received_at": received_ms,
            "decided_at": decided_ms,
        },
        "network_version": network_version,
    }
    flags = order.attrs.get("flags")
    if flags is not None:
        d["flags"] = flags
    return d


HIGH_TIERS = frozenset({"gold", "vip"})
#: An estimate closer to the promise than this, or a probability of missing it above AT_RISK_P
#: (the delivery-time model's), counts as at risk.
AT_RISK_SLACK_MS = 12 * 3_600_000
AT_RISK_P = 0.3


def service_class(tier: str, at_risk: bool) -> str:
    """Customer-service priority: p1 = a high-tier customer whose delivery is at risk, p2 = one
    of the two, p3 = neither. Customer service works the p1 queue first."""
    high = tier in HIGH_TIERS
    return "p1" if high and at_risk else ("p2" if high or at_risk else "p3")


def _with_rules(d: dict[str, Any], rules: RulesInfo, priority: int) -> dict[str, Any]:
    if rules is not None:
        d["rules"] = rules
        d["priority"] = priority
    return d


def routed_decision(order: OrderData, version: int, event: Mapping[str, Any], plan: Plan,
                    network: Network, extra_reasons: Sequence[str], received_ms: int,
                    decided_ms: int, rules: RulesInfo = None, priority: int = 0,
                    extra: Mapping[str, Any] | None = None) -> bytes:
    """`extra`: optional fields (ship_to, consolidation_group) added verbatim."""
    d = _base(order, version, event, "routed", received_ms, decided_ms, network.version)
    # Built with literals and item assignment only: this runs once per decision, and a
    # keyword-argument `update` or a `**` spread costs a dict of its own each time.
    shipments = []
    co2e = 0.0
    lines, nodes, services = order.lines, network.nodes, network.services
    for s in plan.shipments:
        svc = services[s.service]
        s_co2e = round_kg(s.co2e_kg)
        co2e += s_co2e
        shipments.append({
            "node_id": nodes[s.node].id,
            "carrier": svc.carrier,
            "service": svc.service,
            "lines": [{"line_id": (ln := lines[i]).line_id, "sku": ln.sku, "qty": ln.qty}
                      for i in s.lines],
            "estimated_delivery": s.est_ms,
            "distance_km": round(s.distance_km, 1),
            "cost": round(s.cost, 2),
            "co2e_kg": s_co2e,
        })
    runner = None
    if plan.runner_up is not None:
        svc = services[plan.runner_up.service]
        runner = {
            "nodes": [nodes[n].id for n in plan.runner_up.nodes],
            "carrier": svc.carrier,
            "service": svc.service,
            "score": round(plan.runner_up.score, 4),
        }
    est_ms, promised_by, risk = plan.est_ms, order.promised_by, plan.risk
    d["shipments"] = shipments
    d["estimated_delivery"] = est_ms
    d["on_time"] = est_ms <= promised_by
    d["score"] = round(plan.score, 4)
    d["cost"] = round(plan.cost, 2)
    d["co2e_kg"] = round_kg(co2e)  # the shipments' (rounded) figures summed
    d["runner_up"] = runner
    d["splits"] = len(plan.shipments) - 1
    d["reasons"] = [*extra_reasons, *plan.reasons]
    d["risk"] = round(risk, 3)
    d["service_class"] = service_class(order.tier, risk >= AT_RISK_P
                                       or est_ms > promised_by - AT_RISK_SLACK_MS)
    if extra:
        d.update(extra)
    return orjson.dumps(_with_rules(d, rules, priority))


def unroutable_decision(order: OrderData, version: int, event: Mapping[str, Any], reason: str,
                        received_ms: int, decided_ms: int, network_version: str,
                        rules: RulesInfo = None, priority: int = 0) -> bytes:
    d = _base(order, version, event, "unroutable", received_ms, decided_ms, network_version)
    d.update(shipments=[], estimated_delivery=None, on_time=False, score=None, runner_up=None,
             splits=0, reasons=[reason], service_class=service_class(order.tier, True))
    return orjson.dumps(_with_rules(d, rules, priority))


def held_decision(order: OrderData, version: int, event: Mapping[str, Any], hold: Hold,
                  received_ms: int, decided_ms: int, network_version: str, rules: RulesInfo,
                  priority: int) -> bytes:
    """A decision that waits for approval: no shipments, nothing reserved."""
    d = _base(order, version, event, "held", received_ms, decided_ms, network_version)
    d.update(shipments=[], estimated_delivery=None, on_time=None, score=None, runner_up=None,
             splits=0, reasons=["held-for-approval"],
             hold={"group": hold.group, "reason": hold.reason, "rule": hold.rule})
    return orjson.dumps(_with_rules(d, rules or {"version": "none", "hit": []}, priority))


def approval_request(decision: Mapping[str, Any], order: OrderData) -> bytes:
    """The `approval` message for a held decision (rebuilt from the decision on a replay)."""
    hold = decision["hold"]
    return orjson.dumps({
        "order_id": order.order_id,
        "decision_id": decision["decision_id"],
        "group": hold["group"],
        "reason": hold["reason"],
        "rule": hold["rule"],
        "rules_version": decision["rules"]["version"],
        "channel": order.channel,
        "customer_tier": order.tier,
        "value": order.attrs.get("value"),
        "held_at": decision["timings"]["decided_at"],
    })


def cancelled_decision(order: OrderData, version: int, event: Mapping[str, Any],
                       received_ms: int, decided_ms: int, network_version: str) -> bytes:
    """Cancelled by the customer (order.cancelled) or by an approver (order.rejected)."""
    d = _base(order, version, event, "cancelled", received_ms, decided_ms, network_version)
    reason = event.get("reason")
    first = "rejected" if event["type"] == "order.rejected" else "cancelled"
    d.update(shipments=[], estimated_delivery=None, on_time=None, score=None, runner_up=None,
             splits=0, reasons=[first, *([str(reason)] if reason else [])])
    return orjson.dumps(d)
