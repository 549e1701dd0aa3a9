"""The workload simulator: seeded orders, inventory and carrier events for demos and benchmarks.

    >>> from fulfil.sim import Scenario, publish
    >>> stats = publish("127.0.0.1:9092", Scenario.demo())      # doctest: +SKIP

`scenario` holds the recipe, `catalogue` the real Olist SKUs, `workload` the pure generators
(no Kafka), `publisher` the paced producer. Kafka is imported only by `publisher`, lazily here, so
generating events for a unit test or a benchmark needs no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulfil.sim.catalogue import Catalogue, initial_inventory, load_catalogue
from fulfil.sim.scenario import CarrierOutage, LaneDelay, Scenario, StockOut, Surge
from fulfil.sim.workload import SimEvent, Workload, stamp

if TYPE_CHECKING:
    from fulfil.sim.publisher import PublishStats, publish, publish_events

__all__ = [
    "CarrierOutage",
    "Catalogue",
    "LaneDelay",
    "PublishStats",
    "Scenario",
    "SimEvent",
    "StockOut",
    "Surge",
    "Workload",
    "initial_inventory",
    "load_catalogue",
    "publish",
    "publish_events",
    "stamp",
]


def __getattr__(name: str) -> Any:
    if name in ("publish", "publish_events", "PublishStats"):
        from fulfil.sim import publisher

        return getattr(publisher, name)
    raise AttributeError(f"module 'fulfil.sim' has no attribute {name!r}")
