"""What the edge links keep in Redis: effects that crossed a link, where each link is, its health.

Why it exists: an edge site and the centre each have their own ledger (docs/edge.md). Orders
decided on one side hold stock on the other side's copy of the site's nodes, and that copy must
end up equal on both sides however often a link drops, retries or restarts. Three things make
that work, and all of them live here, behind `state/` like every other use of Redis:

* `EdgeSync.apply` runs `lua/edge_apply.lua` (one EVALSHA per node per batch, one round trip):
  reservation effects applied once per (node, order, decision version), shipments that may
  arrive before the reservation they consume, `force` on the centre (the edge's sales stand) and
  `check` on the edge (the centre's claims must fit). Replays are harmless by construction.
* `LinkProgress`: where a link is in its source topics, per partition, kept on the link's
  *destination* side and advanced only after the destination acknowledged everything before it.
* `LinkStatus`: the links' state and counters, on the edge's Redis (reachable during an outage,
  which is when `fulfil edge status` is read).

Keys (prefix `P`): `P:{n:NODE}:edge` (hash, per node, beside the ledger's keys: same hash tag),
`P:{n:NODE}:edge:t` (sorted set: orders whose link state is terminal, by when; `EdgeSync.prune`
forgets those older than the retention horizon, `lua/edge_prune.lua`),
`P:edge:<site>:<link>:offsets` (hash `topic#partition` -> next offset), `P:edge:<site>:status`
(hash of fields `<link>.<name>`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from operators.edge.messages import EdgeEffect
from state.ledger import Ledger, LedgerInputError
from state.ledger_codec import CHUNK, _chunks, _day, _group, _int, _name, _text
from state.offsets import PartitionOffsets

__all__ = ["EdgeEffect", "EdgeSync", "EffectResult", "LinkProgress", "LinkStatus"]

_MODES = ("force", "check")
_CODES = {0: "applied", 1: "stale", 2: "shipped", 3: "pending", 4: "none"}
_MAX_VERSION = 2**53 - 1


@dataclass(frozen=True, slots=True)
class EffectResult:
    """Outcome of one effect: applied | stale | deficit | rejected | shipped | pending | none.

    `deficit` (force): applied, and reserved now exceeds on-hand for `sku` by `amount`.
    `rejected` (check): nothing reserved, `sku` had only `amount` available.
    """

    effect: EdgeEffect
    status: str
    sku: str | None = None
    amount: int | None = None


class EdgeSync:
    """Applies `EdgeEffect`s through the ledger's executor (same scripts, same client)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._sha = ledger.sha("edge_apply")
        self._prune_sha = ledger.sha("edge_prune")

    def edge_key(self, node_id: str) -> str:
        """The node's link-state hash: same hash tag as its stock and reservations."""
        return self._ledger.node_keys(node_id)[0].rpartition(":")[0] + ":edge"

    def index_key(self, node_id: str) -> str:
        """The node's index of terminal link states by time (same hash tag)."""
        return self.edge_key(node_id) + ":t"

    def apply(self, effects: Sequence[EdgeEffect], mode: str,
              now_ms: int | None = None) -> list[EffectResult]:
        """Apply effects (one EVALSHA per node and chunk, ONE round trip); results in order.
        `now_ms` stamps the states that become terminal (the prune horizon counts from it)."""
        now = str(int(time.time() * 1000) if now_ms is None else now_ms)
        if mode not in _MODES:
            raise LedgerInputError(f"mode must be 'force' or 'check'; got {mode!r}")
        groups = _group((e.node_id, (i, _pack(e))) for i, e in enumerate(effects))
        commands: list[tuple[Any, ...]] = []
        slots: list[list[int]] = []
        for node, items in groups.items():
            stock, resv = self._ledger.node_keys(node)
            for chunk in _chunks(items, CHUNK):
                commands.append(("EVALSHA", self._sha, 4, stock, resv, self.edge_key(node),
                                 self.index_key(node), mode, "\t".join(p for _, p in chunk),
                                 now))
                slots.append([i for i, _ in chunk])
        results: list[EffectResult | None] = [None] * len(effects)
        for indices, reply in zip(slots, self._ledger.execute(commands), strict=True):
            for i, code in zip(indices, reply, strict=True):
                results[i] = _result(effects[i], code)
        return [r for r in results if r is not None]

    def prune(self, nodes: Iterable[str], older_than_ms: int, limit: int = 1000) -> int:
        """Forget the link states of orders that hold nothing at these nodes and turned
        terminal at or before `older_than_ms` (at most `limit` per node); ONE round trip."""
        commands = [("EVALSHA", self._prune_sha, 3, self._ledger.node_keys(n)[1],
                     self.edge_key(n), self.index_key(n), str(int(older_than_ms)), str(limit))
                    for n in nodes]
        return sum(int(r) for r in self._ledger.execute(commands)) if commands else 0

    def size(self, nodes: Iterable[str]) -> int:
        """How many link-state fields the nodes hold (the bounded-state metric)."""
        commands = [("HLEN", self.edge_key(n)) for n in nodes]
        return sum(int(r) for r in self._ledger.execute(commands)) if commands else 0

    def state(self, node_id: str, order_id: str) -> str | None:
        """The raw link state of an order at a node (tests and diagnostics)."""
        raw = self._ledger.execute([("HGET", self.edge_key(node_id), order_id)])[0]
        return None if raw is None else _text(raw)


def _pack(e: EdgeEffect) -> str:
    order = _name(e.order_id, "order_id")
    if e.op == "ship":
        return f"S\t{order}"
    if e.op != "reserve":
        raise LedgerInputError(f"effect op must be 'reserve' or 'ship'; got {e.op!r}")
    version = _int(e.version, f"version of order {order!r}", 1, _MAX_VERSION)
    parts = ["R", order, str(version), _day(e.day), str(len(e.lines))]
    for sku, qty in e.lines:
        parts.append(_name(sku, "sku"))
        parts.append(str(_int(qty, f"qty of sku {sku!r} in order {order!r}", 1, 10**12)))
    return "\t".join(parts)


def _result(effect: EdgeEffect, code: Any) -> EffectResult:
    if isinstance(code, int):
        return EffectResult(effect, _CODES[code])
    kind, sku, amount = _text(code).split("\t")
    return EffectResult(effect, "deficit" if kind == "d" else "rejected", sku, int(amount))


class LinkProgress(PartitionOffsets):
    """Next offset per source partition of one link, stored on the link's destination side.

    Written only after the destination acknowledged every message before those offsets, so a
    restarted link resends at most the batch that was in flight (and the receivers' idempotency
    makes that harmless), never skips one.
    """

    def __init__(self, client: Any, prefix: str, site: str, link: str) -> None:
        super().__init__(client, f"{prefix}:edge:{site}:{link}:offsets")


class LinkStatus:
    """The links' health and counters, on the edge's Redis: `fulfil edge status` reads it."""

    def __init__(self, client: Any, prefix: str, site: str) -> None:
        self._client = client
        self.key = f"{prefix}:edge:{site}:status"

    def set(self, link: str, **fields: Any) -> None:
        """Set fields of one link (values JSON-encoded)."""
        if fields:
            self._client.hset(self.key, mapping={f"{link}.{k}": orjson.dumps(v)
                                                 for k, v in fields.items()})

    def add(self, link: str, counts: Mapping[str, int]) -> None:
        """Add to counters of one link (one round trip)."""
        pipe = self._client.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(self.key, f"{link}.{name}", n)
        pipe.execute()

    def read(self) -> dict[str, dict[str, Any]]:
        """{link: {field: value}}."""
        out: dict[str, dict[str, Any]] = {}
        for field, value in self._client.hgetall(self.key).items():
            link, _, name = _text(field).partition(".")
            try:
                out.setdefault(link, {})[name] = orjson.loads(value)
            except orjson.JSONDecodeError:
                out.setdefault(link, {})[name] = _text(value)
        return out
