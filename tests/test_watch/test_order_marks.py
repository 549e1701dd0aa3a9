"""The shared abnormal-order history (state/order_marks.py + lua/order_marks.lua) on a real
redis-server: judged against what came before, idempotent per order, bounded, one slot per call."""

from __future__ import annotations

import redis
from redis.crc import key_slot

from operators.watch.abnormal import QtyNorm
from state.ledger import Ledger
from state.order_marks import MarkRequest, OrderMarks
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


def test_fingerprints_expire_after_the_duplicate_window(redis_client: redis.Redis) -> None:
    m = marks(redis_client, window_ms=300, ttl_ms=60_000)
    m.mark([req("o-1")])
    fp_key = m.key("fp", "c-1", "fp-1")
    assert 0 < redis_client.pttl(fp_key) <= 300
    assert 0 < redis_client.pttl(m.key("c", "c-1", "c-1")) <= 60_000
    assert 0 < redis_client.pttl(m.key("s", "sku-a", "sku-a")) <= 60_000
    wait_until(lambda: not redis_client.exists(fp_key), timeout=10)
    (h,) = m.mark([req("o-2")])
    assert h.seen is None  # the window passed: not a duplicate


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
