"""Candidate generation on a tiny hand-built network: 3 nodes, 2 regions, 2 services.

Given/when/then in each test's name: the network is built by `network_factory`, orders by
`batch_factory` (which also lays out ATP for the batch's skus), and the assertions read the
`CandidateSet` through its public arrays.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import candidate_kernel
from operators.candidates import (
    BatchInput,
    CandidateParams,
    CandidateSet,
    LaneArrays,
    NetworkArrays,
    build_candidates,
    haversine_km,
    pack_batch,
)
from operators.scoring import N_FEATURES, Feature

HOUR = 3_600_000
DAY = 24 * HOUR
# 12:00 UTC = 09:00 local at UTC-3: before every node's cut-off.
NOW = int(datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp() * 1000)
SP, RJ = 0, 1  # regions
PAC, SEDEX = 0, 1  # services
# Nodes: 0 = Sao Paulo (region SP), 1 = Rio (RJ), 2 = Belo Horizonte (filed under RJ here).
NODE_LAT = [-23.55, -22.91, -19.92]
NODE_LNG = [-46.63, -43.17, -43.94]
DEST_SP = (-23.0, -46.0)  # near node 0


def _haversine(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Independent great-circle distance for hand computations."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def make_network(**overrides: Any) -> NetworkArrays:
    """The 3-node network; keyword arguments replace its arrays."""
    transit = np.empty((2, 2, 2))
    transit[SP, SP] = [2.0, 1.0]
    transit[SP, RJ] = [3.0, 1.5]
    transit[RJ, SP] = [3.0, np.nan]  # SEDEX does not cover RJ -> SP
    transit[RJ, RJ] = [1.0, 0.5]
    values: dict[str, Any] = {
        "node_lat": np.array(NODE_LAT),
        "node_lng": np.array(NODE_LNG),
        "node_region": np.array([SP, RJ, RJ]),
        "node_capacity": np.array([100.0, 100.0, 50.0]),
        "node_handling_cost": np.array([2.0, 3.0, 1.0]),
        "node_handling_hours": np.array([4.0, 2.0, 6.0]),
        "node_cutoff_hour": np.array([14.0, 16.0, 12.0]),
        "node_utc_offset": np.array([-3.0, -3.0, -3.0]),
        "lane_transit_mean": transit,
        "service_base_cost": np.array([10.0, 20.0]),
        "service_per_kg": np.array([2.0, 3.0]),
        "service_per_100km": np.array([1.0, 2.0]),
    }
    values.update(overrides)
    return NetworkArrays(**values)


Line = tuple[str, int, float]


def make_batch(
    orders: Sequence[Sequence[Line]],
    stock: Mapping[str, Sequence[int]],
    load: Sequence[int] = (0, 0, 0),
    dest: tuple[float, float, int] = (*DEST_SP, SP),
    promise_ms: int = NOW + DAY,
) -> BatchInput:
    """Orders to one destination; `stock` maps sku -> ATP of nodes 0, 1, 2."""
    packed, skus = pack_batch([(*dest, promise_ms, lines) for lines in orders])
    atp = np.array([stock.get(s, (0, 0, 0)) for s in skus], dtype=np.int64).T.copy()
    return packed.with_stock(atp.reshape(3, len(skus)), np.array(load, dtype=np.int64))


@pytest.fixture
def network_factory() -> Callable[..., NetworkArrays]:
    return make_network


@pytest.fixture
def batch_factory() -> Callable[..., BatchInput]:
    return make_batch


def _rows(cs: CandidateSet, order: int = 0) -> list[tuple[tuple[int, ...], int]]:
    """(assignment, service) of each candidate of one order."""
    return [
        (tuple(cs.assignment(m).tolist()), int(cs.service[m]))
        for m in range(cs.offsets[order], cs.offsets[order + 1])
    ]


def _build(batch: BatchInput, network: NetworkArrays, **kw: Any) -> CandidateSet:
    lanes = kw.pop("lanes", LaneArrays.healthy(2, 2))
    now = kw.pop("now_ms", NOW)
    return build_candidates(batch, network, lanes, now, CandidateParams(**kw))


# ---------------------------------------------------------------------- single-node candidates


def test_nodes_without_enough_stock_are_never_candidates(network_factory, batch_factory) -> None:
    batch = batch_factory([[("a", 2, 1.0)]], {"a": (10, 1, 0)})
    cs = _build(batch, network_factory())
    assert {a for a, _ in _rows(cs)} == {(0,)}


def test_uncovered_lanes_produce_no_candidate(network_factory, batch_factory) -> None:
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (0, 5, 0)})
    cs = _build(batch, network_factory())
    assert _rows(cs) == [((1,), PAC)]  # RJ -> SP has no SEDEX

    nan = np.full((2, 2, 2), np.nan)
    nan[SP, SP] = [1.0, 1.0]
    cs = _build(batch, network_factory(lane_transit_mean=nan))
    assert len(cs) == 0
    assert cs.offsets.tolist() == [0, 0]


def test_blocked_lane_masks_only_that_service(network_factory, batch_factory) -> None:
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (5, 0, 0)})
    blocked = np.zeros((2, 2, 2), dtype=bool)
    blocked[SP, SP, SEDEX] = True
    cs = _build(batch, network_factory(), lanes=LaneArrays(np.zeros((2, 2, 2)), blocked))
    assert dict(zip(cs.service.tolist(), cs.mask.tolist(), strict=True)) == {
        PAC: True,
        SEDEX: False,
    }


def test_over_capacity_node_is_masked_unless_capacity_is_not_enforced(
    network_factory, batch_factory
) -> None:
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (5, 0, 0)}, load=(100, 0, 0))
    cs = _build(batch, network_factory())
    assert len(cs) == 2 and not cs.mask.any()
    assert cs.X[0, Feature.LOAD] == pytest.approx(101 / 100)
    assert _build(batch, network_factory(), enforce_capacity=False).mask.all()


def test_feasible_nodes_rank_before_a_nearer_saturated_one(network_factory, batch_factory) -> None:
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (5, 5, 5)}, load=(100, 0, 0))
    cs = _build(batch, network_factory(), max_nodes=1)
    assert {a for a, _ in _rows(cs)} == {(1,)}  # node 0 is nearest but full
    assert cs.mask.all()


def test_max_nodes_keeps_the_nearest_filling_nodes(network_factory, batch_factory) -> None:
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (5, 5, 5)}, dest=(-20.0, -44.0, RJ))
    cs = _build(batch, network_factory(), max_nodes=2)
    assert [a for a, _ in _rows(cs)][::2] == [(2,), (1,)]  # BH, then Rio; both 2 services


def test_cut_off_moves_the_estimate_to_the_next_opening(network_factory, batch_factory) -> None:
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (5, 5, 0)})
    net = network_factory()
    before = _build(batch, net)  # 09:00 local: node 0 (cut-off 14) and node 1 (16) ship today
    later = NOW + 6 * HOUR  # 15:00 local: node 0 missed its cut-off, node 1 has not
    after = _build(batch, net, now_ms=later)
    by_node = {
        (a, s): (e0, e1)
        for (a, s), e0, e1 in zip(_rows(before), before.est_ms, after.est_ms, strict=True)
    }
    e0, e1 = by_node[((0,), PAC)]
    assert e0 == NOW + 4 * HOUR + 2 * DAY
    # next local midnight (9 h after 15:00) + 9 h opening + 4 h handling, then 2 days' transit
    assert e1 - e0 == (later - NOW) + 18 * HOUR
    e0, e1 = by_node[((1,), PAC)]
    assert e1 - e0 == later - NOW


def test_ready_time_follows_the_local_clock() -> None:
    # 16:00 UTC = 13:00 at UTC-3 (before a 14 h cut-off) but 17:00 at UTC+1 (after it).
    now = int(datetime(2026, 1, 15, 16, 0, tzinfo=UTC).timestamp() * 1000)
    assert candidate_kernel.ready_ms(now, -3.0, 14.0, 2.0) == now + 2 * HOUR
    assert candidate_kernel.ready_ms(now, 1.0, 14.0, 2.0) == pytest.approx(now + (7 + 9 + 2) * HOUR)


def test_features_equal_hand_computed_values(network_factory, batch_factory) -> None:
    batch = batch_factory([[("a", 2, 1.5)]], {"a": (10, 0, 0)}, promise_ms=NOW + DAY)
    delay = np.zeros((2, 2, 2))
    delay[SP, SP, SEDEX] = 3.0
    cs = _build(batch, network_factory(), lanes=LaneArrays(delay, np.zeros((2, 2, 2), bool)))
    assert _rows(cs) == [((0,), PAC), ((0,), SEDEX)]
    km = _haversine(NODE_LAT[0], NODE_LNG[0], *DEST_SP)
    pac, sedex = cs.X
    assert pac[Feature.DISTANCE_KM] == pytest.approx(km)
    assert pac[Feature.COST] == pytest.approx(2.0 + 10.0 + 2.0 * 1.5 + 1.0 * km / 100)
    assert pac[Feature.LATE_HOURS] == pytest.approx(4 + 48 - 24)  # handling + 2 days - promise
    assert pac[Feature.TRANSIT_HOURS] == pytest.approx(52.0)
    assert pac[Feature.LOAD] == pytest.approx(0.01)
    assert pac[Feature.STOCK_COVER] == pytest.approx((10 - 2) / 2)
    assert pac[Feature.SPLITS] == 0 and pac[Feature.LANE_DELAY_HOURS] == 0
    assert sedex[Feature.COST] == pytest.approx(2.0 + 20.0 + 3.0 * 1.5 + 2.0 * km / 100)
    assert sedex[Feature.LANE_DELAY_HOURS] == 3.0
    assert sedex[Feature.LATE_HOURS] == pytest.approx(4 + 24 + 3 - 24)
    assert cs.est_ms.tolist() == [NOW + 52 * HOUR, NOW + 31 * HOUR]
    assert cs.X.shape[1] == N_FEATURES == candidate_kernel.N_FEATURES


def test_lines_of_one_sku_are_summed_for_fill_and_cover(network_factory, batch_factory) -> None:
    lines = [("a", 2, 1.0), ("a", 3, 1.0)]
    cs = _build(batch_factory([lines], {"a": (10, 4, 0)}), network_factory())
    assert {a for a, _ in _rows(cs)} == {(0, 0)}  # node 1 holds 4: each line fits, both do not
    assert cs.X[0, Feature.STOCK_COVER] == pytest.approx(min((10 - 5) / 2, (10 - 5) / 3))


def test_stock_cover_saturates_at_ten(network_factory, batch_factory) -> None:
    cs = _build(batch_factory([[("a", 1, 1.0)]], {"a": (500, 0, 0)}), network_factory())
    assert cs.X[0, Feature.STOCK_COVER] == 10.0


# ---------------------------------------------------------------------------- split candidates

# No node holds a, b and c; node 0 holds a+b, node 1 a+c, node 2 b+c.
SPLIT_STOCK = {"a": (5, 5, 0), "b": (5, 0, 5), "c": (0, 5, 5)}
ABC = [("a", 1, 1.0), ("b", 1, 1.0), ("c", 1, 1.0)]


def test_split_candidates_cover_every_line_once(network_factory, batch_factory) -> None:
    cs = _build(batch_factory([ABC], SPLIT_STOCK), network_factory())
    # Greedy: all three nodes take 2 lines; nearest (0) wins, c goes to nearer Rio. Variant 2
    # without node 0: Rio (a, c), then b from BH. RJ -> SP has only PAC.
    assert _rows(cs) == [((0, 0, 1), PAC), ((1, 2, 1), PAC)]
    assert cs.n_nodes.tolist() == [2, 2]
    assert cs.X[:, Feature.SPLITS].tolist() == [1.0, 1.0]
    assert cs.assign_offsets.tolist() == [0, 3, 6]
    assert cs.nodes(1) == [1, 2]


def test_split_cost_sums_shipments_and_estimate_is_the_latest(
    network_factory, batch_factory
) -> None:
    cs = _build(batch_factory([ABC], SPLIT_STOCK), network_factory())
    d0 = _haversine(NODE_LAT[0], NODE_LNG[0], *DEST_SP)
    d1 = _haversine(NODE_LAT[1], NODE_LNG[1], *DEST_SP)
    cost = (2.0 + 10.0 + 2.0 * 2.0 + d0 / 100) + (3.0 + 10.0 + 2.0 * 1.0 + d1 / 100)
    assert cs.X[0, Feature.COST] == pytest.approx(cost)
    assert cs.X[0, Feature.DISTANCE_KM] == pytest.approx(max(d0, d1))
    assert cs.est_ms[0] == max(NOW + 4 * HOUR + 2 * DAY, NOW + 2 * HOUR + 3 * DAY)


def test_no_split_when_a_single_node_can_fill(network_factory, batch_factory) -> None:
    stock = {**SPLIT_STOCK, "c": (5, 5, 5)}  # node 0 now holds everything
    cs = _build(batch_factory([ABC], stock), network_factory())
    assert set(cs.n_nodes.tolist()) == {1}
    with_splits = _build(batch_factory([ABC], stock), network_factory(), min_single_nodes=2)
    assert 2 in with_splits.n_nodes.tolist()


def test_split_respects_max_splits(network_factory, batch_factory) -> None:
    # Each node holds one sku only: three shipments needed.
    stock = {"a": (5, 0, 0), "b": (0, 5, 0), "c": (0, 0, 5)}
    assert len(_build(batch_factory([ABC], stock), network_factory(), max_splits=1)) == 0
    cs = _build(batch_factory([ABC], stock), network_factory(), max_splits=2)
    assert _rows(cs) == [((0, 1, 2), PAC)]
    assert len(_build(batch_factory([ABC], SPLIT_STOCK), network_factory(), max_splits=0)) == 0


# ------------------------------------------------------------------------------ properties


@st.composite
def random_batches(draw: st.DrawFn) -> tuple[list[list[Line]], dict[str, tuple], tuple, Any]:
    skus = ["a", "b", "c", "d"]
    n_orders = draw(st.integers(1, 6))
    orders = [
        draw(st.lists(st.tuples(st.sampled_from(skus), st.integers(1, 4), st.just(1.0)),
                      min_size=1, max_size=5))
        for _ in range(n_orders)
    ]  # fmt: skip
    stock = {s: tuple(draw(st.lists(st.integers(0, 6), min_size=3, max_size=3))) for s in skus}
    load = tuple(draw(st.lists(st.integers(0, 120), min_size=3, max_size=3)))
    params = CandidateParams(
        max_nodes=draw(st.integers(0, 3)),
        max_splits=draw(st.integers(0, 2)),
        min_single_nodes=draw(st.integers(0, 3)),
        enforce_capacity=draw(st.booleans()),
    )
    return orders, stock, load, params


@settings(max_examples=300, deadline=None)
@given(random_batches(), st.integers(0, 7))
def test_every_candidate_is_stock_feasible_and_well_formed(drawn: tuple, blocked_bits: int) -> None:
    orders, stock, load, params = drawn
    batch = make_batch(orders, stock, load=load)
    blocked = np.zeros((2, 2, 2), dtype=bool)
    blocked[:, SP, :] = [[bool(blocked_bits & 1), bool(blocked_bits & 2)], [blocked_bits > 3, 0]]
    lanes = LaneArrays(np.zeros((2, 2, 2)), blocked)
    cs = build_candidates(batch, make_network(), lanes, NOW, params)
    assert cs.offsets[0] == 0 and cs.offsets[-1] == len(cs)
    assert (np.diff(cs.offsets) <= (params.max_nodes + 2) * 2).all()
    for i, lines in enumerate(orders):
        for m in range(cs.offsets[i], cs.offsets[i + 1]):
            nodes = cs.assignment(m).tolist()
            assert len(nodes) == len(lines)  # every line assigned exactly once
            assert cs.n_nodes[m] == len(set(nodes)) <= params.max_splits + 1
            assert cs.X[m, Feature.SPLITS] == cs.n_nodes[m] - 1
            taken = Counter()
            for k, (sku, qty, _) in zip(nodes, lines, strict=True):
                taken[k, sku] += qty
            for (k, sku), qty in taken.items():
                assert qty <= stock[sku][k], (m, nodes, lines)
            over = params.enforce_capacity and any(load[k] + 1 > [100, 100, 50][k] for k in nodes)
            lane_down = any(blocked[[SP, RJ, RJ][k], SP, cs.service[m]] for k in nodes)
            assert cs.mask[m] == (not over and not lane_down)
            assert 0.0 <= cs.X[m, Feature.STOCK_COVER] <= 10.0


# ------------------------------------------------------------------------ packing and checks


def test_pack_batch_indexes_skus_in_first_seen_order() -> None:
    orders = [
        (-23.0, -46.0, 0, NOW, [("x", 1, 0.5), ("y", 2, 1.0)]),
        (-22.0, -43.0, 1, NOW, []),
        (-22.0, -43.0, 1, NOW, [("y", 1, 1.0), ("x", 3, 2.0)]),
    ]
    batch, skus = pack_batch(orders)
    assert skus == ["x", "y"]
    assert batch.line_sku.tolist() == [0, 1, 1, 0]
    assert batch.line_offsets.tolist() == [0, 2, 2, 4]
    assert batch.line_qty.tolist() == [1, 2, 1, 3]
    assert batch.n_orders == 3


def test_pack_batch_rejects_non_positive_quantities() -> None:
    with pytest.raises(ValueError, match=r"orders\[0\] line 1"):
        pack_batch([(0.0, 0.0, 0, NOW, [("x", 1, 0.5), ("y", 0, 1.0)])])


def test_orders_without_lines_get_no_candidates(network_factory, batch_factory) -> None:
    cs = _build(batch_factory([[], [("a", 1, 1.0)]], {"a": (5, 0, 0)}), network_factory())
    assert cs.offsets.tolist() == [0, 0, 2]


def test_bad_arrays_raise_value_error_naming_the_argument(network_factory, batch_factory) -> None:
    with pytest.raises(ValueError, match="'node_capacity'"):
        network_factory(node_capacity=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="'node_region'"):
        network_factory(node_region=np.array([0, 1, 2]))
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (5, 0, 0)})
    with pytest.raises(ValueError, match="'atp'"):
        batch.with_stock(batch.atp.astype(np.int32), batch.load)
    with pytest.raises(ValueError, match="'line_sku'"):
        batch.with_stock(np.zeros((3, 0), dtype=np.int64), batch.load)
    with pytest.raises(ValueError, match=r"'batch\.atp'"):
        build_candidates(
            batch.with_stock(np.zeros((2, 1), np.int64), np.zeros(2, np.int64)),
            network_factory(), LaneArrays.healthy(2, 2), NOW,
        )  # fmt: skip
    with pytest.raises(ValueError, match="'lanes'"):
        build_candidates(batch, network_factory(), LaneArrays.healthy(3, 2), NOW)
    with pytest.raises(ValueError, match="max_splits"):
        CandidateParams(max_splits=-1)


def test_checked_arrays_are_frozen_after_construction(network_factory, batch_factory) -> None:
    net = network_factory()
    with pytest.raises(ValueError, match="read-only"):
        net.node_capacity[0] = 1.0
    batch = batch_factory([[("a", 1, 1.0)]], {"a": (5, 0, 0)})
    with pytest.raises(ValueError, match="read-only"):
        batch.atp[0, 0] = 0


def test_compiled_haversine_matches_the_textbook_formula() -> None:
    got = haversine_km(NODE_LAT[0], NODE_LNG[0], NODE_LAT[1], NODE_LNG[1])
    assert got == pytest.approx(_haversine(NODE_LAT[0], NODE_LNG[0], NODE_LAT[1], NODE_LNG[1]))
    assert 350 < got < 365  # Sao Paulo - Rio de Janeiro
