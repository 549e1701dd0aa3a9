"""The fixed set of computed-field functions, and value tables (`map:` / `lookup`).

A mapping file can only *name* one of these functions; it never supplies code. Each factory
receives the already-compiled argument getters and the rule's options, checks the options once
(raising `OptionError`, which the compiler reports with the line), and returns a getter. Getters
take a `Scope` and return a value or MISSING.

| function   | result                                                                  |
|------------|-------------------------------------------------------------------------|
| concat     | the arguments' text joined by `sep` (default "")                        |
| format     | `template` with {0}, {1}, ... replaced by the arguments' text           |
| sum        | the sum of the arguments (numbers or numeric text; arrays add up)       |
| multiply   | the product of the arguments                                            |
| lookup     | `table`[first argument] (`unmapped`: error / keep / missing)            |
| coalesce   | the first argument that is not missing                                  |
| count      | how many elements the array arguments hold                              |
| add_days   | a time in ms plus a number of days (the promise from the order time)    |

A missing argument makes concat, format, sum, multiply, add_days missing too (wrap it in
coalesce, or give the rule a default), so a half-built id is never emitted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from operators.channels.values import (
    MISSING,
    Mismatch,
    OptionError,
    plain_number,
    shown,
    text_key,
    to_decimal,
    to_text,
)

Getter = Callable[[Any], Any]
UNMAPPED = ("error", "keep", "missing")


def make_map(table: dict[str, Any], unmapped: str = "error", ignore_case: bool = False,
             name: str = "") -> Callable[[Any], Any]:
    """A value map: channel value (compared by text) -> canonical value.

    For an array (after `split`, or a `[*]` path) the first element the table knows wins, e.g.
    the first customer tag that names a tier.
    """
    if unmapped not in UNMAPPED:
        raise OptionError(f"unmapped must be one of {', '.join(UNMAPPED)}; got {unmapped!r}")
    keys = {(k.lower() if ignore_case else k): v for k, v in table.items()}
    label = f"table {name!r}" if name else "the table"

    def key(value: Any) -> str:
        k = text_key(value)
        return k.lower() if ignore_case else k

    def convert(value: Any) -> Any:
        if value.__class__ is list:
            for item in value:
                k = key(item)
                if k in keys:
                    return keys[k]
        else:
            k = key(value)
            if k in keys:
                return keys[k]
        if unmapped == "missing":
            return MISSING
        if unmapped == "keep":
            return value
        known = ", ".join(list(keys)[:8]) + (", ..." if len(keys) > 8 else "")
        raise Mismatch("unmapped", f"{shown(value)} is not in {label} (known: {known})")

    return convert


def _flat(values: list[Any]) -> list[Any] | None:
    """Arguments with arrays spread out; None if one is missing."""
    out: list[Any] = []
    for v in values:
        if v is MISSING:
            return None
        if v.__class__ is list:
            out.extend(v)
        else:
            out.append(v)
    return out


def _concat(args: list[Getter], opts: dict[str, Any]) -> Getter:
    sep = opts.pop("sep", "")
    if not isinstance(sep, str):
        raise OptionError("sep must be text")

    def get(scope: Any) -> Any:
        values = _flat([a(scope) for a in args])
        return MISSING if values is None else sep.join(to_text(v) for v in values)

    return get


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\d+)\}|\{|\}")


def _format(args: list[Getter], opts: dict[str, Any]) -> Getter:
    template = opts.pop("template", None)
    if not isinstance(template, str):
        raise OptionError("format needs template: text with {0}, {1}, ... placeholders")
    parts: list[str | int] = []  # literal text, or an argument index
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(template[pos:m.start()])
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif m.group(1) is None:
            raise OptionError(f"template: lone {token!r} at position {m.start() + 1}; write "
                              "{0}, {1}, ... (or {{ and }} for braces)")
        else:
            i = int(m.group(1))
            if i >= len(args):
                raise OptionError(f"template uses {{{i}}} but there are {len(args)} args")
            parts.append(i)
        pos = m.end()
    parts.append(template[pos:])

    def get(scope: Any) -> Any:
        values = [a(scope) for a in args]
        if any(v is MISSING for v in values):
            return MISSING
        return "".join(p if isinstance(p, str) else to_text(values[p]) for p in parts)

    return get


def _arith(start: Decimal, op: Callable[[Decimal, Decimal], Decimal]) -> Callable[..., Getter]:
    def factory(args: list[Getter], opts: dict[str, Any]) -> Getter:
        def get(scope: Any) -> Any:
            values = _flat([a(scope) for a in args])
            if values is None:
                return MISSING
            acc = start
            for v in values:
                acc = op(acc, to_decimal(v))
            return plain_number(acc)

        return get

    return factory


def _coalesce(args: list[Getter], opts: dict[str, Any]) -> Getter:
    def get(scope: Any) -> Any:
        for a in args:
            v = a(scope)
            if v is not MISSING:
                return v
        return MISSING

    return get


def _count(args: list[Getter], opts: dict[str, Any]) -> Getter:
    def get(scope: Any) -> Any:
        n = 0
        for a in args:
            v = a(scope)
            if v is not MISSING:
                n += len(v) if v.__class__ is list else 1
        return n

    return get


_DAY_MS = Decimal(86_400_000)


def _add_days(args: list[Getter], opts: dict[str, Any]) -> Getter:
    if len(args) != 2:
        raise OptionError("add_days takes two args: a time in ms and a number of days")
    at, days = args

    def get(scope: Any) -> Any:
        t, d = at(scope), days(scope)
        if t is MISSING or d is MISSING:
            return MISSING
        return int(to_decimal(t) + to_decimal(d) * _DAY_MS)

    return get


def _lookup_factory(tables: dict[str, dict[str, Any]]) -> Callable[..., Getter]:
    def factory(args: list[Getter], opts: dict[str, Any]) -> Getter:
        if len(args) != 1:
            raise OptionError("lookup takes one arg: the key to look up")
        table, name = resolve_table(opts.pop("table", None), tables)
        convert = make_map(table, opts.pop("unmapped", "error"),
                           bool(opts.pop("ignore_case", False)), name)
        (key,) = args

        def get(scope: Any) -> Any:
            v = key(scope)
            return MISSING if v is MISSING else convert(v)

        return get

    return factory


def resolve_table(spec: Any, tables: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """A table given inline (a mapping) or by the name of an entry of the file's `tables`."""
    if isinstance(spec, str):
        if spec not in tables:
            known = ", ".join(tables) or "none defined"
            raise OptionError(f"no table named {spec!r} in tables: ({known})")
        return tables[spec], spec
    if isinstance(spec, dict) and spec:
        return {text_key(k) if not isinstance(k, str) else k: v for k, v in spec.items()}, ""
    raise OptionError("a table is a non-empty mapping (channel value: canonical value) or the "
                      "name of one under tables:")


FUNCTIONS = ("concat", "format", "sum", "multiply", "lookup", "coalesce", "count", "add_days")


def function_factory(name: str, tables: dict[str, dict[str, Any]]) -> Callable[..., Getter]:
    """The factory of computed function `name`; OptionError for a name not in the fixed set."""
    factories: dict[str, Callable[..., Getter]] = {
        "concat": _concat, "format": _format,
        "sum": _arith(Decimal(0), lambda a, b: a + b),
        "multiply": _arith(Decimal(1), lambda a, b: a * b),
        "lookup": _lookup_factory(tables), "coalesce": _coalesce, "count": _count,
        "add_days": _add_days,
    }
    if name not in factories:
        raise OptionError(f"unknown function {name!r}; the functions are: {', '.join(FUNCTIONS)}")
    return factories[name]
