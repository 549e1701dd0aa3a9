"""What an evaluation measures per policy, from the replay's final decisions and the truth.

Definitions (over the orders whose last event is not a cancellation; a cancelled order never
ships, so its plan costs nothing and cannot be late):

- **cost**: sum over shipments of the kernel's cost (handling + carrier base + per kg + per
  100 km), in BRL;
- **on-time / late**: an order is on time when every shipment *really* arrives (``Truth``) by its
  promise; ``est_late`` counts the plans the engine itself expected to be late;
- **split rate**: routed orders with more than one shipment;
- **units unroutable**: units of the orders left without a plan (no stock, no lane, ...);
- **avg km**: mean great-circle distance per shipment;
- **node utilisation**: per node, its busiest UTC day's shipments as a share of its daily
  capacity (the ledger counts load per UTC day); the spread is the standard deviation of that
  share over the nodes (in percentage points), beside the busiest node's share. Over a run
  shorter than a day the shares are small, but the spread still compares policies;
- **CO2e**: the shipments' own ``co2e_kg`` summed, in kg: the figure the planner gives every
  shipment and decisions carry (``operators.emissions``: km x tonnes x the service's g/tkm).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from operators.eval.ledger import DAY_MS
from operators.eval.replay import ReplayResult
from operators.eval.truth import Truth
from operators.network import Network

__all__ = ["Metrics", "expected_late", "measure"]


@dataclass(frozen=True, slots=True)
class Metrics:
    policy: str
    orders: int
    routed: int
    cost: float
    on_time: int
    late: int
    est_late: int
    split: int
    shipments: int
    units_unroutable: int
    km: float
    co2e_kg: float
    util_max: float
    util_sd: float

    @property
    def on_time_rate(self) -> float:
        return self.on_time / self.routed if self.routed else 0.0

    @property
    def split_rate(self) -> float:
        return self.split / self.routed if self.routed else 0.0

    @property
    def avg_km(self) -> float:
        return self.km / self.shipments if self.shipments else 0.0

    @property
    def cost_per_order(self) -> float:
        return self.cost / self.routed if self.routed else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(on_time_rate=self.on_time_rate, split_rate=self.split_rate,
                 avg_km=self.avg_km, cost_per_order=self.cost_per_order)
        return d


def measure(result: ReplayResult, network: Network, truth: Truth,
            only: Collection[str] | None = None) -> Metrics:
    """The metrics of one replay (restricted to the order ids ``only`` when given)."""
    n_nodes = len(network.nodes)
    per_day: dict[int, np.ndarray] = {}
    orders = routed = on_time = late = est_late = split = shipments = unroutable = 0
    cost = km = co2e_kg = 0.0
    for oid, st in result.orders.items():
        if st.cancelled or (only is not None and oid not in only):
            continue
        orders += 1
        plan = st.plan
        if plan is None:
            unroutable += sum(ln.qty for ln in st.order.lines)
            continue
        routed += 1
        where = network.locate(st.order.destination)
        assert where is not None  # a routed order's destination was located by the planner
        region = where[2]
        arrived = 0
        for sh in plan.shipments:
            co2e_kg += sh.co2e_kg
            km += sh.distance_km
            cost += sh.cost
            day = per_day.setdefault(st.planned_ms // DAY_MS, np.zeros(n_nodes))
            day[sh.node] += 1
            arrived = max(arrived, truth.delivered_ms(oid, sh.node, sh.service, region,
                                                      st.planned_ms))
        shipments += len(plan.shipments)
        split += len(plan.shipments) > 1
        est_late += plan.est_ms > st.order.promised_by
        if arrived <= st.order.promised_by:
            on_time += 1
        else:
            late += 1
    busiest = np.max(list(per_day.values()), axis=0) if per_day else np.zeros(n_nodes)
    util = busiest / np.maximum(network.node_capacity, 1.0)
    return Metrics(
        policy=result.policy, orders=orders, routed=routed, cost=round(cost, 2),
        on_time=on_time, late=late, est_late=est_late, split=split, shipments=shipments,
        units_unroutable=unroutable, km=km, co2e_kg=co2e_kg,
        util_max=float(util.max()) if n_nodes else 0.0,
        util_sd=float(util.std()) if n_nodes else 0.0,
    )


def expected_late(result: ReplayResult, network: Network, truth: Truth,
                  only: Collection[str] | None = None) -> float:
    """How many of the result's routed orders are late *in expectation* over the lanes' true
    transit (``Truth.miss_probability``; a split order is late when any parcel is): the
    late count with every parcel's luck averaged out, comparable with the expected bound of
    ``solve_hindsight(..., truth=, expected=True)``."""
    total = 0.0
    for oid, st in result.orders.items():
        if st.cancelled or st.plan is None or (only is not None and oid not in only):
            continue
        where = network.locate(st.order.destination)
        assert where is not None  # a routed order's destination was located by the planner
        on_time = 1.0
        for sh in st.plan.shipments:
            on_time *= 1.0 - truth.miss_probability(sh.node, sh.service, where[2],
                                                    st.planned_ms, st.order.promised_by)
        total += 1.0 - on_time
    return total
