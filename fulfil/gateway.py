"""The webhook gateway: channels push orders over HTTP; fulfil reads Kafka.

    POST /webhooks/<channel>   verify signature -> drop replays -> publish raw body -> 200
    GET  /healthz              200 while serving

Built on aiohttp's server (one event loop; the work per request is an HMAC over the body, one
Redis SET NX and one Kafka produce, none of which blocks the loop). Per request:

1. unknown channel -> 404; body larger than `max_body_bytes` -> 413 (aiohttp);
2. WooCommerce's unsigned creation ping (`webhook_id=N`) -> 200 `ping`, nothing published;
3. signature (see operators/channels/signatures.py) wrong or missing -> 401;
4. event topic header not in `accept_topics` -> 200 `ignored` (e.g. orders/updated sent to the
   orders/create endpoint: acknowledged so the channel stops retrying, not published);
5. webhook id seen before (Redis `SET NX EX`, state/webhook_replays.py) -> 200 `duplicate`;
6. publish the body *unchanged* to `fulfil.channel.<name>`, keyed by the channel's order id
   (`key_path`) or else the webhook id -> 200 `accepted`.

Durability (`gateway.durability`), the one trade-off here:
- `acked` (default): the 200 waits for the broker's acknowledgement (acks=all) -- one produce
  round trip, a few ms with `linger_ms: 1`, bounded by `ack_timeout_ms`. A 200 therefore means
  the order is in Kafka; on failure or timeout the replay mark is removed and the answer is 503,
  so the channel retries. A timeout after which the broker did take the message gives a
  duplicate on retry, which is harmless: the mapped order keeps its event and order ids, and the
  routing flow treats a repeated order.created as a replay.
- `enqueued`: the 200 is sent once the payload is in the producer's memory queue (sub-ms). A
  gateway crash or a broker outage longer than librdkafka's retries then loses orders the channel
  believes delivered; failures are only counted (`fulfil_webhook_publish_failures_total`).

Redis unavailable: the replay check fails open (the webhook is published, counted in
`fulfil_webhook_replay_check_errors_total`), because losing an order is worse than a duplicate the
engine absorbs anyway. Secrets and bodies are never logged; the server binds to loopback unless
configured otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from confluent_kafka import KafkaError, Producer
from redis.exceptions import RedisError

from fulfil import channel_metrics as cm
from fulfil.channels_config import ChannelsConfig, GatewaySettings
from fulfil.config import Config
from operators.channels.decode import decode_payload
from operators.channels.paths import compile_path
from operators.channels.signatures import SignatureScheme
from operators.channels.values import MISSING, to_text
from schemas.errors import ValidationError
from state.redis_client import redact
from state.webhook_replays import ReplayGuard

log = logging.getLogger("fulfil.gateway")
_JSON = "application/json"


class PublishError(RuntimeError):
    """The broker did not take a payload (queue full, delivery failed, timed out)."""


@dataclass(frozen=True)
class Endpoint:
    """Everything the handler needs about one channel, resolved at start-up."""

    name: str
    topic: str
    scheme: SignatureScheme
    secrets: tuple[bytes, ...] = field(repr=False)
    accept_topics: frozenset[str] = frozenset()
    key_path: str = ""
    ping: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    key_getter: Callable[[Any], Any] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ping = re.compile(self.scheme.ping_body) if self.scheme.ping_body else None
        object.__setattr__(self, "ping", ping)
        getter = compile_path(self.key_path).get if self.key_path else None
        object.__setattr__(self, "key_getter", getter)

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """An unsigned channel ping (WooCommerce's `webhook_id=N` when a webhook is created)."""
        return (self.ping is not None and self.scheme.header not in headers
                and self.ping.fullmatch(body.decode("latin-1")) is not None)

    def message_key(self, body: bytes, webhook_id: str | None) -> bytes | None:
        """The channel's order id from the body when configured and present, else the id."""
        if self.key_getter is not None:
            try:
                value = self.key_getter(decode_payload(body))
                if value is not MISSING and not isinstance(value, dict | list):
                    return to_text(value).encode()
            except (ValidationError, ValueError):
                pass  # not JSON: the channels flow will dead-letter it with the reason
        return webhook_id.encode() if webhook_id else None


class KafkaPublisher:
    """confluent-kafka producer bridged to asyncio: `publish` returns a future settled by the
    delivery report, which a background thread collects with `poll()`."""

    def __init__(self, config: Mapping[str, str], linger_ms: int = 1,
                 delivery_timeout_ms: int | None = None) -> None:
        settings = {**dict(config), "linger.ms": str(linger_ms), "acks": "all",
                    "partitioner": "murmur2_random"}
        if delivery_timeout_ms is not None:
            # librdkafka gives up when the gateway does (acked mode), so a payload answered
            # with 503 is not delivered later as well (barring a race at the very deadline)
            settings["message.timeout.ms"] = str(max(delivery_timeout_ms, linger_ms + 1))
        self._producer = Producer(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="gateway-kafka", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def publish(self, topic: str, key: bytes | None, value: bytes,
                headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if future.done():
                return
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(PublishError(err.str()))

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            loop.call_soon_threadsafe(settle, err)

        try:
            self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
        except (BufferError, KafkaError) as exc:
            future.set_exception(PublishError(f"cannot enqueue: {exc}"))
        return future

    def close(self, timeout_s: float = 10.0) -> int:
        """Deliver what is queued (up to `timeout_s`); returns how many were not delivered."""
        self._stop.set()
        self._thread.join(timeout=1.0)
        return self._producer.flush(timeout_s)


def _answer(status: int, outcome: str, channel: str) -> web.Response:
    cm.WEBHOOKS.labels(channel=channel, outcome=outcome).inc()
    return web.Response(status=status, body=orjson.dumps({"status": outcome}),
                        content_type=_JSON)


class Gateway:
    """The aiohttp application around the endpoints, a publisher and a replay guard."""

    def __init__(self, endpoints: Mapping[str, Endpoint], publisher: KafkaPublisher,
                 guard: ReplayGuard | None, settings: GatewaySettings) -> None:
        self._endpoints = dict(endpoints)
        self._publisher = publisher
        self._guard = guard
        self._settings = settings
        self._pending: set[asyncio.Future[None]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._settings.max_body_bytes)
        app.router.add_post("/webhooks/{channel}", self.webhook)
        app.router.add_get("/healthz", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    async def webhook(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        name = request.match_info["channel"]
        ep = self._endpoints.get(name)
        if ep is None:
            return _answer(404, "unknown-channel", "-")
        body = await request.read()
        headers = request.headers
        if ep.is_ping(body, headers):
            return _answer(200, "ping", name)
        if not ep.scheme.verify(ep.secrets, body, headers):
            return _answer(401, "bad-signature", name)
        topic_header = ep.scheme.topic_header
        if ep.accept_topics and topic_header and headers.get(topic_header) not in ep.accept_topics:
            return _answer(200, "ignored", name)
        webhook_id = headers.get(ep.scheme.webhook_id_header) or None
        if webhook_id and self._guard is not None:
            try:
                if not await self._guard.first_time(name, webhook_id):
                    return _answer(200, "duplicate", name)
            except (TimeoutError, RedisError, OSError):
                cm.REPLAY_CHECK_ERRORS.labels(channel=name).inc()
                log.warning("replay check unavailable for channel %s; publishing anyway", name)
        if not await self._publish(ep, body, webhook_id):
            return _answer(503, "unavailable", name)
        cm.WEBHOOK_SECONDS.labels(channel=name).observe(time.perf_counter() - started)
        return _answer(200, "accepted", name)

    async def _publish(self, ep: Endpoint, body: bytes, webhook_id: str | None) -> bool:
        headers = [("fulfil-channel", ep.name.encode()),
                   ("fulfil-received-at", str(time.time_ns() // 1_000_000).encode())]
        if webhook_id:
            headers.append(("fulfil-webhook-id", webhook_id.encode("utf-8", "replace")))
        future = self._publisher.publish(ep.topic, ep.message_key(body, webhook_id), body, headers)
        if self._settings.durability == "enqueued" and not future.done():
            self._pending.add(future)
            future.add_done_callback(lambda f: self._settled_later(ep.name, f))
            return True
        try:
            await asyncio.wait_for(asyncio.shield(future),
                                   self._settings.ack_timeout_ms / 1000)
            return True
        except (TimeoutError, PublishError) as exc:
            # the delivery report may still come (librdkafka gives up at the same deadline):
            # collect it, so asyncio does not report an exception nobody retrieved
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            cm.PUBLISH_FAILURES.labels(channel=ep.name).inc()
            log.error("channel %s: payload not acknowledged by Kafka: %s", ep.name,
                      exc or "timeout")
            if webhook_id and self._guard is not None:
                try:
                    await self._guard.forget(ep.name, webhook_id)
                except (TimeoutError, RedisError, OSError):
                    cm.REPLAY_CHECK_ERRORS.labels(channel=ep.name).inc()
            return False

    def _settled_later(self, channel: str, future: asyncio.Future[None]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            cm.PUBLISH_FAILURES.labels(channel=channel).inc()
            log.error("channel %s: payload lost after a 200 (durability=enqueued): %s",
                      channel, future.exception())


def endpoints_for(channels: ChannelsConfig, topic_prefix: str,
                  env: Mapping[str, str] | None = None) -> dict[str, Endpoint]:
    """Resolve every channel's secrets now (ChannelsConfigError names a missing one)."""
    return {
        name: Endpoint(name, f"{topic_prefix}{spec.topic_name()}", spec.scheme,
                       tuple(s.reveal() for s in spec.secrets(env)),
                       frozenset(spec.accept_topics), spec.key_path)
        for name, spec in channels.channels.items()
    }


# -- running it -----------------------------------------------------------------------------------


async def serve(cfg: Config, channels: ChannelsConfig, stop: asyncio.Event, *,
                host: str | None = None, port: int | None = None,
                env: Mapping[str, str] | None = None,
                ready: Callable[[int], None] | None = None) -> None:
    """Serve until `stop` is set; `ready(port)` is called once listening (port 0 = any free)."""
    from state.webhook_replays import connect_async

    settings = channels.gateway
    endpoints = endpoints_for(channels, cfg.topic_prefix, env)
    client = connect_async(cfg.redis_url)
    await client.ping()
    guard = ReplayGuard(client, cfg.redis_prefix, settings.replay_ttl_s)
    publisher = KafkaPublisher(
        cfg.kafka_common(), settings.linger_ms,
        settings.ack_timeout_ms if settings.durability == "acked" else None)
    runner = web.AppRunner(Gateway(endpoints, publisher, guard, settings).app(),
                           access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host or settings.listen,
                           settings.port if port is None else port)
        await site.start()
        bound = runner.addresses[0][1]
        log.info("gateway listening on %s:%d for %s", host or settings.listen, bound,
                 ", ".join(endpoints), extra={"step": "startup"})
        if ready is not None:
            ready(bound)
        await stop.wait()
    finally:
        await runner.cleanup()
        left = await asyncio.to_thread(publisher.close)
        if left:
            log.error("gateway stopped with %d payloads undelivered", left)
        await guard.close()


class GatewayThread:
    """The gateway in a background thread with its own event loop (tests, embedding).

    `with GatewayThread(cfg, channels, port=0) as gw: ... gw.port ...` — leaving the block stops
    it; a start-up failure (Redis, secrets) is raised from `__enter__`.
    """

    def __init__(self, cfg: Config, channels: ChannelsConfig, *, host: str = "127.0.0.1",
                 port: int = 0, env: Mapping[str, str] | None = None) -> None:
        self.port = 0
        self._args = (cfg, channels)
        self._kw = {"host": host, "port": port, "env": env}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await serve(*self._args, self._stop, ready=self._on_ready, **self._kw)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def _on_ready(self, port: int) -> None:
        self.port = port
        self._ready.set()

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


def run_gateway(cfg: Config, channels: ChannelsConfig, *, host: str | None = None,
                port: int | None = None) -> int:
    """`fulfil gateway`: check the topics, serve until SIGINT/SIGTERM; exit code."""
    import signal

    from dataflows.connectors import KafkaConnectorError, list_partitions
    from fulfil.channels_config import ChannelsConfigError

    try:  # secrets first: no network needed to find a missing one
        for spec in channels.channels.values():
            spec.secrets()
    except ChannelsConfigError as exc:
        log.error("fulfil gateway: %s", exc)
        return 2
    topics = [cfg.topic(spec.topic_name()) for spec in channels.channels.values()]
    try:
        list_partitions(cfg.kafka_common(), topics)
    except KafkaConnectorError as exc:
        log.error("fulfil gateway: %s (create them with `fulfil channels topics`)", exc)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, channels, stop, host=host, port=port)

    try:
        asyncio.run(main())
    except ChannelsConfigError as exc:
        log.error("fulfil gateway: %s", exc)
        return 2
    except (RedisError, OSError) as exc:  # Redis unreachable, port in use
        log.error("fulfil gateway: cannot start: %s", type(exc).__name__ + ": " +
                  redact(str(exc)))
        return 2
    return 0
