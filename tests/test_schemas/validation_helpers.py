"""Doc examples and path helpers shared by the validation tests (not a test module itself)."""

from __future__ import annotations

import re
from typing import Any

from . import CONTRACTS, DESIGN, doc_examples

ALL_EXAMPLES = doc_examples(DESIGN) + doc_examples(CONTRACTS)


def _name(kind: str, event: dict[str, Any]) -> str:
    return event.get("type", kind)


def _bases() -> dict[str, tuple[str, dict[str, Any]]]:
    """The first doc example of each event type (or kind, for decision and dead_letter)."""
    bases: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind, event in ALL_EXAMPLES:
        bases.setdefault(_name(kind, event), (kind, event))
    return bases


BASES = _bases()


_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


def _walk(obj: Any, path: str) -> tuple[Any, Any]:
    """(container, key) of the last step of a 'lines[0].qty'-style path."""
    tokens = [int(t[1:-1]) if t.startswith("[") else t for t in _TOKEN.findall(path)]
    for token in tokens[:-1]:
        obj = obj[token]
    return obj, tokens[-1]


def _set(obj: Any, path: str, value: Any) -> None:
    container, key = _walk(obj, path)
    container[key] = value


def _del(obj: Any, path: str) -> None:
    container, key = _walk(obj, path)
    del container[key]
