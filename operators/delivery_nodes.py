"""The node hierarchy of the delivery model: counts and posteriors per node, top-down, their
JSON form in the artifact, and the dense [R, R, S] arrays built back from that JSON.

Split from `operators.delivery_model` (which documents the hierarchy) to keep modules small.
Nodes: ``global``; ``levels`` (standard, express); ``services``; ``lane_levels`` (origin, dest,
level); ``cells`` (origin, dest, service). Each child's distribution shrinks toward its
parent's (``operators.delivery_dist.shrink``) and so does its late rate. Only nodes the data
reached are written to the artifact; the dense arrays fill every other lane with the nearest
parent (a real service: its service node; an unknown ``?level`` service: the level node), then
overwrite the lanes the data reached.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from operators.delivery_dist import N_BINS, PROBS, histogram, pmf_mean, pmf_quantiles, shrink

if TYPE_CHECKING:
    from operators.delivery_model import Hyper, Outcomes

__all__ = ["LEVELS", "SOURCES", "dense_from_nodes", "nodes_json", "posteriors"]

LEVELS = ("standard", "express")  # == operators.network.SERVICE_LEVELS
#: Which node answered for a lane in the dense arrays (``ModelArrays.source``).
SOURCES = ("lane-service", "lane-level", "service", "level", "global", "network")


def _stats(keys: np.ndarray, n_groups: int, out: Outcomes, parent_pmf: np.ndarray | None,
           parent_rate: np.ndarray | None, hyper: Hyper) -> dict[str, np.ndarray]:  # fmt: skip
    """Counts and posteriors of ``n_groups`` nodes; row i belongs to node ``keys[i]``."""
    has_t = np.isfinite(out.actual_days)
    has_l = out.late >= 0
    counts = histogram(keys[has_t], out.actual_days[has_t], n_groups)
    n_rate = np.bincount(keys[has_l], minlength=n_groups).astype(np.float64)
    late = np.bincount(keys[has_l], weights=out.late[has_l].astype(np.float64), minlength=n_groups)
    pmf = shrink(counts, parent_pmf, hyper.prior_strength) if counts.sum() > 0 else None
    with np.errstate(invalid="ignore", divide="ignore"):
        if parent_rate is None:
            rate = np.where(n_rate > 0, late / n_rate, np.nan)
        else:
            k = hyper.rate_strength
            rate = (late + k * parent_rate) / (n_rate + k)
    if pmf is None and parent_pmf is not None:  # no transit rows here: the parent's shape
        pmf = np.broadcast_to(parent_pmf, (n_groups, N_BINS)).copy()
    return {"n": counts.sum(axis=1), "n_rate": n_rate, "late": late, "rate": rate, "pmf": pmf}


def posteriors(out: Outcomes, enc: tuple[np.ndarray, np.ndarray, np.ndarray],
               regions: tuple[str, ...], services: tuple[str, ...],
               svc_level: tuple[int, ...], hyper: Hyper) -> dict[str, Any]:  # fmt: skip
    """Every node's counts and posterior, top-down, from the rows of ``out``."""
    o, d, s = enc
    lv_of = np.asarray(svc_level, dtype=np.int64)
    lv = lv_of[s]
    n_r, n_s, n_l = len(regions), len(services), len(LEVELS)
    glob = _stats(np.zeros(len(out), dtype=np.int64), 1, out, None, None, hyper)
    g_pmf = None if glob["pmf"] is None else glob["pmf"][0]
    g_pmf_rows = None if g_pmf is None else np.broadcast_to(g_pmf, (n_l, N_BINS))
    levels = _stats(lv, n_l, out, g_pmf_rows, np.full(n_l, glob["rate"][0]), hyper)
    svc = _stats(s, n_s, out, None if levels["pmf"] is None else levels["pmf"][lv_of],
                 levels["rate"][lv_of], hyper)  # fmt: skip
    nodes = {"global": glob, "levels": levels, "services": svc}
    for name, key, parent, parent_of in (
        ("lane_levels", (o * n_r + d) * n_l + lv, levels, lambda k: k % n_l),
        ("cells", (o * n_r + d) * n_s + s, svc, lambda k: k % n_s),
    ):
        uniq, inv = np.unique(key, return_inverse=True)
        par = parent_of(uniq)
        st = _stats(inv.astype(np.int64), uniq.size, out,
                    None if parent["pmf"] is None else parent["pmf"][par],
                    parent["rate"][par], hyper)  # fmt: skip
        st["key"] = uniq
        nodes[name] = st
    return nodes


def _summaries(st: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(quantiles [G, Q], means [G]) of a node table; NaN without any transit data."""
    g = st["n"].shape[0]
    if st["pmf"] is None:
        return np.full((g, PROBS.size), np.nan), np.full(g, np.nan)
    return pmf_quantiles(st["pmf"]), pmf_mean(st["pmf"])


def _r6(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def _node_json(st: dict[str, np.ndarray], i: int, q: np.ndarray, m: np.ndarray) -> dict:
    return {
        "n": int(st["n"][i]), "n_rate": int(st["n_rate"][i]), "late": int(st["late"][i]),
        "rate": _r6(st["rate"][i]), "mean": _r6(m[i]),
        "q": None if not np.isfinite(q[i]).all() else [_r6(v) for v in q[i]],
    }  # fmt: skip


def nodes_json(nodes: dict[str, Any], regions: tuple[str, ...],
               services: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
    """The artifact's ``nodes`` section: only nodes the data actually reached."""
    n_r, n_s, n_l = len(regions), len(services), len(LEVELS)
    out: dict[str, Any] = {}
    q, m = _summaries(nodes["global"])
    out["global"] = _node_json(nodes["global"], 0, q, m)
    q, m = _summaries(nodes["levels"])
    out["levels"] = {lv: _node_json(nodes["levels"], i, q, m) for i, lv in enumerate(LEVELS)}
    q, m = _summaries(nodes["services"])
    out["services"] = {
        sv: _node_json(nodes["services"], i, q, m)
        for i, sv in enumerate(services) if not sv.startswith("?")
    }  # fmt: skip
    for name, width, label in (("lane_levels", n_l, LEVELS), ("cells", n_s, services)):
        st = nodes[name]
        q, m = _summaries(st)
        rows = []
        for i, key in enumerate(st["key"].tolist()):
            od, last = divmod(key, width)
            rows.append({"origin": regions[od // n_r], "dest": regions[od % n_r],
                         ("level" if name == "lane_levels" else "service"): label[last],
                         **_node_json(st, i, q, m)})  # fmt: skip
        out[name] = rows
    return out


def dense_from_nodes(nodes: dict[str, Any], regions: tuple[str, ...],
                     services: tuple[str, ...],
                     svc_level: tuple[int, ...]) -> dict[str, Any]:  # fmt: skip
    """Artifact-shaped nodes (JSON dicts) -> dense arrays over (regions, services)."""
    n_r, n_s, n_q = len(regions), len(services), PROBS.size
    base_q = np.full((n_s, n_q), np.nan)
    base = {k: np.full(n_s, np.nan) for k in ("mean", "rate", "n", "src")}
    for j, sv in enumerate(services):
        if sv.startswith("?"):
            node = nodes["levels"][LEVELS[svc_level[j]]]
            src = SOURCES.index("level") if node["n"] else SOURCES.index("global")
        else:
            node, src = nodes["services"][sv], SOURCES.index("service")
        if node["q"] is not None:
            base_q[j] = node["q"]
        base["mean"][j] = np.nan if node["mean"] is None else node["mean"]
        base["rate"][j] = np.nan if node["rate"] is None else node["rate"]
        base["n"][j], base["src"][j] = node["n"], src
    qd = np.broadcast_to(base_q, (n_r, n_r, n_s, n_q)).copy()
    dense = {k: np.broadcast_to(v, (n_r, n_r, n_s)).copy() for k, v in base.items()}
    r_idx = {r: i for i, r in enumerate(regions)}
    s_idx = {s: i for i, s in enumerate(services)}
    for name in ("lane_levels", "cells"):
        for node in nodes[name]:
            j = s_idx[f"?{node['level']}"] if name == "lane_levels" else s_idx[node["service"]]
            at = (r_idx[node["origin"]], r_idx[node["dest"]], j)
            qd[at] = np.nan if node["q"] is None else node["q"]
            dense["mean"][at] = np.nan if node["mean"] is None else node["mean"]
            dense["rate"][at] = np.nan if node["rate"] is None else node["rate"]
            dense["n"][at] = node["n"]
            dense["src"][at] = SOURCES.index("lane-level" if name == "lane_levels"
                                             else "lane-service")  # fmt: skip
    return {"quantile_days": qd, **dense}
