"""Errors raised by `schemas`, and the translation of validator failures into precise ones.

The hierarchy (catch the narrowest class that you can act on)::

    ContractError                  base of everything this package raises on purpose
    ├── ValidationError            one event broke its contract: dead-letter it, keep going
    │                                code "decode": not UTF-8, not JSON, not an object, or an
    │                                               integer beyond 64 bits
    │                                code "schema": parsed, but broke a rule of its schema file
    │                                               or one of the semantic checks beside it
    └── UnknownNameError           (also a LookupError) a kind or topic name that is not in the
                                     registry: a bug in the caller, never bad input data

A `ValidationError` carries what a dead-letter record needs (`as_dict()` is its `error` object):
`field` is JSON-path-like (`lines[0].qty`, `""` for the whole event), `rule` is the JSON Schema
keyword broken (`minimum`, `required`, ...) or the name of a check beyond JSON Schema, and `message`
names both and shows the culprit value, e.g. ``lines[0].qty must be >= 1; got 0``.

Why translate at all: fastjsonschema reports a missing field by its parent (`data.lines[0] must
contain ['sku'] properties`) and an unmet `anyOf` as "cannot be validated by any definition".
Operators reading a dead letter, and producers reading a rejection, need the field itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastjsonschema import JsonSchemaValueException

#: Longest rendering of a culprit value inside a message.
MAX_VALUE_CHARS = 80


class ContractError(Exception):
    """Base class of the errors `schemas` raises on purpose."""


class ValidationError(ContractError):
    """An event that breaks its contract. Data, not a bug: route it to the dead-letter topic."""

    code: str
    field: str
    rule: str
    message: str

    def __init__(self, code: str, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.rule = rule
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle via `args` (just the message here); bytewax may move them between
        # workers, so rebuild from all four attributes.
        return (type(self), (self.code, self.field, self.rule, self.message))

    def __repr__(self) -> str:
        return (
            f"ValidationError(code={self.code!r}, field={self.field!r}, rule={self.rule!r}, "
            f"message={self.message!r})"
        )

    def as_dict(self) -> dict[str, str]:
        """The `error` object of a dead-letter record."""
        return {"code": self.code, "field": self.field, "rule": self.rule, "message": self.message}


class UnknownNameError(ContractError, LookupError):
    """A schema kind or topic name that the registry does not know (a caller bug)."""


# -- rendering helpers ----------------------------------------------------------------------------


def show(value: Any) -> str:
    """`value` as compact JSON (Python repr if it is not JSON-able), cut to MAX_VALUE_CHARS."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # non-str keys, ints beyond 64 bits, non-JSON objects
        text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return text


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is an int subclass
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (type(None), "null"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value ('integer', 'string', ...)."""
    for py_type, name in _JSON_TYPES:
        if isinstance(value, py_type):
            return name
    return type(value).__name__


def join(parent: str, key: str) -> str:
    """Path of `key` inside the object at `parent` ('' is the root)."""
    return f"{parent}.{key}" if parent else key


def label(field: str) -> str:
    """How a field is named in a message; the root is 'event'."""
    return field or "event"


def _field(name: str) -> str:
    """fastjsonschema's 'data.lines[0].qty' -> 'lines[0].qty'; 'data' -> ''."""
    if name.startswith("data"):
        name = name[4:]
    return name[1:] if name.startswith(".") else name


# -- one translator per JSON Schema keyword -------------------------------------------------------
# Each takes (field, value, definition) where `definition` is the (sub)schema holding the keyword,
# and returns (field, rule, message); the field may move to a child (required, dependencies).

_Translation = tuple[str, str, str]


def _required(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
    missing = [key for key in definition.get("required", ()) if key not in value]
    if not missing:  # cannot happen for a dict; keep the parent rather than crash
        return field, "required", f"{label(field)} lacks a required field; got {show(value)}"
    first = join(field, missing[0])
    also = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
    return first, "required", f"{first} is required{also}; got {show(value)}"


def _dependencies(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation | None:
    """The first 'if A is present B must be' that `value` breaks, or None."""
    if not isinstance(value, dict):
        return None
    for key, needs in definition.get("dependencies", {}).items():
        if key in value and isinstance(needs, list):
            for need in needs:
                if need not in value:
                    dep = join(field, need)
                    return (
                        dep,
                        "dependencies",
                        f"{dep} is required when {join(field, key)} is present; got {show(value)}",
                    )
    return None


def _any_of(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
    # A broken dependency is the precise story ('lat' without 'lng'); fastjsonschema just checks
    # anyOf first.
    precise = _dependencies(field, value, definition)
    if precise is not None:
        return precise
    branches = definition.get("anyOf", [])
    if branches and all(isinstance(b, dict) and set(b) == {"required"} for b in branches):
        options = ", or ".join(" and ".join(b["required"]) for b in branches)
        return field, "anyOf", f"{label(field)} must have {options}; got {show(value)}"
    return field, "anyOf", f"{label(field)} matches none of its alternatives; got {show(value)}"


def _type(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
    types = definition.get("type", [])
    wanted = " or ".join(types) if isinstance(types, list) else str(types)
    msg = f"{label(field)} must be {wanted}; got {json_type(value)} {show(value)}"
    return field, "type", msg


def _enum(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
    options = ", ".join(show(v) for v in definition.get("enum", []))
    return field, "enum", f"{label(field)} must be one of {options}; got {show(value)}"


def _bound(op: str, keyword: str) -> Callable[[str, Any, Mapping[str, Any]], _Translation]:
    def translate(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
        msg = f"{label(field)} must be {op} {definition.get(keyword)}; got {show(value)}"
        return field, keyword, msg

    return translate


def _count(noun: str, keyword: str, least: bool) -> Callable[..., _Translation]:
    def translate(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
        n = definition.get(keyword)
        plural = "" if n == 1 else "s"
        bound = "at least" if least else "at most"
        have = len(value) if isinstance(value, list | str | dict) else "?"
        return field, keyword, f"{label(field)} must have {bound} {n} {noun}{plural}; got {have}"

    return translate


def _min_length(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
    n = definition.get("minLength")
    if n == 1:
        return field, "minLength", f"{label(field)} must not be empty; got {show(value)}"
    return field, "minLength", f"{label(field)} must be at least {n} characters; got {show(value)}"


def _pattern(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
    msg = f"{label(field)} must match {definition.get('pattern')}; got {show(value)}"
    return field, "pattern", msg


def _const(field: str, value: Any, definition: Mapping[str, Any]) -> _Translation:
    msg = f"{label(field)} must be {show(definition.get('const'))}; got {show(value)}"
    return field, "const", msg


_TRANSLATORS: dict[str, Callable[[str, Any, Mapping[str, Any]], _Translation]] = {
    "required": _required,
    "anyOf": _any_of,
    "type": _type,
    "enum": _enum,
    "const": _const,
    "minimum": _bound(">=", "minimum"),
    "maximum": _bound("<=", "maximum"),
    "exclusiveMinimum": _bound(">", "exclusiveMinimum"),
    "exclusiveMaximum": _bound("<", "exclusiveMaximum"),
    "minItems": _count("item", "minItems", least=True),
    "maxItems": _count("item", "maxItems", least=False),
    "maxLength": _count("character", "maxLength", least=False),
    "minLength": _min_length,
    "pattern": _pattern,
}


def from_schema_exception(exc: JsonSchemaValueException) -> ValidationError:
    """Translate a fastjsonschema failure into a `ValidationError(code="schema")`.

    Only runs on the (rare) failure path, so it can afford to look at the schema again.
    """
    field = _field(exc.name or "data")
    rule = exc.rule or "schema"
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    if rule == "dependencies":
        translated = _dependencies(field, exc.value, definition)
    else:
        translator = _TRANSLATORS.get(rule)
        translated = translator(field, exc.value, definition) if translator else None
    if translated is None:
        detail = exc.message.replace(exc.name or "data", label(field), 1)
        translated = field, rule, f"{detail} ({rule}); got {show(exc.value)}"
    return ValidationError("schema", *translated)
