"""The replay: ledger rules, order life cycle, identical inputs and truth for every policy."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from fulfil.config import Config
from fulfil.eval_source import load_stream, write_jsonl
from fulfil.sim.scenario import CarrierOutage, LaneDelay, Scenario
from operators.eval.ledger import LedgerMirror
from operators.eval.metrics import measure
from operators.eval.policies import POLICY_NAMES, make_policy
from operators.eval.replay import replay
from operators.eval.truth import Truth, disruptions_from_events
from operators.network import load_default

from .conftest import NOW, inventory, order, tiny_network


def test_ledger_mirror_follows_the_ledger_rules() -> None:
    led = LedgerMirror(["N1", "N2"])
    assert led.apply_inventory("N1", "A", 2, True, 5) == "applied"
    assert led.apply_inventory("N1", "A", 2, True, 9) == "stale"  # same version: once only
    assert led.apply_inventory("N1", "A", 3, False, -7) == "clamped"  # 5 - 7 -> 0
    assert led.apply_inventory("N1", "A", 4, False, 4) == "applied"
    assert led.apply_inventory("N9", "A", 1, True, 4) == "unknown-node"
    led.apply_inventory("N2", "A", 1, True, 1)
    # all or nothing across nodes: N2 has 1 A, the order wants 2 there
    assert not led.reserve("o1", {0: [("A", 1)], 1: [("A", 2)]}, day=10)
    assert led.reserved("N1", "A") == 0 and led.load(10).tolist() == [0, 0]
    assert led.reserve("o1", {0: [("A", 1), ("A", 2)], 1: [("A", 1)]}, day=10)
    atp, load = led.availability(["A", "B"], 10)
    assert atp.tolist() == [[1, 0], [0, 0]] and load.tolist() == [1, 1]
    assert not led.reserve("o1", {0: [("A", 1)]}, day=10)  # one record per order
    assert led.holds("o1") == {"N1": [("A", 3)], "N2": [("A", 1)]}
    # a count below what is reserved: ATP reads 0, never negative
    led.apply_inventory("N1", "A", 5, True, 2)
    assert led.availability(["A"], 10)[0].tolist() == [[0], [0]]
    # release gives the load back to the day it was counted on, whatever day it is now
    assert led.release("o1") == 2
    assert led.load(10).tolist() == [0, 0] and led.reserved("N1", "A") == 0
    assert led.reserve("o2", {0: [("A", 2)]}, day=11)
    assert led.ship("o2", "N1") and led.on_hand("N1", "A") == 0
    assert led.load(11).tolist() == [1, 0]  # the parcel did leave that day


def test_cancel_releases_stock_and_an_address_change_reroutes_as_a_new_version() -> None:
    net = tiny_network()
    events = [
        inventory("N1", "A", 1), inventory("N2", "A", 1),
        order("o1", [("A", 1, 1000)]),
        {"type": "order.cancelled", "event_id": "o1/x", "order_id": "o1",
         "occurred_at": NOW + 2000},
        order("o2", [("A", 1, 1000)], at=NOW + 4000),  # gets N1 back
        {"type": "order.address_changed", "event_id": "o2/a", "order_id": "o2",
         "destination": {"lat": 0.0, "lng": 10.0, "region": "BB"}, "occurred_at": NOW + 6000},
        {"type": "order.cancelled", "event_id": "o9/x", "order_id": "o9",
         "occurred_at": NOW + 7000},
    ]
    res = replay(events, make_policy("nearest", net, Config()), batch_ms=1000)
    o1, o2 = res.orders["o1"], res.orders["o2"]
    assert o1.cancelled and o1.version == 2
    assert o2.version == 2 and o2.planned_ms == NOW + 7000
    assert [net.nodes[s.node].id for s in o2.plan.shipments] == ["N2"]  # nearer to BB
    assert res.unknown_order_events == 1


def test_orders_of_one_batch_never_take_the_same_unit() -> None:
    net = tiny_network()
    events = [inventory("N1", "A", 1), inventory("N2", "A", 1), inventory("N3", "A", 1),
              *(order(f"o{i}", [("A", 1, 1000)], at=NOW + i) for i in range(4))]
    res = replay(events, make_policy("nearest", net, Config()), batch_ms=1000)
    nodes = [net.nodes[st.plan.shipments[0].node].id if st.plan else st.reason
             for st in res.orders.values()]
    assert nodes == ["N1", "N2", "N3", "no-stock"]


@pytest.fixture(scope="module")
def sim_stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A short scenario on the real Olist network, with an outage and a delay."""
    sc = Scenario.steady(8.0, 30.0, seed=4, sku_count=200, cancel_rate=0.05,
                         address_change_rate=0.05, invalid_rate=0.01, disruptions=(
                             CarrierOutage("correios", "SP", start_s=5.0, end_s=20.0),
                             LaneDelay("jadlog", "RJ", 36.0, start_s=0.0)))
    path = tmp_path_factory.mktemp("scen") / "small.json"
    path.write_bytes(orjson.dumps(sc.to_dict()))
    return path, load_stream(str(path), load_default()).events


def test_every_policy_sees_the_same_events_and_the_same_truth(sim_stream) -> None:
    path, events = sim_stream
    net = load_default()
    again = load_stream(str(path), net).events
    assert again == events  # a seed fixes the stream
    before = copy.deepcopy(events)
    truth = Truth(net, disruptions_from_events(events), seed=4)
    same = Truth(net, disruptions_from_events(events), seed=4)
    other = Truth(net, disruptions_from_events(events), seed=5)
    results = {p: replay(events, make_policy(p, net, Config(), 5.0)) for p in POLICY_NAMES}
    assert events == before  # nobody changed the inputs
    compared = differed = 0
    for oid, st in results["fulfil"].orders.items():
        if st.plan is None:
            continue
        sh = st.plan.shipments[0]
        region = net.locate(st.order.destination)[2]
        t = truth.delivered_ms(oid, sh.node, sh.service, region, st.planned_ms)
        assert t == same.delivered_ms(oid, sh.node, sh.service, region, st.planned_ms)
        differed += t != other.delivered_ms(oid, sh.node, sh.service, region, st.planned_ms)
        for p, res in results.items():  # a policy that chose the same parcel gets the same day
            twin = res.orders[oid]
            if twin.plan is not None and twin.plan.shipments == st.plan.shipments:
                compared += p != "fulfil"
                assert twin.planned_ms == st.planned_ms
    assert compared > 0 and differed > 0
    assert truth.disruptions and any(d.outage for d in truth.disruptions)


def test_a_recorded_stream_replays_like_the_scenario(sim_stream, tmp_path: Path) -> None:
    path, events = sim_stream
    net = load_default()
    rec = tmp_path / "small.jsonl"
    stream = load_stream(str(path), net)
    assert stream.invalid > 0  # the simulator's broken orders are left out
    write_jsonl(stream, rec)
    with rec.open("ab") as fh:  # a broken line in a recording is counted, not replayed
        fh.write(b'{"type": "order.created", "order_id": "x"}\n')
    recorded = load_stream(str(rec), net)
    assert recorded.invalid == 1 and len(recorded.events) == len(events)
    truth = Truth(net, disruptions_from_events(events), seed=4)
    for p in ("fulfil", "nearest"):
        a = measure(replay(events, make_policy(p, net, Config())), net, truth)
        b = measure(replay(recorded.events, make_policy(p, net, Config())), net, truth)
        assert a == b


def test_a_lane_outage_is_respected_by_every_policy(sim_stream) -> None:
    _, events = sim_stream
    net = load_default()
    sp, correios = net.region_index["SP"], {i for i, s in enumerate(net.services)
                                             if s.carrier == "correios"}
    start, end = events[0]["occurred_at"] + 5000, events[0]["occurred_at"] + 20000
    for p in ("fulfil", "nearest", "fewest-splits"):
        res = replay(events, make_policy(p, net, Config()))
        for st in res.orders.values():
            if st.plan is None or not start + 1000 <= st.planned_ms < end:
                continue
            if net.locate(st.order.destination)[2] == sp:
                assert not {s.service for s in st.plan.shipments} & correios, p
