"""Rule conditions: the fields a rule may test, the operators, and their compilation.

A condition in a rules file is data, never code:

    when:
      all:
        - customer.tier: {in: [gold, vip]}
        - order.value: {gte: 500}
        - not: {destination.region: {in: [SP, RJ]}}

It is compiled once into nested closures over a *facts* dict (field name -> value), so routing an
order costs a few Python calls per rule and nothing parses YAML or evaluates user text. Every
field has a type, and an operator that makes no sense for it (`gte` on a channel name) is a
compile error naming the line, not a silent False at run time.

A missing value (an order with no `value`, no `risk`) fails every comparison except
`exists: false`, so a rule never fires on data that is not there.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from operators.rules.yamlsrc import Node, Problem

Facts = Mapping[str, Any]
Predicate = Callable[[Facts], bool]

TEXT, NUMBER, SET = "text", "number", "set"

#: Every field a condition may test, its type, and what it means (docs/rules.md repeats this).
FIELDS: dict[str, tuple[str, str]] = {
    "channel": (TEXT, "sales channel of the order (web, app, marketplace, ...)"),
    "customer.tier": (TEXT, "standard | silver | gold | vip"),
    "customer.id": (TEXT, "customer id as sent by the channel"),
    "order.value": (NUMBER, "order value amount (value.amount)"),
    "order.currency": (TEXT, "ISO 4217 code of the value"),
    "order.priority": (NUMBER, "priority sent with the order, 0..9"),
    "order.risk": (NUMBER, "risk score sent with the order (0..1, e.g. from a fraud service)"),
    "order.flags": (SET, "abnormal-order flags set by routing: duplicate | quantity | address"),
    "destination.region": (TEXT, "two-letter region (given, or located from the postal code)"),
    "destination.country": (TEXT, "ISO 3166-1 alpha-2 country"),
    "destination.postal_code": (TEXT, "postal code digits"),
    "lines.count": (NUMBER, "number of lines"),
    "lines.units": (NUMBER, "units over all lines"),
    "lines.max_qty": (NUMBER, "largest quantity of one line"),
    "sku": (SET, "the order's skus"),
    "sku.category": (SET, "categories of the order's lines"),
    "sku.tags": (SET, "tags of the order's lines"),
    "time.hour": (NUMBER, "hour the order was placed, 0..23, in the rules file's timezone"),
    "time.weekday": (TEXT, "weekday the order was placed (mon..sun), rules file's timezone"),
}

#: Fields whose values come from a closed list: any other value is a compile error (a typo such
#: as `duplicates` would otherwise never match and hold nothing).
CHOICES: dict[str, tuple[str, ...]] = {
    "order.flags": ("duplicate", "quantity", "address"),  # operators.watch.abnormal.PATTERNS
}

_COMPARE = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
#: Operators per field type (`exists` works on every type).
OPERATORS: dict[str, tuple[str, ...]] = {
    TEXT: ("eq", "ne", "in", "not_in", "starts_with", "exists"),
    NUMBER: ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "exists"),
    SET: ("contains", "any_in", "all_in", "none_in", "exists"),
}


class _Compiler:
    """Collects problems instead of stopping at the first, so one run lists them all."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.used: set[str] = set()

    def fail(self, line: int, message: str) -> Predicate:
        self.problems.append(Problem(line, message))
        return _never

    def condition(self, node: Node) -> Predicate:
        if not isinstance(node.value, dict) or not node.value:
            return self.fail(node.line, "a condition must be a mapping such as "
                             "{channel: {eq: web}}, {all: [...]}, {any: [...]} or {not: ...}")
        parts = [self._entry(key, value, node.line) for key, value in node.value.items()]
        return parts[0] if len(parts) == 1 else _all(parts)

    def _entry(self, key: str, value: Node, line: int) -> Predicate:
        if key in ("all", "any"):
            if not isinstance(value.value, list) or not value.value:
                return self.fail(value.line, f"'{key}' needs a non-empty list of conditions")
            parts = [self.condition(item) for item in value.value]
            return _all(parts) if key == "all" else _any(parts)
        if key == "not":
            inner = self.condition(value)
            return lambda facts: not inner(facts)
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return self.fail(line, f"unknown field {key!r}{hint}; fields are: "
                             f"{', '.join(FIELDS)}")
        self.used.add(key)
        if not isinstance(value.value, dict):  # shorthand: `channel: web`, `sku: [a, b]`
            shorthand = "any_in" if FIELDS[key][0] == SET else (
                "in" if isinstance(value.value, list) else "eq")
            return self._test(key, shorthand, value)
        tests = [self._test(key, op, arg) for op, arg in value.value.items()]
        if not tests:
            return self.fail(value.line, f"{key}: no operator given")
        return tests[0] if len(tests) == 1 else _all(tests)

    def _test(self, field: str, op: str, arg: Node) -> Predicate:
        kind = FIELDS[field][0]
        if op not in OPERATORS[kind]:
            return self.fail(arg.line, f"{field} is a {kind} field: operator {op!r} does not "
                             f"apply; use one of {', '.join(OPERATORS[kind])}")
        v = arg.plain()
        if op == "exists":
            if not isinstance(v, bool):
                return self.fail(arg.line, f"{field}: 'exists' takes true or false; got {v!r}")
            return lambda facts: (facts.get(field) is not None) == v
        if op in ("in", "not_in", "any_in", "all_in", "none_in"):
            if not isinstance(v, list) or not v:
                return self.fail(arg.line, f"{field}: {op!r} takes a non-empty list; got {v!r}")
            values = [self._value(kind, field, x, arg.line) for x in v]
            return _membership(field, op, frozenset(values))
        if op == "between":
            if not isinstance(v, list) or len(v) != 2:
                return self.fail(arg.line, f"{field}: 'between' takes [low, high]; got {v!r}")
            lo, hi = (self._value(NUMBER, field, x, arg.line) for x in v)
            if lo > hi:
                return self.fail(arg.line, f"{field}: 'between' low {lo} is above high {hi}")
            return lambda facts: (x := facts.get(field)) is not None and lo <= x <= hi
        if op == "contains":
            want = self._value(TEXT, field, v, arg.line)
            return lambda facts: want in (facts.get(field) or ())
        if op == "starts_with":
            prefix = self._value(TEXT, field, v, arg.line)
            return lambda facts: (x := facts.get(field)) is not None and x.startswith(prefix)
        want = self._value(kind, field, v, arg.line)
        if op == "eq":
            return lambda facts: facts.get(field) == want
        if op == "ne":
            return lambda facts: (x := facts.get(field)) is not None and x != want
        compare = _COMPARE[op]
        return lambda facts: (x := facts.get(field)) is not None and compare(x, want)

    def _value(self, kind: str, field: str, v: Any, line: int) -> Any:
        if kind == NUMBER:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.fail(line, f"{field}: expected a number; got {v!r}")
                return 0
            return v
        if isinstance(v, (dict, list)) or v is None:
            self.fail(line, f"{field}: expected a text value; got {v!r}")
            return ""
        choices = CHOICES.get(field)
        if choices is not None and str(v) not in choices:
            close = difflib.get_close_matches(str(v), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(line, f"{field}: unknown value {v!r}{hint}; one of {', '.join(choices)}")
        return str(v)  # YAML reads `01310` as text but `2` as a number; fields are text


def _never(_facts: Facts) -> bool:
    return False


def _all(parts: list[Predicate]) -> Predicate:
    return lambda facts: all(p(facts) for p in parts)


def _any(parts: list[Predicate]) -> Predicate:
    return lambda facts: any(p(facts) for p in parts)


def _membership(field: str, op: str, values: frozenset) -> Predicate:
    if op == "in":
        return lambda facts: facts.get(field) in values
    if op == "not_in":
        return lambda facts: (x := facts.get(field)) is not None and x not in values
    if op == "any_in":
        return lambda facts: not values.isdisjoint(facts.get(field) or ())
    if op == "all_in":
        return lambda facts: bool(x := facts.get(field)) and values.issuperset(x)
    return lambda facts: values.isdisjoint(facts.get(field) or ())  # none_in


def compile_condition(node: Node) -> tuple[Predicate, set[str], list[Problem]]:
    """(predicate, fields it reads, problems); the predicate is only usable without problems."""
    c = _Compiler()
    predicate = c.condition(node)
    return predicate, c.used, c.problems
