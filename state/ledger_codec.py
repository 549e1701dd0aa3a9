"""Input checks and packing for the ledger's Lua scripts (private to `state.ledger`).

Why it exists: `state.ledger` packs each node's batch into one TAB-separated string that Lua
splits (see its docstring). Everything that decides what may go into such a string (ids without
TAB/newline, quantities and versions exact as Lua doubles, days as ``yyyymmdd``), how a batch is
grouped and cut into script calls, and how a stored reservation record reads back, lives here,
apart from the Redis plumbing, with the limits and the errors it raises. `state.ledger` re-exports
the public names (``MAX_QTY``, ``MAX_VERSION``, the ``Ledger*Error`` classes); import them from
there.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from state.ledger import ReserveRequest

#: Largest |quantity| accepted anywhere. Lua numbers are doubles; staying far below 2**53 keeps
#: every sum exact and every number formatted as plain digits.
MAX_QTY = 10**12
#: Largest inventory version accepted (exact as a Lua double).
MAX_VERSION = 2**53 - 1
#: Items (events or orders) per EVALSHA. A script blocks the Redis shard while it runs; this
#: caps one call at roughly a millisecond of server time. Bigger batches become several
#: EVALSHAs in the same pipeline, so still one round trip.
CHUNK = 1000
#: Order lines (reserve) or skus (availability) per EVALSHA: the scripts pass two hash fields
#: per sku to one HMGET through Lua's unpack(), whose limit is ~8000 values.
CHUNK_LINES = 2000
_MAX_LINES = 1000  # per order, so that any single order fits in one call


class LedgerError(Exception):
    """Base of every error the ledger raises itself."""


class LedgerInputError(LedgerError, ValueError):
    """An argument cannot be stored safely (bad id, quantity, version or day); nothing was sent."""


class LedgerScriptError(LedgerError):
    """Redis answered a ledger command with an error (the message names the command and key)."""


# -- validation: ids travel inside TAB/newline-separated strings, so those must never appear --

#: What the packed batches cannot carry: the same rule as the `id` pattern of the event schemas
#: (schemas/json), so a validated event never fails here.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name(value: Any, what: str) -> str:
    if type(value) is not str or not value or _CONTROL.search(value) is not None:
        raise LedgerInputError(
            f"{what} must be a non-empty string without control characters "
            f"(tab, newline, ...); got {value!r}"
        )
    return value


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise LedgerInputError(f"{what} must be an integer; got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise LedgerInputError(f"{what} must be an integer; got {value!r}") from None
    if not low <= number <= high:
        raise LedgerInputError(f"{what} must be in {low}..{high}; got {number}")
    return number


def _day(value: Any) -> str:
    if type(value) is not str or len(value) != 8 or not value.isascii() or not value.isdigit():
        raise LedgerInputError(f"day must be a UTC day 'yyyymmdd'; got {value!r}")
    return value


def _text(value: bytes | str) -> str:
    """Replies are bytes, or str when the client was built with decode_responses=True."""
    return value.decode() if isinstance(value, bytes) else value


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _group(pairs: Iterable[tuple[str, Any]]) -> dict[str, list[Any]]:
    """Group values by node, keeping first-seen node order and in-node order."""
    groups: dict[str, list[Any]] = {}
    for node, value in pairs:
        groups.setdefault(node, []).append(value)
    return groups


def _pack_order(req: ReserveRequest, parts: list[str]) -> None:
    """Append ``order_id TAB n (TAB sku TAB qty)*n`` fields for reserve.lua (with a credit:
    ``order_id TAB -n TAB credit (TAB sku TAB qty)*n``)."""
    lines = req.lines
    if not 1 <= len(lines) <= _MAX_LINES:
        raise LedgerInputError(
            f"order {req.order_id!r} at node {req.node_id!r} must have 1..{_MAX_LINES} lines; "
            f"got {len(lines)}"
        )
    parts.append(_name(req.order_id, "order_id"))
    if req.credit is None:
        parts.append(str(len(lines)))
    else:
        parts.append(str(-len(lines)))
        parts.append(_name(req.credit, "credit"))
    for sku, qty in lines:
        parts.append(_name(sku, "sku"))
        if type(qty) is not int or not 0 < qty <= MAX_QTY:  # fast path first: plain valid int
            qty = _int(qty, f"qty of sku {sku!r} in order {req.order_id!r}", 1, MAX_QTY)
        parts.append(str(qty))


def _parse_record(raw: bytes | str) -> tuple[tuple[str, int], ...]:
    """Lines of a reservation record ("day\\nsku\\tqty\\n..."); the day line has no TAB."""
    lines = []
    for row in _text(raw).split("\n"):
        sku, tab, qty = row.partition("\t")
        if tab:
            lines.append((sku, int(qty)))
    return tuple(lines)
