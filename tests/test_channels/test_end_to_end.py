"""A Shopify webhook all the way to a routing decision: HTTP gateway -> fulfil.channel.shopify
-> channels flow -> fulfil.orders -> routing flow -> fulfil.decisions, on the real broker and
Redis, with the ids beyond 2^53 intact at the end."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest

from fulfil.gateway import GatewayThread
from operators.network import load_default
from state.ledger import Ledger
from state.redis_client import connect
from tests.test_dataflows.helpers import (
    FlowThread,
    create_topics,
    make_config,
    publish,
    read_outputs,
    stock,
)

from .helpers import ChannelsFlow, channels_file, create_channel_topics
from .test_gateway import post, shopify_headers, woo_headers

NET = load_default()
SP_NODE = next(n.id for n in NET.nodes if n.region == "SP")


@pytest.mark.slow
def test_webhooks_become_routing_decisions(bootstrap, redis_url, topic_prefix, tmp_path,
                                           shopify_raw, woo_raw):
    cfg = make_config(bootstrap, redis_url, topic_prefix)
    chans = channels_file(tmp_path)
    create_topics(cfg)
    create_channel_topics(cfg, chans)
    # a São Paulo customer, ordering now
    now_iso = datetime.now(UTC).isoformat(timespec="seconds")
    shop = orjson.loads(shopify_raw)
    shop["created_at"] = now_iso
    shop["shipping_address"].update({"zip": "01310-100", "province_code": "SP",
                                     "country_code": "BR"})
    shop_body = orjson.dumps(shop)
    woo = orjson.loads(woo_raw)
    woo["date_created_gmt"] = now_iso[:19]
    woo["shipping"].update({"postcode": "04538-132", "state": "SP", "country": "BR"})
    woo_body = orjson.dumps(woo)
    skus = [line["sku"] for line in shop["line_items"]] + ["woo-93", "Bar3"]
    publish(cfg, "inventory", [stock(SP_NODE, sku, 50) for sku in skus])
    started = time.monotonic()
    with FlowThread(cfg), ChannelsFlow(cfg, chans), GatewayThread(cfg, chans) as gw:
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        deadline = time.monotonic() + 30
        while ledger.stock(SP_NODE, "Bar3")[0] != 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert post(gw.port, "shopify", shop_body, shopify_headers(shop_body))[0] == 200
        assert post(gw.port, "woocommerce", woo_body, woo_headers(woo_body))[0] == 200
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 2, timeout=60)
    by_order = {d["order_id"]: d for d in out.decisions}
    assert set(by_order) == {"shopify-820982911946154508", "woocommerce-727"}, out.dead
    shop_decision = by_order["shopify-820982911946154508"]
    assert shop_decision["status"] == "routed"
    assert shop_decision["decision_id"] == "shopify-820982911946154508:v1"
    routed_lines = {line["line_id"] for s in shop_decision["shipments"] for line in s["lines"]}
    assert routed_lines == {"487817672276298554", "789012345678901234", "890123456789012345",
                            "976318377106520349", "315789986012684393"}
    assert [s["node_id"] for s in shop_decision["shipments"]] == [SP_NODE]
    assert by_order["woocommerce-727"]["status"] == "routed"
    assert ledger.stock(SP_NODE, "woo-93") == (50, 2, 48)  # qty 2 reserved
    print(f"webhook -> decision for 2 orders in {time.monotonic() - started:.1f} s "
          "(including flow start-up)")
