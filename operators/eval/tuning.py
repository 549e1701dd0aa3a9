"""Tune the scoring weights on one scenario, report them on another.

Why a coordinate search: each evaluation is a full replay (seconds), so the budget is a few dozen
evaluations; the score is a weighted sum whose weights act mostly independently (cost vs
lateness vs distance vs load), which is where coordinate search does well, and it is easy to
read: every step is "weight w times f, better or not". The procedure (seeded, deterministic):

1. evaluate the starting weights (the configured ones) on the training stream;
2. for each round, visit the tunable weights in a seeded random order; for each try the current
   value times each of ``FACTORS`` (and 0 for a weight that is not 0 yet), keep the best if it
   lowers the objective; stop when the budget of evaluations is spent;
3. the objective is the business cost of the period on the training stream:
   ``total cost + late_penalty x late deliveries (ground truth) + unrouted_penalty x units left
   unroutable``, in BRL.

The search function only ever receives the training stream (``search`` has no test argument);
the test stream is read by the caller after the search has returned (``fulfil evaluate tune``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from operators.eval.metrics import Metrics, measure
from operators.eval.policies import make_policy
from operators.eval.replay import replay
from operators.eval.truth import Truth, disruptions_from_events
from operators.network import Network
from operators.scoring import Weights

__all__ = ["FACTORS", "TUNABLE", "Objective", "Step", "TuneResult", "replay_metrics", "search"]

FACTORS = (0.5, 2.0)
#: Weights the search may change; ``not_preferred`` belongs to business rules and ``co2e_kg`` is
#: a carbon price the business sets (an objective of cost and late deliveries has no reason to
#: pay for CO2e, so searching it only spends replays).
TUNABLE = tuple(f.name for f in fields(Weights) if f.name not in ("not_preferred", "co2e_kg"))


@dataclass(frozen=True)
class Objective:
    """BRL per late delivery and per unit left unroutable, added to the fulfilment cost."""

    late_penalty: float = 25.0
    unrouted_penalty: float = 100.0

    def __call__(self, m: Metrics) -> float:
        return m.cost + self.late_penalty * m.late + self.unrouted_penalty * m.units_unroutable


@dataclass(frozen=True)
class Step:
    weights: Weights
    objective: float
    metrics: Metrics
    kept: bool


@dataclass(frozen=True)
class TuneResult:
    start: Step
    best: Step
    history: tuple[Step, ...]


def replay_metrics(events: Sequence[Mapping[str, Any]], network: Network, config: Any,
                   weights: Weights, *, policy: str = "fulfil", truth_seed: int = 0,
                   lane_bias: float = 0.0, batch_ms: int = 1000) -> Metrics:
    """Metrics of one policy with ``weights`` on ``events`` (ground truth seeded)."""
    cfg = replace(config, weights={f.name: getattr(weights, f.name) for f in fields(Weights)})
    truth = Truth(network, disruptions_from_events(events), truth_seed, lane_bias)
    pol = make_policy(policy, network, cfg)
    return measure(replay(events, pol, batch_ms=batch_ms), network, truth)


def search(evaluate: Callable[[Weights], Metrics], start: Weights, objective: Objective, *,
           budget: int = 30, rounds: int = 2, seed: int = 0,
           on_step: Callable[[Step], None] | None = None) -> TuneResult:
    """Coordinate search from ``start`` (see the module docstring); ``evaluate`` replays the
    training stream only."""
    rng = random.Random(seed)
    m = evaluate(start)
    best = Step(start, objective(m), m, True)
    history = [best]
    if on_step is not None:
        on_step(best)
    for _ in range(rounds):
        names = list(TUNABLE)
        rng.shuffle(names)
        for name in names:
            cur = getattr(best.weights, name)
            tries = [cur * f for f in FACTORS] + ([0.0] if cur != 0 else [])
            for value in tries:
                if len(history) >= budget:
                    return TuneResult(history[0], best, tuple(history))
                w = replace(best.weights, **{name: value})
                mw = evaluate(w)
                step = Step(w, objective(mw), mw, False)
                if step.objective < best.objective:
                    step = replace(step, kept=True)
                    best = step
                history.append(step)
                if on_step is not None:
                    on_step(step)
    return TuneResult(history[0], best, tuple(history))
