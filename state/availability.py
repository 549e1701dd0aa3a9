"""An optimistic, per-worker cache of available-to-promise, in front of the ledger.

Why: reading ATP for every sku of a batch at every node costs more than anything else per order
(one node-sku lookup per pair, in Redis, every batch). Popular skus recur in every batch, so a
short-lived local copy removes most of those reads. It is safe because the cache only feeds
*scoring*: the reservation itself is the atomic check (`reserve.lua`). A stale entry can at worst
make the router pick a node that turns out to be short; that order is then re-planned against a
fresh read (`invalidate` + `get(..., fresh=True)`), never oversold.

The working set is re-read in bulk every `ttl_ms` (default 1 s); the router also applies its own
successful reservations to the cache, so within one worker the copy stays close to the truth
between refreshes. Other workers' reservations and inventory changes show up at the next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from state.ledger import Ledger


class AvailabilityCache:
    def __init__(self, ledger: Ledger, node_ids: Sequence[str], ttl_ms: float = 1000.0,
                 keep_s: float = 60.0) -> None:
        self._ledger = ledger
        self._node_ids = list(node_ids)
        self._node_index = {n: i for i, n in enumerate(self._node_ids)}
        self._ttl = ttl_ms / 1000.0
        self._columns: dict[str, np.ndarray] = {}  # sku -> int64[N] ATP per node
        self._used: dict[str, float] = {}  # sku -> last time a batch asked for it
        self._keep_s = keep_s
        self._refreshed_at = -1.0  # last bulk refresh of the working set
        self._bulk = False
        self._load = np.zeros(len(self._node_ids), dtype=np.int64)
        self._day = ""
        self.reads = 0  # skus read from Redis (for metrics and tests)

    def get(self, skus: Sequence[str], day: str, fresh: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
        """(atp int64[N, len(skus)], load int64[N]) — from the cache where it is young enough."""
        stale = self.needed(skus, day, fresh)
        if stale is not None:
            self.store(stale, *self._ledger.availability(self._node_ids, stale, day))
        return self.matrix(skus)

    def needed(self, skus: Sequence[str], day: str, fresh: bool = False) -> list[str] | None:
        """The skus to read from Redis now, or None when the cache can answer alone.

        Once per `ttl_ms` the whole working set (every sku asked for in the last `keep_s`) is
        re-read in one go — one command per node, whatever the batch size — so most batches
        need no read at all; otherwise only skus never seen before are read. `fresh` (a re-plan
        after a lost race) re-reads exactly the skus asked for.
        """
        now = time.monotonic()
        if day != self._day:  # a new day: load counters restart; drop everything
            self._columns.clear()
            self._used.clear()
            self._day = day
            self._refreshed_at = -1.0
        used = self._used
        for sku in skus:
            used[sku] = now
        self._bulk = False
        if fresh:
            return list(skus)
        if self._refreshed_at < now - self._ttl:
            cutoff = now - self._keep_s
            for sku in [k for k, t in used.items() if t < cutoff]:
                del used[sku]
                self._columns.pop(sku, None)
            self._bulk = True
            return list(used)
        missing = [s for s in skus if s not in self._columns]
        return missing or None

    def store(self, skus: Sequence[str], atp: np.ndarray, load: np.ndarray) -> None:
        """Absorb a read of `skus` (atp [N, len(skus)]) and every node's load."""
        self.reads += len(skus)
        for j, sku in enumerate(skus):
            self._columns[sku] = atp[:, j].copy()
        self._load = load.copy()
        if self._bulk:
            self._refreshed_at = time.monotonic()
            self._bulk = False

    def matrix(self, skus: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The cached (atp [N, len(skus)], load [N]); every sku must have been read."""
        n = len(self._node_ids)
        out = np.empty((n, len(skus)), dtype=np.int64)
        for j, sku in enumerate(skus):
            out[:, j] = self._columns[sku]
        return out, self._load.copy()

    def reserved(self, node_id: str, lines: Iterable[tuple[str, int]]) -> None:
        """Apply one successful reservation (node, [(sku, qty)]) to the cached copy."""
        i = self._node_index.get(node_id)
        if i is None:
            return
        for sku, qty in lines:
            col = self._columns.get(sku)
            if col is not None:
                col[i] = max(0, col[i] - qty)
        self._load[i] += 1

    def invalidate(self, skus: Iterable[str]) -> None:
        """Forget skus (a reservation came back short, stock was released)."""
        for sku in skus:
            self._columns.pop(sku, None)
