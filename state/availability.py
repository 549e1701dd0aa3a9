"""An optimistic, per-worker cache of available-to-promise, in front of the ledger.

Why: reading ATP for every sku of a batch at every node costs more than anything else per order
(one node-sku lookup per pair, in Redis, every batch). Popular skus recur in every batch, so a
short-lived local copy removes most of those reads. It is safe because the cache only feeds
*scoring*: the reservation itself is the atomic check (`reserve.lua`). A stale entry can at worst
make the router pick a node that turns out to be short; that order is then re-planned against a
fresh read (`invalidate` + `get(..., fresh=True)`), never oversold.

Entries are re-read once they are older than `ttl_ms` (default 1 s), a few per batch; the router
also applies its own successful reservations to the cache, so within one worker the copy stays
close to the truth between refreshes. Other workers' reservations and inventory changes show up
at the next refresh of the sku.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from state.ledger import Ledger


class AvailabilityCache:
    def __init__(self, ledger: Ledger, node_ids: Sequence[str], ttl_ms: float = 1000.0,
                 keep_s: float = 30.0, refresh_cap: int = 256) -> None:
        self._ledger = ledger
        self._node_ids = list(node_ids)
        self._node_index = {n: i for i, n in enumerate(self._node_ids)}
        self._ttl = ttl_ms / 1000.0
        self._columns: dict[str, np.ndarray] = {}  # sku -> int64[N] ATP per node
        self._used: dict[str, float] = {}  # sku -> last time a batch asked for it
        self._fetched: OrderedDict[str, float] = OrderedDict()  # sku -> read time, oldest first
        self._keep_s = keep_s
        self._refresh_cap = refresh_cap
        self._load = np.zeros(len(self._node_ids), dtype=np.int64)
        self._load_at = -1.0
        self._day = ""

    def __len__(self) -> int:
        """Skus held (the cache drops those no batch asked for in `keep_s`)."""
        return len(self._columns)

    def get(self, skus: Sequence[str], day: str, fresh: bool = False, refresh: bool = True
            ) -> tuple[np.ndarray, np.ndarray]:
        """(atp int64[N, len(skus)], load int64[N]) — from the cache where it is young enough."""
        stale = self.needed(skus, day, fresh, refresh)
        if stale is not None:
            self.store(stale, *self._ledger.availability(self._node_ids, stale, day))
        return self.matrix(skus)

    def needed(self, skus: Sequence[str], day: str, fresh: bool = False, refresh: bool = True
               ) -> list[str] | None:
        """The skus to read from Redis now, or None when the cache can answer alone.

        New skus are read on first use. Skus older than `ttl_ms` are re-read a few at a time
        (at most `refresh_cap` per call, oldest first), so refreshing the working set costs a
        little on every batch instead of a stall once per period. Skus no batch asked for in
        `keep_s` are dropped. `fresh` (a re-plan after a lost race) re-reads exactly `skus`;
        `refresh=False` reads only skus never seen (the caller refreshed earlier in the batch).
        An empty list still means "read": the nodes' load counters are due.
        """
        now = time.monotonic()
        if day != self._day:  # a new day: load counters restart; drop everything
            self._columns.clear()
            self._fetched.clear()
            self._used.clear()
            self._day = day
            self._load_at = -1.0
        used = self._used
        for sku in skus:
            used[sku] = now
        if fresh:
            return list(skus)
        columns = self._columns
        todo = [s for s in skus if s not in columns]
        limit, forget = now - self._ttl, now - self._keep_s
        if not refresh:
            return list(dict.fromkeys(todo)) if todo else None
        fetched = self._fetched
        for sku, at in list(itertools.islice(fetched.items(), self._refresh_cap)):
            if at >= limit:
                break  # oldest first: the rest are younger
            if used.get(sku, -1.0) < forget:
                del fetched[sku]
                columns.pop(sku, None)
                used.pop(sku, None)
            else:
                todo.append(sku)
        if todo or self._load_at < limit:
            return list(dict.fromkeys(todo))
        return None

    def store(self, skus: Sequence[str], atp: np.ndarray, load: np.ndarray) -> None:
        """Absorb a read of `skus` (atp [N, len(skus)]) and every node's load."""
        now = time.monotonic()
        for j, sku in enumerate(skus):
            self._columns[sku] = atp[:, j].copy()
            self._fetched[sku] = now
            self._fetched.move_to_end(sku)
        self._load = load.copy()
        self._load_at = now

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
            self._fetched.pop(sku, None)
