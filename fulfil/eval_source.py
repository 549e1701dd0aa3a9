"""Where an evaluation's events come from: a simulated scenario or a recorded stream.

Both become the same thing, a time-ordered list of validated event dicts (order, inventory and
carrier events, each with ``occurred_at``), so every policy replays identical inputs and a
simulated scenario can be written out (``write_jsonl``) and replayed from the file with the
same result.

A scenario (``fulfil.sim.Scenario``: a shipped name under ``fulfil/data/scenarios/``, or a JSON
file) is generated here, without Kafka: the initial inventory at the start, then
``Workload.events_at`` one second at a time. Timestamps: an order at its exact due time (the
instant its promise was computed from); scheduled inventory and lane events at the start of
their one-second window; follow-ups (address changes, cancellations, which come 0.5-20 s after
their order) at the end of it, so they never precede the order they refer to. The simulator's
deliberately broken orders are left out: the engine dead-letters them and never routes them.

A recorded stream (``.jsonl``): one event per line, as produced to the ``fulfil.orders``,
``fulfil.inventory`` and ``fulfil.carrier-status`` topics; each is validated against its schema
and the invalid ones are counted and left out, as the engine would dead-letter them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from operators.network import Network

__all__ = ["EventStream", "load_stream", "scenario_events", "scenario_path", "shipped_scenarios",
           "write_jsonl"]  # fmt: skip

SCENARIO_DIR = Path(__file__).resolve().parent / "data" / "scenarios"
_KIND_OF = {"order": "order_event", "inventory": "inventory_event", "lane": "carrier_event",
            "shipment": "carrier_event"}  # fmt: skip


@dataclass(frozen=True)
class EventStream:
    """A validated, time-ordered stream and what was left out of it."""

    name: str
    events: list[dict[str, Any]]
    invalid: int = 0
    seed: int = 0  # the scenario's seed (the truth draws default to it)

    @property
    def orders(self) -> int:
        return sum(1 for e in self.events if e["type"] == "order.created")


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def scenario_path(name: str) -> Path:
    """A shipped scenario's file, or ``name`` itself when it is a path."""
    p = Path(name)
    if p.suffix in (".json", ".jsonl") and p.exists():
        return p
    shipped = SCENARIO_DIR / f"{name}.json"
    if shipped.exists():
        return shipped
    raise FileNotFoundError(f"no scenario {name!r}: not a file, and not one of the shipped "
                            f"scenarios ({', '.join(shipped_scenarios())})")


def load_stream(name: str, network: Network) -> EventStream:
    """The events of a shipped scenario name, a scenario ``.json`` or a recorded ``.jsonl``."""
    path = scenario_path(name)
    if path.suffix == ".jsonl":
        return _recorded(path)
    from fulfil.sim.scenario import Scenario

    scenario = Scenario.from_dict(orjson.loads(path.read_bytes()))
    return scenario_events(scenario, network, name=path.stem)


def scenario_events(scenario: Any, network: Network, name: str = "scenario") -> EventStream:
    """Generate a scenario's stream (module docstring: timestamps, what is left out)."""
    from fulfil.sim.catalogue import initial_inventory, load_catalogue
    from fulfil.sim.workload import Workload, stamp

    catalogue = load_catalogue(scenario.sku_count, scenario.seed, zipf_s=scenario.zipf_s)
    workload = Workload(network, catalogue, scenario)
    start = workload.start_ms
    events: list[dict[str, Any]] = list(initial_inventory(network, catalogue, scenario,
                                                          at_ms=start))
    invalid = 0
    steps = math.ceil(scenario.duration_s)
    for k in range(steps):
        t0, t1 = float(k), float(min(k + 1, scenario.duration_s))
        for ev in workload.events_at(t0, t1):
            if ev.tag.startswith("invalid:"):
                invalid += 1
                continue
            if ev.tag == "order.created":
                n = int(ev.key.rsplit("-", 1)[1])
                at = start + round(float(workload.arrivals.times(n, n + 1)[0]) * 1000)
            elif ev.tag in ("order.address_changed", "order.cancelled"):
                at = start + round(t1 * 1000) - 1
            else:
                at = start + round(t0 * 1000)
            events.append(orjson.loads(stamp(ev.value, at)))
    events.sort(key=lambda e: e["occurred_at"])  # stable: same-instant events keep their order
    return EventStream(name, events, invalid, int(scenario.seed))


def _recorded(path: Path) -> EventStream:
    from schemas.errors import ValidationError
    from schemas.validation import decode_and_validate

    events: list[dict[str, Any]] = []
    invalid = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                kind = str(orjson.loads(raw).get("type", "")).split(".", 1)[0]
                events.append(decode_and_validate(_KIND_OF.get(kind, "order_event"), raw))
            except (ValidationError, orjson.JSONDecodeError, AttributeError):
                invalid += 1
    events.sort(key=lambda e: e["occurred_at"])
    return EventStream(path.stem, events, invalid)


def write_jsonl(stream: EventStream, path: str | Path) -> int:
    """Write a stream as one JSON event per line (replayable with ``load_stream``)."""
    with Path(path).open("wb") as fh:
        for ev in stream.events:
            fh.write(orjson.dumps(ev) + b"\n")
    return len(stream.events)
