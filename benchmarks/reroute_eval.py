"""Evidence for predictive re-routing: one simulated day replayed with and without it.

    python benchmarks/reroute_eval.py [--forecasts ordinary|strike|closure|ordinary+closure|
                                       forecasts.json] [--hours 24]
                                      [--seed 7] [--truth-seed 7] [--json out.json]
                                      [--every-open] [--miss-threshold P]

The day is the `olist-day-a` recipe (the Olist network `fulfil/data/network-olist-br.json`, real
demand shares, destinations and products from the simulator, its stock rules, stock-out and
surge) with its two announced-at-start lane disruptions replaced by *forecasts*, each announced
hours before it starts: `ordinary` (the default, `operators.eval.forecasts.DEFAULT_FORECASTS`:
weather, a carrier hub's capacity cut, a carrier outage, and an overstated cold front),
`strike` (`STRIKE_FORECASTS`: a 48 h strike of jadlog, the planner's main carrier, announced
with the legal 48 h notice), `closure` (`CLOSURE_FORECASTS`: the busiest node, the Sao Paulo DC,
closed for 48 h under a flood warning, announced the evening before) or `ordinary+closure`.
The same events go through the production planner twice (`operators/eval/reroute_replay.py`):
once routing each order at arrival only, once also re-routing open orders (routed, not yet
picked up) whose parcel meets a forecast at its pick-up (or whose pick-up falls in its node's
closure), with the routing flow's selection and the router's move rules (`--every-open`: the
former lane selection, every open order on the lane, for comparison): an order asked for is
re-planned only when the plan it has, as it would now go, misses its promise with a probability
above the threshold (`Config.reroute_miss_threshold`, default 0.05; `--miss-threshold 0`: every
order asked for, the former behaviour), or cannot deliver. Both runs see every
forecast at arrival (orders routed after a closure's announcement avoid the node in both);
the only difference is what happens to orders routed before it. Lateness is judged on the
seeded ground truth (`operators/eval/truth.py`, lane bias 0.15 as in `fulfil evaluate`) with
the forecasts' *actual* windows (a parcel left at a closed node leaves at its first pick-up
slot after it reopens: `forecasts.ClosureTruth`), cost with the evaluator's
cost model. Offline and deterministic: the same command prints the same table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fulfil.config import Config  # noqa: E402
from fulfil.eval_source import scenario_events, scenario_path  # noqa: E402
from fulfil.sim.scenario import Scenario  # noqa: E402
from operators.eval.forecasts import (  # noqa: E402
    FORECAST_SETS,
    forecast_from_dict,
    forecast_set,
    truth_for,
    with_forecasts,
)
from operators.eval.reroute_compare import (  # noqa: E402
    compare,
    comparison_json,
    forecast_groups,
    format_comparison,
)
from operators.eval.truth import Truth  # noqa: E402
from operators.network import load_default  # noqa: E402

BASE = "olist-day-a"


def evidence_scenario(hours: float, seed: int) -> Scenario:
    """The base day without its lane disruptions (the forecasts replace them), cut to
    ``hours`` from local midnight."""
    d = orjson.loads(scenario_path(BASE).read_bytes())
    d["disruptions"] = [x for x in d["disruptions"]
                        if x["kind"] not in ("carrier_outage", "lane_delay")
                        and x["start_s"] < hours * 3600]
    d.update(duration_s=hours * 3600, seed=seed)
    return Scenario.from_dict(d)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=24.0, help="period from local midnight")
    ap.add_argument("--seed", type=int, default=7, help="the scenario's seed")
    ap.add_argument("--truth-seed", type=int, default=7)
    ap.add_argument("--truth-lane-bias", type=float, default=0.15)
    ap.add_argument("--batch-ms", type=int, default=1000)
    ap.add_argument("--forecasts", default="ordinary", help="a named set ("
                    f"{', '.join(FORECAST_SETS)}) or a JSON list of forecasts (to_dict of "
                    "Forecast or NodeClosure)")
    ap.add_argument("--every-open", action="store_true", help="the former selection: re-plan "
                    "every open order on a forecast lane, whatever its pick-up")
    ap.add_argument("--miss-threshold", type=float, default=None, help="re-plan an order "
                    "asked for only when its plan's miss probability is above this (default: "
                    "the engine's, Config.reroute_miss_threshold; 0 = every order asked for)")
    ap.add_argument("--json", help="also write the figures and parameters to this file")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    network, cfg = load_default(), Config()
    if args.miss_threshold is not None:
        cfg = replace(cfg, reroute_miss_threshold=args.miss_threshold)
    scenario = evidence_scenario(args.hours, args.seed)
    stream = scenario_events(scenario, network, name=BASE)
    t0 = scenario.sim_start_ms
    chosen = (forecast_set(args.forecasts) if args.forecasts in FORECAST_SETS else
              [forecast_from_dict(d) for d in orjson.loads(Path(args.forecasts).read_bytes())])
    forecasts = [f for f in chosen if f.announce_h < args.hours]
    events = with_forecasts(stream.events, forecasts, t0)
    truth = truth_for(network, forecasts, t0, args.truth_seed, args.truth_lane_bias)
    print(f"{stream.orders:,} orders, {len(events):,} events; replaying twice ...",
          file=sys.stderr, flush=True)
    clear = Truth(network, [], args.truth_seed, args.truth_lane_bias)  # the same, undisrupted
    groups = forecast_groups(forecasts, t0)
    c = compare(events, network, cfg, truth, clear=clear, groups=groups,
                at_pickup=not args.every_open, batch_ms=args.batch_ms)
    params: dict[str, Any] = {
        "scenario": f"{BASE} (lane disruptions replaced by forecasts)", "seed": args.seed,
        "period": f"2018-03-05 00:00 + {args.hours:g} h, Brasilia (UTC-3)",
        "network": network.version, "truth_seed": args.truth_seed,
        "truth_lane_bias": args.truth_lane_bias, "batch_ms": args.batch_ms,
        "forecast_set": args.forecasts, "forecasts": [f.to_dict() for f in forecasts],
        "weights": "defaults", "max_nodes": cfg.max_nodes, "max_splits": cfg.max_splits,
        "selection": ("every open order on the lane (former)" if args.every_open
                      else "parcels that meet the disruption at pick-up (engine)"),
        "miss_threshold": cfg.reroute_miss_threshold,
    }  # fmt: skip
    print(f"scenario {params['scenario']}, forecasts {args.forecasts}, seed {args.seed}, "
          f"{params['period']}, network {network.version}, truth seed {args.truth_seed}, lane bias "
          f"{args.truth_lane_bias:g}, batches of {args.batch_ms} ms, selection: "
          f"{params['selection']}, miss threshold {cfg.reroute_miss_threshold:g}")
    for f in forecasts:
        print(f"  forecast {f.describe()}")
    print()
    print(format_comparison(c))
    print(f"\n({time.monotonic() - t_start:.0f} s)", file=sys.stderr)
    if args.json:
        Path(args.json).write_bytes(comparison_json(c, params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
