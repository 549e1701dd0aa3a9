"""Batch allocation: orders of one batch never compete for the same units or capacity."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.allocation import allocate
from operators.candidates import CandidateParams, LaneArrays, build_candidates
from operators.scoring import Weights, score_batch

from .test_candidates import NOW, make_batch, make_network

W = Weights().as_array()


def _plan(orders, stock, load=(0, 0, 0), capacity=(100.0, 100.0, 50.0), enforce=True):
    net = make_network(node_capacity=np.array(capacity))
    batch = make_batch(orders, stock, load=load)
    cands = build_candidates(batch, net, LaneArrays.healthy(2, 2), NOW,
                             CandidateParams(enforce_capacity=enforce))
    scores, best, _ = score_batch(cands.X, cands.offsets, cands.mask, W)
    return batch, cands, best, allocate(batch, cands, scores, net.node_capacity, enforce)


def test_orders_for_one_sku_spread_over_the_nodes_that_hold_it() -> None:
    _, cands, best, chosen = _plan([[("a", 2, 1.0)]] * 3, {"a": (2, 2, 2)})
    wanted = {int(cands.assignment(b)[0]) for b in best.tolist()}
    assert len(wanted) == 1  # scored alone, all three want the same node
    nodes = [int(cands.assignment(c)[0]) for c in chosen]
    assert sorted(nodes) == [0, 1, 2]


def test_an_order_nothing_fits_any_more_gets_minus_one() -> None:
    _, _, best, chosen = _plan([[("a", 2, 1.0)]] * 2, {"a": (2, 0, 0)})
    assert (best >= 0).all() and chosen[0] >= 0 and chosen[1] == -1


def test_capacity_left_today_is_shared_by_the_batch() -> None:
    _, cands, _, chosen = _plan([[("a", 1, 1.0)]] * 2, {"a": (5, 5, 0)}, load=(99, 0, 0))
    assert [int(cands.assignment(c)[0]) for c in chosen] == [0, 1]  # node 0 has room for one


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 3), st.just(1.0)),
                         min_size=1, max_size=3), min_size=1, max_size=8),
       st.lists(st.integers(0, 6), min_size=9, max_size=9),
       st.lists(st.integers(0, 3), min_size=3, max_size=3))
def test_allocation_never_exceeds_stock_or_capacity(orders, atp, room) -> None:
    stock = {s: tuple(atp[3 * i: 3 * i + 3]) for i, s in enumerate("abc")}
    capacity = (float(room[0]), float(room[1]), float(room[2]))
    batch, cands, _, chosen = _plan(orders, stock, capacity=capacity)
    taken: Counter = Counter()
    shipments: Counter = Counter()
    for i, c in enumerate(chosen.tolist()):
        if c < 0:
            continue
        assert cands.offsets[i] <= c < cands.offsets[i + 1] and cands.mask[c]
        l0 = batch.line_offsets[i]
        for j, k in enumerate(cands.assignment(c).tolist()):
            taken[(k, int(batch.line_sku[l0 + j]))] += int(batch.line_qty[l0 + j])
        for k in set(cands.assignment(c).tolist()):
            shipments[k] += 1
    for (k, u), qty in taken.items():
        assert qty <= batch.atp[k, u]
    for k, n in shipments.items():
        assert n <= max(capacity[k], 0)
