"""The stock ledger against a real redis-server: inventory, reserve, split orders, release,
ship, load, availability, and random operation sequences against a plain-Python model.

Given/when/then in the test names; every assertion reads Redis back through the public API.
Input checks and robustness are in test_ledger_robustness.py, Redis Cluster in
test_ledger_cluster.py, connecting in test_redis_client.py; shared helpers in ledger_helpers.py.
"""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from state.ledger import CHUNK, CHUNK_LINES, InventoryUpdate, Ledger, LedgerInputError
from tests.test_state.ledger_helpers import DAY, NEXT_DAY, req, stock_up

# -- inventory ------------------------------------------------------------------------------

def test_snapshot_applies_once_per_version_and_ignores_older_versions(ledger: Ledger) -> None:
    first = [InventoryUpdate("N1", "sku-1", 5, "snapshot", 40)]
    assert ledger.apply_inventory(first) == ["applied"]
    assert ledger.apply_inventory(first) == ["stale"]  # replay
    assert ledger.apply_inventory([InventoryUpdate("N1", "sku-1", 4, "snapshot", 99)]) == ["stale"]
    assert ledger.stock("N1", "sku-1") == (40, 0, 40)
    assert ledger.apply_inventory([InventoryUpdate("N1", "sku-1", 6, "snapshot", 7)]) == ["applied"]
    assert ledger.stock("N1", "sku-1") == (7, 0, 7)


def test_delta_applies_once_even_when_replayed(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=10)
    delta = InventoryUpdate("N1", "a", 2, "delta", -3)
    assert ledger.apply_inventory([delta, delta]) == ["applied", "stale"]
    assert ledger.apply_inventory([delta]) == ["stale"]
    assert ledger.stock("N1", "a") == (7, 0, 7)


def test_delta_below_zero_clamps_on_hand_at_zero_and_reports_clamped(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=2)
    assert ledger.apply_inventory([InventoryUpdate("N1", "a", 2, "delta", -5)]) == ["clamped"]
    assert ledger.stock("N1", "a") == (0, 0, 0)
    # a delta on an unknown sku starts from 0
    assert ledger.apply_inventory([InventoryUpdate("N1", "new", 1, "delta", 4)]) == ["applied"]
    assert ledger.stock("N1", "new") == (4, 0, 4)


def test_batch_across_nodes_returns_statuses_in_update_order(ledger: Ledger) -> None:
    updates = [
        InventoryUpdate("N2", "a", 1, "snapshot", 5),
        InventoryUpdate("N1", "a", 1, "snapshot", 3),
        InventoryUpdate("N2", "a", 2, "delta", 1),
        InventoryUpdate("N2", "a", 2, "delta", 100),  # same version again: stale
        InventoryUpdate("N1", "a", 3, "delta", -9),
    ]
    assert ledger.apply_inventory(updates) == ["applied", "applied", "applied", "stale", "clamped"]
    assert ledger.stock("N2", "a") == (6, 0, 6)
    assert ledger.stock("N1", "a") == (0, 0, 0)


# -- reserve --------------------------------------------------------------------------------

def test_reserve_is_all_or_nothing_per_order(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=5, b=1)
    [result] = ledger.reserve([req("o1", "N1", ("a", 2), ("b", 2))], DAY)
    assert (result.status, result.short_sku, result.short_atp) == ("short", "b", 1)
    assert ledger.stock("N1", "a") == (5, 0, 5)  # a was not taken either
    assert ledger.reservation("N1", "o1") is None
    assert ledger.availability(["N1"], ["a"], DAY)[1].tolist() == [0]


def test_replayed_reserve_returns_already_and_leaves_stock_unchanged(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=5)
    order = req("o1", "N1", ("a", 2))
    assert ledger.reserve([order], DAY)[0].status == "reserved"
    assert [r.status for r in ledger.reserve([order, order], DAY)] == ["already", "already"]
    # a replay with different lines still returns the first reservation, untouched
    assert ledger.reserve([req("o1", "N1", ("a", 4))], NEXT_DAY)[0].status == "already"
    assert ledger.stock("N1", "a") == (5, 2, 3)
    assert ledger.reservation("N1", "o1") == (("a", 2),)
    assert ledger.availability(["N1"], ["a"], DAY)[1].tolist() == [1]


def test_short_reports_the_first_short_sku_and_its_atp(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=1, b=0, c=0)
    [result] = ledger.reserve([req("o1", "N1", ("a", 1), ("b", 1), ("c", 1))], DAY)
    assert (result.status, result.short_sku, result.short_atp) == ("short", "b", 0)
    [unknown] = ledger.reserve([req("o2", "N9", ("zz", 1))], DAY)
    assert (unknown.status, unknown.short_sku, unknown.short_atp) == ("short", "zz", 0)


def test_two_lines_of_the_same_sku_are_summed(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=3, b=9)
    [short] = ledger.reserve([req("o1", "N1", ("a", 2), ("b", 1), ("a", 2))], DAY)
    assert (short.status, short.short_sku, short.short_atp) == ("short", "a", 3)
    assert ledger.reserve([req("o2", "N1", ("a", 1), ("b", 1), ("a", 2))], DAY)[0].status == (
        "reserved"
    )
    assert ledger.reservation("N1", "o2") == (("a", 3), ("b", 1))
    assert ledger.stock("N1", "a") == (3, 3, 0)


def test_later_orders_in_a_batch_see_what_earlier_ones_took(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=3)
    stock_up(ledger, "N2", a=3)
    results = ledger.reserve(
        [req("o1", "N1", ("a", 2)), req("o2", "N2", ("a", 3)), req("o3", "N1", ("a", 2)),
         req("o4", "N1", ("a", 1)), req("o5", "N2", ("a", 1))],
        DAY,
    )
    assert [(r.order_id, r.node_id, r.status) for r in results] == [
        ("o1", "N1", "reserved"), ("o2", "N2", "reserved"), ("o3", "N1", "short"),
        ("o4", "N1", "reserved"), ("o5", "N2", "short"),
    ]


def test_the_same_order_twice_in_one_batch_is_reserved_once(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=5)
    order = req("o1", "N1", ("a", 2))
    assert [r.status for r in ledger.reserve([order, order], DAY)] == ["reserved", "already"]
    assert ledger.stock("N1", "a") == (5, 2, 3)


def test_batch_larger_than_one_script_call_is_split_and_kept_in_order(ledger: Ledger) -> None:
    n = CHUNK * 2 + 7  # and 3 lines each: more than CHUNK_LINES per call too
    stock_up(ledger, "N1", a=n - 1, b=10 * n, c=10 * n)
    lines = (("b", 1), ("a", 1), ("c", 2))
    results = ledger.reserve([req(f"o{i}", "N1", *lines) for i in range(n)], DAY)
    assert [r.order_id for r in results] == [f"o{i}" for i in range(n)]
    assert [r.status for r in results].count("reserved") == n - 1
    assert results[-1].status == "short"
    assert ledger.availability(["N1"], ["a"], DAY)[1].tolist() == [n - 1]


def run_competing_orders(url: str, worker: int, orders: int) -> list[str]:
    """One worker process/thread: its own client, small batches of 1-unit orders on hot sku h."""
    client = redis.Redis.from_url(url)
    ledger = Ledger(client)
    won = []
    for start in range(0, orders, 5):
        batch = [
            req(f"w{worker}-o{i}", "N1", ("h", 1), ("plenty", 2)) for i in range(start, start + 5)
        ]
        won += [r.order_id for r in ledger.reserve(batch, DAY) if r.status == "reserved"]
    client.close()
    return won


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_competing_clients_never_oversell_the_last_units(
    ledger: Ledger, redis_url: str, mode: str
) -> None:
    last_units, workers, orders_each = 37, 4, 60
    stock_up(ledger, "N1", h=last_units, plenty=10_000)
    args = [(redis_url, w, orders_each) for w in range(workers)]
    if mode == "processes":
        # spawn, not fork: forked workers inherit the test process's threads, locks and SIGTERM
        # handler (fulfil.infra turns SIGTERM into SystemExit); with fork, Pool.terminate hung
        # once in a full CI run, joining a worker blocked on the task queue's lock
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            won = [o for part in pool.starmap(run_competing_orders, args) for o in part]
    else:
        parts: list[list[str]] = [[] for _ in range(workers)]
        threads = [
            threading.Thread(target=lambda w=w: parts[w].extend(run_competing_orders(*args[w])))
            for w in range(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [o for part in parts for o in part]
    assert len(won) == len(set(won)) == last_units
    assert ledger.stock("N1", "h") == (last_units, last_units, 0)
    assert ledger.stock("N1", "plenty")[1] == 2 * last_units


# -- split orders, release, ship, load ------------------------------------------------------

def test_reserve_split_releases_reserved_parts_when_a_node_is_short(ledger: Ledger) -> None:
    stock_up(ledger, "A", a=5)
    stock_up(ledger, "B", b=1)
    stock_up(ledger, "C", c=5)
    results = ledger.reserve_split(
        [req("o1", "A", ("a", 2)), req("o1", "B", ("b", 2)), req("o1", "C", ("c", 1))], DAY
    )
    assert [(r.node_id, r.status, r.short_sku) for r in results] == [
        ("A", "released", None), ("B", "short", "b"), ("C", "released", None),
    ]
    for node, sku in (("A", "a"), ("B", "b"), ("C", "c")):
        assert ledger.stock(node, sku)[1] == 0
        assert ledger.reservation(node, "o1") is None
    assert ledger.availability(["A", "B", "C"], ["a"], DAY)[1].tolist() == [0, 0, 0]


def test_reserve_split_also_releases_parts_left_by_an_earlier_attempt(ledger: Ledger) -> None:
    stock_up(ledger, "A", a=5)
    ledger.reserve([req("o1", "A", ("a", 2))], DAY)  # crash after this part, before B
    results = ledger.reserve_split([req("o1", "A", ("a", 2)), req("o1", "B", ("b", 1))], DAY)
    assert [r.status for r in results] == ["released", "short"]
    assert ledger.stock("A", "a") == (5, 0, 5)


def test_reserve_split_reserves_every_part_when_all_fit(ledger: Ledger) -> None:
    stock_up(ledger, "A", a=1)
    stock_up(ledger, "B", b=1)
    parts = [req("o1", "A", ("a", 1)), req("o1", "B", ("b", 1))]
    assert [r.status for r in ledger.reserve_split(parts, DAY)] == ["reserved", "reserved"]
    assert [r.status for r in ledger.reserve_split(parts, DAY)] == ["already", "already"]


def test_reserve_split_rejects_parts_of_several_orders_or_a_node_twice(ledger: Ledger) -> None:
    with pytest.raises(LedgerInputError, match="ONE order"):
        ledger.reserve_split([req("o1", "A", ("a", 1)), req("o2", "B", ("a", 1))], DAY)
    with pytest.raises(LedgerInputError, match="node twice"):
        ledger.reserve_split([req("o1", "A", ("a", 1)), req("o1", "A", ("b", 1))], DAY)


def test_release_is_idempotent_and_gives_load_back_to_the_reservation_day(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=5)
    ledger.reserve([req("o1", "N1", ("a", 2)), req("o2", "N1", ("a", 1))], DAY)
    assert ledger.availability(["N1"], [], DAY)[1].tolist() == [2]
    released = ledger.release({"N1": ["o1", "o1", "nope"], "N2": ["o1"]}, NEXT_DAY)
    assert released == {
        ("N1", "o1"): "released", ("N1", "nope"): "absent", ("N2", "o1"): "absent",
    }
    assert ledger.release({"N1": ["o1"]}, NEXT_DAY) == {("N1", "o1"): "absent"}
    assert ledger.stock("N1", "a") == (5, 1, 4)
    assert ledger.availability(["N1"], [], DAY)[1].tolist() == [1]
    assert ledger.availability(["N1"], [], NEXT_DAY)[1].tolist() == [0]
    ledger.release({"N1": ["o2"]})
    assert ledger.availability(["N1"], ["a"], DAY)[1].tolist() == [0]
    assert ledger.stock("N1", "a") == (5, 0, 5)


def test_ship_consumes_on_hand_and_reservation_but_keeps_the_days_load(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=5, b=2)
    ledger.reserve([req("o1", "N1", ("a", 2), ("b", 2))], DAY)
    assert ledger.ship({"N1": ["o1"]}) == {("N1", "o1"): "shipped"}
    assert ledger.ship({"N1": ["o1"]}) == {("N1", "o1"): "absent"}
    assert ledger.stock("N1", "a") == (3, 0, 3)
    assert ledger.stock("N1", "b") == (0, 0, 0)
    assert ledger.reservation("N1", "o1") is None
    assert ledger.release({"N1": ["o1"]}, DAY) == {("N1", "o1"): "absent"}
    assert ledger.availability(["N1"], [], DAY)[1].tolist() == [1]


def test_count_below_reserved_reads_as_zero_atp_and_blocks_new_reservations(
    ledger: Ledger,
) -> None:
    stock_up(ledger, "N1", a=5)
    ledger.reserve([req("o1", "N1", ("a", 4))], DAY)
    assert ledger.apply_inventory([InventoryUpdate("N1", "a", 2, "snapshot", 1)]) == ["applied"]
    assert ledger.stock("N1", "a") == (1, 4, 0)  # the reservation stands; the deficit is visible
    atp, _ = ledger.availability(["N1"], ["a"], DAY)
    assert atp.tolist() == [[0]]
    [short] = ledger.reserve([req("o2", "N1", ("a", 1))], DAY)
    assert (short.status, short.short_atp) == ("short", 0)
    assert ledger.ship({"N1": ["o1"]}) == {("N1", "o1"): "shipped"}
    assert ledger.stock("N1", "a") == (0, 0, 0)  # on-hand clamped at 0, never negative


def test_availability_is_a_node_by_sku_matrix_with_missing_as_zero(ledger: Ledger) -> None:
    stock_up(ledger, "N1", a=5, b=2)
    stock_up(ledger, "N3", b=7)
    ledger.reserve([req("o1", "N1", ("a", 1)), req("o2", "N3", ("b", 7))], DAY)
    atp, load = ledger.availability(["N1", "N2", "N3"], ["a", "b", "c"], DAY)
    assert atp.dtype == np.int64 and load.dtype == np.int64
    assert atp.tolist() == [[4, 2, 0], [0, 0, 0], [0, 0, 0]]
    assert load.tolist() == [1, 0, 1]
    empty_atp, empty_load = ledger.availability([], ["a"], DAY)
    assert empty_atp.shape == (0, 1) and empty_load.shape == (0,)
    no_skus, load_only = ledger.availability(["N1", "N3"], [], DAY)
    assert no_skus.shape == (2, 0) and load_only.tolist() == [1, 1]


def test_availability_of_more_skus_than_one_script_call_takes(ledger: Ledger) -> None:
    skus = [f"s{i}" for i in range(CHUNK_LINES * 2 + 5)]
    ledger.apply_inventory([InventoryUpdate("N1", s, 1, "snapshot", i) for i, s in enumerate(skus)])
    ledger.reserve([req("o1", "N1", (skus[-1], 4))], DAY)
    atp, load = ledger.availability(["N0", "N1"], skus, DAY)
    expected = list(range(len(skus)))
    expected[-1] -= 4
    assert atp[0].tolist() == [0] * len(skus) and atp[1].tolist() == expected
    assert load.tolist() == [0, 1]


# -- property: random operation sequences keep the ledger's invariants ----------------------

NODES, SKUS, ORDERS, DAYS = ("A", "B"), ("x", "y"), ("o1", "o2", "o3", "o4"), (DAY, NEXT_DAY)
lines_st = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 4)), min_size=1, max_size=3)


class LedgerModel(RuleBasedStateMachine):
    """Plain-Python model of the contract in docs/ledger.md, checked against Redis every step."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        client.flushall()
        self.ledger = Ledger(client)
        self.oh = dict.fromkeys(((n, s) for n in NODES for s in SKUS), 0)
        self.version: dict[tuple[str, str], int] = {}
        self.records: dict[tuple[str, str], tuple[str, dict[str, int]]] = {}
        self.load = dict.fromkeys(((n, d) for n in NODES for d in DAYS), 0)
        self.counted_low: set[tuple[str, str]] = set()  # a count went below what was reserved

    def rs(self, node: str, sku: str) -> int:
        return sum(q.get(sku, 0) for (n, _), (_, q) in self.records.items() if n == node)

    @rule(node=st.sampled_from(NODES), sku=st.sampled_from(SKUS), version=st.integers(0, 8),
          snapshot=st.booleans(), value=st.integers(-6, 8))
    def apply(self, node: str, sku: str, version: int, snapshot: bool, value: int) -> None:
        value = abs(value) if snapshot else value
        [got] = self.ledger.apply_inventory(
            [InventoryUpdate(node, sku, version, "snapshot" if snapshot else "delta", value)])
        if version <= self.version.get((node, sku), -1):
            assert got == "stale"
            return
        self.version[node, sku] = version
        new = value if snapshot else self.oh[node, sku] + value
        assert got == ("clamped" if new < 0 else "applied")
        self.oh[node, sku] = max(new, 0)
        if self.oh[node, sku] < self.rs(node, sku):
            self.counted_low.add((node, sku))

    def _try(self, order: str, node: str, lines: list[tuple[str, int]], day: str) -> tuple:
        """(status, short_sku, short_atp) the contract promises, applied to the model."""
        if (node, order) in self.records:
            return ("already", None, None)
        need: dict[str, int] = {}
        for sku, qty in lines:
            need[sku] = need.get(sku, 0) + qty
        for sku, qty in need.items():
            atp = self.oh[node, sku] - self.rs(node, sku)
            if atp < qty:
                return ("short", sku, max(atp, 0))
        self.records[node, order] = (day, need)
        self.load[node, day] += 1
        return ("reserved", None, None)

    @rule(batch=st.lists(st.tuples(st.sampled_from(ORDERS), st.sampled_from(NODES), lines_st),
                         max_size=4), day=st.sampled_from(DAYS))
    def reserve(self, batch: list, day: str) -> None:
        got = self.ledger.reserve([req(o, n, *ls) for o, n, ls in batch], day)
        assert [(r.status, r.short_sku, r.short_atp) for r in got] == [
            self._try(o, n, ls, day) for o, n, ls in batch
        ]

    @rule(order=st.sampled_from(ORDERS), lines=lines_st, day=st.sampled_from(DAYS))
    def reserve_split(self, order: str, lines: list, day: str) -> None:
        got = self.ledger.reserve_split([req(order, n, *lines) for n in NODES], day)
        expected = [self._try(order, n, lines, day)[0] for n in NODES]
        if "short" in expected:
            for n, status in zip(NODES, expected, strict=True):
                if status != "short":
                    self._release(n, order)
            expected = ["released" if s != "short" else s for s in expected]
        assert [r.status for r in got] == expected

    def _release(self, node: str, order: str) -> None:
        day, _ = self.records.pop((node, order))
        self.load[node, day] = max(self.load[node, day] - 1, 0)

    @rule(node=st.sampled_from(NODES), orders=st.lists(st.sampled_from(ORDERS), max_size=3),
          day=st.sampled_from(DAYS))
    def release(self, node: str, orders: list[str], day: str) -> None:
        got = self.ledger.release({node: orders}, day)
        expected = {}
        for order in dict.fromkeys(orders):
            expected[node, order] = "released" if (node, order) in self.records else "absent"
            if (node, order) in self.records:
                self._release(node, order)
        assert got == expected

    @rule(node=st.sampled_from(NODES), order=st.sampled_from(ORDERS))
    def ship(self, node: str, order: str) -> None:
        got = self.ledger.ship({node: [order]})
        record = self.records.pop((node, order), None)
        assert got == {(node, order): "shipped" if record else "absent"}
        for sku, qty in (record[1] if record else {}).items():
            self.oh[node, sku] = max(self.oh[node, sku] - qty, 0)

    @invariant()
    def redis_matches_the_model(self) -> None:
        atp, load = self.ledger.availability(NODES, SKUS, DAY)
        assert (atp >= 0).all()
        assert load.tolist() == [self.load[n, DAY] for n in NODES]
        for i, node in enumerate(NODES):
            for j, sku in enumerate(SKUS):
                oh, rs, _ = self.ledger.stock(node, sku)
                assert (oh, rs) == (self.oh[node, sku], self.rs(node, sku))
                assert atp[i, j] == max(oh - rs, 0)
                assert rs <= oh or (node, sku) in self.counted_low
            for order in ORDERS:
                record = self.records.get((node, order))
                assert self.ledger.reservation(node, order) == (
                    tuple(record[1].items()) if record else None
                )


def test_random_operation_sequences_keep_the_ledger_invariants(redis_client: redis.Redis) -> None:
    run_state_machine_as_test(
        lambda: LedgerModel(redis_client),
        settings=settings(max_examples=60, stateful_step_count=25, deadline=None),
    )
