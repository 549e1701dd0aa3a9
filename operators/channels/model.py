"""The data a compiled mapping works on: rules (for messages), failures, and the scope.

Split from the compiler so the mapper, the conditions and the compiler share them without a
cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Getter = Callable[["Scope"], Any]


@dataclass(frozen=True, slots=True)
class Rule:
    """Where a compiled rule came from, for failure messages: its name (`lines.sku`), its line,
    the payload path it reads first, and the path of the `each` it sits in."""

    name: str
    line: int
    path: str = ""
    each: str = ""


class MapFailure(Exception):
    """A payload the mapping cannot turn into an order; data, not a bug (-> dead letter)."""

    def __init__(self, rule: Rule, source: str, check: str, message: str) -> None:
        super().__init__(message)
        self.rule, self.source, self.check, self.message = rule, source, check, message


class Scope:
    """What a getter sees: the payload root, the current `each` element (the root at top level),
    its index and payload path, the order being built (for `ref`), and skipped-element records."""

    __slots__ = ("index", "item", "kept", "out", "prefix", "root")

    def __init__(self, root: Any, item: Any, index: int, out: dict[str, Any], prefix: str,
                 kept: dict[str, list[int]]) -> None:
        self.root, self.item, self.index, self.out = root, item, index, out
        self.prefix, self.kept = prefix, kept
