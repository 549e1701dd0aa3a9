"""The shared abnormal-order history (state/order_marks.py + lua/order_marks.lua) on a real
redis-server: judged against what came before, idempotent per order, bounded, one slot per call."""

from __future__ import annotations

from itertools import count

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from operators.watch.abnormal import QtyNorm, quantity_problem
from operators.watch.settings import AbnormalSettings
from state import order_marks
from state.ledger import Ledger
from state.order_marks import INLINE_FPS, MarkRequest, OrderMarks
from tests.test_dataflows.helpers import wait_until


def req(oid: str, *, customer: str | None = "c-1", fp: str | None = "fp-1", channel: str = "web",
        ts: int = 1_000_000, skus: tuple[tuple[str, int], ...] = (("sku-a", 1),)) -> MarkRequest:
    top = max((q for _, q in skus), default=0)
    return MarkRequest(oid, channel, ts, customer, fp, top, skus)


def marks(client: redis.Redis, window_ms: int = 60_000, ttl_ms: int = 600_000) -> OrderMarks:
    return OrderMarks(Ledger(client), "t", window_ms, ttl_ms)


def test_an_order_is_judged_against_the_orders_before_it(redis_client: redis.Redis) -> None:
    m = marks(redis_client)
    first, second = m.mark([req("o-1"), req("o-2", channel="app", ts=1_005_000,
                                            skus=(("sku-a", 3),))])
    assert first.seen is None and first.customer is None
    assert first.skus["sku-a"].n == 0  # no norm yet
    assert second.seen is not None and second.seen[:3] == ("o-1", "web", 1_000_000)
    assert second.customer is not None and (second.customer.n, second.customer.max_qty) == (1, 1)
    assert second.skus["sku-a"].n == 1 and second.skus["sku-a"].mean == 1.0
    (third,) = m.mark([req("o-3", ts=1_006_000)])  # the next round trip sees both
    assert third.seen is not None and third.seen.order_id == "o-2"
    assert third.customer is not None and (third.customer.n, third.customer.max_qty) == (2, 3)
    assert (third.skus["sku-a"].n, third.skus["sku-a"].mean) == (2, 2.0)


def test_sku_norms_follow_welford_like_the_watchtower(redis_client: redis.Redis) -> None:
    small = OrderMarks(Ledger(redis_client), "t", 60_000, 600_000, judge_min=100)
    qtys = [1, 2, 1, 1, 3, 1, 2, 1, 1, 5, 4, 1]
    small.mark([req(f"o-{i}", customer=None, fp=None, skus=(("sku-w", q),))  # one op per wave
                for i, q in enumerate(qtys[:7])])
    for i, q in enumerate(qtys[7:]):  # and one wave each
        small.mark([req(f"o-x{i}", customer=None, fp=None, skus=(("sku-w", q),))])
    m = marks(redis_client)  # judge_min=1: every line is judged, so the norm is read back
    (h,) = m.mark([req("o-next", customer=None, fp=None, skus=(("sku-w", 1),))])
    ref = QtyNorm()
    for q in qtys:
        ref.update(q, 0)
    got = h.skus["sku-w"]
    assert got.n == ref.n and abs(got.mean - ref.mean) < 1e-9 and abs(got.sd() - ref.sd()) < 1e-9


def test_a_replayed_order_gets_the_same_history_and_adds_nothing(redis_client: redis.Redis
                                                                 ) -> None:
    m = marks(redis_client)
    m.mark([req("o-0", fp="fp-other", skus=(("sku-a", 2),))])
    (first,) = m.mark([req("o-1")])
    (again,) = m.mark([req("o-1")])  # a crash before its decision was recorded
    assert again == first
    assert again.seen is None  # never its own duplicate
    (later,) = m.mark([req("o-2", fp="fp-3")])
    assert later.customer is not None and later.customer.n == 2  # o-0 and o-1, once each
    assert later.skus["sku-a"].n == 2


def server_ms(client: redis.Redis) -> int:
    sec, usec = client.time()
    return sec * 1000 + usec // 1000


def entries(client: redis.Redis, key: str) -> list[list[bytes]]:
    """The fingerprint entries kept in a customer's key (fields: fp, expiry, order, ...)."""
    return [e.split(b"\x1f") for e in (client.get(key) or b"").split(b"\x1e")[1:]]


def test_fingerprints_expire_after_the_duplicate_window(redis_client: redis.Redis) -> None:
    m = marks(redis_client, window_ms=300, ttl_ms=60_000)
    m.mark([req("o-1")])
    cust_key = m.key("cu", "c-1", "c-1")
    (entry,) = entries(redis_client, cust_key)
    assert entry[:3] == [b"fp-1", entry[1], b"o-1"]
    assert 0 < int(entry[1]) - server_ms(redis_client) <= 300  # its own expiry: the window
    assert 0 < redis_client.pttl(cust_key) <= 60_000
    assert 0 < redis_client.pttl(m.key("s", "sku-a", "sku-a")) <= 60_000
    wait_until(lambda: server_ms(redis_client) > int(entry[1]), timeout=10)
    (h,) = m.mark([req("o-2")])
    assert h.seen is None  # the window passed: not a duplicate
    assert h.customer is not None and h.customer.n == 1  # the norm outlives it
    assert [e[2] for e in entries(redis_client, cust_key)] == [b"o-2"]  # o-1's entry dropped


def test_a_norm_shorter_than_the_window_expires_on_its_own(redis_client: redis.Redis) -> None:
    m = marks(redis_client, window_ms=60_000, ttl_ms=300)
    m.mark([req("o-1")])
    cust_key = m.key("cu", "c-1", "c-1")
    assert 300 < redis_client.pttl(cust_key) <= 60_000  # kept for the fingerprint
    norm_expiry = int(redis_client.get(cust_key).split(b"\x1f")[2])
    wait_until(lambda: server_ms(redis_client) > norm_expiry, timeout=10)
    (h,) = m.mark([req("o-2", channel="app")])
    assert h.seen is not None and h.seen.order_id == "o-1"  # still within the window
    assert h.customer is None  # but the customer's norm has expired


def test_a_new_order_costs_one_read_and_one_write(redis_client: redis.Redis) -> None:
    m = OrderMarks(Ledger(redis_client), "t1", 60_000, 600_000, judge_min=20, flush_s=3600)
    m.mark([req("o-1", fp="fp-1")])
    redis_client.config_resetstat()
    (h,) = m.mark([req("o-2", fp="fp-2", skus=(("sku-a", 2),))])  # the customer's next order
    stats = redis_client.info("commandstats")
    assert (stats["cmdstat_get"]["calls"], stats["cmdstat_set"]["calls"]) == (1, 1)
    assert h == (None, None, {})  # a small order: the customer's norm is not read back
    assert redis_client.keys("t1:*") == [m.key("cu", "c-1", "c-1").encode()]  # no other key


def test_the_customers_norm_is_answered_for_a_line_it_can_judge(redis_client: redis.Redis
                                                                ) -> None:
    m = OrderMarks(Ledger(redis_client), "t2", 60_000, 600_000, judge_min=20, flush_s=3600)
    m.mark([req(f"o-{i}", fp=f"fp-{i}", skus=(("sku-a", 2 + i),)) for i in range(3)])
    (big,) = m.mark([req("o-big", fp="fp-big", skus=(("sku-a", 40),))])
    assert big.customer is not None and (big.customer.n, big.customer.max_qty) == (3, 4)
    m.mark([req("o-5", fp="fp-5")])
    (again,) = m.mark([req("o-big", fp="fp-big", skus=(("sku-a", 40),))])  # replayed later
    assert again == big  # the norm before it, not the one after o-5


def test_a_busy_customers_other_fingerprints_get_keys_of_their_own(redis_client: redis.Redis
                                                                   ) -> None:
    m = marks(redis_client, window_ms=60_000)
    n = INLINE_FPS + 3
    m.mark([req(f"o-{i}", fp=f"fp-{i}", ts=1_000_000 + i) for i in range(n)])
    cust_key = m.key("cu", "c-1", "c-1")
    assert [e[0] for e in entries(redis_client, cust_key)] == [
        f"fp-{i}".encode() for i in range(INLINE_FPS)]
    own = [m.key("fp", "c-1", f"fp-{i}") for i in range(INLINE_FPS, n)]
    assert all(0 < redis_client.pttl(k) <= 60_000 for k in own)
    assert redis_client.pttl(m.key("fp", "c-1", "fp-0")) == -2  # inline: no key of its own
    first, last = m.mark([req("d-0", fp="fp-0", channel="app"),
                          req("d-last", fp=f"fp-{n - 1}", channel="app")])
    assert first.seen == ("o-0", "web", 1_000_000)
    assert last.seen == (f"o-{n - 1}", "web", 1_000_000 + n - 1)
    (again,) = m.mark([req("d-last", fp=f"fp-{n - 1}", channel="app")])  # a replay
    assert again == last
    (third,) = m.mark([req("d-last-2", fp=f"fp-{n - 1}")])
    assert third.seen is not None and third.seen.order_id == "d-last"
    assert third.customer is not None and third.customer.n == n + 2


def test_a_fingerprint_key_outliving_the_customers_entries(redis_client: redis.Redis) -> None:
    m = marks(redis_client, window_ms=2_000)
    m.mark([req(f"o-{i}", fp=f"fp-{i}") for i in range(INLINE_FPS)])
    cust_key = m.key("cu", "c-1", "c-1")
    inline_expiry = max(int(e[1]) for e in entries(redis_client, cust_key))
    wait_until(lambda: server_ms(redis_client) > inline_expiry - 1_000, timeout=10)
    m.mark([req("o-own", fp="fp-own")])  # the inline entries are all live: a key of its own
    assert redis_client.exists(m.key("fp", "c-1", "fp-own"))
    wait_until(lambda: server_ms(redis_client) > inline_expiry, timeout=10)
    (dup,) = m.mark([req("d-own", fp="fp-own", channel="app")])  # no inline entry left
    assert dup.seen is not None and dup.seen.order_id == "o-own"
    assert entries(redis_client, cust_key) == []
    (after,) = m.mark([req("d-own-2", fp="fp-own")])
    assert after.seen is not None and after.seen.order_id == "d-own"
    assert after.customer is not None and after.customer.n == INLINE_FPS + 2


def test_separators_in_ids_do_not_break_the_values(redis_client: redis.Redis) -> None:
    m = marks(redis_client)
    odd = "o\x1e1\x1fx"
    (first,) = m.mark([req(odd, channel="we\x1eb")])
    (dup,) = m.mark([req("o-2")])
    assert dup.seen is not None and dup.seen[:2] == ("o 1 x", "we b")
    (replay,) = m.mark([req("o-2")])
    assert replay == dup and first.seen is None


def test_calls_split_by_chunk_answer_like_one(redis_client: redis.Redis,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    requests = [req(f"o-{i}", customer=f"c-{i % 3}", fp=f"fp-{i % 5}",
                    skus=(("sku-a", 1 + i % 4), ("sku-b", 2))) for i in range(30)]
    whole = OrderMarks(Ledger(redis_client), "w", 60_000, 600_000, judge_min=3).mark(requests)
    monkeypatch.setattr(order_marks, "CHUNK", 4)
    chunked = OrderMarks(Ledger(redis_client), "k", 60_000, 600_000, judge_min=3)
    commands, _ = chunked.commands(requests)
    assert len(commands) > 10
    assert chunked.mark(requests) == whole
    assert sum(h.seen is not None for h in whole) == 15  # (customer, fp) repeats every 15


def test_each_script_call_touches_one_hash_slot(redis_client: redis.Redis) -> None:
    m = marks(redis_client)
    requests = [req(f"o-{i}", customer=f"c-{i}", fp=f"fp-{i}",
                    skus=((f"sku-{i}", 1), (f"sku-{i + 1}", 2))) for i in range(50)]
    commands, _ = m.commands(requests)
    assert 1 < len(commands) <= 8  # one call per bucket, not per order
    for c in commands:
        keys = c[3:3 + c[2]]
        assert len({key_slot(k.encode()) for k in keys}) == 1
    assert len(m.mark(requests)) == 50


def test_orders_without_a_customer_only_feed_the_sku_norms(redis_client: redis.Redis) -> None:
    m = marks(redis_client)
    a, b = m.mark([req("o-1", customer=None, fp=None), req("o-2", customer=None, fp=None)])
    assert a.seen is b.seen is None and a.customer is b.customer is None
    assert b.skus["sku-a"].n == 1


def test_small_lines_feed_the_norm_and_judged_lines_replay_exactly(redis_client: redis.Redis
                                                                   ) -> None:
    m = OrderMarks(Ledger(redis_client), "t", 60_000, 600_000, judge_min=20)
    (small,) = m.mark([req("o-1", skus=(("sku-a", 2),))])
    assert small.skus == {}  # a line under judge_min is never an outlier: nothing to compare
    (big,) = m.mark([req("o-2", fp="fp-2", skus=(("sku-a", 40),))])
    assert (big.skus["sku-a"].n, big.skus["sku-a"].mean) == (1, 2.0)
    m.mark([req("o-3", fp="fp-3", skus=(("sku-a", 3),))])
    (again,) = m.mark([req("o-2", fp="fp-2", skus=(("sku-a", 40),))])  # replayed later
    assert again == big
    judged = m.key("s", "sku-a", "sku-a") + ":j:o-2"
    assert 0 < redis_client.pttl(judged) <= 60_000  # kept for the duplicate window only


def test_small_lines_are_summed_and_sent_at_most_every_flush_interval(
        redis_client: redis.Redis) -> None:
    m = OrderMarks(Ledger(redis_client), "tf", 60_000, 600_000, judge_min=20, flush_s=3600)
    m.mark([req(f"o-{i}", fp=f"fp-{i}", skus=(("sku-f", 2 + i % 2),)) for i in range(10)])
    m.mark([req("o-10", fp="fp-10", skus=(("sku-f", 3),))])
    assert redis_client.get(m.key("s", "sku-f", "sku-f")) is None  # not due yet: in the process
    m._flush_s = 0.0  # due now: the next batch sends everything summed so far, as one update
    (big,) = m.mark([req("o-11", fp="fp-11", skus=(("sku-f", 40),))])
    assert big.skus == {"sku-f": big.skus["sku-f"]}
    (later,) = m.mark([req("o-12", fp="fp-12", skus=(("sku-f", 41),))])
    norm = later.skus["sku-f"]  # 11 small lines (2,3,2,3,...,3) merged, then the judged 40
    assert norm.n == 12
    assert abs(norm.mean - (2 * 5 + 3 * 6 + 40) / 12) < 1e-9


_rule_case = count()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 60), st.floats(0.5, 20), st.floats(0, 400), st.integers(20, 500),
       st.sampled_from([(30, 10.0, 6.0), (10, 3.0, 2.0), (50, 20.0, 8.0)]))
def test_a_judged_line_joins_its_norm_exactly_when_quantity_problem_finds_none(
    redis_client: redis.Redis, n: int, mean: float, m2: float, qty: int,
    rule: tuple[int, float, float]
) -> None:
    """The script's outlier rule is `quantity_problem`'s (both sides of every threshold)."""
    min_hist, factor, z = rule
    cfg = AbnormalSettings(qty_min=20, qty_min_history=min_hist, qty_factor=factor, qty_z=z)
    m = OrderMarks(Ledger(redis_client), f"r{next(_rule_case)}", 60_000, 600_000, judge_min=20,
                   outlier=rule)
    key = m.key("s", "sku-r", "sku-r")
    redis_client.set(key, f"{n}\x1f{mean!r}\x1f{m2!r}")
    (h,) = m.mark([req("o-r", customer=None, fp=None, skus=(("sku-r", qty),))])
    before = h.skus["sku-r"]
    assert (before.n, before.mean, before.m2) == (n, mean, m2)
    outlier = quantity_problem("sku-r", qty, before, cfg) is not None
    joined = int(redis_client.get(key).split(b"\x1f")[0]) == n + 1
    assert joined != outlier
