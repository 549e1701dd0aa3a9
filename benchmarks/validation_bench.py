"""How much of the 20k events/s budget (50 us/event) validation costs.

Prints µs/event (best of several repeats) for valid and invalid events, decoded from bytes and
already decoded, and for the schema file's own if/then union compiled as a whole, which the
per-`type` dispatch in `schemas/validation.py` replaces. No assertions: a measurement, not a test.

    .venv/bin/python benchmarks/validation_bench.py [--n 10000]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import orjson

from schemas.errors import ValidationError
from schemas.validation import decode_and_validate, load_schema, validator

ORDER: dict[str, Any] = {
    "type": "order.created", "event_id": "e-1", "order_id": "o-1", "occurred_at": 1795556252000,
    "channel": "web", "customer": {"id": "c-1", "tier": "gold"}, "priority": 0,
    "promised_by": 1795815452000,
    "destination": {"postal_code": "01310", "region": "SP", "country": "BR",
                    "lat": -23.56, "lng": -46.65},
    "lines": [{"line_id": "1", "sku": "sku-1", "qty": 2, "weight_g": 350}],
    "value": {"amount": 129.9, "currency": "BRL"},
}  # fmt: skip
SNAPSHOT: dict[str, Any] = {
    "type": "inventory.snapshot", "event_id": "i-1", "node_id": "N01", "sku": "sku-1",
    "version": 17, "on_hand": 40, "occurred_at": 1795556252000,
}  # fmt: skip


def _order(**changes: Any) -> dict[str, Any]:
    order = copy.deepcopy(ORDER)
    order.update(changes)
    return order


def _invalid_orders() -> list[dict[str, Any]]:
    """A mix of the usual faults: each fails somewhere different in the schema."""
    no_lng = _order()
    del no_lng["destination"]["lng"]
    no_lines = _order()
    del no_lines["lines"]
    return [
        _order(lines=[{"line_id": "1", "sku": "sku-1", "qty": 0}]),
        _order(lines=[{"line_id": "1", "sku": "sku-1", "qty": "2"}]),
        no_lng,
        no_lines,
        _order(type="order.unknown"),
        _order(customer={"tier": "platinum"}),
    ]


def _per_event_us(fn: Callable[[Any], Any], items: list[Any], n: int, repeats: int = 9) -> float:
    """Best-of-`repeats` mean CPU time of fn(item) over n calls cycling through items.

    CPU time of this process (not wall time) and the best run, so other work on a shared
    machine inflates the figure as little as possible.
    """
    batch = (items * (n // len(items) + 1))[:n]
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time_ns()
        for item in batch:
            fn(item)
        best = min(best, (time.process_time_ns() - start) / n / 1000)
    return best


def _swallow(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(item: Any) -> Any:
        try:
            return fn(item)
        except (ValidationError, fastjsonschema.JsonSchemaValueException) as exc:
            return exc

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="events per measurement")
    n = parser.parse_args().n

    check_order = validator("order_event")
    check_inventory = validator("inventory_event")
    union = fastjsonschema.compile(load_schema("order_event"))
    valid_raw = orjson.dumps(ORDER)
    postal_only = _order(destination={"postal_code": "01310100", "country": "BR"})
    big_order = _order(
        lines=[{"line_id": str(i), "sku": f"sku-{i}", "qty": 1 + i % 5} for i in range(20)]
    )
    invalid = _invalid_orders()
    invalid_raw = [orjson.dumps(o) for o in invalid]
    bad_bytes = [b'{"type": "order.created", ', b"\xff\xfe", b"[1, 2]"]

    def decode_order(raw: bytes) -> dict[str, Any]:
        return decode_and_validate("order_event", raw)

    rows = [
        ("orjson.loads only (baseline), valid order", orjson.loads, [valid_raw]),
        ("validate: valid order (1 line)", check_order, [ORDER]),
        ("validate: valid order (1 line, postal code only)", check_order, [postal_only]),
        ("validate: valid order (20 lines)", check_order, [big_order]),
        ("decode_and_validate: valid order bytes", decode_order, [valid_raw]),
        ("validate: valid inventory.snapshot", check_inventory, [SNAPSHOT]),
        ("whole-file if/then union (not used): valid order", union, [ORDER]),
        ("validate: invalid orders (mix of 6)", _swallow(check_order), invalid),
        ("decode_and_validate: invalid orders (mix of 6)", _swallow(decode_order), invalid_raw),
        ("decode_and_validate: undecodable bytes (mix of 3)", _swallow(decode_order), bad_bytes),
        ("whole-file if/then union (not used): invalid orders", _swallow(union), invalid),
    ]  # fmt: skip
    width = max(len(name) for name, _, _ in rows)
    print(f"python {sys.version.split()[0]}, fastjsonschema {fastjsonschema.VERSION}, n={n}")
    for name, fn, items in rows:
        print(f"{name:<{width}}  {_per_event_us(fn, items, n):7.2f} µs/event")


if __name__ == "__main__":
    main()
