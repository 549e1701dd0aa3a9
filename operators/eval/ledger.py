"""An in-memory mirror of the stock ledger, for offline replays.

Why a mirror and not Redis: an evaluation replays the same stream several times (once per
policy, dozens of times while tuning) and must be deterministic; a local copy with the ledger's
exact rules (``docs/ledger.md``, ``state/lua/*.lua``) gives the planner the same stock it would
read from Redis, without a server and in microseconds. The rules mirrored:

- inventory applies once per version (greater than the last applied one); a snapshot sets
  on-hand, an adjustment adds to it, on-hand is clamped at 0;
- ATP = max(0, on_hand - reserved); load = orders reserved at the node that UTC day;
- a reservation is all-or-nothing per order (lines of one sku summed), one record per order and
  node, counted towards the day's load; release gives stock and load back (to the day stored in
  the record); a pick-up consumes on-hand and reserved together and keeps the day's load.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["DAY_MS", "LedgerMirror", "day_of"]

DAY_MS = 86_400_000


def day_of(epoch_ms: int) -> int:
    """The UTC day number of a timestamp: the same grouping as ``state.ledger.utc_day``."""
    return int(epoch_ms) // DAY_MS


class LedgerMirror:
    """Stock, reservations and load of every node, in numpy arrays indexed [node, sku]."""

    def __init__(self, node_ids: Sequence[str]) -> None:
        self.node_ids = list(node_ids)
        self.node_index = {n: i for i, n in enumerate(self.node_ids)}
        self._sku: dict[str, int] = {}
        n = len(self.node_ids)
        self._oh = np.zeros((n, 64), dtype=np.int64)
        self._rs = np.zeros((n, 64), dtype=np.int64)
        self._ver = np.full((n, 64), -1, dtype=np.int64)  # -1: no version applied yet
        self._load: dict[int, np.ndarray] = {}
        # order id -> node -> (day, ((sku column, qty), ...)) lines summed per sku
        self._resv: dict[str, dict[int, tuple[int, tuple[tuple[int, int], ...]]]] = {}
        self.ignored_inventory = 0  # events for nodes this network does not have

    # -- columns -------------------------------------------------------------------------------

    def _col(self, sku: str) -> int:
        c = self._sku.get(sku)
        if c is None:
            c = self._sku[sku] = len(self._sku)
            if c >= self._oh.shape[1]:
                grow = self._oh.shape[1]
                self._oh = np.pad(self._oh, ((0, 0), (0, grow)))
                self._rs = np.pad(self._rs, ((0, 0), (0, grow)))
                self._ver = np.pad(self._ver, ((0, 0), (0, grow)), constant_values=-1)
        return c

    # -- inventory -----------------------------------------------------------------------------

    def apply_inventory(self, node_id: str, sku: str, version: int, snapshot: bool,
                        value: int) -> str:
        """``applied | stale | clamped | unknown-node`` (the ledger's statuses)."""
        k = self.node_index.get(node_id)
        if k is None:
            self.ignored_inventory += 1
            return "unknown-node"
        c = self._col(sku)
        if version <= self._ver[k, c]:
            return "stale"
        new = int(value) if snapshot else int(self._oh[k, c]) + int(value)
        status = "applied"
        if new < 0:
            new, status = 0, "clamped"
        self._oh[k, c] = new
        self._ver[k, c] = version
        return status

    # -- reads ---------------------------------------------------------------------------------

    def availability(self, skus: Sequence[str], day: int) -> tuple[np.ndarray, np.ndarray]:
        """(atp i8[N, len(skus)], load i8[N]): what ``Ledger.availability`` returns."""
        cols = np.array([self._col(s) for s in skus], dtype=np.int64)
        atp = np.maximum(self._oh[:, cols] - self._rs[:, cols], 0)
        return np.ascontiguousarray(atp), self.load(day)

    def load(self, day: int) -> np.ndarray:
        got = self._load.get(day)
        return np.zeros(len(self.node_ids), dtype=np.int64) if got is None else got.copy()

    def on_hand(self, node_id: str, sku: str) -> int:
        c = self._col(sku)  # first: a new column may grow the arrays
        return int(self._oh[self.node_index[node_id], c])

    def reserved(self, node_id: str, sku: str) -> int:
        c = self._col(sku)
        return int(self._rs[self.node_index[node_id], c])

    def holds(self, order_id: str) -> dict[str, list[tuple[str, int]]]:
        """The order's reservations: node id -> [(sku, qty)] (summed per sku)."""
        names = {c: s for s, c in self._sku.items()}
        return {self.node_ids[k]: [(names[c], q) for c, q in lines]
                for k, (_, lines) in self._resv.get(order_id, {}).items()}

    # -- reservations --------------------------------------------------------------------------

    def reserve(self, order_id: str, parts: dict[int, Iterable[tuple[str, int]]],
                day: int) -> bool:
        """Reserve an order at every node of ``parts`` (node index -> lines), all or nothing.

        The ledger reserves node by node and compensates when a later node is short; the end
        state is the same as this check-then-take. An order that already holds stock is refused
        (the engine releases before re-routing).
        """
        if order_id in self._resv:
            return False
        summed: dict[int, dict[int, int]] = {}
        for k, lines in parts.items():
            acc = summed.setdefault(k, {})
            for sku, qty in lines:
                c = self._col(sku)
                acc[c] = acc.get(c, 0) + int(qty)
        for k, acc in summed.items():
            for c, q in acc.items():
                if self._oh[k, c] - self._rs[k, c] < q:
                    return False
        load = self._load.setdefault(day, np.zeros(len(self.node_ids), dtype=np.int64))
        record: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {}
        for k, acc in summed.items():
            for c, q in acc.items():
                self._rs[k, c] += q
            load[k] += 1
            record[k] = (day, tuple(acc.items()))
        self._resv[order_id] = record
        return True

    def release(self, order_id: str) -> int:
        """Give back everything the order holds; returns how many node records were released."""
        record = self._resv.pop(order_id, None)
        if not record:
            return 0
        for k, (day, lines) in record.items():
            for c, q in lines:
                self._rs[k, c] = max(0, self._rs[k, c] - q)
            load = self._load.get(day)
            if load is not None:
                load[k] = max(0, load[k] - 1)
        return len(record)

    def ship(self, order_id: str, node_id: str) -> bool:
        """A pick-up: on-hand and reserved both drop by the record's lines; the load stays."""
        k = self.node_index.get(node_id)
        record = self._resv.get(order_id)
        if k is None or not record or k not in record:
            return False
        _, lines = record.pop(k)
        for c, q in lines:
            self._oh[k, c] = max(0, self._oh[k, c] - q)
            self._rs[k, c] = max(0, self._rs[k, c] - q)
        if not record:
            del self._resv[order_id]
        return True
