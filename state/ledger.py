"""The stock ledger: on-hand, reserved and available-to-promise per node and sku, in Redis.

Why it looks like this (details and the key layout in docs/ledger.md):

* Every mutation is a Lua script over the keys of ONE node (hash tag ``{n:<node>}``), so it is
  atomic, needs no locks, and runs unchanged on Redis Cluster.
* The Python client, not Redis, is the bottleneck (~4.6 us of server time per call against
  ~90 us of Python per call one at a time, see ../shared/PERFORMANCE-NOTES.md). So each public
  call sends ONE pipeline round trip, one EVALSHA per node per batch, and packs each node's batch
  into a single TAB-separated string that Lua splits: a few string joins in Python instead of
  encoding thousands of arguments.
* Every script is idempotent (versions for inventory, one record per order and node for
  reservations), so replays after a crash and client retries after a lost reply are harmless.

Errors::

    LedgerError
    ├── LedgerInputError (also ValueError)  bad id / quantity / day: nothing was sent
    └── LedgerScriptError                   Redis answered a command with an error
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis
from redis.exceptions import NoScriptError

from state.ledger_codec import (
    CHUNK,
    CHUNK_LINES,
    MAX_QTY,
    MAX_VERSION,
    LedgerError,
    LedgerInputError,
    LedgerScriptError,
    _chunks,
    _day,
    _group,
    _int,
    _name,
    _pack_order,
    _parse_record,
    _text,
)
from state.redis_client import pipeline

__all__ = [
    "MAX_QTY",
    "MAX_VERSION",
    "InventoryUpdate",
    "Ledger",
    "LedgerError",
    "LedgerInputError",
    "LedgerScriptError",
    "ReserveRequest",
    "ReserveResult",
    "utc_day",
]

_LUA_DIR = Path(__file__).with_name("lua")
#: Every script under state/lua is loaded (and re-loaded on NOSCRIPT) by the ledger, which is
#: also the executor other state/ modules (the order book) hand their commands to.
_SCRIPT_NAMES = tuple(sorted(p.stem for p in _LUA_DIR.glob("*.lua")))
_ONE_KEY = frozenset({"apply_inventory"})  # node scripts that never touch resv
_APPLY_STATUS = ("applied", "stale", "clamped")
_KINDS = {"snapshot": "s", "delta": "d"}


@dataclass(frozen=True, slots=True)
class InventoryUpdate:
    """One inventory event: a snapshot sets on-hand, a delta adds to it; applied once per
    version (a greater version than the last applied one for this node and sku)."""

    node_id: str
    sku: str
    version: int
    kind: str  # "snapshot" | "delta"
    value: int


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class ReserveRequest:
    """Reserve these (sku, qty) lines for one order at one node, all or nothing.

    `order_id` is the reservation's id (the order id, or a re-route's own id, see
    `operators.orders.reservation_id`). `credit` names an earlier reservation of the same order
    at this node whose units count as available to this one: a re-route takes its new plan
    while the old one still stands, then releases the old (see reserve.lua).
    """

    order_id: str
    node_id: str
    lines: tuple[tuple[str, int], ...]  # (sku, qty)
    credit: str | None = None


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class ReserveResult:
    """Outcome of one ReserveRequest.

    status: "reserved" | "already" (a record existed: replay, stock untouched) | "short"
    (nothing reserved; ``short_sku`` is the first sku that did not fit, ``short_atp`` its ATP,
    never negative) | "released" (only from reserve_split: it was reserved, then compensated).
    """

    order_id: str
    node_id: str
    status: str
    short_sku: str | None = None
    short_atp: int | None = None


def utc_day(epoch_ms: int) -> str:
    """The ``yyyymmdd`` UTC day of a wire timestamp (ms since the epoch), for ``load:<day>``."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y%m%d")


class Ledger:
    """Stock ledger over a redis.Redis or redis.RedisCluster client (see the module docstring).

    Thread-safe as far as the client is (redis-py clients are); holds no state besides the
    script hashes. ``prefix`` namespaces every key so several deployments can share one Redis.
    """

    def __init__(self, client: redis.Redis | redis.RedisCluster, prefix: str = "fulfil",
                 observe: Callable[[str, float], None] | None = None) -> None:
        """`observe(op, seconds)` is told the wall time of every round trip (metrics), `op`
        naming what the pipeline held, e.g. "mget+hmget" or "put_records+reserve"."""
        _name(prefix, "prefix")
        self._observe = observe
        if "{" in prefix or "}" in prefix:
            # a brace in the prefix would become (or break) the cluster hash tag
            raise LedgerInputError(f"prefix must not contain '{{' or '}}'; got {prefix!r}")
        self._client = client
        self._prefix = prefix
        self._keys: dict[str, tuple[str, str]] = {}
        self._lua: dict[str, str] = {}
        self._sha: dict[str, str] = {}
        for name in _SCRIPT_NAMES:
            text = (_LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
            self._lua[name] = text
            self._sha[name] = hashlib.sha1(text.encode()).hexdigest()
        self._script_names = {sha: name for name, sha in self._sha.items()}
        self.load_scripts()

    # -- keys and scripts --------------------------------------------------------------------

    def node_keys(self, node_id: str) -> tuple[str, str]:
        """(stock hash, reservation hash) of a node; both carry the hash tag ``{n:<node>}``."""
        keys = self._keys.get(node_id)
        if keys is None:
            base = f"{self._prefix}:{{n:{_name(node_id, 'node_id')}}}"
            keys = self._keys[node_id] = (f"{base}:stock", f"{base}:resv")
        return keys

    def load_scripts(self) -> None:
        """SCRIPT LOAD every script (on a cluster: on every primary). Called at start-up and
        again whenever Redis answers NOSCRIPT (restart, failover, SCRIPT FLUSH)."""
        for name, text in self._lua.items():
            sha = self._client.script_load(text)
            if _text(sha) != self._sha[name]:
                raise LedgerScriptError(f"SCRIPT LOAD of {name}.lua returned an unexpected sha")

    def sha(self, script: str) -> str:
        """The SHA1 of a script under state/lua (for commands built by other state/ modules)."""
        return self._sha[script]

    @property
    def clustered(self) -> bool:
        """True on Redis Cluster, where one pipeline's commands run on several shards."""
        return isinstance(self._client, redis.RedisCluster)

    def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run any commands (ledger's or others') in ONE pipeline round trip; see `_execute`."""
        return self._execute(commands)

    def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run commands in ONE pipeline round trip; re-run only the EVALSHAs that met NOSCRIPT.

        Re-running is safe: a NOSCRIPT reply means that script did not run at all.
        """
        results = self._pipeline(commands)
        retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if retry:
            self.load_scripts()
            for i, result in zip(retry, self._pipeline([commands[i] for i in retry]), strict=True):
                results[i] = result
        for command, result in zip(commands, results, strict=True):
            if isinstance(result, Exception):
                raise LedgerScriptError(f"{self._describe(command)} failed: {result}") from result
        return results

    def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        started = time.perf_counter()
        replies = pipeline(self._client, commands)
        if self._observe is not None:
            self._observe(self._op(commands), time.perf_counter() - started)
        return replies

    def _op(self, commands: list[tuple[Any, ...]]) -> str:
        """A bounded label for a pipeline: its distinct command kinds, scripts by name."""
        names = self._script_names
        kinds = {names.get(c[1], "evalsha") if c[0] == "EVALSHA" else c[0].lower()
                 for c in commands}
        return "+".join(sorted(kinds))

    def _describe(self, command: tuple[Any, ...]) -> str:
        """Name a failed command by script and key (never by its packed arguments)."""
        if command[0] == "EVALSHA":
            name = next((f"{n}.lua" for n, s in self._sha.items() if s == command[1]), "EVALSHA")
            return f"{name} on key {command[3]!r}"
        return f"{command[0]} on key {command[1]!r}"

    def _evalsha(self, script: str, node_id: str, *args: str) -> tuple[Any, ...]:
        stock, resv = self.node_keys(node_id)
        if script in _ONE_KEY:
            return ("EVALSHA", self._sha[script], 1, stock, *args)
        return ("EVALSHA", self._sha[script], 2, stock, resv, *args)

    # -- inventory ---------------------------------------------------------------------------

    def apply_inventory(self, updates: Sequence[InventoryUpdate]) -> list[str]:
        """Apply inventory events; returns "applied" | "stale" | "clamped" per update, in order.

        Events are grouped by node (one EVALSHA per node, all in one round trip); within a node
        they are applied in the given order, so a batch may hold several versions of a sku.
        """
        groups = _group(
            (u.node_id, (i, self._pack_update(u))) for i, u in enumerate(updates)
        )
        commands, slots = [], []
        for node, items in groups.items():
            for chunk in _chunks(items):
                packed = "\t".join(p for _, p in chunk)
                commands.append(self._evalsha("apply_inventory", node, packed))
                slots.append([i for i, _ in chunk])
        statuses = [""] * len(updates)
        for indices, reply in zip(slots, self._execute(commands), strict=True):
            for i, code in zip(indices, reply, strict=True):
                statuses[i] = _APPLY_STATUS[code]
        return statuses

    @staticmethod
    def _pack_update(u: InventoryUpdate) -> str:
        kind = _KINDS.get(u.kind)
        if kind is None:
            raise LedgerInputError(f"kind must be 'snapshot' or 'delta'; got {u.kind!r}")
        where = f"of sku {u.sku!r} at node {u.node_id!r}"
        value = _int(u.value, f"{u.kind} value {where}", 0 if kind == "s" else -MAX_QTY, MAX_QTY)
        version = _int(u.version, f"version {where}", 0, MAX_VERSION)
        return f"{_name(u.sku, 'sku')}\t{version}\t{kind}\t{value}"

    # -- reads -------------------------------------------------------------------------------

    def availability(
        self, node_ids: Sequence[str], skus: Sequence[str], day: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """ATP per (node, sku) and each node's load for ``day``, in ONE round trip.

        Returns ``(atp int64[len(node_ids), len(skus)], load int64[len(node_ids)])``. Missing
        entries are 0; ATP is never negative (a count below the reserved quantity reads as 0).
        One HMGET per node, all in one pipeline. Reads are not atomic across nodes: this feeds
        scoring, and reserve() re-checks atomically.
        """
        commands, parse = self.availability_commands(node_ids, skus, day)
        return parse(self._execute(commands))

    def availability_commands(
        self, node_ids: Sequence[str], skus: Sequence[str], day: str
    ) -> tuple[list[tuple[Any, ...]], Callable[[list[Any]], tuple[np.ndarray, np.ndarray]]]:
        """`availability` as (commands, parse): to share a round trip with other reads.

        One plain HMGET per node (on-hand and reserved of every sku, and the day's load). A
        read-only Lua script answering one string per node was measured too: it spares the
        client some parsing without hiredis, but costs Redis 5-10x more CPU (0.58 vs 0.11 ms for
        5 skus x 40 nodes, 134 vs 14 ms for 2000 skus) — and Redis CPU is what the routers wait
        on. With hiredis (a dependency) the client side is as cheap.
        """
        _day(day)
        fields = [f for s in skus for f in (f"oh:{_name(s, 'sku')}", f"rs:{s}")]
        fields.append(f"load:{day}")
        commands: list[tuple[Any, ...]] = [
            ("HMGET", self.node_keys(node)[0], *fields) for node in node_ids
        ]
        return commands, lambda replies: self._parse_availability(replies, len(skus))

    @staticmethod
    def _parse_availability(replies: list[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(replies)
        atp = np.empty((n, k), dtype=np.int64)
        load = np.empty(n, dtype=np.int64)
        for row, values in enumerate(replies):
            # one C-level parse per node: b"12,0,3,..." -> int64 array
            flat = np.array(b",".join(v if v is not None else b"0" for v in values).split(b","),
                            dtype=np.int64)
            atp[row] = np.maximum(flat[0:-1:2] - flat[1:-1:2], 0)
            load[row] = flat[-1]
        return atp, load

    def stock(self, node_id: str, sku: str) -> tuple[int, int, int]:
        """(on_hand, reserved, atp) of one sku at one node; atp clamped at 0 like availability."""
        key = self.node_keys(node_id)[0]
        oh, rs = self._client.hmget(key, f"oh:{_name(sku, 'sku')}", f"rs:{sku}")
        on_hand, reserved = int(oh or 0), int(rs or 0)
        return on_hand, reserved, max(on_hand - reserved, 0)

    def reservation(self, node_id: str, order_id: str) -> tuple[tuple[str, int], ...] | None:
        """The (sku, qty) lines reserved for an order at a node (summed per sku), or None."""
        raw = self._client.hget(self.node_keys(node_id)[1], _name(order_id, "order_id"))
        return None if raw is None else _parse_record(raw)

    def open_reservations(self, node_ids: Sequence[str]) -> dict[str, list[str]]:
        """{node: reservation ids still held there} (not yet shipped or released), in one round
        trip. For the rare scans a disruption triggers, not for the per-order path: it reads
        every open reservation of those nodes."""
        commands = [("HKEYS", self.node_keys(n)[1]) for n in node_ids]
        return {n: [_text(k) for k in keys]
                for n, keys in zip(node_ids, self._execute(commands), strict=True)}

    def holds(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (node, reservation id): is it still held there? One round trip."""
        commands = [("HEXISTS", self.node_keys(node)[1], rid) for node, rid in pairs]
        return [bool(r) for r in self._execute(commands)]

    # -- reservations ------------------------------------------------------------------------

    def reserve(self, requests: Sequence[ReserveRequest], day: str) -> list[ReserveResult]:
        """Reserve each request (all-or-nothing per order); results in request order.

        One EVALSHA per node (per CHUNK orders / CHUNK_LINES lines), all in one round trip.
        Within a node, orders are served in the given order. Replaying a request returns
        "already" and changes nothing.
        """
        commands, parse = self.reserve_commands(requests, day)
        return parse(self._execute(commands))

    def reserve_commands(
        self, requests: Sequence[ReserveRequest], day: str
    ) -> tuple[list[tuple[Any, ...]], Callable[[list[Any]], list[ReserveResult]]]:
        """`reserve` as (commands, parse): to share a round trip with the order book's writes."""
        _day(day)
        groups = _group((r.node_id, i) for i, r in enumerate(requests))
        commands: list[tuple[Any, ...]] = []
        slots: list[list[int]] = []
        for node, indices in groups.items():
            parts: list[str] = []
            chunk: list[int] = []
            lines = 0
            for i in indices:
                n_lines = len(requests[i].lines)
                if chunk and (len(chunk) == CHUNK or lines + n_lines > CHUNK_LINES):
                    commands.append(self._evalsha("reserve", node, day, "\t".join(parts)))
                    slots.append(chunk)
                    parts, chunk, lines = [], [], 0
                _pack_order(requests[i], parts)
                chunk.append(i)
                lines += n_lines
            commands.append(self._evalsha("reserve", node, day, "\t".join(parts)))
            slots.append(chunk)
        return commands, lambda replies: self._parse_reserve(replies, requests, slots)

    @staticmethod
    def _parse_reserve(replies: list[Any], requests: Sequence[ReserveRequest],
                       slots: list[list[int]]) -> list[ReserveResult]:
        results: list[ReserveResult | None] = [None] * len(requests)
        for indices, reply in zip(slots, replies, strict=True):
            for i, code in zip(indices, reply, strict=True):
                req = requests[i]
                if code == 0:
                    results[i] = ReserveResult(req.order_id, req.node_id, "reserved")
                elif code == 1:
                    results[i] = ReserveResult(req.order_id, req.node_id, "already")
                else:
                    atp, _, sku = _text(code).partition("\t")
                    results[i] = ReserveResult(req.order_id, req.node_id, "short", sku, int(atp))
        return results  # type: ignore[return-value]  # every slot is filled above

    def reserve_split(
        self, requests_for_one_order: Sequence[ReserveRequest], day: str
    ) -> list[ReserveResult]:
        """Reserve one order split across nodes; all nodes or none.

        All nodes are tried in one round trip (in the given order); if any is short, every node
        that reserved ("reserved", or "already" from an earlier attempt of this order) is
        released in a second round trip and reported as "released". The short nodes keep their
        "short" result, so the caller learns every node that could not serve its part.
        If the compensating release itself fails (Redis gone), the error propagates; replaying
        the order later releases the leftovers, since "already" nodes are compensated too.
        """
        reqs = list(requests_for_one_order)
        if not reqs:
            return []
        order_ids = {r.order_id for r in reqs}
        if len(order_ids) != 1:
            raise LedgerInputError(f"reserve_split takes the parts of ONE order; got {order_ids}")
        nodes = [r.node_id for r in reqs]
        if len(set(nodes)) != len(nodes):
            raise LedgerInputError(
                f"order {reqs[0].order_id!r} lists a node twice ({nodes}); one part per node"
            )
        results = self.reserve(reqs, day)
        if all(r.status != "short" for r in results):
            return results
        held = [r.node_id for r in results if r.status in ("reserved", "already")]
        self.release({node: [reqs[0].order_id] for node in held}, day)
        return [
            ReserveResult(r.order_id, r.node_id, "released") if r.node_id in held else r
            for r in results
        ]

    def release(
        self, order_ids_by_node: Mapping[str, Sequence[str]], day: str | None = None
    ) -> dict[tuple[str, str], str]:
        """Release reservations; (node, order) -> "released" | "absent" (idempotent).

        The load counter given back is the one of the day the reservation was made (stored in
        its record), not ``day``; ``day`` is only a fallback for records without one.
        """
        fallback = "" if day is None else _day(day)
        return self._consume("release", order_ids_by_node, ("absent", "released"), fallback)

    def ship(self, order_ids_by_node: Mapping[str, Sequence[str]]) -> dict[tuple[str, str], str]:
        """Consume reservations on pick-up (on-hand and reserved both drop);
        (node, order) -> "shipped" | "absent" (idempotent)."""
        return self._consume("ship", order_ids_by_node, ("absent", "shipped"))

    def _consume(
        self,
        script: str,
        order_ids_by_node: Mapping[str, Sequence[str]],
        labels: tuple[str, str],
        *args: str,
    ) -> dict[tuple[str, str], str]:
        commands, slots = [], []
        for node, order_ids in order_ids_by_node.items():
            # duplicates would come back "absent" the second time and hide the real outcome
            unique = list(dict.fromkeys(_name(o, "order_id") for o in order_ids))
            for chunk in _chunks(unique):
                commands.append(self._evalsha(script, node, *args, "\t".join(chunk)))
                slots.append((node, chunk))
        out: dict[tuple[str, str], str] = {}
        for (node, chunk), reply in zip(slots, self._execute(commands), strict=True):
            for order_id, code in zip(chunk, reply, strict=True):
                out[node, order_id] = labels[code]
        return out
