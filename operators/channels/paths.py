"""Field paths into a channel payload: `shipping_address.zip`, `line_items[0].sku`, ...

Grammar (one path is text, compiled once into a getter):

    path     := ['$.'] segment ('.' segment)*   |  '@index'
    segment  := name? bracket*                    name: any characters but . [ ]
    bracket  := '[' int ']'          element i of an array (negative counts from the end)
              | '[*]'                every element (the path then yields a list)
              | '[' field '=' text ']'   the first element whose `field` has that text
              | '["' key '"]'        a key containing dots or brackets

`$.` starts from the payload's root even inside `each` (where paths start at the element);
`@index` is the element's position (0-based) inside `each`. A path that runs into an absent
key, a null, an index out of range or a value of the wrong kind yields MISSING: whether that is
fine (optional field) or a failure (required field) is the mapping's business, not the path's.

    >>> compile_path("a.b[1]").get({"a": {"b": [5, 6]}})
    6
    >>> compile_path("items[*].q").get({"items": [{"q": 1}, {"q": 2}]})
    [1, 2]
    >>> compile_path("meta[key=tier].value").get({"meta": [{"key": "tier", "value": "gold"}]})
    'gold'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from operators.channels.values import MISSING, text_key

INDEX_PATH = "@index"
_BRACKET = re.compile(r"""\[(?:(-?\d+)|(\*)|"([^"]*)"|'([^']*)'|([^\]=]+)=([^\]]*))\]""")
_NAME = re.compile(r"[^.\[\]]+")

# step kinds
_KEY, _INDEX, _ALL, _SELECT = range(4)
Step = tuple[int, Any]


class PathError(ValueError):
    """A path text that does not follow the grammar (compile time only)."""


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled path: `get(obj)` -> value, MISSING, or a list when it has `[*]`."""

    text: str
    get: Callable[[Any], Any]
    many: bool
    from_root: bool
    is_index: bool = False


def parse(text: str) -> tuple[bool, list[Step]]:
    """(from_root, steps) of a path text; raises PathError naming the position of a mistake."""
    if not isinstance(text, str) or not text.strip():
        raise PathError("a path must be non-empty text, e.g. shipping_address.zip")
    rest, from_root = text, False
    if rest == "$":
        return True, []
    if rest.startswith("$."):
        rest, from_root = rest[2:], True
    steps: list[Step] = []
    pos = 0
    while pos < len(rest):
        if steps and rest[pos] == ".":
            pos += 1
        m = _NAME.match(rest, pos)
        if m:
            steps.append((_KEY, m.group(0)))
            pos = m.end()
        elif pos >= len(rest) or rest[pos] != "[":
            raise PathError(f"path {text!r}: expected a name or [ at position {pos + 1}")
        while pos < len(rest) and rest[pos] == "[":
            b = _BRACKET.match(rest, pos)
            if not b:
                raise PathError(f"path {text!r}: bad bracket at position {pos + 1}; use [0], "
                                "[*], [field=value] or [\"key\"]")
            idx, star, dq, sq, field, value = b.groups()
            if idx is not None:
                steps.append((_INDEX, int(idx)))
            elif star:
                steps.append((_ALL, None))
            elif dq is not None or sq is not None:
                steps.append((_KEY, dq if dq is not None else sq))
            else:
                steps.append((_SELECT, (field.strip(), _unquote(value.strip()))))
            pos = b.end()
        if pos < len(rest) and rest[pos] != ".":
            raise PathError(f"path {text!r}: unexpected {rest[pos]!r} at position {pos + 1}")
        if pos < len(rest) and pos + 1 == len(rest):
            raise PathError(f"path {text!r}: ends with a dot")
    return from_root, steps


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _step(obj: Any, kind: int, arg: Any) -> Any:
    if kind == _KEY:
        if obj.__class__ is dict:
            v = obj.get(arg, MISSING)
            return MISSING if v is None else v
        return MISSING
    if obj.__class__ is not list:
        return MISSING
    if kind == _INDEX:
        try:
            v = obj[arg]
        except IndexError:
            return MISSING
        return MISSING if v is None else v
    field, value = arg  # _SELECT
    for item in obj:
        if item.__class__ is dict and field in item and text_key(item[field]) == value:
            return item
    return MISSING


def _single(steps: list[Step]) -> Callable[[Any], Any]:
    if len(steps) == 1 and steps[0][0] == _KEY:
        key = steps[0][1]

        def get_one(obj: Any) -> Any:  # the most common path: one key
            if obj.__class__ is dict:
                v = obj.get(key, MISSING)
                return MISSING if v is None else v
            return MISSING

        return get_one
    frozen = tuple(steps)

    def get(obj: Any) -> Any:
        for kind, arg in frozen:
            obj = _step(obj, kind, arg)
            if obj is MISSING:
                return MISSING
        return obj

    return get


def _multi(steps: list[Step]) -> Callable[[Any], Any]:
    frozen = tuple(steps)

    def get(obj: Any) -> Any:
        current = [obj]
        for kind, arg in frozen:
            if kind == _ALL:
                current = [v for c in current if c.__class__ is list
                           for v in c if v is not None]
                continue
            current = [v for v in (_step(c, kind, arg) for c in current) if v is not MISSING]
        return current

    return get


def compile_path(text: str) -> Path:
    """Compile a path text once; raises PathError for a malformed one."""
    if text == INDEX_PATH:
        return Path(text, lambda obj: MISSING, False, False, is_index=True)
    from_root, steps = parse(text)
    many = any(kind == _ALL for kind, _ in steps)
    if not steps:
        return Path(text, lambda obj: obj, False, from_root)
    return Path(text, _multi(steps) if many else _single(steps), many, from_root)
