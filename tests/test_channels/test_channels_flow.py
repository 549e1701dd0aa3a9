"""The channels dataflow on the real broker: raw channel payloads -> fulfil.orders, and
payloads that do not map -> fulfil.dead-letters with the reason, counted."""

from __future__ import annotations

import orjson
import pytest

from fulfil import channel_metrics as cm
from fulfil import metrics
from operators.channels import MappingFileError
from schemas.validation import decode_and_validate
from tests.test_dataflows.helpers import create_topics, make_config

from .helpers import ChannelsFlow, channels_file, create_channel_topics, produce, read_topics


@pytest.fixture
def setup(bootstrap, redis_url, topic_prefix, tmp_path):
    cfg = make_config(bootstrap, redis_url, topic_prefix)
    chans = channels_file(tmp_path)
    create_topics(cfg)
    create_channel_topics(cfg, chans)
    return cfg, chans


def _count(counter, **labels) -> float:
    return counter.labels(**labels)._value.get()


def test_raw_payloads_become_orders_and_bad_ones_dead_letters(setup, shopify_raw, woo_raw):
    cfg, chans = setup
    shop_topic = cfg.topic("channel.shopify")
    woo_topic = cfg.topic("channel.woocommerce")
    dead_before = _count(metrics.DEAD_LETTERS, topic=shop_topic, code="schema")
    woo_data = orjson.loads(woo_raw)
    woo_data["date_created_gmt"] = "yesterday"
    shop_data = orjson.loads(shopify_raw)
    shop_data["line_items"][2]["quantity"] = 0
    bad_shop = [b"{oops", orjson.dumps(shop_data)]
    with ChannelsFlow(cfg, chans):
        produce(cfg, "channel.shopify", [shopify_raw, *bad_shop])
        produce(cfg, "channel.woocommerce", [woo_raw, orjson.dumps(woo_data)])
        out = read_topics(cfg, ["orders", "dead-letters"],
                          lambda rs: len(rs) >= 5)
    orders = [r for r in out if r.topic == cfg.topic("orders")]
    dead = [orjson.loads(r.value) for r in out if r.topic == cfg.topic("dead-letters")]
    # then: one order event per good payload, keyed by order id, valid against the contract
    by_key = {r.key: r for r in orders}
    assert set(by_key) == {b"shopify-820982911946154508", b"woocommerce-727"}
    shop_event = decode_and_validate("order_event", by_key[b"shopify-820982911946154508"].value)
    assert shop_event["lines"][0]["line_id"] == "487817672276298554"  # exact, beyond 2^53
    assert shop_event["customer"]["id"] == "115310627314723954"
    assert decode_and_validate("order_event", by_key[b"woocommerce-727"].value)["lines"][0][
        "sku"] == "woo-93"
    # and a dead letter per bad payload, saying where and why, with the original bytes
    assert len(dead) == 3
    by_reason = {(d["step"], d["error"]["code"], d["error"]["field"], d["error"]["rule"]): d
                 for d in dead}
    assert set(by_reason) == {
        ("map-shopify", "decode", "", "json"),
        ("map-shopify", "schema", "line_items[2].quantity", "minimum"),
        ("map-woocommerce", "schema", "date_created_gmt", "time"),
    }
    qty = by_reason[("map-shopify", "schema", "line_items[2].quantity", "minimum")]
    assert qty["source"]["topic"] == shop_topic and qty["source"]["offset"] == 2
    assert "mapping rule lines.qty (shopify.yaml:" in qty["error"]["message"]
    assert qty["payload"].encode() == orjson.dumps(shop_data)
    assert by_reason[("map-woocommerce", "schema", "date_created_gmt", "time")]["source"][
        "topic"] == woo_topic
    # counted: the engine's dead-letter counter and the channel outcome counter
    assert _count(metrics.DEAD_LETTERS, topic=shop_topic, code="schema") == dead_before + 1
    assert _count(cm.CHANNEL_PAYLOADS, channel="woocommerce", outcome="dead") >= 1


def test_a_broken_mapping_stops_the_start_not_every_payload(setup, tmp_path):
    cfg, chans = setup
    broken = tmp_path / "broken.yaml"
    broken.write_text("fulfil_mapping: 1\nchannel: shopify\nfields:\n  order_id: {path: id, "
                      "as: text}\n")
    spec = chans.channels["shopify"]
    chans.channels["shopify"] = type(spec)(spec.name, str(broken), spec.scheme)
    with pytest.raises(MappingFileError, match=r"broken\.yaml:4: order_id: as: unknown type"):
        ChannelsFlow(cfg, chans)
