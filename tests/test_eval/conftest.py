"""A tiny hand-built network and event factories, so every expected value can be worked out by
hand: nodes on the equator (1 degree of longitude = 111.195 km), a customer at (0, 0), lanes
whose p90 equals their mean (the ground truth is then exactly the mean: no randomness)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from fulfil.config import Config
from operators.network import Network

KM_PER_DEG = 2 * math.pi * 6371.0088 / 360  # the planner's Earth radius
DAY = 86_400_000
HOUR = 3_600_000
NOW = 1_520_244_000_000  # 2018-03-05 10:00 UTC: before every node's cut-off (15h, UTC+0)
DEST = {"lat": 0.0, "lng": 0.0, "region": "AA"}


def _node(nid: str, lng: float, region: str = "AA", capacity: int = 100,
          handling: float = 1.0) -> dict[str, Any]:
    return {"id": nid, "name": nid, "kind": "warehouse", "lat": 0.0, "lng": lng,
            "region": region, "capacity_per_day": capacity, "handling_cost": handling,
            "handling_hours": 2.0, "cutoff_hour": 15, "utc_offset_hours": 0.0}


def tiny_network(nodes: list[dict[str, Any]] | None = None, std_days: float = 3.0,
                 p90_factor: float = 1.0) -> Network:
    """Regions AA (around the customer) and BB; services post/std (cheap, slow, 100 g/tkm)
    and post/exp (dear, fast, 600 g/tkm); every lane covered."""
    nodes = nodes or [_node("N1", 0.5), _node("N2", 3.0), _node("N3", 10.0, "BB")]
    lanes = []
    for o in ("AA", "BB"):
        for d in ("AA", "BB"):
            extra = 0.0 if o == d else 1.0
            for sid, days in (("post/std", std_days), ("post/exp", 1.0)):
                mean = days + extra
                lanes.append({"origin": o, "dest": d, "service": sid, "transit_mean": mean,
                              "transit_p90": mean * p90_factor})
    return Network.from_dict({
        "version": "tiny-1",
        "regions": [{"code": "AA", "lat": 0.0, "lng": 0.0, "demand": 0.5},
                    {"code": "BB", "lat": 0.0, "lng": 10.0, "demand": 0.5}],
        "nodes": nodes,
        "services": [
            {"id": "post/std", "carrier": "post", "service": "std", "level": "standard",
             "base_cost": 10.0, "per_kg": 1.0, "per_100km": 1.0, "co2e_g_per_tkm": 100.0},
            {"id": "post/exp", "carrier": "post", "service": "exp", "level": "express",
             "base_cost": 20.0, "per_kg": 2.0, "per_100km": 2.0, "co2e_g_per_tkm": 600.0},
        ],
        "lanes": lanes,
        "postal_prefixes": {},
    })


def inventory(node: str, sku: str, qty: int, at: int = NOW - HOUR, version: int = 1
              ) -> dict[str, Any]:
    return {"type": "inventory.snapshot", "event_id": f"i-{node}-{sku}-{version}",
            "node_id": node, "sku": sku, "version": version, "on_hand": qty, "occurred_at": at}


def order(oid: str, lines: list[tuple[str, int, int]], at: int = NOW,
          promise_days: float = 2.0, dest: dict[str, Any] | None = None,
          priority: int = 0) -> dict[str, Any]:
    """An order.created; ``lines`` are (sku, qty, grams per unit)."""
    return {"type": "order.created", "event_id": f"{oid}/c", "order_id": oid, "channel": "web",
            "customer": {"id": "c-1", "tier": "standard"}, "priority": priority,
            "promised_by": at + round(promise_days * DAY), "destination": dest or DEST,
            "lines": [{"line_id": str(i + 1), "sku": s, "qty": q, "weight_g": g}
                      for i, (s, q, g) in enumerate(lines)],
            "occurred_at": at}


@pytest.fixture
def net() -> Network:
    return tiny_network()


@pytest.fixture
def config_factory() -> Callable[..., Config]:
    def make(**weights: float) -> Config:
        return Config(weights=weights)

    return make


@pytest.fixture(scope="session")
def real_batch() -> tuple[Network, list[Any], Callable[[list[str]], Any]]:
    """300 simulated orders on the shipped Olist network, and scarce seeded stock for them."""
    import numpy as np

    from fulfil.sim.catalogue import load_catalogue
    from fulfil.sim.scenario import Scenario
    from fulfil.sim.workload import Workload, stamp
    from operators.network import load_default
    from operators.orders import order_from_created

    network = load_default()
    scenario = Scenario.steady(300.0, 1.0, invalid_rate=0.0, sku_count=60, seed=3,
                               lines=(0.3, 0.4, 0.3))
    wl = Workload(network, load_catalogue(60, 3, zipf_s=1.1), scenario)
    orders = [order_from_created(orjson.loads(stamp(e.value, NOW)))
              for e in wl.events_at(0.0, 1.0) if e.tag == "order.created"]
    rng = np.random.default_rng(1)

    def atp_of(skus: list[str]) -> Any:
        shape = (len(network.nodes), len(skus))  # a few units at a few nodes: splits, races
        return np.ascontiguousarray(rng.integers(1, 3, shape) * (rng.random(shape) < 0.08))

    return network, orders, atp_of


def prepared(real_batch: tuple) -> tuple[Network, Any, Any, Any, Any]:
    """`real_batch` planned-for: (network, production planner, prepared batch, its stock,
    an idle node load)."""
    import numpy as np

    from fulfil.config import Config
    from operators.planner import Planner

    net, orders, atp_of = real_batch
    planner = Planner(net, Config())
    prep = planner.prepare(orders)
    return net, planner, prep, atp_of(prep.skus), np.zeros(len(net.nodes), dtype=np.int64)


def decide(net: Network, policy: str, stock: list[dict], orders: list[dict]) -> list:
    """Plan one batch of ``orders`` against ``stock`` (inventory events) with ``policy``."""
    from operators.candidates import LaneArrays
    from operators.eval.ledger import LedgerMirror
    from operators.eval.policies import make_policy
    from operators.orders import order_from_created

    pol = make_policy(policy, net, Config())
    ledger = LedgerMirror([n.id for n in net.nodes])
    for ev in stock:
        ledger.apply_inventory(ev["node_id"], ev["sku"], ev["version"], True, ev["on_hand"])
    prep = pol.planner.prepare([order_from_created(o) for o in orders])
    atp, load = ledger.availability(prep.skus, 0)
    lanes = LaneArrays.healthy(len(net.regions), len(net.services))
    return pol.plan(prep, atp, load, lanes, NOW)
