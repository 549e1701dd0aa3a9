"""The simulator's event values: `SimEvent`, the JSON templates `stamp` finishes, broken orders.

Every value the workload generates is a *template*: the event's JSON without its closing brace,
ending in ``"occurred_at":``. The publisher calls `stamp(value, now_ms)` just before producing,
so ``occurred_at`` is the wall clock at publish time while the costly encoding happens earlier
(see `fulfil.sim.workload`). Injected invalid orders (`_broken`) are templates too, finished the
same way, and tagged with `invalid_tag`. `fulfil.sim.workload` re-exports the public names.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from schemas.topics import TopicName

__all__ = [
    "OCCURRED_AT_TAIL",
    "SimEvent",
    "invalid_tag",
    "stamp",
    "template",
]

OCCURRED_AT_TAIL = b',"occurred_at":'


class SimEvent(NamedTuple):
    """One event to produce; ``value`` is a template to finish with `stamp`."""

    topic: TopicName
    key: str
    value: bytes
    tag: str


def invalid_tag(kind: str) -> str:
    """The tag of an injected invalid order of ``kind`` (see `scenario.INVALID_KINDS`)."""
    return f"invalid:{kind}"


def template(event: dict[str, Any]) -> bytes:
    """``event`` (without occurred_at) as JSON with its closing brace swapped for the tail."""
    return orjson.dumps(event)[:-1] + OCCURRED_AT_TAIL


def stamp(value: bytes, now_ms: int) -> bytes:
    """Finish a template: append ``occurred_at`` and the closing brace (~0.2 µs)."""
    return b"%b%d}" % (value, now_ms)

def _broken(ev: dict[str, Any], kind: str) -> bytes:
    """An order made invalid in one specific way, as a template (stamped like any other)."""
    if kind == "qty-zero":  # copy: line dicts are shared between orders
        ev["lines"] = [{**ev["lines"][0], "qty": 0}, *ev["lines"][1:]]
    elif kind == "missing-lines":
        del ev["lines"]
    elif kind == "unknown-type":
        ev["type"] = "order.teleported"
    value = template(ev)
    if kind == "malformed-json":  # the lines array never closes: '"value":' lands inside it
        value = value.replace(b'],"value":', b',"value":', 1)
    elif kind == "non-utf8":  # a Latin-1 byte inside a string: not decodable as UTF-8
        value = value.replace(b'"sku":"', b'"sku":"\xe9', 1)
    return value
