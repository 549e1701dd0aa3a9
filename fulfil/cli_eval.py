"""`fulfil evaluate ...`: decision quality, measured on identical inputs.

    fulfil evaluate SCENARIO                       every policy + hindsight optimum, one table
    fulfil evaluate SCENARIO --save-stream F.jsonl the scenario's events, replayable as SCENARIO
    fulfil evaluate tune --train A --test B        tune the weights on A, report them on B

SCENARIO is a shipped scenario name (`fulfil/data/scenarios/*.json`), a scenario JSON file
(`fulfil.sim.Scenario` fields) or a recorded stream (`.jsonl`, one event per line). Everything
runs in-process and offline (no Kafka, no Redis): see `operators/eval/replay.py` for why the
replay decides what the engine decides, and docs/evaluation.md for the figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import orjson

from fulfil.config import Config, ConfigError

ConfigFn = Callable[[argparse.Namespace], Config]


def _network(path: str | None) -> Any:
    from operators.network import Network, load_default

    return Network.load(path) if path else load_default()


def _stream(name: str, network: Any) -> Any:
    from fulfil.eval_source import load_stream

    try:
        return load_stream(name, network)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_evaluate(args: argparse.Namespace, config: ConfigFn) -> int:
    if args.scenario == "tune":
        return cmd_tune(args, config)
    from operators.eval.policies import CO2E_POLICY, POLICY_NAMES
    from operators.eval.report import evaluation_dict, format_evaluation
    from operators.eval.run import DEFAULT_POLICIES, evaluate

    policies = args.policies.split(",") if args.policies else list(DEFAULT_POLICIES)
    unknown = [p for p in policies if p not in POLICY_NAMES and not p.startswith(CO2E_POLICY + "@")]
    if unknown:
        raise ConfigError(f"evaluate: unknown policy {unknown[0]!r}; expected some of "
                          f"{', '.join(POLICY_NAMES)}")
    _check(args)
    prices = _prices(args.co2e_weight)
    cfg = config(args)
    network = _network(args.network)
    t0 = time.monotonic()
    stream = _stream(args.scenario, network)
    if args.save_stream:
        from fulfil.eval_source import write_jsonl

        n = write_jsonl(stream, args.save_stream)
        _log(f"wrote {n:,} events to {args.save_stream}")
    seed = stream.seed if args.truth_seed is None else args.truth_seed
    _log(f"{stream.name}: {stream.orders:,} orders, {len(stream.events):,} events "
         f"({stream.invalid} invalid left out); replaying {len(policies)} policies ...")
    ev = evaluate(stream.events, network, cfg, name=stream.name, policies=policies,
                  co2e_brl_per_kg=prices, truth_seed=seed,
                  lane_bias=args.truth_lane_bias, batch_ms=args.batch_ms,
                  sample_orders=args.sample, time_limit_s=args.time_limit)
    header = (f"scenario {stream.name}: {ev.orders:,} orders ({stream.invalid} invalid left "
              f"out), network {network.version}, truth seed {seed}, lane bias "
              f"{args.truth_lane_bias:g}, batches of {args.batch_ms} "
              f"ms, CO2e what-if {', '.join(f'{w:g}' for w in prices)} BRL/kg")
    print(format_evaluation(ev, header))
    _log(f"done in {time.monotonic() - t0:.0f} s")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(evaluation_dict(ev), option=orjson.OPT_INDENT_2))
    return 0


def cmd_tune(args: argparse.Namespace, config: ConfigFn) -> int:
    from operators.eval.report import format_tuning
    from operators.eval.tuning import Objective, Step, replay_metrics, search
    from operators.scoring import Weights

    if not args.train or not args.test:
        raise ConfigError("evaluate tune needs --train SCENARIO and --test SCENARIO")
    if args.train == args.test:
        raise ConfigError("evaluate tune: --train and --test must be different scenarios")
    _check(args)
    cfg = config(args)
    network = _network(args.network)
    train = _stream(args.train, network)
    seed = train.seed if args.truth_seed is None else args.truth_seed

    def on_train(w: Weights) -> Any:
        return replay_metrics(train.events, network, cfg, w, truth_seed=seed,
                              lane_bias=args.truth_lane_bias, batch_ms=args.batch_ms)

    def show(step: Step) -> None:
        m = step.metrics
        _log(f"  {'*' if step.kept else ' '} objective {step.objective:12,.0f}  cost "
             f"{m.cost:12,.0f}  late {m.late:6,}  {_diff(step.weights)}")

    objective = Objective(args.late_penalty, args.unrouted_penalty)
    start = Weights.from_mapping(dict(cfg.weights))
    _log(f"tuning on {train.name} ({train.orders:,} orders), budget {args.budget} ...")
    result = search(on_train, start, objective, budget=args.budget, rounds=args.rounds,
                    seed=args.seed, on_step=show)
    # Only now is the test scenario read: nothing above could see it.
    test = _stream(args.test, network)
    tseed = test.seed if args.truth_seed is None else args.truth_seed
    rows = []
    for label, w, policy in (("fulfil", result.start.weights, "fulfil"),
                             ("fulfil (tuned)", result.best.weights, "fulfil"),
                             ("nearest", start, "nearest")):
        m = replay_metrics(test.events, network, cfg, w, policy=policy, truth_seed=tseed,
                           lane_bias=args.truth_lane_bias, batch_ms=args.batch_ms)
        rows.append(replace(m, policy=label))
    print(format_tuning(result, rows, train.name, test.name))
    if args.write_config:
        tuned = {f.name: getattr(result.best.weights, f.name) for f in fields(Weights)}
        Path(args.write_config).write_bytes(orjson.dumps({"weights": tuned},
                                                         option=orjson.OPT_INDENT_2))
        _log(f"tuned weights written to {args.write_config} (use with --config)")
    return 0


def _check(args: argparse.Namespace) -> None:
    """Refuse bad numbers with one line instead of a traceback deep in the replay."""
    if args.batch_ms < 1:
        raise ConfigError(f"evaluate: --batch-ms must be >= 1; got {args.batch_ms}")
    if args.sample < 0 or args.budget < 1:
        raise ConfigError("evaluate: --sample must be >= 0 and --budget >= 1")
    if not args.truth_lane_bias >= 0:
        raise ConfigError(f"evaluate: --truth-lane-bias must be >= 0; got {args.truth_lane_bias}")


def _prices(text: str) -> list[float]:
    """``--co2e-weight``: one carbon price in BRL per kg CO2e, or a comma-separated sweep."""
    try:
        prices = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"evaluate: --co2e-weight must be numbers (BRL per kg CO2e, comma-"
                          f"separated for a sweep); got {text!r}") from None
    if not prices or not all(0 <= w < float("inf") for w in prices):
        raise ConfigError(f"evaluate: --co2e-weight must be finite numbers >= 0; got {text!r}")
    return prices


def _diff(w: Any) -> str:
    from operators.scoring import Weights

    d = Weights()
    return " ".join(f"{f.name}={getattr(w, f.name):g}" for f in fields(Weights)
                    if getattr(w, f.name) != getattr(d, f.name))


def register(sub: Any, config: ConfigFn) -> None:
    """Add the `evaluate` command to the top-level parser."""
    p = sub.add_parser("evaluate", help="compare routing policies on a scenario; tune weights",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", help="shipped scenario name, scenario .json, recorded .jsonl, "
                   "or 'tune'")
    p.add_argument("--config", help="JSON config file (weights, max_nodes, max_splits)")
    p.add_argument("--network", help="network JSON (default: the shipped Olist network)")
    p.add_argument("--policies", help="comma-separated (default: fulfil,nearest,nearest-sla,"
                   "fewest-splits,fulfil+co2e)")
    p.add_argument("--co2e-weight", default="0.5",
                   help="carbon price, BRL per kg CO2e, for the fulfil+co2e what-if (the "
                   "kernel's weights.co2e_kg); comma-separated to sweep, e.g. 0,0.5,2,5: one "
                   "row per price and a price-of-green table (default 0.5)")
    p.add_argument("--truth-seed", type=int, help="ground-truth draws (default: scenario seed)")
    p.add_argument("--truth-lane-bias", type=float, default=0.15,
                   help="spread of the true lane means around the network's (log sd, default "
                   "0.15; 0 = the network's figures are exact)")
    p.add_argument("--batch-ms", type=int, default=1000, help="replay window (default 1000)")
    p.add_argument("--sample", type=int, default=1000,
                   help="orders solved exactly in hindsight (0: skip; default 1000)")
    p.add_argument("--time-limit", type=float, default=300.0, help="solver seconds (default 300)")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--save-stream", help="write the scenario's events to this .jsonl")
    t = p.add_argument_group("tune (fulfil evaluate tune --train A --test B)")
    t.add_argument("--train", help="scenario the weights are searched on")
    t.add_argument("--test", help="a different scenario the result is reported on")
    t.add_argument("--budget", type=int, default=30, help="replays of --train (default 30)")
    t.add_argument("--rounds", type=int, default=2, help="passes over the weights (default 2)")
    t.add_argument("--seed", type=int, default=0, help="search order seed (default 0)")
    t.add_argument("--late-penalty", type=float, default=25.0,
                   help="BRL per late delivery in the objective (default 25)")
    t.add_argument("--unrouted-penalty", type=float, default=100.0,
                   help="BRL per unit left unroutable in the objective (default 100)")
    t.add_argument("--write-config", help="write the tuned weights as a config JSON")
    p.set_defaults(func=lambda a: cmd_evaluate(a, config))
