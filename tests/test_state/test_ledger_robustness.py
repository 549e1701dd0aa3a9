"""The stock ledger against a real redis-server: unsafe input is rejected before anything is
sent, scripts reload after a flush, prefixes keep deployments apart, decoded replies work.

Given/when/then in the test names; every assertion reads Redis back through the public API.
"""

from __future__ import annotations

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from state.ledger import InventoryUpdate, Ledger, LedgerInputError, ReserveRequest, utc_day
from tests.test_state.ledger_helpers import DAY, req, stock_up

# -- robustness -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (req("o\t1", "N1", ("a", 1)), "order_id"),
        (req("o1", "N1", ("a\nb", 1)), "sku"),
        (req("o1", "N1", ("", 1)), "sku"),
        (req("o1", "N\x00", ("a", 1)), "node_id"),
        (req("o1", "N1", ("a", 0)), "qty"),
        (req("o1", "N1", ("a", True)), "qty"),
        (req("o1", "N1", ("a", 1.5)), "qty"),
        (req("o1", "N1"), "lines"),
    ],
)
def test_unsafe_ids_and_quantities_are_rejected_before_anything_is_sent(
    ledger: Ledger, redis_client: redis.Redis, request_: ReserveRequest, match: str
) -> None:
    with pytest.raises(LedgerInputError, match=match):
        ledger.reserve([req("fine", "N1", ("a", 1)), request_], DAY)
    assert redis_client.dbsize() == 0


def test_bad_day_kind_version_and_prefix_are_rejected(redis_client: redis.Redis) -> None:
    ledger = Ledger(redis_client)
    with pytest.raises(LedgerInputError, match="yyyymmdd"):
        ledger.reserve([req("o1", "N1", ("a", 1))], "2025-03-01")
    with pytest.raises(LedgerInputError, match="kind"):
        ledger.apply_inventory([InventoryUpdate("N1", "a", 1, "recount", 1)])
    with pytest.raises(LedgerInputError, match="version"):
        ledger.apply_inventory([InventoryUpdate("N1", "a", -1, "snapshot", 1)])
    with pytest.raises(LedgerInputError, match="snapshot value"):
        ledger.apply_inventory([InventoryUpdate("N1", "a", 1, "snapshot", -1)])
    with pytest.raises(LedgerInputError, match="prefix"):
        Ledger(redis_client, prefix="a{b}")


def test_numpy_integers_and_unicode_ids_are_accepted(ledger: Ledger) -> None:
    stock_up(ledger, "São Paulo {1}", **{"camisa-ç 'M'": 3})
    order = req("pedido-ü", "São Paulo {1}", ("camisa-ç 'M'", np.int64(2)))
    assert ledger.reserve([order], DAY)[0].status == "reserved"
    assert ledger.reservation("São Paulo {1}", "pedido-ü") == (("camisa-ç 'M'", 2),)


def test_scripts_are_reloaded_transparently_after_a_script_flush(
    ledger: Ledger, redis_client: redis.Redis
) -> None:
    stock_up(ledger, "N1", a=2)
    redis_client.script_flush()  # what a restart of a non-persistent Redis looks like
    assert ledger.reserve([req("o1", "N1", ("a", 1))], DAY)[0].status == "reserved"
    redis_client.script_flush()
    assert ledger.release({"N1": ["o1"]}, DAY) == {("N1", "o1"): "released"}


def test_prefixes_keep_deployments_apart(redis_client: redis.Redis) -> None:
    blue, green = Ledger(redis_client, "blue"), Ledger(redis_client, "green")
    stock_up(blue, "N1", a=4)
    assert green.stock("N1", "a") == (0, 0, 0)
    assert all(k.startswith(b"blue:{n:N1}:") for k in redis_client.scan_iter())


def test_decoded_responses_client_gives_the_same_results(redis_url: str) -> None:
    ledger = Ledger(redis.Redis.from_url(redis_url, decode_responses=True))
    stock_up(ledger, "N1", a=1)
    [short] = ledger.reserve([req("o1", "N1", ("a", 2))], DAY)
    assert (short.short_sku, short.short_atp) == ("a", 1)
    ledger.reserve([req("o2", "N1", ("a", 1))], DAY)
    assert ledger.reservation("N1", "o2") == (("a", 1),)


def test_utc_day_of_a_wire_timestamp() -> None:
    assert utc_day(1_700_000_000_000) == "20231114"  # 2023-11-14 22:13:20 UTC
    assert (utc_day(86_399_999), utc_day(86_400_000)) == ("19700101", "19700102")


@given(st.text(min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_every_sku_the_order_schema_accepts_the_ledger_accepts_too(sku: str) -> None:
    """A validated event must never make the ledger raise (that would crash a worker)."""
    from schemas.errors import ValidationError
    from schemas.validation import validate
    from state.ledger_codec import LedgerInputError, _name

    event = {"type": "order.created", "event_id": "e", "order_id": "o", "occurred_at": 1,
             "channel": "web", "promised_by": 2, "destination": {"postal_code": "01310"},
             "lines": [{"line_id": "1", "sku": sku, "qty": 1}]}
    try:
        validate("order_event", event)
    except ValidationError:
        return
    try:
        _name(sku, "sku")
    except LedgerInputError as exc:  # pragma: no cover - the failure this test exists for
        raise AssertionError(f"schema accepted {sku!r} but the ledger refuses it") from exc
