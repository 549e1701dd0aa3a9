"""Delivery model costs: per-candidate inference as the candidate kernel would call it, online
updates, fitting, and building the kernel arrays for the shipped network.

Prints, each a median over warm repetitions:
- ``transit_quantile`` and ``miss_probability`` in ns per call, called from inside a compiled
  loop over random candidates of the shipped network's [27, 27, 6] lanes (the kernel's case:
  numba inlines nothing across the call boundary we do not also pay there);
- ``update_sketch`` in µs per delivered event (the online step, pure Python + one compiled call);
- ``fit`` in seconds for synthetic histories of 5k and 200k rows;
- ``kernel_arrays`` in ms (once per model version).
No assertions: this is for reading, not for CI.

    .venv/bin/python benchmarks/model_bench.py [--reps 7] [--candidates 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.delivery_align import kernel_arrays
from operators.delivery_kernel import N_MODEL_FEATURES, miss_probability, transit_quantile
from operators.delivery_model import Hyper, Outcomes, fit
from operators.model_online import Outcome, new_sketch, update_sketch
from operators.network import load_default


# Not cached: numba's cache does not notice edits to the inlined callees in other modules.
@njit
def _loop_quantile(qd, probs, o, d, s):  # pragma: no cover - compiled
    acc = 0.0
    for i in range(o.shape[0]):
        acc += transit_quantile(qd, probs, o[i], d[i], s[i], 0.9)
    return acc


@njit
def _loop_miss(qd, late, express, coef, probs, mi, o, d, s, budget, delay, kg):  # pragma: no cover
    scratch = np.empty(coef.shape[0])
    acc = 0.0
    for i in range(o.shape[0]):
        acc += miss_probability(qd, late, express, coef, probs, mi, o[i], d[i], s[i], budget[i],
                                delay[i], 800.0, kg[i], 2.0, 14.5, 0.6, scratch)  # fmt: skip
    return acc


def _median_s(fn, reps: int) -> float:
    fn()  # warm (compile or cache load)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _synthetic(n: int, seed: int = 1) -> Outcomes:
    rng = np.random.default_rng(seed)
    regions = np.array(["SP", "RJ", "MG", "PR", "RS", "BA", "PE", "CE", "AM"], dtype=object)
    services = np.array(["correios/pac", "correios/sedex", "jadlog/package"], dtype=object)
    o, d = rng.choice(regions, n), rng.choice(regions, n)
    s = rng.choice(services, n)
    base = rng.uniform(1, 9, n)
    actual = base * np.exp(0.3 * rng.normal(0, 1, n))
    promise = np.round(base * rng.uniform(0.9, 1.7, n))
    nan = np.full(n, np.nan)
    return Outcomes(
        time_ms=np.arange(n, dtype=float), origin=o, dest=d, service=s,
        level=np.where(s == "correios/sedex", "express", "standard").astype(object),
        promise_days=promise, actual_days=actual, late=(actual > promise).astype(np.int64),
        weight_kg=rng.uniform(0.1, 20, n), distance_km=nan, dow=rng.integers(0, 7, n) * 1.0,
        hour=rng.uniform(0, 24, n), delay_hours=nan, load=nan, line=np.arange(n),
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--candidates", type=int, default=1_000_000)
    args = ap.parse_args()
    net = load_default()

    t = time.perf_counter()
    model = fit(_synthetic(5_000), Hyper())
    print(f"fit, 5k rows (first call, includes JIT/cache load): {time.perf_counter() - t:.2f} s")
    small = _synthetic(5_000)
    print(f"fit, 5k rows: {_median_s(lambda: fit(small), 3):.2f} s")
    big = _synthetic(200_000)
    print(f"fit, 200k rows: {_median_s(lambda: fit(big), 1):.2f} s")
    ms = _median_s(lambda: kernel_arrays(model, net, fill="network"), args.reps) * 1e3
    print(f"kernel_arrays(model, network, fill='network'): {ms:.1f} ms "
          f"({len(net.regions)}x{len(net.regions)}x{len(net.services)} lanes)")  # fmt: skip

    ka = kernel_arrays(model, net, fill="network")
    rng = np.random.default_rng(7)
    covered = np.argwhere(np.isfinite(ka.quantile_days[..., 0]))
    pick = covered[rng.integers(0, len(covered), args.candidates)]
    o, d, s = (np.ascontiguousarray(pick[:, i]) for i in range(3))
    budget = rng.uniform(0, 12, args.candidates)
    delay = np.where(rng.random(args.candidates) < 0.1, 24.0, 0.0)
    kg = rng.uniform(0.1, 30, args.candidates)
    m = args.candidates
    # Random lanes touch the whole 27x27x6x13 array (memory-bound); the kernel walks one
    # order's candidates (one destination, a few origins, every service) -- lanes sorted by
    # destination stand in for that.
    by_dest = np.lexsort((s, o, d))
    for label, idx in (("random lanes", np.arange(m)), ("lanes grouped by order", by_dest)):
        oo, dd, ss = o[idx], d[idx], s[idx]
        sec = _median_s(lambda oo=oo, dd=dd, ss=ss: _loop_quantile(ka.quantile_days, ka.probs,
                                                                  oo, dd, ss), args.reps)
        print(f"transit_quantile (p90), {label}: {sec / m * 1e9:.1f} ns/call")
        sec = _median_s(lambda oo=oo, dd=dd, ss=ss: _loop_miss(
            ka.quantile_days, ka.late_logit, ka.service_express, ka.coef, ka.probs,
            ka.median_index, oo, dd, ss, budget, delay, kg), args.reps)  # fmt: skip
        print(f"miss_probability, {label}: {sec / m * 1e9:.1f} ns/call "
              f"({N_MODEL_FEATURES} features, {len(ka.probs)} quantiles)")  # fmt: skip

    events = [Outcome(f"e{i}", "SP", "RJ", "correios/pac", float(x), 1_795_556_252_000 + i * 60_000,
                      i % 3 == 0) for i, x in enumerate(rng.gamma(4.0, 1.0, 20_000))]  # fmt: skip

    def online() -> None:
        st = new_sketch(ka.quantile_days[0, 0, 0])
        for ev in events:
            st, _ = update_sketch(st, ev)

    sec = _median_s(online, max(1, args.reps // 3))
    print(f"update_sketch: {sec / len(events) * 1e6:.1f} µs/delivered event")


if __name__ == "__main__":
    main()
