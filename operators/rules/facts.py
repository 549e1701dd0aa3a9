"""The facts a rule condition reads, taken from an order (only the fields the rules use).

Computing every field for every order would cost more than evaluating most rule sets, so the
compiled RuleSet lists the fields its conditions read and only those are extracted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from operators.orders import OrderData
from operators.rules.ruleset import RuleSet

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _local(order: OrderData, rules: RuleSet) -> datetime:
    return datetime.fromtimestamp(order.event_time / 1000, rules.timezone or UTC)


_EXTRACT: dict[str, Callable[[OrderData, str | None, RuleSet], Any]] = {
    "channel": lambda o, r, rs: o.channel,
    "customer.tier": lambda o, r, rs: o.tier,
    "customer.id": lambda o, r, rs: o.attrs.get("customer_id"),
    "order.value": lambda o, r, rs: o.attrs.get("value"),
    "order.currency": lambda o, r, rs: o.attrs.get("currency"),
    "order.priority": lambda o, r, rs: o.priority,
    "order.risk": lambda o, r, rs: o.attrs.get("risk"),
    "destination.region": lambda o, r, rs: r,
    "destination.country": lambda o, r, rs: o.destination.get("country"),
    "destination.postal_code": lambda o, r, rs: o.destination.get("postal_code"),
    "lines.count": lambda o, r, rs: len(o.lines),
    "lines.units": lambda o, r, rs: sum(ln.qty for ln in o.lines),
    "lines.max_qty": lambda o, r, rs: max(ln.qty for ln in o.lines),
    "sku": lambda o, r, rs: frozenset(ln.sku for ln in o.lines),
    "sku.category": lambda o, r, rs: frozenset(o.attrs.get("categories", ())),
    "sku.tags": lambda o, r, rs: frozenset(o.attrs.get("tags", ())),
    "time.hour": lambda o, r, rs: _local(o, rs).hour,
    "time.weekday": lambda o, r, rs: _WEEKDAYS[_local(o, rs).weekday()],
}


def order_facts(order: OrderData, region: str | None, rules: RuleSet) -> dict[str, Any]:
    """The facts `rules` reads for `order`; `region` is the located destination region."""
    return {name: _EXTRACT[name](order, region, rules) for name in rules.fields}
