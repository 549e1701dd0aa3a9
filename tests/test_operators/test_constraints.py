"""Per-order business-rule constraints in candidate generation (the 3-node test network)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.candidates import (
    CandidateParams,
    Constraints,
    LaneArrays,
    build_candidates,
)
from operators.scoring import Feature

from .test_candidates import ABC, NOW, PAC, SEDEX, SPLIT_STOCK, make_batch, make_network


def _rules(n: int = 1, **rows: list) -> Constraints:
    c = Constraints.none(n, 3, 2, 2)
    values = {name: np.array(rows.get(name, getattr(c, name)), dtype=getattr(c, name).dtype)
              for name in ("node_ok", "svc_ok", "node_pref", "svc_pref", "max_splits")}
    return Constraints(**values)


def _build(batch, rules: Constraints | None = None, **kw):
    return build_candidates(batch, make_network(), LaneArrays.healthy(2, 2), NOW,
                            CandidateParams(**kw), rules)


def test_no_constraints_equals_the_unconstrained_call() -> None:
    batch = make_batch([[("a", 1, 1.0)], ABC], {**SPLIT_STOCK, "a": (5, 5, 5)})
    free = _build(batch)
    same = _build(batch, Constraints.none(2, 3, 2, 2))
    assert np.array_equal(free.X, same.X) and np.array_equal(free.assign, same.assign)
    assert not free.X[:, Feature.NOT_PREFERRED].any()


def test_a_node_outside_the_allowed_set_is_never_a_candidate() -> None:
    batch = make_batch([[("a", 1, 1.0)]], {"a": (5, 5, 5)})
    cs = _build(batch, _rules(node_ok=[[False, True, True]]))
    assert len(cs) and 0 not in cs.assign.tolist()


def test_a_service_outside_the_allowed_set_is_never_a_candidate() -> None:
    batch = make_batch([[("a", 1, 1.0)]], {"a": (5, 0, 0)})
    cs = _build(batch, _rules(svc_ok=[[False, True]]))
    assert cs.service.tolist() == [SEDEX]


def test_no_allowed_node_means_no_candidate_not_a_masked_one() -> None:
    batch = make_batch([[("a", 1, 1.0)]], {"a": (5, 0, 0)})
    cs = _build(batch, _rules(node_ok=[[False, True, True]]))
    assert len(cs) == 0


def test_per_order_split_cap_applies_to_that_order_only() -> None:
    batch = make_batch([ABC, ABC], SPLIT_STOCK)
    cs = _build(batch, _rules(2, max_splits=[0, 2]))
    per_order = np.diff(cs.offsets).tolist()
    assert per_order[0] == 0 and per_order[1] > 0  # order 0 would need a split


def test_candidates_outside_the_preference_are_flagged() -> None:
    batch = make_batch([[("a", 1, 1.0)]], {"a": (5, 5, 0)})
    cs = _build(batch, _rules(node_pref=[[False, True, True]], svc_pref=[[True, False]]))
    flagged = {(int(cs.assign[cs.assign_offsets[m]]), int(cs.service[m])):
               cs.X[m, Feature.NOT_PREFERRED] for m in range(len(cs))}
    assert flagged == {(0, PAC): 1.0, (0, SEDEX): 1.0, (1, PAC): 0.0}  # RJ->SP has no SEDEX


def test_constraints_of_the_wrong_shape_are_refused() -> None:
    batch = make_batch([[("a", 1, 1.0)]], {"a": (5, 5, 5)})
    with pytest.raises(ValueError, match="rules"):
        _build(batch, Constraints.none(2, 3, 2, 2))
    with pytest.raises(ValueError, match="max_splits"):
        Constraints(*(getattr(Constraints.none(1, 3, 2, 2), f) for f in
                      ("node_ok", "svc_ok", "node_pref", "svc_pref")), np.array([-1]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.booleans(), min_size=3, max_size=3), st.lists(st.booleans(), min_size=2,
       max_size=2), st.integers(0, 2))
def test_every_candidate_respects_its_constraints(nodes: list, svcs: list, splits: int) -> None:
    batch = make_batch([ABC, [("a", 2, 1.0)]], {**SPLIT_STOCK, "a": (5, 5, 5)})
    rules = _rules(2, node_ok=[nodes, nodes], svc_ok=[svcs, svcs], max_splits=[splits, splits])
    cs = _build(batch, rules)
    for m in range(len(cs)):
        assert all(nodes[k] for k in cs.assignment(m).tolist())
        assert svcs[int(cs.service[m])]
        assert cs.n_nodes[m] - 1 <= splits
