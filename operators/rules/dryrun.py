"""`fulfil rules test`: what a rules file would change, before it is published.

Each order is evaluated under the current rules and the candidate rules, then planned both ways
with the same planner the engine uses, against the same stock (by default: every node holds
plenty, so the comparison shows the rules' effect and not stock-outs). The result lists, per
order, the rules hit and the outcome (node/carrier/service, held, or unroutable and why), and a
summary of how many orders change and how. Abnormal-order flags (`order.flags`) are computed
over the file itself when a rule reads them (`with_flags`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from operators.candidates import LaneArrays
from operators.network import Network
from operators.orders import OrderData
from operators.planner import Planner, Unroutable
from operators.rules.facts import order_facts
from operators.rules.ruleset import Outcome, RuleSet

PLENTY = 1_000_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """One order under one rule set."""

    hit: tuple[str, ...]
    result: str  # "held:<group>" | "unroutable:<reason>" | "N01 correios/sedex (+N02 ...)"

    def __str__(self) -> str:
        return f"{self.result} [{', '.join(self.hit) or 'no rule'}]"


@dataclass(frozen=True, slots=True)
class Row:
    order_id: str
    current: Verdict
    candidate: Verdict

    @property
    def changed(self) -> bool:
        return self.current.result != self.candidate.result


def _verdicts(orders: Sequence[OrderData], rules: RuleSet, planner: Planner, network: Network,
              now_ms: int) -> list[Verdict]:
    outcomes: list[Outcome] = []
    for o in orders:
        where = network.locate(o.destination)
        region = network.regions[where[2]] if where is not None else None
        outcomes.append(rules.evaluate(order_facts(o, region, rules), o.event_time))
    go = [i for i, out in enumerate(outcomes) if out.hold is None]
    plans: dict[int, Any] = {}
    if go:
        prep = planner.prepare([orders[i] for i in go], [outcomes[i] for i in go])
        atp = np.full((len(network.nodes), len(prep.skus)), PLENTY, dtype=np.int64)
        load = np.zeros(len(network.nodes), dtype=np.int64)
        lanes = LaneArrays.healthy(len(network.regions), len(network.services))
        plans = dict(zip(go, planner.plan(prep, atp, load, lanes, now_ms), strict=True))
    verdicts = []
    for i, out in enumerate(outcomes):
        if out.hold is not None:
            result = f"held:{out.hold.group}"
        elif isinstance(plans[i], Unroutable):
            result = f"unroutable:{plans[i].reason}"
        else:
            result = " + ".join(f"{network.nodes[s.node].id} {network.services[s.service].id}"
                                for s in plans[i].shipments)
        verdicts.append(Verdict(out.hit, result))
    return verdicts


def with_flags(orders: Sequence[OrderData], network: Network) -> list[OrderData]:
    """The orders with the abnormal-order flags routing would give them (`order.flags`),
    judged in file order against the file's earlier orders, default thresholds: in production
    the history is every router's (state/order_marks.py), so a flag needing history (a
    duplicate, a quantity far above the norm) shows here only if the file holds that history."""
    from operators.watch.abnormal import FileHistory, flag_payload
    from operators.watch.facts import NetInfo
    from operators.watch.settings import AbnormalSettings

    history = FileHistory(NetInfo(network), AbnormalSettings())
    out = []
    for o in orders:
        if "flags" not in o.attrs:
            event = {"order_id": o.order_id, "occurred_at": o.event_time, "channel": o.channel,
                     "customer": {"id": o.attrs["customer_id"]} if "customer_id" in o.attrs
                     else {}, "destination": o.destination,
                     "lines": [{"sku": ln.sku, "qty": ln.qty} for ln in o.lines]}
            flags = history.assess(event)
            if flags:
                o = replace(o, attrs={**o.attrs, "flags": flag_payload(flags)})
        out.append(o)
    return out


def dry_run(orders: Sequence[OrderData], current: RuleSet, candidate: RuleSet,
            network: Network, planner: Planner, now_ms: int) -> list[Row]:
    """Each order under both rule sets (see the module docstring)."""
    if "order.flags" in current.fields | candidate.fields:
        orders = with_flags(orders, network)
    before = _verdicts(orders, current, planner, network, now_ms)
    after = _verdicts(orders, candidate, planner, network, now_ms)
    return [Row(o.order_id, b, a) for o, b, a in zip(orders, before, after, strict=True)]


def summary(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts for the end of the report: changed orders, and by kind of change."""
    kinds: Counter[str] = Counter()
    for r in rows:
        if not r.changed:
            continue
        b, a = r.current.result.split(":")[0], r.candidate.result.split(":")[0]
        if a == "held" and b != "held":
            kinds["newly held"] += 1
        elif b == "held" and a != "held":
            kinds["no longer held"] += 1
        elif a == "unroutable" and b != "unroutable":
            kinds["newly unroutable"] += 1
        elif b == "unroutable" and a != "unroutable":
            kinds["now routable"] += 1
        else:
            kinds["routed differently"] += 1
    hits: Counter[str] = Counter(h for r in rows for h in r.candidate.hit)
    return {"orders": len(rows), "changed": sum(r.changed for r in rows),
            "changes": dict(kinds), "rule_hits": dict(hits)}
