"""Routing hot path, batch by batch: pack -> ATP gather -> build_candidates -> score_batch.

Prints µs per order at batch sizes 100/500/1000 on a random network (40 nodes, 27 regions,
6 services, ~2000 skus, 1-3 lines per order), the scoring kernel alone in ns per candidate
(serial and ``parallel=True``), and the synthetic 1000 x 64 figure from
../shared/PERFORMANCE-NOTES.md re-measured in the same run. JIT compile (or cache load) time is
measured first and printed separately; every timed figure is a median over warm repetitions.
No assertions: this is for reading, not for CI.

    .venv/bin/python benchmarks/kernel_bench.py [--reps 30] [--seed 7] [--cold]

``--cold`` points numba at an empty cache directory so the first-call figure is a real compile
rather than a load of ``operators/__pycache__``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if "--cold" in sys.argv:  # before numba is imported: an empty on-disk cache forces compilation
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="fulfil-numba-")

import numba

from operators import candidate_kernel, scoring
from operators.candidates import (
    BatchInput,
    CandidateParams,
    LaneArrays,
    NetworkArrays,
    build_candidates,
    pack_batch,
)
from operators.scoring import Weights, score_batch

N_NODES, N_REGIONS, N_SERVICES, N_SKUS = 40, 27, 6, 2000
NOW_MS = 1_795_556_252_000
BATCH_SIZES = (100, 500, 1000)


def random_network(rng: np.random.Generator) -> tuple[NetworkArrays, np.ndarray, np.ndarray]:
    """A Brazil-sized network; returns it plus region centroids (lat, lng) for destinations."""
    reg_lat = rng.uniform(-30.0, -3.0, N_REGIONS)
    reg_lng = rng.uniform(-60.0, -35.0, N_REGIONS)
    node_region = rng.integers(0, N_REGIONS, N_NODES)
    transit = rng.uniform(1.0, 9.0, (N_REGIONS, N_REGIONS, N_SERVICES))
    transit[:, :, 3:] *= 0.5  # express services
    transit[rng.random(transit.shape) < 0.2] = np.nan  # ~80% lane coverage
    net = NetworkArrays(
        node_lat=reg_lat[node_region] + rng.normal(0, 0.5, N_NODES),
        node_lng=reg_lng[node_region] + rng.normal(0, 0.5, N_NODES),
        node_region=node_region.astype(np.int64),
        node_capacity=rng.integers(2_000, 20_000, N_NODES).astype(np.float64),
        node_handling_cost=rng.uniform(1.0, 4.0, N_NODES),
        node_handling_hours=rng.uniform(2.0, 12.0, N_NODES),
        node_cutoff_hour=rng.integers(12, 18, N_NODES).astype(np.float64),
        node_utc_offset=np.full(N_NODES, -3.0),
        lane_transit_mean=transit,
        service_base_cost=rng.uniform(8.0, 30.0, N_SERVICES),
        service_per_kg=rng.uniform(0.5, 3.0, N_SERVICES),
        service_per_100km=rng.uniform(0.2, 2.0, N_SERVICES),
    )
    return net, reg_lat, reg_lng


def random_stock(rng: np.random.Generator) -> np.ndarray:
    """ATP i8[N, 2000]: popular skus are held by more nodes (60% down to 15%)."""
    held = rng.random((N_NODES, N_SKUS)) < np.linspace(0.6, 0.15, N_SKUS)
    return np.where(held, rng.integers(1, 60, (N_NODES, N_SKUS)), 0).astype(np.int64)


def random_orders(
    rng: np.random.Generator, n: int, reg_lat: np.ndarray, reg_lng: np.ndarray
) -> list[tuple[float, float, int, int, list[tuple[str, int, float]]]]:
    popularity = 1.0 / (np.arange(N_SKUS) + 20.0)
    popularity /= popularity.sum()
    orders = []
    for _ in range(n):
        r = int(rng.integers(0, N_REGIONS))
        n_lines = int(rng.integers(1, 4))
        skus = rng.choice(N_SKUS, n_lines, replace=False, p=popularity)
        lines = [(f"sku-{s}", int(rng.integers(1, 4)), float(rng.uniform(0.1, 5.0))) for s in skus]
        lat = float(reg_lat[r] + rng.normal(0, 1.0))
        lng = float(reg_lng[r] + rng.normal(0, 1.0))
        orders.append((lat, lng, r, NOW_MS + int(rng.integers(2, 10)) * 86_400_000, lines))
    return orders


def timed_ns(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    """(median, min) wall time in ns. The min shows the cost on an idle core; the gap between
    the two shows how much other work on this 2-core machine got in the way."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cold", action="store_true", help="compile with an empty numba cache")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    net, reg_lat, reg_lng = random_network(rng)
    stock = random_stock(rng)
    load = rng.integers(0, 1_500, N_NODES).astype(np.int64)
    delay = np.where(rng.random((N_REGIONS, N_REGIONS, N_SERVICES)) < 0.05, 12.0, 0.0)
    lanes = LaneArrays(delay, rng.random(delay.shape) < 0.01)
    params = CandidateParams()
    w = Weights().as_array()
    sku_col = {f"sku-{i}": i for i in range(N_SKUS)}

    def prepare(orders: list) -> BatchInput:
        packed, skus = pack_batch(orders)
        cols = np.fromiter((sku_col[s] for s in skus), dtype=np.int64, count=len(skus))
        return packed.with_stock(np.ascontiguousarray(stock[:, cols]), load)

    # ---- JIT: first calls compile (or load numba's on-disk cache); timed apart from the rest.
    warm = prepare(random_orders(rng, 50, reg_lat, reg_lng))
    t0 = time.perf_counter()
    cs = build_candidates(warm, net, lanes, NOW_MS, params)
    t1 = time.perf_counter()
    score_batch(cs.X, cs.offsets, cs.mask, w)
    t2 = time.perf_counter()
    score_batch(cs.X, cs.offsets, cs.mask, w, parallel=True)
    t3 = time.perf_counter()
    how = {
        name: "cache load" if sum(d.stats.cache_hits.values()) else "compile"
        for name, d in (("build", candidate_kernel.build_kernel), ("score", scoring._score_kernel))
    }
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, numba {numba.__version__}, ")
    print(f"numba threads {numba.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(
        f"first call: build_candidates {t1 - t0:.2f} s ({how['build']}), "
        f"score_batch {t2 - t1:.2f} s ({how['score']}), "
        f"score_batch(parallel=True) {t3 - t2:.2f} s"
    )

    print(
        f"\nµs per order, median of {args.reps} runs "
        f"({N_NODES} nodes, {N_REGIONS} regions, {N_SERVICES} services, {N_SKUS} skus)"
    )
    header = (
        f"{'batch':>6} {'cand/ord':>8} {'pack':>7} {'atp':>6} {'build':>7} "
        f"{'score':>6} {'unpack':>7} {'total µs':>9} {'kernel ns/cand':>15} {'parallel':>9}"
    )
    print(header)
    for n in BATCH_SIZES:
        orders = random_orders(rng, n, reg_lat, reg_lng)
        packed, skus = pack_batch(orders)
        cols = np.fromiter((sku_col[s] for s in skus), dtype=np.int64, count=len(skus))
        batch = packed.with_stock(np.ascontiguousarray(stock[:, cols]), load)
        cs = build_candidates(batch, net, lanes, NOW_MS, params)
        scores, best, second = score_batch(cs.X, cs.offsets, cs.mask, w)

        def unpack(cs: Any = cs, scores: Any = scores, best: Any = best) -> list:
            ok = best >= 0
            b = best[ok]
            return list(
                zip(
                    np.flatnonzero(ok).tolist(),
                    b.tolist(),
                    cs.service[b].tolist(),
                    cs.est_ms[b].tolist(),
                    scores[b].tolist(),
                    strict=True,
                )
            )

        t_pack, _ = timed_ns(lambda o=orders: pack_batch(o), args.reps)
        t_atp, _ = timed_ns(lambda c=cols: np.ascontiguousarray(stock[:, c]), args.reps)
        t_build, min_build = timed_ns(
            lambda b=batch: build_candidates(b, net, lanes, NOW_MS, params), args.reps
        )
        t_score, min_score = timed_ns(
            lambda c=cs: score_batch(c.X, c.offsets, c.mask, w), args.reps
        )
        t_par, min_par = timed_ns(
            lambda c=cs: score_batch(c.X, c.offsets, c.mask, w, parallel=True), args.reps
        )
        t_unpack, _ = timed_ns(unpack, args.reps)
        total = t_pack + t_atp + t_build + t_score + t_unpack
        m = len(cs)
        print(
            f"{n:>6} {m / n:>8.1f} {t_pack / n / 1e3:>7.2f} {t_atp / n / 1e3:>6.2f} "
            f"{t_build / n / 1e3:>7.2f} {t_score / n / 1e3:>6.2f} {t_unpack / n / 1e3:>7.2f} "
            f"{total / n / 1e3:>9.2f} {t_score / m:>15.2f} {t_par / m:>9.2f}"
        )
        routable = float((best >= 0).mean())
        splits = float((cs.n_nodes[best[best >= 0]] > 1).mean())
        print(
            f"{'':>6} min: build {min_build / n / 1e3:.2f} µs/order; score_batch per call "
            f"serial {min_score / 1e3:.1f} µs ({min_score / m:.2f} ns/cand), parallel "
            f"{min_par / 1e3:.1f} µs ({min_par / m:.2f} ns/cand)\n"
            f"{'':>6} routable {routable:.1%}, split winners {splits:.1%}, "
            f"with runner-up {(second >= 0).mean():.1%}"
        )

    # Synthetic kernel-only figure from PERFORMANCE-NOTES (1000 orders x 64 candidates).
    n, per = 1000, 64
    X = rng.normal(size=(n * per, scoring.N_FEATURES))
    offsets = np.arange(0, n * per + 1, per, dtype=np.int64)
    mask = rng.random(n * per) < 0.9
    (t_s, min_s), (t_p, min_p) = (
        timed_ns(lambda par=par: score_batch(X, offsets, mask, w, parallel=par), args.reps)
        for par in (False, True)
    )
    k = n * per
    print(
        f"\nscoring kernel, synthetic {n} x {per} (median / min ns per candidate): "
        f"serial {t_s / k:.2f} / {min_s / k:.2f}, parallel {t_p / k:.2f} / {min_p / k:.2f}"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
