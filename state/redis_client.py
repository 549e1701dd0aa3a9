"""Build a Redis client from one URL, standalone or cluster, without ever exposing the password.

Why a wrapper at all: configuration carries one URL per deployment, and the same ledger code
must run on a single Redis and on a Redis Cluster. redis-py builds the standalone client from a
URL but has no URL form for a cluster with several seed nodes, and its errors (or our logs) must
never show credentials. So:

* ``redis://``, ``rediss://`` (TLS), ``unix://``  -> ``redis.Redis.from_url``
* ``redis+cluster://[user:pass@]host:port[,host:port...]`` -> ``redis.cluster.RedisCluster``
  (``rediss+cluster://`` for TLS). Extra keyword options (ssl_*, socket timeouts,
  decode_responses, username/password, ...) pass through to redis-py unchanged.

By default the connection is checked with PING, so a wrong address or password fails at
start-up, not on the first order. Failures raise ``RedisUnavailable`` whose message shows the URL
with the password replaced by ``***`` and the original error text scrubbed of it; the original
exception is deliberately not chained (its text may quote a malformed URL).
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import unquote

import hiredis
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

__all__ = ["RedisConfigError", "RedisUnavailable", "connect", "pipeline", "redact"]

_PLAIN = ("redis", "rediss", "unix")
_CLUSTER = ("redis+cluster", "rediss+cluster")
_SECRET_QUERY_KEYS = ("pass", "secret", "token", "key")


class RedisConfigError(ValueError):
    """The Redis URL cannot be used (unknown scheme, malformed host list); password redacted."""


class RedisUnavailable(ConnectionError):
    """Redis could not be reached or refused us (auth, TLS); the message is redacted."""


def _split_userinfo(url: str) -> tuple[str, str, str]:
    """(scheme, userinfo, host-and-rest) split at the LAST '@', so a password holding '@', '/'
    or '#' (even unescaped) is still treated as the password, never shown as a host or path."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url
    before, at, after = rest.rpartition("@")
    return (scheme, before, after) if at else (scheme, "", rest)


def redact(url: str) -> str:
    """The URL with its password (and secret-looking query values) replaced by ``***``."""
    scheme, userinfo, hostpart = _split_userinfo(url)
    if not scheme:
        return "***" if "@" in url else url
    shown = ""
    if userinfo:
        user, colon, _password = userinfo.partition(":")
        shown = f"{user}:***@" if colon else f"{user}@"
    head, q, query = hostpart.partition("?")
    if q:
        params = []
        for param in query.split("&"):
            name, eq, _value = param.partition("=")
            secret = eq and any(s in name.lower() for s in _SECRET_QUERY_KEYS)
            params.append(f"{name}=***" if secret else param)
        head = f"{head}?{'&'.join(params)}"
    return f"{scheme}://{shown}{head}"


def _secrets(url: str, options: dict[str, Any]) -> list[str]:
    """Every form of every secret that may appear in an error text, longest first."""
    _, userinfo, _ = _split_userinfo(url)
    found = set()
    if ":" in userinfo:
        raw = userinfo.partition(":")[2]
        found.update({raw, unquote(raw)})
    if isinstance(options.get("password"), str):
        found.add(options["password"])
    return sorted((s for s in found if s), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def connect(url: str, *, verify: bool = True, **options: Any) -> redis.Redis | RedisCluster:
    """A client for ``url`` (see the module docstring); PINGs it first unless ``verify=False``."""
    scheme = url.partition("://")[0].lower()
    secrets = _secrets(url, options)
    shown = redact(url)
    if scheme not in _PLAIN + _CLUSTER:
        raise RedisConfigError(
            f"unsupported Redis URL scheme in {shown}; expected one of "
            + ", ".join(f"{s}://" for s in _PLAIN + _CLUSTER)
        )
    userinfo = _split_userinfo(url)[1]
    if any(c in userinfo for c in "/?#@"):
        # unescaped, these make URL parsers cut the password into host/path pieces that would
        # then appear (unrecognisably) in error messages
        raise RedisConfigError(
            f"percent-encode '/', '?', '#' and '@' in the user name and password of {shown}"
        )
    client: redis.Redis | RedisCluster | None = None
    try:
        if scheme in _CLUSTER:
            client = _cluster(url, scheme == "rediss+cluster", options, shown)
        else:
            client = redis.Redis.from_url(url, **options)
        if verify:
            client.ping()
    except RedisConfigError:
        raise
    except (ValueError, TypeError) as exc:
        # raised while parsing the URL or options: the text may quote a FRAGMENT of a password
        # that was not percent-encoded, which no scrubbing can recognise, so it is dropped
        raise RedisConfigError(
            f"malformed Redis URL or option for {shown} ({type(exc).__name__}); "
            "percent-encode special characters in the user name and password"
        ) from None
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        detail = _scrub(f"{type(exc).__name__}: {exc}", secrets)
        raise RedisUnavailable(f"cannot use Redis at {shown}: {detail}") from None
    return client


def _cluster(url: str, tls: bool, options: dict[str, Any], shown: str) -> RedisCluster:
    """RedisCluster from ``redis+cluster://[user:pass@]h1:p1[,h2:p2...][/0]``."""
    _, userinfo, hostpart = _split_userinfo(url)
    hosts, _, tail = hostpart.partition("/")
    if "?" in hosts:
        raise RedisConfigError(
            f"query options are not supported in cluster URLs ({shown}); pass them as keywords"
        )
    if tail not in ("", "0"):
        raise RedisConfigError(f"a cluster has only database 0; got /{tail} in {shown}")
    nodes = [_host_port(h, shown) for h in hosts.split(",") if h]
    if not nodes:
        raise RedisConfigError(f"no host:port in {shown}")
    kwargs = dict(options)
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if user:
            kwargs.setdefault("username", unquote(user))
        if colon:
            kwargs.setdefault("password", unquote(password))
    if tls:
        kwargs.setdefault("ssl", True)
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], **kwargs)


def _host_port(text: str, shown: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (port 6379)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        port = rest[1:] if bracket and rest.startswith(":") else ("" if not rest else None)
    else:
        host, _, port = text.partition(":")
    if not host or port is None or (port and not port.isdigit()):
        raise RedisConfigError(f"bad cluster node {text!r} in {shown}; expected host:port")
    return host, int(port or 6379)


def pipeline(client: redis.Redis | RedisCluster, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``commands`` in one round trip; replies in order, error replies as exception values.

    Same results as ``client.pipeline(transaction=False)`` + ``execute(raise_on_error=False)``
    (the client's own reply callbacks, its retry policy), at about half the client CPU on a
    standalone server: redis-py 8 packs every argument in a Python generator and wraps each
    pipeline in observability hooks, which for the router's batches (40 HMGETs of a few hundred
    fields, a few hundred SET/EVALSHA) cost more than the server's work. Here each command is
    packed by hiredis in C and the replies are read straight off one pooled connection.
    A cluster client keeps redis-py's cluster pipeline (it splits commands by slot).
    """
    if not commands:
        return []
    if isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        return conn.retry.call_with_retry(
            lambda: _send_read(client, conn, commands), lambda _error: conn.disconnect())
    except BaseException:
        conn.disconnect()  # replies may be left unread: never hand a desynced socket back
        raise
    finally:
        pool.release(conn)


def _send_read(client: redis.Redis, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    packed = []
    for command in commands:
        try:
            packed.append(hiredis.pack_command(command))
        except TypeError:  # an argument type hiredis does not pack: redis-py's own packer
            packed.extend(conn.pack_command(*command))
    conn.send_packed_command([b"".join(packed)], check_health=False)
    callbacks = client.response_callbacks
    replies: list[Any] = []
    for command in commands:
        try:
            reply = conn.read_response()
        except ResponseError as exc:
            replies.append(exc)
            continue
        callback = callbacks.get(command[0])
        replies.append(reply if callback is None else callback(reply))
    return replies
