"""Webhook replay guard: has this channel's webhook id been accepted before?

Channels deliver at least once: Shopify retries a delivery for up to 48 hours until it gets a
2xx, with the same `X-Shopify-Webhook-Id`; WooCommerce re-sends with its delivery id. The
gateway asks `first_time(channel, id)` before publishing: one `SET key 1 NX EX ttl` — atomic, so
two concurrent deliveries of one id cannot both win — and publishes only for the winner. If
publishing then fails, `forget` deletes the mark so the channel's retry is accepted.

Async (redis.asyncio) because it runs inside the gateway's event loop: a blocking call would
stall every other request for a round trip. Keys: `{prefix}:wh:{channel}:{id}`, expiring after
the replay window; an id that is long or not plain printable ASCII is hashed first (it is an
untrusted header value).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from state.redis_client import RedisConfigError, _host_port, _split_userinfo, redact

_PLAIN_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def connect_async(url: str, **options: Any) -> aioredis.Redis | RedisCluster:
    """An asyncio client for the same URLs `state.redis_client.connect` takes (not yet
    connected: redis.asyncio connects on first use; call `ping()` to check)."""
    scheme = url.partition("://")[0].lower()
    options.setdefault("socket_timeout", 1.0)
    options.setdefault("socket_connect_timeout", 1.0)
    if scheme in ("redis+cluster", "rediss+cluster"):
        _, userinfo, hostpart = _split_userinfo(url)
        hosts = hostpart.partition("/")[0]
        nodes = [ClusterNode(*_host_port(h, redact(url))) for h in hosts.split(",") if h]
        if not nodes:
            raise RedisConfigError(f"no host:port in {redact(url)}")
        user, colon, password = userinfo.partition(":")
        if user:
            options.setdefault("username", unquote(user))
        if colon:
            options.setdefault("password", unquote(password))
        if scheme == "rediss+cluster":
            options.setdefault("ssl", True)
        return RedisCluster(startup_nodes=nodes, **options)
    if scheme not in ("redis", "rediss", "unix"):
        raise RedisConfigError(f"unsupported Redis URL scheme in {redact(url)}")
    try:
        return aioredis.Redis.from_url(url, **options)
    except (ValueError, TypeError):
        raise RedisConfigError(f"malformed Redis URL {redact(url)}") from None


class ReplayGuard:
    """First-seen check per (channel, webhook id), remembered for `ttl_s` seconds."""

    def __init__(self, client: aioredis.Redis | RedisCluster, prefix: str, ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError(f"replay window must be >= 1 s; got {ttl_s}")
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_s

    def key(self, channel: str, webhook_id: str) -> str:
        if not _PLAIN_ID.fullmatch(webhook_id):
            webhook_id = "h." + hashlib.sha256(webhook_id.encode("utf-8", "replace")).hexdigest()
        return f"{self._prefix}:wh:{channel}:{webhook_id}"

    async def first_time(self, channel: str, webhook_id: str) -> bool:
        """True (and the id is now remembered) if no delivery of this id was accepted before."""
        return bool(await self._client.set(self.key(channel, webhook_id), b"1", nx=True,
                                           ex=self._ttl))

    async def forget(self, channel: str, webhook_id: str) -> None:
        """Undo `first_time` (publishing failed): the channel's retry must get through."""
        await self._client.delete(self.key(channel, webhook_id))

    async def close(self) -> None:
        await self._client.aclose()
