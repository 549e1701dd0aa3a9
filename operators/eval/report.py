"""The evaluation's printed table (plain text, also valid Markdown) and its JSON form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from operators.eval.metrics import Metrics
from operators.eval.policies import CO2E_POLICY, POLICY_NAMES, policy_label
from operators.eval.run import Evaluation
from operators.eval.tuning import TuneResult

__all__ = ["evaluation_dict", "format_evaluation", "format_price_of_green", "format_table",
           "format_tuning"]

_LABELS = {**POLICY_NAMES, "hindsight": "hindsight optimum, same service",
           "hindsight-any": "hindsight min-cost, any service",
           "hindsight-late": "hindsight fewest late, nearest's cost",
           "hindsight-clairvoyant": "clairvoyant fewest real late, nearest's cost",
           "hindsight-expected": "hindsight fewest expected late, true lanes, nearest's cost"}
_HEAD = ("policy", "routed", "cost BRL", "BRL/order", "on-time", "late", "est. late", "split",
         "units unroutable", "km/shipment", "util sd", "util max", "CO2e kg")


def _row(m: Metrics) -> tuple[str, ...]:
    return (_LABELS.get(m.policy) or policy_label(m.policy), f"{m.routed:,}", f"{m.cost:,.0f}",
            f"{m.cost_per_order:.2f}", f"{m.on_time_rate:.2%}", f"{m.late:,}",
            f"{m.est_late:,}", f"{m.split_rate:.2%}", f"{m.units_unroutable:,}",
            f"{m.avg_km:,.0f}", f"{m.util_sd * 100:.1f} pp", f"{m.util_max:.0%}",
            f"{m.co2e_kg:,.0f}")


def format_table(rows: Sequence[Metrics]) -> str:
    """A Markdown table: one line per policy, the columns of ``_HEAD``."""
    cells = [_HEAD, *(_row(m) for m in rows)]
    width = [max(len(r[i]) for r in cells) for i in range(len(_HEAD))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, width, strict=True))) + " |"

    sep = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":")
                         for i, w in enumerate(width)) + "|"
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def format_price_of_green(rows: Sequence[Metrics]) -> str:
    """What each carbon price of a sweep costs against fulfil as configured: "" without one."""
    base = next((m for m in rows if m.policy == "fulfil"), None)
    sweep = [m for m in rows if m.policy.startswith(CO2E_POLICY + "@")]
    if base is None or not sweep:
        return ""

    def rel(a: float, b: float) -> str:
        return f"{a / b - 1:+.1%}" if b else "n/a"

    out = ["| CO2e price (BRL/kg) | cost BRL | late | CO2e kg | vs fulfil: cost | late | CO2e |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for m in sweep:
        price = m.policy.partition("@")[2]
        out.append(f"| {price} | {m.cost:,.0f} | {m.late:,} | {m.co2e_kg:,.0f} | "
                   f"{rel(m.cost, base.cost)} | {rel(m.late, base.late)} | "
                   f"{rel(m.co2e_kg, base.co2e_kg)} |")
    return "\n".join(out)


def format_evaluation(ev: Evaluation, header: str = "") -> str:
    out = [header or f"scenario {ev.scenario}: {ev.orders:,} orders", "", format_table(ev.rows)]
    green = format_price_of_green(ev.rows)
    if green:
        out += ["", "price of green (fulfil with a carbon price on the kernel's CO2E_KG):", "",
                green]
    if ev.sample_rows:
        opt = ev.optimum
        solve = "" if opt is None else (f" (HiGHS: {opt.status}, {opt.variables:,} variables, "
                                         f"{opt.constraints:,} constraints)")
        out += ["", f"sample: the first {ev.sample_orders:,} orders without follow-ups, "
                f"solved together in hindsight{solve}", "", format_table(ev.sample_rows)]
        if ev.expected:
            out += ["", "late deliveries in expectation over the lanes' true transit (each "
                    "parcel's luck averaged out): " + ", ".join(
                        f"{_LABELS.get(p) or policy_label(p)} {e:,.1f}"
                        for p, e in ev.expected.items())]
    if ev.targets:
        out += ["", "targets:"]
        out += [f"  [{'met' if t.met else 'MISSED'}] {t.name}: {t.detail}" for t in ev.targets]
    return "\n".join(out)


def format_tuning(tr: TuneResult, test_rows: Sequence[Metrics], train: str, test: str) -> str:
    changed = {k: (getattr(tr.start.weights, k), getattr(tr.best.weights, k))
               for k in type(tr.best.weights).__dataclass_fields__
               if getattr(tr.start.weights, k) != getattr(tr.best.weights, k)}
    lines = [f"tuned on {train} ({len(tr.history)} evaluations): objective "
             f"{tr.start.objective:,.0f} -> {tr.best.objective:,.0f} BRL "
             f"({tr.best.objective / tr.start.objective - 1:+.2%})",
             "changed weights: " + (", ".join(f"{k} {a:g} -> {b:g}"
                                              for k, (a, b) in changed.items()) or "none"),
             "", f"on {test} (never seen while tuning):", "", format_table(test_rows)]
    return "\n".join(lines)


def evaluation_dict(ev: Evaluation) -> dict[str, Any]:
    return {
        "scenario": ev.scenario, "orders": ev.orders,
        "policies": [m.to_dict() for m in ev.rows],
        "sample": {"orders": ev.sample_orders, "policies": [m.to_dict() for m in ev.sample_rows],
                   "expected_late": ev.expected,
                   "solver": None if ev.optimum is None else {
                       "status": ev.optimum.status, "variables": ev.optimum.variables,
                       "constraints": ev.optimum.constraints,
                       "objective": ev.optimum.objective}},
        "targets": [{"name": t.name, "met": t.met, "detail": t.detail} for t in ev.targets],
    }
