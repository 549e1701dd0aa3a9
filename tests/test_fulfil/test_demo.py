"""The demo end to end (shortened): what `make demo` shows must add up."""

from __future__ import annotations

import pytest

from fulfil.demo import demo


@pytest.mark.slow
def test_demo_accounts_for_every_event_it_publishes(tmp_path, shared_dir):
    result = demo(duration_s=6.0, rate=400.0, workers=1, workdir=tmp_path)
    assert result.ok, result
    out, pub = result.output, result.published
    # every valid order event became a decision (or, for a follow-up of an order cancelled just
    # before, an unknown-order dead letter); every invalid one became a dead letter
    handled = sum(out.decisions.values()) + out.dead_letters.get("unknown-order", 0)
    assert handled == pub.valid_order_events
    assert out.dead_letters.get("decode", 0) + out.dead_letters.get("schema", 0) == pub.invalid
    # the inventory was applied before the first order: nothing unroutable for lack of stock
    assert out.decisions["routed"] >= 0.98 * pub.per_tag["order.created"]
    assert out.latencies_ms and max(out.latencies_ms) < 10_000
