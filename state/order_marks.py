"""Abnormal-order history shared by every routing worker and process, in Redis.

The router flags an order on its first decision (`dataflows/router_flags.py`), judging it with
the pure checks of `operators.watch.abnormal` against what came before it. That history must be
shared: one customer's orders arrive on different partitions and channels, so on different
workers, and a per-worker copy would miss exactly the cross-channel duplicates. The script
`lua/order_marks.lua` returns the history an order is judged against and adds the order to it,
atomically, so two workers never both see "no earlier order".

What is kept, and why it is bounded:

- **fingerprints** (customer + items + address, `operators.watch.abnormal.fingerprint`): the
  order holding it, with a TTL of the duplicate window. At most (orders per window) keys.
- **customers**: orders seen and largest line, TTL `norm_ttl_ms` after the last order.
- **skus**: count, mean and spread of line quantities, TTL `norm_ttl_ms`. One small key per
  sku rather than a norms board learned by the watchtower and read periodically: a board would
  make routing depend on the watchtower running and being caught up, and would judge against
  norms seconds to minutes old; a key per sku costs a few µs of server time in a call the router
  makes anyway, and a quiet sku expires by itself.

Cost (the router's throughput is a tracked target; `benchmarks/router_bench.py`): one script
call per bucket per wave (a handful), never one per order; per order one customer op (two GETs
and two SETs in the script). Lines are mostly small, and a line below `qty_min` units is never an
outlier: small lines of a sku are summed in the process into one update (count, mean, spread,
merged like Chan et al.'s parallel variance) sent at most every `NORM_FLUSH_S`, one op per sku
touched since, nothing read back. Only
a line of at least `qty_min` units (rare) is judged, one op per line: it reads the norm before
it, and the norm it read is kept (`...:s:<sku>:j:<order_id>`, TTL = the duplicate window) so a
replay of the order is judged against the same norm.

Key layout (Redis Cluster safe, see docs/ledger.md): `{prefix}:{am:<bucket>}:fp:<fingerprint>`
and `...:c:<customer>` in the bucket of the *customer* (a customer's fingerprints and norm share
a slot), `...:s:<sku>` in the bucket of the sku; `bucket = crc32(name) % BUCKETS`. Like the
order book's buckets, this turns a wave's marks into one script call per bucket.

Replays (a crash before the order's decision was recorded): an order found already holding its
fingerprint, or already judged for a sku, gets the history it got the first time (never its own
duplicate, the same norms) and adds nothing. A replayed wave's small lines count twice in the
sku norms: a statistic over at least `qty_min_history` lines that one wave barely moves.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from operators.watch.abnormal import QtyNorm, SeenOrder
from state.ledger import Ledger

#: Buckets (hash slots) of the marks; each costs one command per wave. Set once: changing it
#: orphans existing marks (they expire by TTL).
BUCKETS = 8
#: Ops per script call, so one call never blocks Redis for long.
CHUNK = 400
#: Skus whose key is kept ready (cleared when full: a cache, not state).
SKU_CACHE = 100_000
#: A norm's line count stops growing here, so its mean keeps adapting (as `QtyNorm.update`).
NORM_CAP = 10_000
#: Small lines are summed in the process and sent at most this often: one op per sku touched
#: since the last send instead of one per sku per wave (with a long-tailed catalogue, nearly
#: one per line). A norm is a statistic over >= `qty_min_history` lines: seconds of lag and,
#: after a crash, a few seconds of small lines never counted do not move it.
NORM_FLUSH_S = 2.0


def _merge(acc: list[float], n: float, mean: float, m2: float) -> None:
    """Merge (n, mean, m2) into `acc` in place (Chan et al.'s parallel variance)."""
    na = acc[0]
    total = na + n
    delta = mean - acc[1]
    acc[1] += delta * n / total
    acc[2] += m2 + delta * delta * na * n / total
    acc[0] = total

Commands = list[tuple[Any, ...]]


class MarkRequest(NamedTuple):
    """What the history needs of one new order."""

    order_id: str
    channel: str
    ts: int  # event time (occurred_at), ms
    customer: str | None
    fingerprint: str | None  # None without a customer id: no duplicate check
    top_qty: int  # the order's largest line
    skus: tuple[tuple[str, int], ...]  # (sku, its largest line in the order), each sku once


class History(NamedTuple):
    """What one order is judged against: the history just before it."""

    seen: SeenOrder | None  # the order that held the fingerprint (None: no other order)
    customer: QtyNorm | None  # n = the customer's orders, max_qty = its largest line
    #: Norms of the order's skus with a line of at least `judge_min` units (n = 0: none yet)
    skus: dict[str, QtyNorm]


def _field(text: str) -> str:
    """Ids travel in fields joined by \\x1f (the script's separator): never inside one."""
    return text.replace("\x1f", " ") if "\x1f" in text else text


def _bucket(name: str) -> int:
    return zlib.crc32(name.encode()) % BUCKETS


class OrderMarks:
    """Batch judge-and-add of orders against the shared history (one round trip per batch).

    `judge_min`: lines below this many units are never judged (the `qty_min` threshold), so
    their sku norms are only updated, not read back. `flush_s`: those updates are summed in the
    process and sent at most this often (0: with every batch; the router uses
    `norm_flush_ms`, default `NORM_FLUSH_S`).
    """

    def __init__(self, ledger: Ledger, prefix: str, window_ms: int, norm_ttl_ms: int,
                 judge_min: int = 1, flush_s: float = 0.0) -> None:
        self._ledger = ledger
        self._prefix = prefix
        self._window = max(1, int(window_ms))
        self._ttl = max(1, int(norm_ttl_ms))
        self._judge_min = judge_min
        self._skus: dict[str, tuple[int, str]] = {}
        self._small: dict[str, list[float]] = {}  # sku -> [n, mean, m2] of unsent small lines
        self._sent_at = time.monotonic()
        self._flush_s = flush_s

    def key(self, kind: str, bucket_of: str, name: str) -> str:
        """`kind` fp | c | s; the bucket is that of `bucket_of` (the customer, or the sku)."""
        return f"{self._prefix}:{{am:{_bucket(bucket_of)}}}:{kind}:{name}"

    def _sku(self, sku: str) -> tuple[int, str]:
        """(bucket, key) of a sku, cached: popular skus recur in every wave."""
        got = self._skus.get(sku)
        if got is None:
            if len(self._skus) >= SKU_CACHE:
                self._skus.clear()
            b = _bucket(sku)
            got = self._skus[sku] = (b, f"{self._prefix}:{{am:{b}}}:s:{sku}")
        return got

    def commands(self, requests: Sequence[MarkRequest]
                 ) -> tuple[Commands, Callable[[list[Any]], list[History]]]:
        """Script calls (one per bucket and CHUNK ops) and the parser of their replies."""
        # Per bucket, in arrival order: keys, args, and what each op answers for: (request
        # index, "") for a customer op, (request index, sku) for a judged line, (-1, sku) for
        # the wave's other lines of a sku.
        keys: dict[int, list[str]] = defaultdict(list)
        args: dict[int, list[Any]] = defaultdict(list)
        ops: dict[int, list[tuple[int, str]]] = defaultdict(list)
        prefix, judge_min = self._prefix, self._judge_min
        wave: dict[str, list[float]] = {}  # sku -> [n, mean, m2] of the wave's small lines
        for i, r in enumerate(requests):
            if r.customer and r.fingerprint:
                b = _bucket(r.customer)
                keys[b] += (f"{prefix}:{{am:{b}}}:fp:{r.fingerprint}",
                            f"{prefix}:{{am:{b}}}:c:{r.customer}")
                args[b] += ("c", _field(r.order_id), _field(r.channel), r.ts, r.top_qty)
                ops[b].append((i, ""))
            for sku, qty in r.skus:
                if qty >= judge_min:  # rare: judged, per order and idempotent
                    b, key = self._sku(sku)
                    keys[b] += (key, f"{key}:j:{r.order_id}")
                    args[b] += ("j", "", qty, "", "")
                    ops[b].append((i, sku))
                    continue
                acc = wave.get(sku)
                if acc is None:
                    wave[sku] = [1, float(qty), 0.0]
                    continue
                acc[0] += 1  # Welford within the wave
                delta = qty - acc[1]
                acc[1] += delta / acc[0]
                acc[2] += delta * (qty - acc[1])
        small = self._small
        for sku, (n, mean, m2) in wave.items():
            acc = small.get(sku)
            if acc is None:
                small[sku] = [n, mean, m2]
            else:
                _merge(acc, n, mean, m2)
        if small and time.monotonic() - self._sent_at >= self._flush_s:
            self._sent_at = time.monotonic()
            for sku, (n, mean, m2) in small.items():
                b, key = self._sku(sku)
                keys[b].append(key)
                args[b] += ("s", "", int(n), repr(mean), repr(m2))
                ops[b].append((-1, sku))
            self._small = {}
        sha = self._ledger.sha("order_marks")
        head = (self._window, self._ttl, NORM_CAP)
        commands: Commands = []
        layout: list[list[tuple[int, str]]] = []  # per command: its ops
        for b, bucket_ops in ops.items():
            bk, ba = keys[b], args[b]
            k = a = 0
            for start in range(0, len(bucket_ops), CHUNK):
                part = bucket_ops[start:start + CHUNK]
                nk = sum(1 if i < 0 else 2 for i, _ in part)
                na = 5 * len(part)
                commands.append(("EVALSHA", sha, nk, *bk[k:k + nk], *head, *ba[a:a + na]))
                layout.append(part)
                k, a = k + nk, a + na

        def parse(replies: list[Any]) -> list[History]:
            seen: list[SeenOrder | None] = [None] * len(requests)
            cust: list[QtyNorm | None] = [None] * len(requests)
            skus: list[dict[str, QtyNorm]] = [{} for _ in requests]
            for part, reply in zip(layout, replies, strict=True):
                for (i, sku), got in zip(part, reply, strict=True):
                    if i < 0:
                        continue
                    if sku:  # float()/int() read the reply's bytes directly
                        skus[i][sku] = QtyNorm(n=int(got[0]), mean=float(got[1]),
                                               m2=float(got[2]))
                        continue
                    oid, ch, ts, cn, cm = got
                    if oid:
                        seen[i] = SeenOrder(oid.decode(), ch.decode() if ch else "",
                                            int(ts or 0))
                    if cn:
                        cust[i] = QtyNorm(n=int(cn), max_qty=int(cm or 0))
            return [History(seen[i], cust[i], skus[i]) for i in range(len(requests))]

        return commands, parse

    def mark(self, requests: Sequence[MarkRequest]) -> list[History]:
        """Judge-and-add in one round trip; the histories in `requests` order."""
        if not requests:
            return []
        commands, parse = self.commands(requests)
        return parse(self._ledger.execute(commands))
