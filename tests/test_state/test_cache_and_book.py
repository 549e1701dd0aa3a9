"""The optimistic ATP cache, the order book and the lane board, on a real redis-server."""

from __future__ import annotations

import time

import orjson
import pytest

from operators.lanes import LaneHealth
from state.availability import AvailabilityCache
from state.lanes import LaneBoard
from state.ledger import InventoryUpdate, Ledger, ReserveRequest
from state.orderbook import OrderBook
from state.redis_client import connect

DAY = "20261124"


@pytest.fixture
def ledger(redis_url):
    led = Ledger(connect(redis_url), "t")
    led.apply_inventory([InventoryUpdate("A", "x", 1, "snapshot", 10),
                         InventoryUpdate("B", "x", 1, "snapshot", 4),
                         InventoryUpdate("B", "y", 1, "snapshot", 7)])
    return led


def test_cache_reads_new_skus_then_answers_alone_until_entries_age(ledger):
    cache = AvailabilityCache(ledger, ["A", "B"], ttl_ms=200)
    assert cache.needed(["x", "y"], DAY) == ["x", "y"]
    cache.store(["x", "y"], *ledger.availability(["A", "B"], ["x", "y"], DAY))
    atp, load = cache.matrix(["y", "x"])
    assert atp.tolist() == [[0, 10], [7, 4]] and load.tolist() == [0, 0]
    assert cache.needed(["x"], DAY) is None  # young: no read at all
    time.sleep(0.25)
    assert sorted(cache.needed(["x"], DAY)) == ["x", "y"]  # aged: re-read (y is still in use)


def test_cache_follows_own_reservations_and_rereads_what_was_invalidated(ledger):
    cache = AvailabilityCache(ledger, ["A", "B"], ttl_ms=60_000)
    cache.get(["x"], DAY)
    ledger.reserve([ReserveRequest("o1", "A", (("x", 3),))], DAY)
    cache.reserved("A", [("x", 3)])
    atp, load = cache.get(["x"], DAY)
    assert atp[:, 0].tolist() == [7, 4] and load.tolist() == [1, 0]
    # another worker takes stock: the cache does not know until invalidated or fresh
    ledger.reserve([ReserveRequest("o2", "B", (("x", 4),))], DAY)
    assert cache.get(["x"], DAY)[0][:, 0].tolist() == [7, 4]
    assert cache.get(["x"], DAY, fresh=True)[0][:, 0].tolist() == [7, 0]
    ledger.reserve([ReserveRequest("o3", "A", (("x", 7),))], DAY)
    cache.invalidate(["x"])
    assert cache.get(["x"], DAY)[0][:, 0].tolist() == [0, 0]


def test_order_book_round_trips_records_with_a_ttl(ledger, redis_client):
    book = OrderBook(ledger, "t", ttl_s=100)
    records = {f"o{i}": orjson.dumps({"i": i}) for i in range(50)}
    book.put_many(records)
    got = book.get_many([*records, "missing"])
    assert got == records
    ttl = redis_client.ttl(book.key("o7"))
    assert 0 < ttl <= 100
    # every key of a bucket shares one hash slot (cluster-safe batch commands)
    tags = {book.key(o).split("}")[0] for o in records}  # the {o:<bucket>} hash tags
    assert len(tags) <= 8


def test_lane_board_publishes_and_refreshes_for_readers(redis_url):
    writer = LaneBoard(connect(redis_url), "t")
    reader = LaneBoard(connect(redis_url), "t", refresh_ms=50)
    assert reader.current() == []
    rec = LaneHealth("correios|*|*|RJ", "outage", 0.0, 1.0, "strike", 1, None)
    writer.publish([rec])
    assert reader.current() == []  # cached until refresh_ms has passed
    time.sleep(0.06)
    assert reader.current() == [rec] and reader.version == 1  # bumped once, by the change
