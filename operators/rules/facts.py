"""The facts a rule condition reads, taken from an order (only the fields the rules use).

Computing every field for every order would cost more than evaluating most rule sets, so the
compiled RuleSet lists the fields its conditions read and only those are extracted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from operators.orders import OrderData
from operators.rules.ruleset import RuleSet

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


_QUARTER_MS = 900_000


@lru_cache(maxsize=8192)
def _offset_minutes(utc_quarter: int, tz: ZoneInfo) -> int:
    """The timezone's UTC offset during one UTC quarter hour (every zone switches offsets on
    a quarter hour, e.g. Adelaide at 16:30 UTC and Chatham at 14:00)."""
    offset = datetime.fromtimestamp(utc_quarter * 900, tz).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def _local(order: OrderData, rules: RuleSet) -> tuple[int, str]:
    """(hour 0..23, weekday) the order was placed, in the rules' timezone.

    A zoneinfo conversion costs microseconds per order; the offset is cached per UTC quarter
    hour and the rest is integer arithmetic (1970-01-01 was a Thursday).
    """
    minutes = order.event_time // 60_000
    if rules.timezone is not None:
        minutes += _offset_minutes(order.event_time // _QUARTER_MS, rules.timezone)
    return (minutes // 60) % 24, _WEEKDAYS[(minutes // 1440 + 3) % 7]


def _flags(order: OrderData) -> frozenset[str] | None:
    """The patterns routing flagged (None when none, so `exists: true` means "any flag")."""
    flags = order.attrs.get("flags")
    return frozenset(f["pattern"] for f in flags) if flags else None


_EXTRACT: dict[str, Callable[[OrderData, str | None, RuleSet], Any]] = {
    "channel": lambda o, r, rs: o.channel,
    "customer.tier": lambda o, r, rs: o.tier,
    "customer.id": lambda o, r, rs: o.attrs.get("customer_id"),
    "order.value": lambda o, r, rs: o.attrs.get("value"),
    "order.currency": lambda o, r, rs: o.attrs.get("currency"),
    "order.priority": lambda o, r, rs: o.priority,
    "order.risk": lambda o, r, rs: o.attrs.get("risk"),
    "order.flags": lambda o, r, rs: _flags(o),
    "destination.region": lambda o, r, rs: r,
    "destination.country": lambda o, r, rs: o.destination.get("country"),
    "destination.postal_code": lambda o, r, rs: o.destination.get("postal_code"),
    "lines.count": lambda o, r, rs: len(o.lines),
    "lines.units": lambda o, r, rs: sum(ln.qty for ln in o.lines),
    "lines.max_qty": lambda o, r, rs: max(ln.qty for ln in o.lines),
    "sku": lambda o, r, rs: frozenset(ln.sku for ln in o.lines),
    "sku.category": lambda o, r, rs: frozenset(o.attrs.get("categories", ())),
    "sku.tags": lambda o, r, rs: frozenset(o.attrs.get("tags", ())),
    "time.hour": lambda o, r, rs: _local(o, rs)[0],
    "time.weekday": lambda o, r, rs: _local(o, rs)[1],
}


def order_facts(order: OrderData, region: str | None, rules: RuleSet) -> dict[str, Any]:
    """The facts `rules` reads for `order`; `region` is the located destination region."""
    return {name: _EXTRACT[name](order, region, rules) for name in rules.fields}
