"""The workload generators: deterministic, realistic in shape, and valid exactly where intended.

Pure tests (no broker): they read the shipped network and, when present, the shared Olist data.
"""

from __future__ import annotations

import collections
import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from fulfil.sim.catalogue import Catalogue, initial_inventory, load_catalogue, stock_plan
from fulfil.sim.scenario import (
    INVALID_KINDS,
    CarrierOutage,
    LaneDelay,
    Scenario,
    ScenarioError,
    StockOut,
    Surge,
)
from fulfil.sim.workload import OCCURRED_AT_TAIL, SimEvent, Workload, invalid_tag, stamp
from operators.network import Network, load_default
from schemas.errors import ValidationError
from schemas.topics import TopicName, key_for
from schemas.validation import decode_and_validate, validate

KIND = {
    TopicName.ORDERS: "order_event",
    TopicName.INVENTORY: "inventory_event",
    TopicName.CARRIER_STATUS: "carrier_event",
}
NOW_MS = 1_795_556_252_000


@pytest.fixture(scope="module")
def network() -> Network:
    return load_default()


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(2_000, seed=7)


def run(workload: Workload, window_s: float = 0.01) -> list[SimEvent]:
    """Everything the workload emits, window by window like the publisher asks for it."""
    out: list[SimEvent] = []
    t = 0.0
    while not workload.done:
        t1 = min(t + window_s, workload.scenario.duration_s)
        out += workload.events_at(t, t1)
        t = t1
    return out


def decoded(events: list[SimEvent], tag: str | None = None) -> list[dict[str, Any]]:
    return [orjson.loads(stamp(e.value, NOW_MS)) for e in events if tag is None or e.tag == tag]


@pytest.fixture(scope="module")
def stream(network: Network, catalogue: Catalogue) -> list[SimEvent]:
    """20,000 orders of the default mix (1 s at 20k/s)."""
    return run(Workload(network, catalogue, Scenario.steady(20_000, 1.0, seed=11)))


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_stream_however_the_windows_are_cut(network, catalogue):
    scenario = Scenario.demo(duration_s=6.0, rate=3_000)
    a = run(Workload(network, catalogue, scenario), window_s=0.01)
    b = run(Workload(network, catalogue, scenario), window_s=0.37)
    assert len(a) > 5_000  # (night time on the demo's clock: a slow start)
    assert a == b


def test_different_seed_gives_a_different_stream(network, catalogue):
    a = run(Workload(network, catalogue, Scenario.steady(2_000, 1.0, seed=1)))
    b = run(Workload(network, catalogue, Scenario.steady(2_000, 1.0, seed=2)))
    assert [e.value for e in a[:100]] != [e.value for e in b[:100]]
    assert {e.key for e in a}.isdisjoint({e.key for e in b if e.topic == TopicName.ORDERS})


def test_events_at_refuses_windows_that_skip_or_repeat_time(network, catalogue):
    w = Workload(network, catalogue, Scenario.steady(100, 1.0))
    w.events_at(0.0, 0.1)
    with pytest.raises(ValueError, match="contiguous"):
        w.events_at(0.2, 0.3)


def test_order_and_event_ids_are_unique(stream):
    ids = [e["event_id"] for e in decoded([e for e in stream if not e.tag.startswith("invalid")])]
    assert len(ids) == len(set(ids))
    created = [e.key for e in stream if e.tag == "order.created" or e.tag.startswith("invalid")]
    assert len(created) == len(set(created)) == 20_000


# ---------------------------------------------------------------- validity


def test_every_valid_event_passes_its_schema_and_is_keyed_per_the_registry(stream):
    tags = collections.Counter()
    for e in stream:
        if e.tag.startswith("invalid:"):
            continue
        assert e.value.endswith(OCCURRED_AT_TAIL)
        event = decode_and_validate(KIND[e.topic], stamp(e.value, NOW_MS))
        assert event["occurred_at"] == NOW_MS
        assert e.key == key_for(e.topic, event)
        assert e.tag == event["type"]
        tags[e.topic] += 1
    assert tags[TopicName.ORDERS] > 19_900 and tags[TopicName.CARRIER_STATUS] > 0


def test_invalid_orders_fail_decoding_or_the_schema_each_kind_near_its_rate(network, catalogue,
                                                                              stream):  # fmt: skip
    def failures(events: list[SimEvent]) -> collections.Counter:
        seen: collections.Counter = collections.Counter()
        for e in events:
            if not e.tag.startswith("invalid:"):
                continue
            with pytest.raises(ValidationError) as info:
                decode_and_validate("order_event", stamp(e.value, NOW_MS))
            undecodable = e.tag in ("invalid:malformed-json", "invalid:non-utf8")
            expected = "decode" if undecodable else "schema"
            assert info.value.code == expected, (e.tag, info.value)
            seen[e.tag] += 1
        return seen

    # Default rate (0.2 %) over 20k orders: ~40 in all, ~8 per kind.
    seen = failures(stream)
    assert 20 <= sum(seen.values()) <= 65
    assert set(seen) == {invalid_tag(k) for k in INVALID_KINDS}
    # A higher rate pins each kind's share: 5 % of 20k = 1,000, ~200 per kind.
    hot = run(Workload(network, catalogue, Scenario.steady(20_000, 1.0, seed=3, invalid_rate=0.05)))
    seen = failures(hot)
    assert abs(sum(seen.values()) - 1_000) < 100
    for kind in INVALID_KINDS:
        assert abs(seen[invalid_tag(kind)] - 200) < 50, (kind, seen)


# ---------------------------------------------------------------- realism


def test_lines_channels_and_tiers_follow_the_configured_mix(stream):
    orders = decoded(stream, "order.created")
    n = len(orders)
    lines = collections.Counter(len(o["lines"]) for o in orders)
    for k, p in enumerate(Scenario().lines, start=1):
        assert abs(lines[k] / n - p) < 0.015, (k, lines)
    channels = collections.Counter(o["channel"] for o in orders)
    for c, p in Scenario().channel_mix:
        assert abs(channels[c] / n - p) < 0.015, (c, channels)
    tiers = collections.Counter(o["customer"]["tier"] for o in orders)
    for t, p in Scenario().tier_mix:
        assert abs(tiers[t] / n - p) < 0.015, (t, tiers)
    for o in orders:  # no sku twice in one order: line ids and skus are distinct
        assert len({ln["sku"] for ln in o["lines"]}) == len(o["lines"])


def test_popularity_is_skewed_top_tenth_of_skus_takes_over_40_percent_of_lines(stream, catalogue):
    per_sku = collections.Counter(ln["sku"] for o in decoded(stream, "order.created")
                                  for ln in o["lines"])  # fmt: skip
    top = set(catalogue.skus[: len(catalogue) // 10])
    share = sum(n for sku, n in per_sku.items() if sku in top) / sum(per_sku.values())
    assert share > 0.40
    assert per_sku.most_common(1)[0][0] == catalogue.skus[0]


def test_every_destination_resolves_to_the_region_it_was_drawn_from(stream, network):
    orders = decoded(stream, "order.created")
    regions = collections.Counter()
    with_coords = 0
    for o in orders:
        dest = o["destination"]
        assert "region" not in dest and len(dest["postal_code"]) == 5
        prefix = network.postal_prefixes[dest["postal_code"][:3]]  # a real prefix...
        r = network.locate(dest)[2]
        assert r == prefix[2]  # ...resolving to that prefix's region
        if "lat" in dest:
            with_coords += 1
            assert abs(dest["lat"] - prefix[0]) <= 0.05 + 1e-9
            assert abs(dest["lng"] - prefix[1]) <= 0.05 + 1e-9
        regions[r] += 1
    assert abs(with_coords / len(orders) - 0.7) < 0.02
    # Regions are drawn by demand: compare with the network's shares.
    for i, share in enumerate(network.region_demand):
        assert abs(regions[i] / len(orders) - share) < 4 * math.sqrt(share / len(orders)) + 0.002


def test_promised_by_is_the_sla_rounded_up_to_18h_local(network, catalogue):
    scenario = Scenario.steady(2_000, 0.5, seed=5)
    w = Workload(network, catalogue, scenario, start_ms=NOW_MS)
    sla = {"standard": 5, "silver": 4, "gold": 3, "vip": 2}
    for o in decoded(run(w), "order.created"):
        days = sla[o["customer"]["tier"]] + (7 if o["channel"] == "crossborder" else 0)
        local = o["promised_by"] - 3 * 3_600_000  # UTC-3
        assert local % 86_400_000 == 18 * 3_600_000
        earliest = NOW_MS + days * 86_400_000
        assert earliest <= o["promised_by"] < earliest + 86_400_000 + 500


def test_cancels_and_address_changes_refer_to_earlier_orders(network, catalogue):
    stream = run(Workload(network, catalogue, Scenario.steady(2_000, 40.0, seed=4)), 0.1)
    seen: set[str] = set()
    follow = collections.Counter()
    for e in stream:
        if e.topic != TopicName.ORDERS or e.tag.startswith("invalid:"):
            continue
        event = orjson.loads(stamp(e.value, NOW_MS))
        if e.tag == "order.created":
            seen.add(event["order_id"])
        else:
            assert event["order_id"] in seen, event
            follow[e.tag] += 1
            if e.tag == "order.address_changed":
                validate("order_event", event)
    # Cancels come 1-20 s after their order, address changes 0.5-10 s: those due after the end
    # of the 40 s run are never sent, so about 75 % and 87 % of the configured rates land.
    assert abs(follow["order.cancelled"] / (0.02 * 80_000 * 0.75) - 1) < 0.15, follow
    assert abs(follow["order.address_changed"] / (0.01 * 80_000 * 0.87) - 1) < 0.15, follow


def test_offered_rate_is_exact_and_a_surge_lifts_its_channel(network, catalogue):
    flat = Workload(network, catalogue, Scenario.steady(5_000, 2.0))
    assert flat.total_orders == 10_000
    assert flat.expected_orders(0.5, 1.5) == 5_000
    surge = Scenario.steady(5_000, 2.0, disruptions=(Surge(3.0, "live", start_s=1.0, end_s=2.0),))
    w = Workload(network, catalogue, surge)
    # live is 15 % of 5,000/s; tripled, the second is 5,000 * (0.85 + 0.45) = 6,500 orders.
    assert w.expected_orders(1.0, 2.0) == 6_500
    first, second = w.events_at(0.0, 1.0), w.events_at(1.0, 2.0)
    assert sum(e.topic == TopicName.ORDERS and e.tag != "order.cancelled"
               and e.tag != "order.address_changed" for e in second) == 6_500  # fmt: skip
    parts = (decoded(first, "order.created"), decoded(second, "order.created"))
    live = [sum(o["channel"] == "live" for o in part) / len(part) for part in parts]
    assert abs(live[0] - 0.15) < 0.02 and abs(live[1] - 0.45 / 1.3) < 0.03


# ---------------------------------------------------------------- scripted disruptions


def _window_events(workload: Workload) -> list[tuple[float, dict]]:
    """(window start, decoded event) for non-order events, in 10 ms windows on an exact grid
    (k / 100, not a running sum), so an event scripted at 3.0 s reads exactly 3.0."""
    out = []
    for k in range(round(workload.scenario.duration_s * 100)):
        t0, t1 = k / 100, (k + 1) / 100
        for e in workload.events_at(t0, t1):
            if e.topic != TopicName.ORDERS:
                out.append((t0, orjson.loads(stamp(e.value, NOW_MS))))
    return out


def test_scripted_outage_sends_outage_at_its_start_and_normal_at_its_end(network, catalogue):
    scenario = Scenario.steady(200, 12.0, disruptions=(
        CarrierOutage("correios", "RJ", start_s=3.0, end_s=7.0),
        LaneDelay("jadlog", "BA", delay_hours=18, start_s=4.0, end_s=6.0),
    ))  # fmt: skip
    w = Workload(network, catalogue, scenario, start_ms=NOW_MS)
    lanes = [(t, e) for t, e in _window_events(w) if e["type"] == "lane.status"]
    scripted = [(t, e["carrier"], e["status"]) for t, e in lanes if "dest_region" in e]
    assert scripted == [
        (3.0, "correios", "outage"), (4.0, "jadlog", "delayed"),
        (6.0, "jadlog", "normal"), (7.0, "correios", "normal"),
    ]  # fmt: skip
    outage = next(e for _, e in lanes if e["status"] == "outage")
    assert outage["dest_region"] == "RJ" and outage["capacity_factor"] == 0.0
    assert outage["valid_until"] == NOW_MS + 7_000
    delayed = next(e for _, e in lanes if e["status"] == "delayed")
    assert delayed["delay_hours"] == 18
    # Heartbeats: every carrier reports "normal" (all lanes) every 5 s.
    beats = collections.Counter(t for t, e in lanes if "dest_region" not in e)
    carriers = len({s.carrier for s in network.services})
    assert beats == {0.0: carriers, 5.0: carriers, 10.0: carriers}
    truth = w.ground_truth()
    assert truth[0]["kind"] == "carrier_outage"
    assert (truth[0]["start_ms"], truth[0]["end_ms"]) == (NOW_MS + 3_000, NOW_MS + 7_000)


def test_stock_out_zeroes_the_top_sku_at_the_nearest_warehouses_and_restores_it(network, catalogue):
    scenario = Scenario.steady(200, 8.0, disruptions=(
        StockOut(sku_rank=1, nodes="nearest:SP:3", start_s=2.0, end_s=6.0),
    ))  # fmt: skip
    w = Workload(network, catalogue, scenario)
    inv = [(t, e) for t, e in _window_events(w) if e["type"].startswith("inventory")]
    snaps = [(t, e) for t, e in inv if e["type"] == "inventory.snapshot"]
    truth = w.ground_truth()[0]
    assert truth["sku"] == catalogue.skus[0] and len(truth["node_ids"]) == 3
    assert {network.nodes[network.node_index[n]].kind for n in truth["node_ids"]} == {"warehouse"}
    assert [(t, e["node_id"], e["on_hand"]) for t, e in snaps if t == 2.0] == [
        (2.0, n, 0) for n in truth["node_ids"]
    ]
    restored = {e["node_id"]: e["on_hand"] for t, e in snaps if t == 6.0}
    assert set(restored) == set(truth["node_ids"]) and min(restored.values()) > 0
    # Versions only ever grow per node+sku, and no receipt refills a stocked-out pair.
    last: dict[tuple[str, str], int] = {}
    for t, e in inv:
        pair = (e["node_id"], e["sku"])
        assert e["version"] > last.get(pair, 1)
        last[pair] = e["version"]
        if e["type"] == "inventory.adjusted":
            assert e["delta"] > 0
            assert not (2.0 <= t < 6.0 and e["sku"] == truth["sku"]
                        and e["node_id"] in truth["node_ids"])  # fmt: skip


def test_initial_inventory_covers_warehouses_all_skus_and_stores_the_top_30_percent(
    network, catalogue
):
    scenario = Scenario.demo()
    events = list(initial_inventory(network, catalogue, scenario, at_ms=NOW_MS))
    by_node = collections.defaultdict(set)
    for e in events:
        validate("inventory_event", e)
        assert e["version"] == 1 and e["on_hand"] >= scenario.min_on_hand
        by_node[e["node_id"]].add(e["sku"])
    top = set(catalogue.skus[: round(len(catalogue) * 0.3)])
    for node in network.nodes:
        expected = set(catalogue.skus) if node.kind == "warehouse" else top
        assert by_node[node.id] == expected, node.id
    # The #1 sku at one warehouse covers a good share of a minute's network-wide demand.
    plan = stock_plan(network, catalogue, scenario)
    demand = 2_000 * 60 * 1.51 * 1.25 * catalogue.popularity[0]
    assert plan[(next(i for i, n in enumerate(network.nodes) if n.kind == "warehouse"), 0)] > (
        0.4 * demand
    )


# ---------------------------------------------------------------- scenario and catalogue


def test_scenario_round_trips_through_a_dict_and_rejects_unknown_fields():
    demo = Scenario.demo()
    again = Scenario.from_dict(orjson.loads(orjson.dumps(demo.to_dict())))
    assert again == demo
    assert [type(d) for d in again.disruptions] == [CarrierOutage, StockOut, Surge]
    with pytest.raises(ScenarioError, match="unknown field"):
        Scenario.from_dict({"rate": 10, "speed": 2})
    with pytest.raises(ScenarioError, match="cancel_rate"):
        Scenario(cancel_rate=1.5)


def test_demo_day_averages_its_rate_and_peaks_late_morning_and_evening():
    demo = Scenario.demo()
    t = np.linspace(0, 60, 6001)
    m = demo.rhythm_at(t)
    assert abs(m[:-1].mean() - 1.0) < 0.01
    hour = (t * demo.time_scale / 3600) % 24  # the demo starts at local midnight
    assert m[(hour > 2) & (hour < 5)].max() < 0.3
    assert 10 <= hour[np.argmax(np.where(hour < 16, m, 0))] <= 12
    assert 20 <= hour[np.argmax(np.where(hour > 16, m, 0))] <= 22


def test_catalogue_reads_real_olist_products(shared_dir: Path):
    cat = load_catalogue(500, seed=3, shared_dir=shared_dir)
    assert cat.source == "olist" and len(cat) == 500
    assert all(len(s) == 32 for s in cat.skus)  # Olist product ids are 32 hex digits
    assert min(cat.weight_g) >= 0
    with open(shared_dir / "data/olist/product_category_name_translation.csv",
              encoding="utf-8-sig") as fh:  # fmt: skip
        english = {row["product_category_name_english"] for row in csv.DictReader(fh)}
    named = [c for c in cat.categories if c != "unknown"]
    assert sum(c in english for c in named) / len(named) > 0.95
    assert abs(cat.popularity.sum() - 1) < 1e-9 and np.all(np.diff(cat.popularity) <= 0)
    assert load_catalogue(500, seed=3, shared_dir=shared_dir).skus == cat.skus


def test_catalogue_falls_back_to_synthetic_without_the_shared_data(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        cat = load_catalogue(100, seed=1, shared_dir=tmp_path)
    assert cat.source == "synthetic" and len(cat) == 100
    assert "synthetic" in caplog.text
    assert cat.popularity[0] > cat.popularity[-1] and min(cat.weight_g) > 0
