"""The offline replay decides what the engine's routing step decides (real Redis, no Kafka).

The production `Router` routes one batch of simulated orders against scarce stock in a real
redis-server (reads, batch allocation, reservations, re-plans of orders the batch exhausted);
the replay routes the same events at the same instant (`decided_at`) against its ledger mirror.
Every decision must match: status, reason, nodes, carriers, services, lines, estimate, cost.
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from dataflows.connectors import RawMessage
from dataflows.router import MAX_RACE_ROUNDS, Router
from fulfil.config import Config
from fulfil.sim.catalogue import load_catalogue
from fulfil.sim.scenario import Scenario
from fulfil.sim.workload import Workload, stamp
from operators.eval.policies import make_policy
from operators.eval.replay import MAX_ROUNDS, replay
from operators.network import load_default
from state.ledger import InventoryUpdate, Ledger
from state.redis_client import connect


def _shipments(decision: dict) -> list[tuple]:
    return [(s["node_id"], s["carrier"], s["service"], tuple(ln["line_id"] for ln in s["lines"]),
             s["estimated_delivery"], s["cost"]) for s in decision["shipments"]]


def test_the_replay_takes_the_decisions_the_router_takes(redis_url) -> None:
    assert MAX_ROUNDS == MAX_RACE_ROUNDS  # re-plans of exhausted orders: as many rounds
    net = load_default()
    now = int(time.time() * 1000)
    sc = Scenario.steady(200.0, 1.0, seed=9, sku_count=40, invalid_rate=0.0, cancel_rate=0.0,
                         address_change_rate=0.0, lines=(0.4, 0.4, 0.2))
    wl = Workload(net, load_catalogue(40, 9, zipf_s=1.1), sc, start_ms=now)
    orders = [orjson.loads(stamp(e.value, now)) for e in wl.events_at(0.0, 1.0)
              if e.tag == "order.created"]
    skus = sorted({ln["sku"] for o in orders for ln in o["lines"]})
    rng = np.random.default_rng(2)  # a few units at a few nodes: splits, races, stock-outs
    stock = [(n.id, s, int(rng.integers(1, 4))) for n in net.nodes for s in skus
             if rng.random() < 0.12]
    client = connect(redis_url)
    Ledger(client).apply_inventory([InventoryUpdate(n, s, 1, "snapshot", q) for n, s, q in stock])
    router = Router(Config(redis_url=redis_url), net, client)
    out = router.route([RawMessage("fulfil.orders", 0, i, o["order_id"].encode(),
                                   orjson.dumps(o), now, now) for i, o in enumerate(orders)])
    engine = {d["order_id"]: d for d in (orjson.loads(m.value) for _, m in out
                                         if m.topic == "fulfil.decisions")}
    decided = {d["timings"]["decided_at"] for d in engine.values()}
    assert len(engine) == len(orders) and len(decided) == 1
    at = decided.pop()
    # the same events, all stamped one millisecond before the router's instant
    events = [{"type": "inventory.snapshot", "event_id": f"i{k}", "node_id": n, "sku": s,
               "version": 1, "on_hand": q, "occurred_at": at - 1}
              for k, (n, s, q) in enumerate(stock)]
    events += [{**o, "occurred_at": at - 1} for o in orders]
    res = replay(events, make_policy("fulfil", net, Config()), batch_ms=1, batch_size=1000)
    kinds = {"routed": 0, "split": 0, "unroutable": 0}
    for oid, d in engine.items():
        st = res.orders[oid]
        if d["status"] == "unroutable":
            kinds["unroutable"] += 1
            assert st.plan is None and st.reason in d["reasons"], oid
            continue
        kinds["routed"] += 1
        kinds["split"] += len(d["shipments"]) > 1
        ours = [(net.nodes[s.node].id, net.services[s.service].carrier,
                 net.services[s.service].service,
                 tuple(st.order.lines[i].line_id for i in s.lines), s.est_ms, round(s.cost, 2))
                for s in st.plan.shipments]
        assert ours == _shipments(d), oid
    assert kinds["routed"] and kinds["split"] and kinds["unroutable"]  # every path was taken
