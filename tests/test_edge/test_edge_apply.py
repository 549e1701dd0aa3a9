"""`state.edge_sync` and `lua/edge_apply.lua` on a real Redis: effects that crossed a link apply
once per order version, in whatever order and however often they arrive."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.edge.messages import EdgeEffect
from state.edge_sync import EdgeSync, LinkProgress, LinkStatus
from state.ledger import InventoryUpdate, Ledger, LedgerInputError, ReserveRequest

DAY = "20261124"
_prefixes = itertools.count()


@pytest.fixture
def ledger(redis_client) -> Ledger:
    return Ledger(redis_client, f"ea{next(_prefixes)}")


def _stock(ledger: Ledger, node: str, sku: str, on_hand: int) -> None:
    ledger.apply_inventory([InventoryUpdate(node, sku, 1, "snapshot", on_hand)])


def R(order: str, version: int, *lines: tuple[str, int], node: str = "N1") -> EdgeEffect:
    return EdgeEffect(node, order, version, tuple(lines), DAY)


def S(order: str, node: str = "N1") -> EdgeEffect:
    return EdgeEffect(node, order, op="ship")


def _statuses(results: list) -> list[str]:
    return [r.status for r in results]


def test_force_applies_the_edges_sales_and_shows_an_oversell_as_a_deficit(ledger):
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 3)
    ledger.reserve([ReserveRequest("central#1", "N1", (("a", 2),))], DAY)
    [r] = sync.apply([R("edge-1", 1, ("a", 2))], "force")
    assert (r.status, r.sku, r.amount) == ("deficit", "a", 1)
    assert ledger.stock("N1", "a") == (3, 4, 0)  # visible as reserved > on-hand, never < 0
    assert ledger.reservation("N1", "edge-1") == (("a", 2),)


def test_check_rejects_what_does_not_fit_changes_nothing_and_repeats_its_verdict(ledger):
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 3)
    ok, no = sync.apply([R("c-1", 1, ("a", 2)), R("c-2", 1, ("a", 2))], "check")
    assert ok.status == "applied" and (no.status, no.sku, no.amount) == ("rejected", "a", 1)
    assert ledger.stock("N1", "a") == (3, 2, 1) and ledger.reservation("N1", "c-2") is None
    [again] = sync.apply([R("c-2", 1, ("a", 2))], "check")
    assert (again.status, again.amount) == ("rejected", 1)  # a retried link re-sends it
    assert _statuses(sync.apply([R("c-1", 1, ("a", 2))], "check")) == ["stale"]
    assert ledger.stock("N1", "a") == (3, 2, 1)


def test_versions_move_and_release_and_old_ones_are_ignored(ledger):
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 10)
    _stock(ledger, "N2", "a", 10)
    sync.apply([R("o", 1, ("a", 4))], "force")
    # version 2 moved the order to N2: N1 holds nothing for it any more
    assert _statuses(sync.apply([R("o", 2, ("a", 4), node="N2"), R("o", 2)], "force")) == \
        ["applied", "applied"]
    assert ledger.stock("N1", "a") == (10, 0, 10) and ledger.stock("N2", "a") == (10, 4, 6)
    assert _statuses(sync.apply([R("o", 1, ("a", 4))], "force")) == ["stale"]
    assert ledger.stock("N1", "a") == (10, 0, 10)
    load = ledger._client.hget(ledger.node_keys("N1")[0], f"load:{DAY}")
    assert load is None  # the load of the released reservation went back too


def test_a_release_for_an_order_never_seen_here_leaves_no_trace(ledger):
    sync = EdgeSync(ledger)
    assert _statuses(sync.apply([R("elsewhere", 3)], "check")) == ["none"]
    assert sync.state("N1", "elsewhere") is None


def test_a_shipment_may_arrive_before_the_reservation_it_consumes(ledger):
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 5)
    assert _statuses(sync.apply([S("early")], "force")) == ["pending"]
    assert _statuses(sync.apply([R("early", 1, ("a", 2))], "force")) == ["shipped"]
    _stock(ledger, "N2", "a", 5)
    assert _statuses(sync.apply([R("late", 1, ("a", 2), node="N2")], "force")) == ["applied"]
    assert _statuses(sync.apply([S("late", node="N2")], "force")) == ["shipped"]
    # either order ends the same: the units left on-hand, nothing stays reserved
    assert ledger.stock("N1", "a") == ledger.stock("N2", "a") == (3, 0, 3)
    assert _statuses(sync.apply([R("early", 1, ("a", 2)), S("early")], "force")) == \
        ["stale", "none"]


def test_a_record_the_local_router_wrote_is_left_alone(ledger):
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 5)
    ledger.reserve([ReserveRequest("same-id", "N1", (("a", 1),))], DAY)
    assert _statuses(sync.apply([R("same-id", 2, ("a", 3))], "force")) == ["stale"]
    assert ledger.reservation("N1", "same-id") == (("a", 1),)


def test_bad_effects_are_refused_before_anything_is_sent(ledger):
    sync = EdgeSync(ledger)
    for bad in (R("o\tx", 1, ("a", 1)), R("o", 0, ("a", 1)), R("o", 1, ("a", 0)),
                EdgeEffect("N1", "o", 1, (("a", 1),), "2026-11-24")):
        with pytest.raises(LedgerInputError):
            sync.apply([bad], "force")
    with pytest.raises(LedgerInputError):
        sync.apply([R("o", 1, ("a", 1))], "maybe")


def test_progress_and_status_round_trip(redis_client):
    progress = LinkProgress(redis_client, "p", "sul", "uplink")
    progress.commit({("e.orders", 0): 12, ("e.orders", 1): 3})
    progress.commit({("e.orders", 1): 4})
    assert progress.load() == {("e.orders", 0): 12, ("e.orders", 1): 4}
    progress.reset()
    assert progress.load() == {}
    status = LinkStatus(redis_client, "p", "sul")
    status.set("uplink", state="down", offsets={"e.orders#0": 12})
    status.add("uplink", {"sent": 3})
    status.add("uplink", {"sent": 2, "dead": 0})
    assert status.read() == {"uplink": {"state": "down", "offsets": {"e.orders#0": 12},
                                        "sent": 5}}


# -- exactly once in effect, whatever the link re-sends ------------------------------------------

ORDERS = ("o1", "o2", "o3")


@st.composite
def histories(draw: st.DrawFn) -> list[EdgeEffect]:
    """Per order: increasing versions, each holding 0-2 lines at N1 or nothing; maybe a ship.
    Orders interleave freely; each order's own effects keep their order (one partition)."""
    per_order = []
    for oid in ORDERS:
        effects = []
        for version in range(1, draw(st.integers(1, 3)) + 1):
            lines = draw(st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 4)),
                                  max_size=2))
            effects.append(R(oid, version, *lines))
        if draw(st.booleans()):
            effects.insert(draw(st.integers(0, len(effects))), S(oid))
        per_order.append(effects)
    merged: list[EdgeEffect] = []
    while any(per_order):
        pick = draw(st.sampled_from([i for i, e in enumerate(per_order) if e]))
        merged.append(per_order[pick].pop(0))
    return merged


def _batches(effects: list[EdgeEffect], cuts: list[int]) -> list[list[EdgeEffect]]:
    edges = sorted({0, len(effects), *(c % (len(effects) + 1) for c in cuts)})
    return [effects[a:b] for a, b in itertools.pairwise(edges)]


def _dump(ledger: Ledger) -> dict:
    client = ledger._client
    keys = [*ledger.node_keys("N1"), ledger.node_keys("N1")[0].rpartition(":")[0] + ":edge"]
    return {k.rpartition(":")[2]: client.hgetall(k) for k in keys}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(), cuts=st.lists(st.integers(0, 50), max_size=4),
       resends=st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10)), max_size=4),
       mode=st.sampled_from(["force", "check"]))
def test_resending_any_batches_again_changes_nothing(redis_client, history, cuts, resends, mode):
    if mode == "check":  # the downlink sends claims only; pick-ups are the edge engine's
        history = [e for e in history if e.op == "reserve"]
    once, twice = (Ledger(redis_client, f"hyp{next(_prefixes)}") for _ in range(2))
    for ledger in (once, twice):
        _stock(ledger, "N1", "a", 6)
        _stock(ledger, "N1", "b", 3)
    batches = _batches(history, cuts)
    for batch in batches:
        EdgeSync(once).apply(batch, mode)
    # the retrying link: after batch k it may start again from any earlier batch j (its last
    # committed progress) and send j..k once more
    plan = {k % len(batches): j % len(batches) for j, k in resends} if batches else {}
    sync = EdgeSync(twice)
    for k, batch in enumerate(batches):
        sync.apply(batch, mode)
        if k in plan and plan[k] <= k:
            for again in batches[plan[k]:k + 1]:
                sync.apply(again, mode)
    assert _dump(twice) == _dump(once)
    on_hand, reserved, _ = once.stock("N1", "a")
    assert on_hand >= 0 and reserved >= 0
    if mode == "check":
        assert reserved <= on_hand  # the edge never promises what it does not have


# -- bounded link state ------------------------------------------------------------------------

HOUR_MS = 3_600_000


def test_terminal_states_are_pruned_past_the_horizon_and_open_ones_never(ledger):
    """Given orders that shipped, were rejected, moved away or still hold stock, when the prune
    runs past the horizon, then only the states of orders holding stock here remain."""
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 5)
    t0 = 1_700_000_000_000
    sync.apply([R("shipped", 1, ("a", 1)), R("rejected", 1, ("a", 9)), R("moved", 1, ("a", 1)),
                R("open", 1, ("a", 1))], "check", now_ms=t0)
    sync.apply([S("shipped"), R("moved", 2), S("early")], "check", now_ms=t0 + HOUR_MS)
    assert sync.size(["N1"]) == 5
    # nothing is old enough yet
    assert sync.prune(["N1"], older_than_ms=t0 - 1) == 0
    # the first hour's terminal states go ("rejected"); the second hour's stay until their turn
    assert sync.prune(["N1"], older_than_ms=t0) == 1
    assert sync.state("N1", "rejected") is None
    assert sync.prune(["N1"], older_than_ms=t0 + 10 * HOUR_MS) == 3
    assert sync.size(["N1"]) == 1 and sync.state("N1", "open") == "1\to"
    assert ledger.reservation("N1", "open") == (("a", 1),)
    assert ledger.stock("N1", "a") == (4, 1, 3)  # pruning never touches stock


def test_an_order_that_holds_stock_again_is_unindexed(ledger):
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 5)
    sync.apply([R("o", 1)], "force", now_ms=1)  # nothing is remembered for a bare release
    sync.apply([R("o", 1, ("a", 1)), R("o", 2)], "force", now_ms=2)  # held, then released
    sync.apply([R("o", 3, ("a", 2))], "force", now_ms=3)  # holds again
    assert sync.prune(["N1"], older_than_ms=10) == 0
    assert sync.state("N1", "o") == "3\to"
    # a replay of an older version is still recognised as stale
    assert _statuses(sync.apply([R("o", 2)], "force", now_ms=4)) == ["stale"]


def test_the_link_state_stays_bounded_however_many_orders_cross(ledger):
    """Given a steady stream of orders that are reserved, then ship (or are refused), when the
    link prunes past a horizon of H after each hour, then the hash never holds more than the
    open orders plus one horizon's worth of terminal states, however long it runs."""
    sync = EdgeSync(ledger)
    _stock(ledger, "N1", "a", 10_000)
    horizon, per_hour, sizes = 2 * HOUR_MS, 40, []
    for hour in range(12):
        now = hour * HOUR_MS
        batch = [f"h{hour}-{i}" for i in range(per_hour)]
        sync.apply([R(o, 1, ("a", 1)) for o in batch], "check", now_ms=now)
        sync.apply([S(o) for o in batch[:-5]], "check", now_ms=now)  # 5 per hour stay open
        sync.prune(["N1"], older_than_ms=now - horizon, limit=10_000)
        sizes.append(sync.size(["N1"]))
    # open orders (5 an hour) plus the terminal states of the last two hours (the horizon):
    # never the 40 an hour that crossed
    assert sizes == [5 * (h + 1) + min(h + 1, 2) * (per_hour - 5) for h in range(12)]
    # and everything still open is still known (its later effects apply exactly once)
    assert _statuses(sync.apply([S("h0-39")], "check", now_ms=12 * HOUR_MS)) == ["shipped"]
