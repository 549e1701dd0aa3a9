"""state/lifecycle.py against a real redis-server: idempotent batch writes, the per-order cap,
retention by EXPIRE, and a key layout that keeps an order on one Redis Cluster slot — run on a
real 3-shard cluster too."""

from __future__ import annotations

import orjson
from redis.crc import key_slot

from operators.lifecycle import Source, parse
from state.lifecycle import MAX_DECISIONS, LifecycleStore
from state.redis_client import connect
from tests.test_tracking.helpers import T0, decision, order_event, tracking

SRC = Source("fulfil.x", 0, 1, T0)


def _parsed(topic: str, event: dict):
    return parse(topic, orjson.dumps(event), SRC)


def test_should_write_a_batch_once_and_add_nothing_when_it_is_replayed(redis_url):
    store = LifecycleStore(connect(redis_url), "t", ttl_s=3600, max_entries=50)
    created = _parsed("orders", order_event("order.created", "o-1", T0, "e-1"))
    routed = _parsed("decisions", decision("o-1", 1, "routed", T0 + 5))
    shipped = _parsed("carrier-status", tracking("o-1", "picked_up", T0 + 9, "t-1"))
    entries = [*created.entries, *routed.entries, *shipped.entries]
    assert store.write(entries, [routed.decision]) == (3, 0)
    assert store.write(entries, [routed.decision]) == (0, 0)  # replay of the same batch
    assert store.write(list(reversed(entries))) == (0, 0)  # in any order
    got, decisions = store.read("o-1")
    assert sorted(got, key=lambda e: e.at_ms) == entries
    assert [d.fields for d in decisions] == [routed.decision.fields]
    assert store.read("unknown") == ([], [])


def test_should_keep_only_the_newest_entries_and_expire_every_key(redis_url):
    client = connect(redis_url)
    store = LifecycleStore(client, "t", ttl_s=7200, max_entries=5)
    events = [tracking("o-1", "in_transit", T0 + i, f"t-{i}") for i in range(12)]
    for ev in events[:7]:
        store.write(_parsed("carrier-status", ev).entries)
    store.write([e for ev in events[7:] for e in _parsed("carrier-status", ev).entries])
    decisions = [_parsed("decisions", decision("o-1", v, "routed", T0 + v)).decision
                 for v in range(1, MAX_DECISIONS + 4)]
    store.write([], decisions)
    entries, kept = store.read("o-1")
    assert sorted(e.at_ms for e in entries) == [T0 + i for i in range(7, 12)]
    assert sorted(d.version for d in kept) == list(range(4, MAX_DECISIONS + 4))
    for key in (store.timeline_key("o-1"), store.decisions_key("o-1")):
        assert 7100 < client.ttl(key) <= 7200


def test_should_keep_both_keys_of_an_order_on_one_cluster_slot():
    store = LifecycleStore(object(), "fulfil")
    for oid in ("o-1", "weird}id{", "{x}", "1234567890" * 20):
        assert key_slot(store.timeline_key(oid).encode()) == key_slot(
            store.decisions_key(oid).encode())
    slots = {key_slot(store.timeline_key(f"o-{i}").encode()) for i in range(100)}
    assert len(slots) > 90  # orders spread over the cluster


def test_should_run_unchanged_on_a_real_redis_cluster(cluster_url):
    client = connect(cluster_url)
    store = LifecycleStore(client, "t", ttl_s=600, max_entries=3)
    orders = [f"o-{i}" for i in range(20)]
    shards = {client.get_node_from_key(store.timeline_key(o)).name for o in orders}
    assert len(shards) >= 2  # one pipeline really crosses shards
    parsed = [_parsed("decisions", decision(o, v, "routed", T0 + v)) for o in orders
              for v in (1, 2, 3, 4)]
    entries = [e for p in parsed for e in p.entries]
    assert store.write(entries, [p.decision for p in parsed]) == (80, 20)  # capped at 3
    before = {oid: store.read(oid) for oid in orders}
    # a replay re-adds what the cap trimmed, and trims it again: nothing changes
    assert store.write(entries, [p.decision for p in parsed]) == (20, 20)
    assert {oid: store.read(oid) for oid in orders} == before
    for oid in orders:
        got, decisions = store.read(oid)
        assert sorted(e.version for e in got) == [2, 3, 4]
        assert len(decisions) == 4 and 0 < client.ttl(store.timeline_key(oid)) <= 600
