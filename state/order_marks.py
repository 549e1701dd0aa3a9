"""Abnormal-order history shared by every routing worker and process, in Redis.

The router flags an order on its first decision (`dataflows/router_flags.py`), judging it with
the pure checks of `operators.watch.abnormal` against what came before it. That history must be
shared: one customer's orders arrive on different partitions and channels, so on different
workers, and a per-worker copy would miss exactly the cross-channel duplicates. The script
`lua/order_marks.lua` returns the history an order is judged against and adds the order to it,
atomically, so two workers never both see "no earlier order".

What is kept, and why it is bounded:

- **customers**: orders seen and largest line (TTL `norm_ttl_ms` after the last order), and in
  the same key the customer's fingerprints (customer + items + address,
  `operators.watch.abnormal.fingerprint`) of the last duplicate window, each with the order
  holding it and its own expiry. One key per customer, so a new order costs one GET and one SET
  (two of each when the fingerprint had a key of its own). A customer with more than
  `INLINE_FPS` fingerprints live at once (a busy business account) gets keys of their own for
  the rest (TTL = the duplicate window), so its key stays a few hundred bytes. An expired
  fingerprint is never answered and is dropped at the customer's next order; until then it
  stays in the key (~100 bytes, at most for `norm_ttl_ms`): one key per customer, bounded.
- **skus**: count, mean and spread of line quantities, TTL `norm_ttl_ms`. One small key per
  sku rather than a norms board learned by the watchtower and read periodically: a board would
  make routing depend on the watchtower running and being caught up, and would judge against
  norms seconds to minutes old; a key per sku costs a few µs of server time in a call the router
  makes anyway, and a quiet sku expires by itself.

Cost (the router's throughput is a tracked target; `benchmarks/router_bench.py`, and the stop 4
entry of docs/performance.md): one script call per bucket per wave (a handful), never one per
order; per order one customer op (one GET and one SET in the script; nothing to parse in the
reply unless the order has an earlier twin or a line of at least `judge_min` units, the only
kind the customer's norm can judge). Lines are mostly small, and a line below `judge_min` units
is never an outlier: small lines of a sku are summed in the process (count, sum, sum of
squares: integers, so exact, and a line costs three additions) into one update (count, mean,
spread, merged into the norm like Chan et al.'s parallel variance) sent at most every
`NORM_FLUSH_S`, one op per sku touched since, nothing read back. Only a line of at least
`judge_min` units (rare) is judged, one op per line: it reads the norm before it, and the norm
it read is kept (`...:s:<sku>:j:<order_id>`, TTL = the duplicate window) so a replay of the
order is judged against the same norm.

Key layout (Redis Cluster safe, see docs/ledger.md): `{prefix}:{am:<bucket>}:cu:<customer>`
and `...:fp:<fingerprint>` in the bucket of the *customer* (a customer's fingerprints and norm
share a slot), `...:s:<sku>` in the bucket of the sku; `bucket = crc32(name) % BUCKETS`. Like
the order book's buckets, this turns a wave's marks into one script call per bucket; every key
a call touches is one of its KEYS.

Replays (a crash before the order's decision was recorded): an order found already holding its
fingerprint, or already judged for a sku, gets the history it got the first time (never its own
duplicate, the same norms) and adds nothing. A replayed wave's small lines count twice in the
sku norms: a statistic over at least `qty_min_history` lines that one wave barely moves.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from operators.watch.abnormal import QtyNorm, SeenOrder
from operators.watch.settings import AbnormalSettings
from state.ledger import Ledger

#: Buckets (hash slots) of the marks; each costs one command per wave. Set once: changing it
#: orphans existing marks (they expire by TTL).
BUCKETS = 8
#: Ops per script call, so one call never blocks Redis for long.
CHUNK = 400
#: Skus whose key is kept ready (cleared when full: a cache, not state).
SKU_CACHE = 100_000
_DEFAULTS = AbnormalSettings()
#: The watchtower's default outlier rule (min lines of history, factor, z), the router passes
#: its own configured one.
OUTLIER_RULE = (_DEFAULTS.qty_min_history, _DEFAULTS.qty_factor, _DEFAULTS.qty_z)
#: A norm's line count stops growing here, so its mean keeps adapting (as `QtyNorm.update`).
NORM_CAP = 10_000
#: Small lines are summed in the process and sent at most this often: one op per sku touched
#: since the last send instead of one per sku per wave (with a long-tailed catalogue, nearly
#: one per line). A norm is a statistic over >= `qty_min_history` lines: seconds of lag and,
#: after a crash, a few seconds of small lines never counted do not move it.
NORM_FLUSH_S = 2.0
#: Fingerprints kept inside a customer's key (~100 bytes each): the script rewrites the key
#: with every order of the customer, so a busy account's further fingerprints get keys of their
#: own instead of making each of its orders cost more.
INLINE_FPS = 8


def _norm(n: int, total: int, squares: int) -> tuple[int, str, str]:
    """(n, mean, m2) of `n` lines from their sum and sum of squares. Python ints are exact, so
    unlike a running sum of floats this loses nothing: the only roundings are the two divisions
    (m2 = sum of squares - total^2 / n, both exact integers before it)."""
    return n, repr(total / n), repr(max(squares - total * total / n, 0.0))  # never < 0


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
    #: n = the customer's orders, max_qty = its largest line; None without one, or when the
    #: order has no line of at least `judge_min` (the customer's norm cannot judge it)
    customer: QtyNorm | None
    #: Norms of the order's skus with a line of at least `judge_min` units (n = 0: none yet)
    skus: Mapping[str, QtyNorm]


#: The history of most orders: nothing before them to judge against. One shared, read-only
#: instance instead of three objects per order.
NOTHING = History(None, None, MappingProxyType({}))

_SEPS = str.maketrans("\x1e\x1f", "  ")


def _field(text: str) -> str:
    """Ids travel in values whose fields are joined by \\x1f and entries by \\x1e (the script's
    separators): never inside one. (`isprintable` is one C pass; both are unprintable.)"""
    return text if text.isprintable() else text.translate(_SEPS)


def _bucket(name: str) -> int:
    return zlib.crc32(name.encode()) % BUCKETS


def _span(lo: int, hi: int, start: int, count: int) -> tuple[int, int]:
    """The part of ops [lo, hi) that falls among `count` ops of one kind starting at `start`,
    relative to that kind."""
    return min(max(lo - start, 0), count), min(max(hi - start, 0), count)


class _Ops:
    """One bucket's ops of a batch, by kind (the script takes each kind as one run)."""

    __slots__ = ("cargs", "ckeys", "corder", "jargs", "jkeys", "jorder", "sargs", "skeys")

    def __init__(self) -> None:
        self.ckeys: list[str] = []  # customer key, fingerprint key
        #: "top qty \x1f order id \x1f channel \x1f ts": one argument per order (the client
        #: packs an int argument several times slower than a str, and four args than one)
        self.cargs: list[str] = []
        self.corder: list[int] = []  # the request of each customer op
        self.jkeys: list[str] = []  # sku key, judged key
        self.jargs: list[int] = []  # qty
        self.jorder: list[tuple[int, str]] = []  # (request, sku) of each judged line
        self.skeys: list[str] = []  # sku key
        self.sargs: list[Any] = []  # n, mean, m2


class OrderMarks:
    """Batch judge-and-add of orders against the shared history (one round trip per batch).

    `judge_min`: lines below this many units are never judged (the `qty_min` threshold), so
    their sku norms are only updated, not read back, and the customer's norm is read back only
    for an order with a line this large. `flush_s`: those updates are summed in the process and
    sent at most this often (0: with every batch; the router uses `norm_flush_ms`, default
    `NORM_FLUSH_S`).
    """

    def __init__(self, ledger: Ledger, prefix: str, window_ms: int, norm_ttl_ms: int,
                 judge_min: int = 1, flush_s: float = 0.0,
                 outlier: tuple[int, float, float] = OUTLIER_RULE) -> None:
        self._ledger = ledger
        self._prefix = prefix
        self._window = max(1, int(window_ms))
        self._ttl = max(1, int(norm_ttl_ms))
        self._judge_min = judge_min
        #: (min history, factor, z) of `quantity_problem`: a judged outlier never joins its norm
        self._outlier = tuple(str(v) for v in outlier)
        self._skus: dict[str, tuple[int, str]] = {}
        self._small: dict[str, list[int]] = {}  # sku -> [n, sum, sum of squares] unsent
        self._sent_at = time.monotonic()
        self._flush_s = flush_s
        self._cust = [f"{prefix}:{{am:{b}}}:cu:" for b in range(BUCKETS)]
        self._fp = [f"{prefix}:{{am:{b}}}:fp:" for b in range(BUCKETS)]

    def key(self, kind: str, bucket_of: str, name: str) -> str:
        """`kind` cu | fp | s; the bucket is that of `bucket_of` (the customer, or the sku)."""
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
        buckets: dict[int, _Ops] = {}
        cust, fps, judge_min = self._cust, self._fp, self._judge_min
        small = self._small
        for i, r in enumerate(requests):
            customer, fp = r.customer, r.fingerprint
            if customer and fp:
                b = zlib.crc32(customer.encode()) % BUCKETS
                ops = buckets.get(b)
                if ops is None:
                    ops = buckets[b] = _Ops()
                ops.ckeys += (cust[b] + customer, fps[b] + fp)
                ops.cargs.append(f"{r.top_qty}\x1f{_field(r.order_id)}\x1f{_field(r.channel)}"
                                 f"\x1f{r.ts}")
                ops.corder.append(i)
            for sku, qty in r.skus:
                if qty < judge_min:  # most lines: summed here, sent every flush_s
                    acc = small.get(sku)
                    if acc is None:
                        small[sku] = [1, qty, qty * qty]
                    else:
                        acc[0] += 1
                        acc[1] += qty
                        acc[2] += qty * qty
                    continue
                b, key = self._sku(sku)  # rare: judged, per order and idempotent
                ops = buckets.get(b)
                if ops is None:
                    ops = buckets[b] = _Ops()
                ops.jkeys += (key, f"{key}:j:{r.order_id}")
                ops.jargs.append(qty)
                ops.jorder.append((i, sku))
        if small and time.monotonic() - self._sent_at >= self._flush_s:
            self._sent_at = time.monotonic()
            for sku, (n, total, squares) in small.items():
                b, key = self._sku(sku)
                ops = buckets.get(b)
                if ops is None:
                    ops = buckets[b] = _Ops()
                ops.skeys.append(key)
                ops.sargs += _norm(n, total, squares)
            self._small = {}
        commands, layout = self._pack(buckets)
        return commands, _parser(len(requests), layout)

    def _pack(self, buckets: dict[int, _Ops]
              ) -> tuple[Commands, list[tuple[list[int], list[tuple[int, str]]]]]:
        """One EVALSHA per bucket (per CHUNK ops), and per call what its reply answers for."""
        sha = self._ledger.sha("order_marks")
        head = (self._window, self._ttl, NORM_CAP, self._judge_min, INLINE_FPS)
        rule = self._outlier
        commands: Commands = []
        layout: list[tuple[list[int], list[tuple[int, str]]]] = []
        for b, o in buckets.items():
            off = len(self._fp[b]) + 1  # where the fingerprint starts in its key
            nc, nj, ns = len(o.corder), len(o.jorder), len(o.skeys)
            if nc + nj + ns <= CHUNK:  # the usual case: no slicing
                commands.append(("EVALSHA", sha, 2 * nc + 2 * nj + ns, *o.ckeys, *o.jkeys,
                                 *o.skeys, *head, off, *rule, nc, nj, *o.cargs, *o.jargs, *o.sargs))
                layout.append((o.corder, o.jorder))
                continue
            for lo in range(0, nc + nj + ns, CHUNK):
                hi = lo + CHUNK
                c0, c1 = _span(lo, hi, 0, nc)
                j0, j1 = _span(lo, hi, nc, nj)
                s0, s1 = _span(lo, hi, nc + nj, ns)
                commands.append((
                    "EVALSHA", sha, 2 * (c1 - c0) + 2 * (j1 - j0) + (s1 - s0),
                    *o.ckeys[2 * c0:2 * c1], *o.jkeys[2 * j0:2 * j1], *o.skeys[s0:s1],
                    *head, off, *rule, c1 - c0, j1 - j0,
                    *o.cargs[c0:c1], *o.jargs[j0:j1], *o.sargs[3 * s0:3 * s1]))
                layout.append((o.corder[c0:c1], o.jorder[j0:j1]))
        return commands, layout

    def mark(self, requests: Sequence[MarkRequest]) -> list[History]:
        """Judge-and-add in one round trip; the histories in `requests` order."""
        if not requests:
            return []
        commands, parse = self.commands(requests)
        return parse(self._ledger.execute(commands))


def _parser(n: int, layout: list[tuple[list[int], list[tuple[int, str]]]]
            ) -> Callable[[list[Any]], list[History]]:
    """The parser of one batch's replies: most answers are nil (nothing before the order), so
    most orders share `NOTHING` and cost no parsing at all."""

    def parse(replies: list[Any]) -> list[History]:
        seen: dict[int, SeenOrder] = {}
        cust: dict[int, QtyNorm] = {}
        skus: dict[int, dict[str, QtyNorm]] = {}
        for (corder, jorder), reply in zip(layout, replies, strict=True):
            nc = len(corder)
            for i, got in zip(corder, reply[:nc], strict=True):
                if got:  # bytes: prev order, channel, ts, customer orders, largest line
                    o, c, t, cn, cm = got.split(b"\x1f")
                    if o:
                        seen[i] = SeenOrder(o.decode(), c.decode(), int(t or 0))
                    if cn:
                        cust[i] = QtyNorm(n=int(cn), max_qty=int(cm or 0))
            for (i, sku), got in zip(jorder, reply[nc:], strict=True):
                sn, mean, m2 = got.split(b"\x1f")  # float()/int() read bytes directly
                norms = skus.get(i)
                if norms is None:
                    norms = skus[i] = {}
                norms[sku] = QtyNorm(n=int(sn), mean=float(mean), m2=float(m2))
        out = [NOTHING] * n
        for i in {*seen, *cust, *skus}:
            out[i] = History(seen.get(i), cust.get(i), skus.get(i) or {})
        return out

    return parse
