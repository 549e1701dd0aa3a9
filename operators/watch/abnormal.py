"""Abnormal orders: likely duplicates, quantities far outside the norm, bad addresses.

Pure functions over one order and the little history they need. Two callers judge with the same
checks: the routing step, which puts the flags on the order's first decision so a rule can hold
it (`dataflows/router_flags.py`, history shared in Redis by `state/order_marks.py`), and the
watchtower, which turns them into one alert per pattern (history in its keyed state)::

    flags = assess_order(event, net=net, sku_norms=norms, customer_norm=None, seen=recent,
                         cfg=settings.abnormal)

- **duplicate**: same customer, same items (sku and quantity, any order) and same address as an
  order seen within `duplicate_window_ms`, whatever the channel (`fingerprint`);
- **quantity**: a line far above its sku's norm (mean and spread of past lines, once
  `qty_min_history` lines are known) or far above the customer's largest line so far;
- **address**: undeliverable (no postal code, coordinates or region the network knows) or
  inconsistent (a region other than the postal code's, coordinates far from the postal code).

The watchtower keeps the history (`QtyNorm` per sku and customer, `SeenOrder` per fingerprint) in
sharded keyed state and sends each `Flag` to a per-pattern aggregator: one alert per pattern.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from operators.network import EARTH_RADIUS_KM, haversine_km
from operators.watch.facts import NetInfo
from operators.watch.settings import AbnormalSettings, SettingsError, settings_from

DUPLICATE, QUANTITY, ADDRESS = "duplicate", "quantity", "address"
PATTERNS = (DUPLICATE, QUANTITY, ADDRESS)
#: The routing config's `abnormal` section: this switch plus any `AbnormalSettings` field.
ENABLED = "enabled"
_KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180  # of a great circle


class Flag(NamedTuple):
    """One order that looks abnormal, and why."""

    pattern: str
    order_id: str
    ts: int
    reason: str


class SeenOrder(NamedTuple):
    """The last order seen with a fingerprint."""

    order_id: str
    channel: str
    ts: int


@dataclass(slots=True)
class QtyNorm:
    """Running mean, spread and maximum of line quantities (of one sku or one customer)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    max_qty: int = 0
    last: int = 0

    def sd(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def update(self, qty: int, ts: int) -> None:
        """Welford's update; the history is capped at 10,000 lines so it keeps adapting."""
        self.n = min(self.n + 1, 10_000)
        delta = qty - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (qty - self.mean)
        self.max_qty = max(self.max_qty, qty)
        self.last = max(self.last, ts)


def fingerprint(customer: str | None, lines: Any, destination: Mapping[str, Any]) -> str | None:
    """Customer + items + address, channel-independent; None without a customer id."""
    if not customer:
        return None
    if len(lines) == 1:  # most orders (the router fingerprints every new one): nothing to sort
        items = f"{lines[0]['sku']}*{int(lines[0]['qty'])}"
    else:
        items = "\x1e".join(sorted([f"{line['sku']}*{int(line['qty'])}" for line in lines]))
    where = str(destination.get("postal_code") or "")
    if not where:
        lat, lng = destination.get("lat"), destination.get("lng")
        if isinstance(lat, int | float) and isinstance(lng, int | float):
            where = f"{round(float(lat), 3)},{round(float(lng), 3)}"
    text = f"{customer}\x1f{items}\x1f{where}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def duplicate_of(prev: SeenOrder | None, order_id: str, channel: str, ts: int,
                 cfg: AbnormalSettings) -> str | None:
    """Why this order looks like a duplicate of `prev`, or None."""
    if prev is None or prev.order_id == order_id or abs(ts - prev.ts) > cfg.duplicate_window_ms:
        return None
    across = "" if prev.channel == channel else f" (first on {prev.channel}, now on {channel})"
    return (f"same customer, items and address as {prev.order_id} "
            f"{abs(ts - prev.ts) / 1000:.0f} s earlier{across}")


def quantity_problem(sku: str, qty: int, norm: QtyNorm | None, cfg: AbnormalSettings
                     ) -> str | None:
    """Why a line of `qty` is far outside its sku's norm, or None."""
    if qty < cfg.qty_min or norm is None or norm.n < cfg.qty_min_history:
        return None
    if qty > cfg.qty_factor * norm.mean and qty > norm.mean + cfg.qty_z * norm.sd():
        return f"{sku} x{qty}: usual ~{norm.mean:.1f} (sd {norm.sd():.1f}, {norm.n} lines)"
    return None


def customer_problem(qty: int, norm: QtyNorm | None, cfg: AbnormalSettings) -> str | None:
    """Why a line of `qty` is far above what this customer ever ordered, or None."""
    if qty < cfg.qty_min or norm is None or norm.n < cfg.customer_min_orders:
        return None
    if qty > cfg.customer_factor * norm.max_qty:
        return f"x{qty}: this customer's largest line so far was x{norm.max_qty}"
    return None


def address_problem(destination: Mapping[str, Any], net: NetInfo, cfg: AbnormalSettings
                    ) -> str | None:
    """Why the address is undeliverable or inconsistent, or None."""
    network = net.network
    postal = destination.get("postal_code")
    by_postal = net.postal_place(str(postal)) if postal else None
    if by_postal is None:  # (one lookup for the usual case: a postal code the network knows)
        if network.locate(destination) is None:  # type: ignore[arg-type]
            return "undeliverable: no postal code, coordinates or region the network knows"
        return None
    region = destination.get("region")
    postal_region = network.regions[by_postal[2]]
    if isinstance(region, str) and region.upper() in network.region_index \
            and region.upper() != postal_region:
        return f"inconsistent: region {region} but postal code {postal} is in {postal_region}"
    lat, lng = destination.get("lat"), destination.get("lng")
    if isinstance(lat, int | float) and isinstance(lng, int | float):
        # The distance is at most R * (|dlat| + |dlng|) (along a meridian, then a parallel):
        # under the limit by that bound, no trigonometry needed (most orders).
        if (abs(lat - by_postal[0]) + abs(lng - by_postal[1])) * _KM_PER_DEG \
                < 0.999 * cfg.address_max_km:
            return None
        km = haversine_km(float(lat), float(lng), by_postal[0], by_postal[1])
        if km > cfg.address_max_km:
            return f"inconsistent: coordinates {km:.0f} km from postal code {postal}'s area"
    return None


def assess_order(event: Mapping[str, Any], *, net: NetInfo, sku_norms: Mapping[str, QtyNorm],
                 customer_norm: QtyNorm | None, seen: Mapping[str, SeenOrder],
                 cfg: AbnormalSettings, fp: str | bool | None = False) -> list[Flag]:
    """Every abnormality of one validated `order.created`, given the history the caller keeps.

    The caller updates its history afterwards (`QtyNorm.update`, `seen[fingerprint] = ...`), so
    an order is judged against what came before it, never against itself. `fp`: the order's
    fingerprint when the caller has it already (False: compute it).
    """
    oid, ts = event["order_id"], int(event["occurred_at"])
    flags: list[Flag] = []
    if fp is False:
        fp = fingerprint((event.get("customer") or {}).get("id"), event["lines"],
                         event["destination"])
    if isinstance(fp, str) and seen:
        why = duplicate_of(seen.get(fp), oid, str(event.get("channel", "")), ts, cfg)
        if why:
            flags.append(Flag(DUPLICATE, oid, ts, why))
    for line in event["lines"]:
        qty = int(line["qty"])
        if qty < cfg.qty_min:  # never an outlier (both checks below say so): most lines
            continue
        sku = str(line["sku"])
        why = quantity_problem(sku, qty, sku_norms.get(sku), cfg) or \
            customer_problem(qty, customer_norm, cfg)
        if why:
            flags.append(Flag(QUANTITY, oid, ts, why))
            break
    why = address_problem(event["destination"], net, cfg)
    if why:
        flags.append(Flag(ADDRESS, oid, ts, why))
    return flags


# ---------------------------------------------------------------- the routing step's side


def router_settings(section: Mapping[str, Any] | None) -> tuple[bool, AbnormalSettings]:
    """(on?, thresholds) from the routing config's `abnormal` section: `enabled` (default
    true) and the watchtower's `abnormal` thresholds (same names, same defaults), so both judge
    alike. An unknown key or a bad value raises `SettingsError` naming it."""
    data = dict(section or {})
    enabled = data.pop(ENABLED, True)
    if not isinstance(enabled, bool):
        raise SettingsError(f"abnormal.{ENABLED} must be true or false; got {enabled!r}")
    return enabled, settings_from({"abnormal": data}).abnormal


class OrderKeys(NamedTuple):
    """What the shared history is keyed by, for one `order.created`."""

    customer: str | None
    fingerprint: str | None
    top_qty: int  # the largest line (the customer norm's input)
    skus: tuple[tuple[str, int], ...]  # (sku, its largest line), each sku once, in line order


def order_keys(event: Mapping[str, Any]) -> OrderKeys:
    customer = (event.get("customer") or {}).get("id")
    lines = event["lines"]
    fp = fingerprint(customer, lines, event["destination"])
    if len(lines) == 1:  # most orders (the router keys every new one): nothing to merge
        qty = max(int(lines[0]["qty"]), 0)
        return OrderKeys(customer or None, fp, qty, ((str(lines[0]["sku"]), qty),))
    top: dict[str, int] = {}
    for line in lines:
        sku, qty = str(line["sku"]), int(line["qty"])
        top[sku] = max(qty, top.get(sku, 0))
    return OrderKeys(customer or None, fp, max(top.values(), default=0), tuple(top.items()))


def flag_payload(flags: list[Flag]) -> list[dict[str, str]]:
    """The decision's `flags` field: [{pattern, reason}], one per pattern, in PATTERNS order."""
    return [{"pattern": f.pattern, "reason": f.reason} for f in flags]


class FileHistory:
    """The history in memory, for a finite list of orders judged in order (the rules dry run,
    `fulfil rules test`): same checks and updates as the shared history of the routers
    (`state/lua/order_marks.lua`), but nothing expires, so never for a stream."""

    def __init__(self, net: NetInfo, cfg: AbnormalSettings) -> None:
        self._net, self._cfg = net, cfg
        self.seen: dict[str, SeenOrder] = {}
        self.skus: dict[str, QtyNorm] = {}
        self.customers: dict[str, QtyNorm] = {}

    def assess(self, event: Mapping[str, Any]) -> list[Flag]:
        """Flags of one `order.created`, judged against the orders before it; then adds it."""
        keys = order_keys(event)
        flags = assess_order(event, net=self._net, sku_norms=self.skus,
                             customer_norm=self.customers.get(keys.customer or ""),
                             seen=self.seen, cfg=self._cfg)
        oid, ts = event["order_id"], int(event["occurred_at"])
        if keys.fingerprint is not None:
            self.seen[keys.fingerprint] = SeenOrder(oid, str(event.get("channel", "")), ts)
        for sku, qty in keys.skus:
            norm = self.skus.get(sku)
            if norm is None:
                norm = self.skus[sku] = QtyNorm()
            if quantity_problem(sku, qty, norm, self._cfg) is None:  # an outlier never joins
                norm.update(qty, ts)  # the norm it is judged against (state/lua/order_marks.lua)
        if keys.customer:
            self.customers.setdefault(keys.customer, QtyNorm()).update(keys.top_qty, ts)
        return flags
