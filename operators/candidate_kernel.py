"""The numba half of candidate generation: flat arrays in, preallocated feature arrays out.

Kept apart from :mod:`operators.candidates` (the typed dataclasses, checks and packing) so each
module stays small; nothing here validates its inputs, callers go through
``operators.candidates.build_candidates``. The feature definitions are documented there.

Building candidates in Python (lists of tuples, then a numpy array) costs ~100x the scoring kernel
(see ../shared/PERFORMANCE-NOTES.md), so the whole per-order loop lives in one compiled function
and writes every candidate straight into arrays sized by the documented upper bound
``n_orders * (max_nodes + 2) * n_services``; the Python wrapper trims them with slices.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from operators.emissions import G_PER_KG, co2e_g

__all__ = ["COVER_CAP", "EARTH_RADIUS_KM", "OPENING_HOUR", "haversine_km", "ready_ms"]

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius, same as operators.network
HOUR_MS = 3_600_000.0
DAY_MS = 86_400_000.0
OPENING_HOUR = 9.0  # local hour a node starts picking again after missing the cut-off
COVER_CAP = 10.0  # STOCK_COVER saturates here: 10x the ordered qty left is "plenty"
N_FEATURES = 11  # == operators.scoring.N_FEATURES (checked by the tests)


@njit(cache=True, nogil=True)
def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in km (compiled; callable from Python and from kernels)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    sdp = math.sin((p2 - p1) * 0.5)
    sdl = math.sin(math.radians(lng2 - lng1) * 0.5)
    a = sdp * sdp + math.cos(p1) * math.cos(p2) * sdl * sdl
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@njit(cache=True, nogil=True)
def _unit_vector(lat: float, lng: float) -> tuple[float, float, float]:  # pragma: no cover
    p = math.radians(lat)
    lam = math.radians(lng)
    c = math.cos(p)
    return c * math.cos(lam), c * math.sin(lam), math.sin(p)


@njit(cache=True, nogil=True)
def _chord_km(xyz, k, x, y, z):  # pragma: no cover - compiled
    """Haversine distance from node ``k`` (unit vector row) to unit vector (x, y, z).

    The same great-circle distance as ``haversine_km`` (sin^2(d/2) = (chord/2)^2), but with the
    trigonometry of both ends done once per node and once per order: per pair only a sqrt and
    an asin remain, which halves the per-order node scan.
    """
    dx = xyz[k, 0] - x
    dy = xyz[k, 1] - y
    dz = xyz[k, 2] - z
    half_chord = 0.5 * math.sqrt(dx * dx + dy * dy + dz * dz)
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, half_chord))


@njit(cache=True, nogil=True)
def ready_ms(
    now_ms: int, utc_offset_hours: float, cutoff_hour: float, handling_hours: float
) -> float:
    """When a node hands a parcel to the carrier if the order is released at ``now_ms``.

    Before the node's local cut-off it is handled right away; at or after it, picking starts at
    the next local opening (midnight + ``OPENING_HOUR``).
    """
    local = (now_ms / HOUR_MS + utc_offset_hours) % 24.0
    start = float(now_ms)
    if local >= cutoff_hour:
        start += (24.0 - local + OPENING_HOUR) * HOUR_MS
    return start + handling_hours * HOUR_MS


@njit(cache=True, nogil=True)
def _fills(k, l0, l1, line_sku, line_qty, atp, acc):  # pragma: no cover - compiled
    """Whether node ``k`` holds every line of the order (lines of one sku summed)."""
    ok = True
    for ln in range(l0, l1):
        u = line_sku[ln]
        acc[u] += line_qty[ln]
        if acc[u] > atp[k, u]:
            ok = False
            break
    for ln in range(l0, l1):
        acc[line_sku[ln]] = 0
    return ok


@njit(cache=True, nogil=True)
def _take(k, l0, nl, line_sku, line_qty, atp, acc, asg, write):  # pragma: no cover - compiled
    """How many still-unassigned lines node ``k`` can ship whole (first fit, in line order).

    With ``write`` the taken lines are assigned to ``k`` in ``asg``. Lines of one sku draw on
    the same stock, so ``acc`` (zeroed again on return) sums what this node already took.
    """
    count = 0
    for j in range(nl):
        if asg[j] != -1:
            continue
        u = line_sku[l0 + j]
        q = line_qty[l0 + j]
        if atp[k, u] - acc[u] >= q:
            acc[u] += q
            count += 1
            if write:
                asg[j] = k
    for j in range(nl):
        acc[line_sku[l0 + j]] = 0
    return count


@njit(cache=True, nogil=True)
def _greedy_split(
    l0, nl, line_sku, line_qty, atp, usable, dist, excluded, max_ship, asg, nodes, acc
):  # pragma: no cover - compiled
    """Greedy multi-node assignment; returns (nodes used, every line assigned?).

    Repeatedly picks the usable node (not ``excluded``, not yet used) that can ship the most
    remaining lines whole, ties to the nearest then the lowest index, until every line is
    assigned or ``max_ship`` nodes are used. ``nodes`` receives the picks in order.
    """
    for j in range(nl):
        asg[j] = -1
    left = nl
    used = 0
    while left > 0 and used < max_ship:
        best_k = -1
        best_count = 0
        best_d = np.inf
        for k in range(atp.shape[0]):
            if not usable[k] or k == excluded:
                continue
            seen = False
            for t in range(used):
                if nodes[t] == k:
                    seen = True
                    break
            if seen:
                continue
            c = _take(k, l0, nl, line_sku, line_qty, atp, acc, asg, False)
            if c > best_count or (c == best_count and c > 0 and dist[k] < best_d):
                best_k = k
                best_count = c
                best_d = dist[k]
        if best_k < 0:
            break
        _take(best_k, l0, nl, line_sku, line_qty, atp, acc, asg, True)
        nodes[used] = best_k
        used += 1
        left -= best_count
    return used, left == 0


@njit(cache=True, nogil=True)
def _ranks_before(a, b, usable, dist):  # pragma: no cover - compiled
    """Single-node ranking: usable nodes first, then nearer, then lower index."""
    if usable[a] != usable[b]:
        return usable[a]
    if dist[a] != dist[b]:
        return dist[a] < dist[b]
    return a < b


@njit(cache=True, nogil=True)
def build_kernel(
    dest_lat, dest_lng, dest_region, promise_ms,
    line_offsets, line_sku, line_qty, line_kg,
    atp, load,
    node_lat, node_lng, node_region, node_capacity, node_handling_cost,
    node_handling_hours, node_cutoff_hour, node_utc_offset,
    transit, base_cost, per_kg, per_100km, co2e_g_per_tkm,
    delay, blocked,
    now_ms, max_nodes, max_splits, min_single_nodes, enforce_capacity,
    node_ok, svc_ok, node_pref, svc_pref, order_max_splits,
):  # fmt: skip  # pragma: no cover - compiled
    """Generate and featurize every candidate of a batch; returns the untrimmed arrays + counts.

    The last five arguments are per-order business rules (``operators.candidates.Constraints``):
    a node or service that is not ``*_ok`` for order i never appears in its candidates; one not
    ``*_pref`` sets the candidate's NOT_PREFERRED feature; ``order_max_splits[i]`` caps splits
    below the global ``max_splits``.

    Returns ``(X, offsets, mask, service, est_ms, n_nodes, assign, assign_offsets, M, A)``
    where only the first ``M`` candidate rows and ``A`` assignment entries are meaningful.
    """
    n = dest_lat.shape[0]
    n_nodes_net = node_lat.shape[0]
    n_reg = transit.shape[0]
    n_svc = base_cost.shape[0]
    rows = max_nodes + 2  # single-node candidates + two greedy split variants per order
    cap_m = n * rows * n_svc
    X = np.empty((cap_m, N_FEATURES), dtype=np.float64)
    mask = np.empty(cap_m, dtype=np.bool_)
    service = np.empty(cap_m, dtype=np.int64)
    est_out = np.empty(cap_m, dtype=np.int64)
    n_nodes = np.empty(cap_m, dtype=np.int64)
    assign = np.empty(line_sku.shape[0] * rows * n_svc, dtype=np.int64)
    assign_offsets = np.empty(cap_m + 1, dtype=np.int64)
    offsets = np.empty(n + 1, dtype=np.int64)

    # Per batch: everything that does not depend on the order.
    ready = np.empty(n_nodes_net)
    cap_ok = np.empty(n_nodes_net, dtype=np.bool_)
    load_ratio = np.empty(n_nodes_net)
    node_xyz = np.empty((n_nodes_net, 3))
    for k in range(n_nodes_net):
        node_xyz[k, 0], node_xyz[k, 1], node_xyz[k, 2] = _unit_vector(node_lat[k], node_lng[k])
        ready[k] = ready_ms(now_ms, node_utc_offset[k], node_cutoff_hour[k], node_handling_hours[k])
        cap_ok[k] = load[k] + 1 <= node_capacity[k]
        load_ratio[k] = (load[k] + 1) / max(node_capacity[k], 1.0)
    covered_any = np.zeros((n_reg, n_reg), dtype=np.bool_)
    open_any = np.zeros((n_reg, n_reg), dtype=np.bool_)
    for ro in range(n_reg):
        for rd in range(n_reg):
            for s in range(n_svc):
                if not math.isnan(transit[ro, rd, s]):
                    covered_any[ro, rd] = True
                    if not blocked[ro, rd, s]:
                        open_any[ro, rd] = True
    max_l = 1
    for i in range(n):
        max_l = max(max_l, line_offsets[i + 1] - line_offsets[i])
    max_ship = max_splits + 1

    # Per-order scratch, reused.
    dist = np.empty(n_nodes_net)
    usable = np.empty(n_nodes_net, dtype=np.bool_)
    eligible = np.empty(n_nodes_net, dtype=np.int64)
    acc = np.zeros(atp.shape[1], dtype=np.int64)
    asg_buf = np.empty((rows, max_l), dtype=np.int64)
    nodes_buf = np.empty((rows, max(max_ship, 1)), dtype=np.int64)
    nk_buf = np.empty(rows, dtype=np.int64)
    ship_kg = np.empty(max(max_ship, 1))

    m = 0
    a = 0
    assign_offsets[0] = 0
    for i in range(n):
        offsets[i] = m
        l0 = line_offsets[i]
        nl = line_offsets[i + 1] - l0
        if nl == 0:
            continue
        rd = dest_region[i]

        # Which nodes can ship the whole order, and which can ship at all. Distances are only
        # needed for ranking those (and for split picks), so they are computed lazily (-1 = not).
        x, y, z = _unit_vector(dest_lat[i], dest_lng[i])
        n_elig = 0
        n_usable_fill = 0
        for k in range(n_nodes_net):
            rk = node_region[k]
            dist[k] = -1.0
            allowed = node_ok[i, k]
            usable[k] = allowed and open_any[rk, rd] and (cap_ok[k] or not enforce_capacity)
            if allowed and covered_any[rk, rd] and _fills(
                k, l0, l0 + nl, line_sku, line_qty, atp, acc
            ):
                dist[k] = _chord_km(node_xyz, k, x, y, z)
                eligible[n_elig] = k
                n_elig += 1
                if usable[k]:
                    n_usable_fill += 1

        # Keep the best-ranked max_nodes of them (partial selection sort; N is small).
        n_single = min(max_nodes, n_elig)
        for t in range(n_single):
            bt = t
            for t2 in range(t + 1, n_elig):
                if _ranks_before(eligible[t2], eligible[bt], usable, dist):
                    bt = t2
            eligible[t], eligible[bt] = eligible[bt], eligible[t]
        n_rows = 0
        for t in range(n_single):
            for j in range(nl):
                asg_buf[n_rows, j] = eligible[t]
            nodes_buf[n_rows, 0] = eligible[t]
            nk_buf[n_rows] = 1
            n_rows += 1

        # Split variants. The second excludes the first's first node, so when both complete
        # they differ. A one-node result is a single-node fill, which the pass above owns, so it
        # is dropped rather than emitted twice.
        splits_i = min(max_splits, order_max_splits[i])
        if splits_i > 0 and nl > 1 and n_usable_fill < min_single_nodes:
            for k in range(n_nodes_net):
                if usable[k] and dist[k] < 0.0:
                    dist[k] = _chord_km(node_xyz, k, x, y, z)
            used, done = _greedy_split(
                l0, nl, line_sku, line_qty, atp, usable, dist, -1, splits_i + 1,
                asg_buf[n_rows], nodes_buf[n_rows], acc,
            )  # fmt: skip
            first = nodes_buf[n_rows, 0] if used > 0 else -1
            if done and used > 1:
                nk_buf[n_rows] = used
                n_rows += 1
            if first >= 0:
                used, done = _greedy_split(
                    l0, nl, line_sku, line_qty, atp, usable, dist, first, splits_i + 1,
                    asg_buf[n_rows], nodes_buf[n_rows], acc,
                )  # fmt: skip
                if done and used > 1:
                    nk_buf[n_rows] = used
                    n_rows += 1

        # Featurize: service-independent parts once per assignment, then one row per service.
        for r in range(n_rows):
            nk = nk_buf[r]
            d_max = 0.0
            load_max = 0.0
            all_cap = True
            handling = 0.0
            cover = COVER_CAP
            nodes_pref = True
            for t in range(nk):
                k = nodes_buf[r, t]
                nodes_pref = nodes_pref and node_pref[i, k]
                kg = 0.0
                for j in range(nl):
                    if asg_buf[r, j] == k:
                        kg += line_kg[l0 + j]
                        acc[line_sku[l0 + j]] += line_qty[l0 + j]
                for j in range(nl):
                    if asg_buf[r, j] == k:
                        u = line_sku[l0 + j]
                        cover = min(cover, (atp[k, u] - acc[u]) / line_qty[l0 + j])
                for j in range(nl):
                    acc[line_sku[l0 + j]] = 0
                ship_kg[t] = kg
                d_max = max(d_max, dist[k])
                load_max = max(load_max, load_ratio[k])
                all_cap = all_cap and cap_ok[k]
                handling += node_handling_cost[k]
            for s in range(n_svc):
                if not svc_ok[i, s]:
                    continue
                covered = True
                lane_blocked = False
                est_f = -np.inf
                delay_max = -np.inf
                cost = handling
                co2e = 0.0
                for t in range(nk):
                    k = nodes_buf[r, t]
                    rk = node_region[k]
                    days = transit[rk, rd, s]
                    if math.isnan(days):
                        covered = False
                        break
                    dh = delay[rk, rd, s]
                    est_f = max(est_f, ready[k] + days * DAY_MS + dh * HOUR_MS)
                    delay_max = max(delay_max, dh)
                    lane_blocked = lane_blocked or blocked[rk, rd, s]
                    cost += base_cost[s] + per_kg[s] * ship_kg[t] + per_100km[s] * dist[k] / 100.0
                    co2e += co2e_g(dist[k], ship_kg[t], co2e_g_per_tkm[s]) / G_PER_KG
                if not covered:
                    continue
                est = np.int64(math.floor(est_f + 0.5))
                X[m, 0] = max(est - promise_ms[i], 0) / HOUR_MS
                X[m, 1] = cost
                X[m, 2] = d_max
                X[m, 3] = load_max
                X[m, 4] = delay_max
                X[m, 5] = nk - 1
                X[m, 6] = cover
                X[m, 7] = (est - now_ms) / HOUR_MS
                X[m, 8] = 0.0 if nodes_pref and svc_pref[i, s] else 1.0
                X[m, 9] = 0.0  # MISS_PROB: written by operators.risk after this kernel
                X[m, 10] = co2e  # CO2E_KG: kg, summed over the shipments
                mask[m] = not lane_blocked and (all_cap or not enforce_capacity)
                service[m] = s
                est_out[m] = est
                n_nodes[m] = nk
                for j in range(nl):
                    assign[a + j] = asg_buf[r, j]
                a += nl
                m += 1
                assign_offsets[m] = a
    offsets[n] = m
    return X, offsets, mask, service, est_out, n_nodes, assign, assign_offsets, m, a
