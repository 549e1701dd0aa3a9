"""Conditions of the mapping language (`when:` on a rule, `where:` on an `each`).

    {path: x, equals: v}    {path: x, in: [a, b]}    {path: x, present: true}
    {path: x, matches: "regex"}    {all: [...]}    {any: [...]}    {not: {...}}

The operand is any rule (with its options); values compare by their text, like tables. A
missing operand makes equals / in / matches false; for a list operand (a `[*]` path, `split`)
one matching element is enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operators.channels import values as V
from operators.channels.model import Scope
from operators.channels.yamltree import Node

OPERATORS = ("equals", "in", "present", "matches")


def compile_condition(c: Any, node: Node, name: str, each: str) -> Callable[[Scope], bool]:
    """A condition (`when:`, `where:`) as a predicate on the scope; problems go to `c`."""
    if node.kind != "map":
        c.problem(node.line, name, "a condition is a mapping, e.g. {path: x, equals: y}")
        return lambda s: False
    keys = set(node.value)
    combinators = keys & {"all", "any", "not"}
    if combinators:
        if len(keys) != 1:
            c.problem(node.line, name, "all / any / not stand alone in a condition")
            return lambda s: False
        (op,) = combinators
        if op == "not":
            inner = compile_condition(c, node.value["not"], name, each)
            return lambda s: not inner(s)
        items = node.value[op]
        if items.kind != "seq" or not items.value:
            c.problem(items.line, name, f"{op} takes a non-empty list of conditions")
            return lambda s: False
        parts = tuple(compile_condition(c, item, name, each) for item in items.value)
        return (lambda s: all(p(s) for p in parts)) if op == "all" \
            else (lambda s: any(p(s) for p in parts))
    ops = [k for k in OPERATORS if k in keys]
    if len(ops) != 1:
        c.problem(node.line, name, "a condition needs one of equals, in, present, "
                  "matches (or all / any / not)")
        return lambda s: False
    op = ops[0]
    operand_node = Node({k: v for k, v in node.value.items() if k != op}, node.line, "map",
                        node.key_lines)
    operand = c.spec(operand_node, f"{name}.{op}", each)
    arg = node.value[op].plain()
    test: Callable[[Any], bool]
    if op == "equals":
        want = V.text_key(arg)
        test = lambda v: V.text_key(v) == want  # noqa: E731
    elif op == "in":
        if not isinstance(arg, list):
            c.problem(node.value[op].line, name, "in takes a list of values")
            return lambda s: False
        wanted = {V.text_key(a) for a in arg}
        test = lambda v: V.text_key(v) in wanted  # noqa: E731
    elif op == "matches":
        try:
            test = V.make_matches(arg)
        except V.OptionError as exc:
            c.problem(node.value[op].line, name, str(exc))
            return lambda s: False
    else:
        present = bool(arg)

        def present_test(s: Scope) -> bool:
            v = operand(s)
            return (v is not V.MISSING and v != []) == present

        return present_test

    def safe(v: Any) -> bool:
        try:
            return test(v)
        except V.Mismatch:  # an object where text was expected: it does not match
            return False

    def check(s: Scope) -> bool:
        v = operand(s)
        if v is V.MISSING:
            return False
        if v.__class__ is list:
            return any(safe(x) for x in v)
        return safe(v)

    return check
