"""Demand surge and collapse: order counts per channel (and per region inside it) per window.

Each closed tumbling window of one channel (key `*` = all channels together) brings its order
count per destination region. The channel's baseline is an EWMA of its windows (and one per
region with enough volume); after `warmup_windows` a window is judged:

    surge:    count >= baseline * surge_ratio    and (count - baseline) / sqrt(baseline) >= z
    collapse: count <= baseline * collapse_ratio and (count - baseline) / sqrt(baseline) <= -z

on the channel total, and for surges also per region (a regional campaign; regions are many
series judged at once, so they need `region_min_baseline` and `region_z`). One incident per
channel and direction (`demand-surge/<channel>`), whatever the regions: the regions are listed in
its details, so a surge that hits 20 regions pages once. It resolves after `clear_windows` normal
windows. Anomalous windows move the baseline only slowly (`anomalous_alpha`), so a surge does not
become the new normal within minutes. A window with no orders produces no window at all, so the
caller reports missing windows (`on_silence`) as zero counts: that is how a channel that stops
sending orders is seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from operators.watch.settings import DemandSettings
from operators.watch.verdicts import Verdict
from schemas.enums import AlertSeverity, AlertType


@dataclass(slots=True)
class DemandState:
    """Baselines and open incidents of one channel."""

    channel: str
    baseline: float = 0.0
    windows: int = 0
    regions: dict[str, tuple[float, int]] = field(default_factory=dict)  # baseline, windows
    last_end: int | None = None
    last_orders_end: int | None = None  # end of the last window that had orders at all
    active: dict[str, int] = field(default_factory=dict)  # surge|collapse -> clean windows


def _test(count: float, base: float, cfg: DemandSettings, region: bool = False) -> str | None:
    if base < (cfg.region_min_baseline if region else cfg.min_baseline):
        return None
    z = (count - base) / math.sqrt(base)
    z_min = cfg.region_z if region else cfg.z
    if count >= base * cfg.surge_ratio and z >= z_min:
        return "surge"
    if count <= base * cfg.collapse_ratio and z <= -z_min:
        return "collapse"
    return None


def _ewma(old: float, new: float, n: int, alpha: float) -> float:
    if n == 0:
        return new
    return old + max(alpha, 1.0 / (n + 1)) * (new - old)


def on_window(st: DemandState, window_end: int, counts: Mapping[str, int],
              cfg: DemandSettings) -> list[Verdict]:
    """Judge one closed window (`counts`: orders per region) and learn from it."""
    if st.last_end is not None and window_end <= st.last_end:
        return []  # a window already accounted for (or a late duplicate)
    first = st.last_end is None
    st.last_end = window_end
    total = sum(counts.values())
    if total:
        st.last_orders_end = window_end
    if first:
        return []  # the key's first window began before it did: partial, not a sample
    found: dict[str, list[str]] = {"surge": [], "collapse": []}
    details: dict[str, object] = {"window_end": window_end, "count": total,
                                  "baseline": round(st.baseline, 1), "regions": {}}
    if st.windows >= cfg.warmup_windows:
        kind = _test(total, st.baseline, cfg)
        if kind:
            found[kind].append("*")
        for region, (base, seen) in st.regions.items():
            count = counts.get(region, 0)
            if seen >= cfg.warmup_windows and _test(count, base, cfg, region=True) == "surge":
                found["surge"].append(region)
                details["regions"][region] = {  # type: ignore[index]
                    "count": count, "baseline": round(base, 1)}
    anomalous = bool(found["surge"] or found["collapse"])
    alpha = cfg.anomalous_alpha if anomalous else cfg.alpha
    st.baseline = _ewma(st.baseline, total, st.windows, alpha)
    # each region learns from its own windows (one first seen late starts from its count)
    for region in set(st.regions) | set(counts):
        base, seen = st.regions.get(region, (0.0, 0))
        st.regions[region] = (_ewma(base, counts.get(region, 0), seen, alpha), seen + 1)
    st.regions = {r: v for r, v in st.regions.items() if v[0] >= 0.5}  # drop dead regions
    st.windows += 1
    out: list[Verdict] = []
    for kind in ("surge", "collapse"):
        scope = found[kind]
        if scope:
            st.active[kind] = 0
            out.append(_verdict(st, kind, True, window_end, total, scope, details))
        elif kind in st.active:
            st.active[kind] += 1
            if st.active[kind] >= cfg.clear_windows:
                del st.active[kind]
                out.append(_verdict(st, kind, False, window_end, total, [], details))
    return out


#: Empty windows judged one by one after a silence; a longer silence (a replay of old data)
#: skips ahead, since more of the same zeros would only repeat the same verdict.
MAX_SILENT_WINDOWS = 12


def on_silence(st: DemandState, watermark: int, cfg: DemandSettings) -> list[Verdict]:
    """Windows that closed with no order at all count as zero."""
    out: list[Verdict] = []
    if st.last_end is None:
        return out
    # Wait half a window beyond the close: a real window result arrives within the lateness.
    missing = (watermark - cfg.window_ms // 2 - st.last_end) // cfg.window_ms
    if missing > MAX_SILENT_WINDOWS:
        st.last_end += (missing - MAX_SILENT_WINDOWS) * cfg.window_ms
    for _ in range(min(missing, MAX_SILENT_WINDOWS)):
        out.extend(on_window(st, st.last_end + cfg.window_ms, {}, cfg))
    return out


def silence_deadline(st: DemandState, cfg: DemandSettings) -> int | None:
    if st.last_end is None:
        return None
    return st.last_end + cfg.window_ms + cfg.window_ms // 2


def idle(st: DemandState, watermark: int, cfg: DemandSettings) -> bool:
    """Forget a channel silent for `idle_ttl_ms` with nothing open (bounded state)."""
    last = st.last_orders_end or st.last_end
    return not st.active and last is not None and watermark - last >= cfg.idle_ttl_ms


def _verdict(st: DemandState, kind: str, active: bool, at: int, total: int, scope: list[str],
             details: dict[str, object]) -> Verdict:
    atype = AlertType.DEMAND_SURGE if kind == "surge" else AlertType.DEMAND_COLLAPSE
    who = "all channels" if st.channel == "*" else f"channel {st.channel}"
    if not active:
        summary = f"demand {kind} over: {who} back to its baseline"
    elif "*" in scope:
        summary = f"demand {kind}: {who} {total} orders in the window vs ~{details['baseline']}"
        regions = [r for r in scope if r != "*"]
        if regions:
            summary += f" (strongest in {', '.join(sorted(regions)[:5])})"
    else:
        summary = f"demand {kind}: {who} in {', '.join(sorted(scope)[:5])}"
    severity = AlertSeverity.WARNING if kind == "surge" or st.channel != "*" \
        else AlertSeverity.ERROR
    return Verdict(f"{atype}/{st.channel}", atype, active, at, severity,
                   {"kind": "channel", "id": st.channel,
                    "channel": None if st.channel == "*" else st.channel},
                   summary, {**details, "scope": scope}, evidence_at=at)
