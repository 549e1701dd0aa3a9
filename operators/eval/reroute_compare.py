"""With and without predictive re-routing, judged: both runs of ``reroute_replay`` on one
ground truth, all orders and the exposed ones, and every move judged both ways.

Split from ``operators/eval/reroute_replay.py`` (the clocked replay) so each stays readable:
that module decides what happens, this one measures it (``fulfil evaluate``'s metrics and cost
model, ``operators/eval/truth.py``) and prints the table ``benchmarks/reroute_eval.py`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from operators.eval.forecasts import AnyForecast, ClosureTruth, NodeClosure
from operators.eval.metrics import Metrics, measure
from operators.eval.replay import ReplayResult
from operators.eval.reroute_replay import Move, closure_request_key, run
from operators.eval.truth import Truth
from operators.lanes import lane_key
from operators.network import Network
from operators.reroute import CANNOT_DELIVER

__all__ = ["Comparison", "compare", "comparison_json", "forecast_groups", "format_comparison",
           "held_orders", "judge_moves", "late_orders"]


@dataclass
class Comparison:
    """Both runs measured on the same ground truth (all orders, and the exposed ones)."""

    without: Metrics
    with_: Metrics
    exposed_without: Metrics
    exposed_with: Metrics
    counts: dict[str, int]
    exposed: int
    moves: dict[str, float]
    #: Orders late on the truth but on time on the same truth without the disruptions, per run
    #: (all, exposed): the lateness re-routing could possibly remove. Empty without a clear truth.
    caused: dict[str, int] = field(default_factory=dict)
    #: Per forecast (or lane key): requests, and the moves judged as in ``moves``.
    by_forecast: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Orders a node closure holds at their node past their planned pick-up, per run (all,
    #: exposed); empty when the truth has no closures.
    held: dict[str, int] = field(default_factory=dict)
    #: Orders asked for that kept their plan by the threshold (``kept``), of them those late
    #: on the truth (``kept_late``) and as many as the judged miss probabilities expected
    #: (``kept_expected``); the same expectation for the kept plans of the moved orders
    #: (``moved_expected``, against ``moves``' saved + late either way): the model's calibration.
    kept: dict[str, int] = field(default_factory=dict)
    threshold: float = 0.0

    @property
    def late_change(self) -> float:
        w, r = self.without.late, self.with_.late
        return r / w - 1.0 if w else 0.0

    @property
    def cost_change(self) -> float:
        w, r = self.without.cost, self.with_.cost
        return r / w - 1.0 if w else 0.0

    def target_met(self, late: float = -0.30, cost: float = 0.05) -> bool:
        return self.late_change <= late and self.cost_change <= cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "without": self.without.to_dict(), "with": self.with_.to_dict(),
            "exposed_without": self.exposed_without.to_dict(),
            "exposed_with": self.exposed_with.to_dict(), "reroutes": self.counts,
            "exposed": self.exposed, "moves": self.moves, "caused": self.caused,
            "by_forecast": self.by_forecast, "held": self.held, "kept": self.kept,
            "threshold": self.threshold,
            "late_change": self.late_change,
            "cost_change": self.cost_change, "target_met": self.target_met(),
        }  # fmt: skip


def judge_moves(moves: Sequence[Move], network: Network, truth: Truth) -> dict[str, float]:
    """Every moved order judged both ways on the ground truth: would it have been late where it
    was, is it late where it went, and what the move cost; ``same_node``: moves that only swap
    the carrier or service at the node(s) the order was held at (they keep its hand-over)."""
    out = {"moved": len(moves), "saved": 0, "harmed": 0, "late_both": 0, "on_time_both": 0,
           "same_node": 0, "cost_delta": 0.0, "impossible": 0}
    for m in moves:
        out["impossible"] += m.why == CANNOT_DELIVER
        assert m.before.plan is not None and m.after.plan is not None
        held = {sh.node for sh in m.before.plan.shipments}
        out["same_node"] += all(sh.node in held for sh in m.after.plan.shipments)
        late = []
        for st in (m.before, m.after):
            where = network.locate(st.order.destination)
            assert where is not None and st.plan is not None
            arrived = max(truth.delivered_ms(m.order_id, sh.node, sh.service, where[2],
                                             st.planned_ms) for sh in st.plan.shipments)
            late.append(arrived > st.order.promised_by)
        key = {(True, False): "saved", (False, True): "harmed", (True, True): "late_both",
               (False, False): "on_time_both"}[(late[0], late[1])]
        out[key] += 1
        out["cost_delta"] += m.after.plan.cost - m.before.plan.cost  # type: ignore[union-attr]
    out["cost_delta"] = round(out["cost_delta"], 2)
    return out


def late_orders(result: ReplayResult, network: Network, truth: Truth) -> set[str]:
    """Ids of the routed, not cancelled orders that really arrive after their promise."""
    out = set()
    for oid, st in result.orders.items():
        if st.cancelled or st.plan is None:
            continue
        where = network.locate(st.order.destination)
        assert where is not None
        if max(truth.delivered_ms(oid, sh.node, sh.service, where[2], st.planned_ms)
               for sh in st.plan.shipments) > st.order.promised_by:
            out.add(oid)
    return out


def held_orders(result: ReplayResult, truth: ClosureTruth) -> set[str]:
    """Ids of the routed orders a node closure holds at a node (they leave after reopening)."""
    return {oid for oid, st in result.orders.items()
            if not st.cancelled and st.plan is not None
            and any(truth.held(sh.node, st.planned_ms) for sh in st.plan.shipments)}


def forecast_groups(forecasts: Sequence[AnyForecast], t0_ms: int) -> dict[str, str]:
    """The request key of every lane and node a forecast covers -> the forecast's name (the
    re-routes are broken down by it)."""
    out: dict[str, str] = {}
    for f in forecasts:
        if isinstance(f, NodeClosure):
            out[closure_request_key(f.node_id)] = f.name
        else:
            out.update({lane_key(ev): f.name for ev in f.lane_events(t0_ms)})
    return out


def compare(events: Sequence[Mapping[str, Any]], network: Network, config: Any, truth: Truth,
            *, clear: Truth | None = None, groups: Mapping[str, str] | None = None,
            at_pickup: bool = True, batch_ms: int = 1000, batch_size: int = 1000
            ) -> Comparison:
    """Both runs on identical inputs, judged on ``truth`` with ``fulfil evaluate``'s metrics;
    ``clear`` (the same truth without the disruptions) attributes lateness to them; ``groups``
    names the forecast of each lane key (the re-routes are broken down by it)."""
    a, b = (run(events, network, config, reroute=on, at_pickup=at_pickup, batch_ms=batch_ms,
                batch_size=batch_size) for on in (False, True))
    a.result.policy, b.result.policy = "without re-routing", "with re-routing"
    exposed = a.exposed | b.exposed
    caused: dict[str, int] = {}
    if clear is not None:
        for name, r in (("without", a), ("with", b)):
            late = late_orders(r.result, network, truth) - late_orders(r.result, network, clear)
            caused[name], caused[f"exposed_{name}"] = len(late), len(late & exposed)
    held: dict[str, int] = {}
    if isinstance(truth, ClosureTruth):
        for name, r in (("without", a), ("with", b)):
            waiting = held_orders(r.result, truth)
            held[name], held[f"exposed_{name}"] = len(waiting), len(waiting & exposed)
    names = groups or {}
    by: dict[str, dict[str, float]] = {}
    late_with = late_orders(b.result, network, truth)
    for key in dict.fromkeys([*b.requested_by, *(m.lane for m in b.moves)]):
        name = names.get(key, key)
        if name in by:
            continue
        keys = {k for k in [*b.requested_by, key] if names.get(k, k) == name}
        kept = {oid for oid, k in b.kept.items() if k in keys}
        by[name] = {"requested": sum(b.requested_by.get(k, 0) for k in keys),
                    "kept": len(kept), "kept_late": len(kept & late_with),
                    **judge_moves([m for m in b.moves if m.lane in keys], network, truth)}
    kept_all = set(b.kept)
    return Comparison(
        measure(a.result, network, truth), measure(b.result, network, truth),
        measure(a.result, network, truth, only=exposed),
        measure(b.result, network, truth, only=exposed),
        dict(b.counts), len(exposed), judge_moves(b.moves, network, truth), caused, by, held,
        {"kept": len(kept_all), "kept_late": len(kept_all & late_with),
         "kept_expected": round(sum(b.judged.get(o, 0.0) for o in kept_all), 1),
         "moved_expected": round(sum(b.judged.get(m.order_id, 0.0) for m in b.moves), 1)},
        float(config.reroute_miss_threshold),
    )


def format_comparison(c: Comparison) -> str:
    """One table: both runs, the relative change, then the exposed orders and the moves."""

    def pct(new: float, old: float) -> str:
        return f"{new / old - 1:+.1%}" if old else "-"

    rows: list[tuple[str, str, str, str]] = []
    for label, a, b, key in (("all orders", c.without, c.with_, ""),
                             ("exposed orders", c.exposed_without, c.exposed_with, "exposed_")):
        rows += [
            (f"{label}: orders", f"{a.orders:,}", f"{b.orders:,}", ""),
            ("  late deliveries", f"{a.late:,}", f"{b.late:,}", pct(b.late, a.late)),
        ]
        if c.caused:
            ca, cb = c.caused[f"{key}without"], c.caused[f"{key}with"]
            rows.append(("    of them caused by the disruptions", f"{ca:,}", f"{cb:,}",
                         pct(cb, ca)))
        if c.held:
            ha, hb = c.held[f"{key}without"], c.held[f"{key}with"]
            rows.append(("  held at a closed node", f"{ha:,}", f"{hb:,}", pct(hb, ha)))
        rows += [
            ("  on-time", f"{a.on_time_rate:.2%}", f"{b.on_time_rate:.2%}",
             f"{(b.on_time_rate - a.on_time_rate) * 100:+.2f} pp"),
            ("  cost (BRL)", f"{a.cost:,.0f}", f"{b.cost:,.0f}", pct(b.cost, a.cost)),
            ("  cost per order (BRL)", f"{a.cost_per_order:.2f}", f"{b.cost_per_order:.2f}",
             pct(b.cost_per_order, a.cost_per_order)),
        ]
    n = c.counts
    rows.append(("re-routes requested / kept by threshold / moved", "-",
                 f"{n['requested']:,} / {n['kept-by-threshold']:,} / {n['moved']:,}", ""))
    rows.append(("  no alternative / unchanged / not open / lost", "-",
                 f"{n['no-alternative']:,} / {n['unchanged']:,} / {n['not-open']:,} / "
                 f"{n['lost']:,}", ""))
    head = ("", "without re-routing", "with re-routing", "change")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "| " + " | ".join(h.ljust(w) if i == 0 else h.rjust(w)
                             for i, (h, w) in enumerate(zip(head, widths, strict=True))) + " |"
    out = [line, "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                                for i, w in enumerate(widths)) + "|"]
    for r in rows:
        out.append("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                     for i, (v, w) in enumerate(zip(r, widths, strict=True)))
                   + " |")
    m = c.moves
    out.append("")
    out.append(f"exposed orders: {c.exposed:,} (open on a lane or at a node when a forecast "
               f"for it arrived). "
               f"moved orders judged both ways: {m['saved']:,} saved (late -> on time), "
               f"{m['harmed']:,} harmed (on time -> late), {m['late_both']:,} late either way, "
               f"{m['on_time_both']:,} on time either way; {m['same_node']:,} of the moves "
               f"keep the node (carrier swap), {m['impossible']:,} left a plan that could not "
               f"deliver; the moves cost {m['cost_delta']:+,.2f} BRL")
    out.append(f"threshold on the kept plan's miss probability: {c.threshold:g}; "
               f"{c.kept.get('kept', 0):,} orders kept their plan by it, "
               f"{c.kept.get('kept_late', 0):,} of them late on the truth (its miss "
               f"probabilities expected {c.kept.get('kept_expected', 0):,.1f}); the moved "
               f"orders' plans were expected to be late {c.kept.get('moved_expected', 0):,.1f} "
               f"times, {m['saved'] + m['late_both']:,} really were")
    for name, g in c.by_forecast.items():
        out.append(f"  {name}: {g['requested']:,} requested, {g['kept']:,} kept "
                   f"({g['kept_late']:,} late), {g['moved']:,} moved: "
                   f"{g['saved']:,} saved, {g['harmed']:,} harmed, {g['late_both']:,} late / "
                   f"{g['on_time_both']:,} on time either way; {g['cost_delta']:+,.2f} BRL")
    verdict = "met" if c.target_met() else "missed"
    out.append(f"target (>= 30% fewer late deliveries at <= +5% cost, all orders): {verdict}: "
               f"late {c.late_change:+.1%}, cost {c.cost_change:+.2%}")
    return "\n".join(out)


def comparison_json(c: Comparison, params: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"params": dict(params), **c.to_dict()}, option=orjson.OPT_INDENT_2)
