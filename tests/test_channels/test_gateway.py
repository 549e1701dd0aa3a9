"""The webhook gateway over real HTTP, with the real broker and Redis behind it."""

from __future__ import annotations

import http.client
import statistics
import time
import uuid

import orjson
import pytest
import redis

from fulfil.gateway import GatewayThread
from operators.channels.signatures import PRESETS
from tests.test_dataflows.helpers import make_config

from .helpers import SECRETS, channels_file, create_channel_topics, read_topics


def post(port: int, channel: str, body: bytes, headers: dict[str, str]
         ) -> tuple[int, dict, float]:
    """One real HTTP request; (status, JSON body, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.perf_counter()
    conn.request("POST", f"/webhooks/{channel}", body=body,
                 headers={"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return resp.status, (orjson.loads(data) if data.startswith(b"{") else {}), elapsed


def shopify_headers(body: bytes, webhook_id: str | None = None, secret: str | None = None,
                    topic: str = "orders/create") -> dict[str, str]:
    sig = PRESETS["shopify"].sign((secret or SECRETS["shopify"]).encode(), body)
    return {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4())}


def woo_headers(body: bytes, delivery: str | None = None) -> dict[str, str]:
    return {"X-WC-Webhook-Signature": PRESETS["woocommerce"].sign(
                SECRETS["woocommerce"].encode(), body),
            "X-WC-Webhook-Topic": "order.created",
            "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex}


@pytest.fixture
def env(bootstrap, redis_url, topic_prefix, tmp_path):
    cfg = make_config(bootstrap, redis_url, topic_prefix)
    chans = channels_file(tmp_path, replay_ttl_s=600, max_body_bytes=200_000)
    create_channel_topics(cfg, chans)
    return cfg, chans


def test_signed_webhooks_are_published_byte_for_byte_and_forged_ones_refused(
        env, shopify_raw, woo_raw):
    cfg, chans = env
    with GatewayThread(cfg, chans) as gw:
        forged = shopify_headers(shopify_raw, secret="guessed")
        status, body, _ = post(gw.port, "shopify", shopify_raw, forged)
        assert (status, body) == (401, {"status": "bad-signature"})
        unsigned = {k: v for k, v in shopify_headers(shopify_raw).items()
                    if k != "X-Shopify-Hmac-Sha256"}
        assert post(gw.port, "shopify", shopify_raw, unsigned)[0] == 401
        tampered = shopify_headers(shopify_raw)
        assert post(gw.port, "shopify", shopify_raw.replace(b"#9999", b"#9998"), tampered)[0] \
            == 401
        assert post(gw.port, "amazon", shopify_raw, tampered)[0] == 404
        # the genuine ones
        status, body, _ = post(gw.port, "shopify", shopify_raw,
                               shopify_headers(shopify_raw, "wh-shop-1"))
        assert (status, body) == (200, {"status": "accepted"})
        assert post(gw.port, "woocommerce", woo_raw, woo_headers(woo_raw))[:2] == (
            200, {"status": "accepted"})
        records = read_topics(cfg, ["channel.shopify", "channel.woocommerce"],
                              lambda rs: len(rs) >= 2, timeout=15)
    shop = [r for r in records if r.topic == cfg.topic("channel.shopify")]
    woo = [r for r in records if r.topic == cfg.topic("channel.woocommerce")]
    assert len(shop) == 1 and len(woo) == 1  # the refused requests published nothing
    assert shop[0].value == shopify_raw  # unchanged: exact ids, exact bytes
    assert shop[0].key == b"820982911946154508"  # the channel's order id (key_path: id)
    assert shop[0].headers["fulfil-webhook-id"] == b"wh-shop-1"
    assert woo[0].value == woo_raw and woo[0].key == b"727"


def test_a_replayed_webhook_id_is_acknowledged_but_published_once(env, woo_raw, redis_url):
    cfg, chans = env
    headers = woo_headers(woo_raw, delivery="delivery-42")
    with GatewayThread(cfg, chans) as gw:
        first = post(gw.port, "woocommerce", woo_raw, headers)
        again = post(gw.port, "woocommerce", woo_raw, headers)
        third = post(gw.port, "woocommerce", woo_raw, woo_headers(woo_raw, "delivery-43"))
        records = read_topics(cfg, ["channel.woocommerce"], lambda rs: len(rs) >= 2,
                              timeout=15)
        records = read_topics(cfg, ["channel.woocommerce"], lambda rs: len(rs) > 2, timeout=2)
    assert [first[:2], again[:2], third[:2]] == [(200, {"status": "accepted"}),
                                                (200, {"status": "duplicate"}),
                                                (200, {"status": "accepted"})]
    assert len(records) == 2
    ttl = redis.Redis.from_url(redis_url).ttl(f"{cfg.redis_prefix}:wh:woocommerce:delivery-42")
    assert 590 <= ttl <= 600  # remembered for the configured replay window


def test_pings_other_topics_and_oversized_bodies(env, shopify_raw):
    cfg, chans = env
    with GatewayThread(cfg, chans) as gw:
        # WooCommerce's unsigned ping when a webhook is created must get a 200
        assert post(gw.port, "woocommerce", b"webhook_id=15", {})[:2] == (
            200, {"status": "ping"})
        assert post(gw.port, "woocommerce", b"webhook_id=15; drop", {})[0] == 401
        # a signed orders/updated sent to the orders/create endpoint: acknowledged, not published
        updated = shopify_headers(shopify_raw, topic="orders/updated")
        assert post(gw.port, "shopify", shopify_raw, updated)[:2] == (200, {"status": "ignored"})
        big = b'{"pad": "' + b"x" * 300_000 + b'"}'
        assert post(gw.port, "shopify", big, shopify_headers(big))[0] == 413
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        assert post(gw.port, "shopify", b"{}", shopify_headers(b"{}"))[0] == 200  # marker
        records = read_topics(cfg, ["channel.shopify", "channel.woocommerce"],
                              lambda rs: len(rs) >= 1, timeout=15)
    assert [r.value for r in records] == [b"{}"]


def test_answers_within_tens_of_milliseconds_with_the_broker_acknowledgement(env, shopify_raw):
    cfg, chans = env
    with GatewayThread(cfg, chans) as gw:
        post(gw.port, "shopify", shopify_raw, shopify_headers(shopify_raw))  # warm up
        times = []
        for _ in range(40):
            status, _, elapsed = post(gw.port, "shopify", shopify_raw,
                                      shopify_headers(shopify_raw))
            assert status == 200
            times.append(elapsed)
        records = read_topics(cfg, ["channel.shopify"], lambda rs: len(rs) >= 41, timeout=15)
    assert len(records) == 41  # every 200 was in Kafka already (durability: acked)
    median, worst = statistics.median(times), max(times)
    print(f"gateway round trip over HTTP: median {median * 1000:.1f} ms, max {worst * 1000:.1f}")
    assert median < 0.05, f"median {median * 1000:.1f} ms"


def test_broker_trouble_answers_503_and_forgets_the_id_so_the_retry_gets_through(
        env, woo_raw, redis_url):
    cfg, _ = env
    dead_cfg = make_config("127.0.0.1:1", redis_url, cfg.topic_prefix)  # nothing listens
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        chans = channels_file(Path(tmp), ack_timeout_ms=300)
    headers = woo_headers(woo_raw, delivery="delivery-retry")
    with GatewayThread(dead_cfg, chans) as gw:
        first = post(gw.port, "woocommerce", woo_raw, headers)
        retry = post(gw.port, "woocommerce", woo_raw, headers)
    assert first[:2] == (503, {"status": "unavailable"})
    assert retry[:2] == (503, {"status": "unavailable"})  # not "duplicate": the mark was undone
    assert 0.3 <= first[2] < 2.0
    assert not redis.Redis.from_url(redis_url).exists(
        f"{dead_cfg.redis_prefix}:wh:woocommerce:delivery-retry")


def test_redis_down_fails_open_publishing_rather_than_losing_the_order(env, woo_raw):
    """The replay check cannot reach Redis: the webhook is still accepted and published."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from fulfil import channel_metrics as cm
    from fulfil.gateway import Gateway, KafkaPublisher, endpoints_for
    from state.webhook_replays import ReplayGuard, connect_async

    cfg, chans = env
    before = cm.REPLAY_CHECK_ERRORS.labels(channel="woocommerce")._value.get()

    async def scenario() -> tuple[int, dict]:
        guard = ReplayGuard(connect_async("redis://127.0.0.1:1/0"), "x", 60)  # nothing there
        publisher = KafkaPublisher(cfg.kafka_common())
        gateway = Gateway(endpoints_for(chans, cfg.topic_prefix), publisher, guard,
                          chans.gateway)
        runner = web.AppRunner(gateway.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as http, http.post(
                    f"http://127.0.0.1:{port}/webhooks/woocommerce", data=woo_raw,
                    headers=woo_headers(woo_raw)) as resp:
                return resp.status, await resp.json()
        finally:
            await runner.cleanup()
            await asyncio.to_thread(publisher.close)
            await guard.close()

    status, body = asyncio.run(scenario())
    assert (status, body) == (200, {"status": "accepted"})
    assert cm.REPLAY_CHECK_ERRORS.labels(channel="woocommerce")._value.get() == before + 1
    records = read_topics(cfg, ["channel.woocommerce"], lambda rs: len(rs) >= 1, timeout=15)
    assert [r.value for r in records] == [woo_raw]
