"""Decode and validate events against the JSON Schema files, fast, with precise errors.

The files in `schemas/json/` are the single source of every contract (other languages validate
with the same files). Here each one is compiled twice, once:

- by jsonschema-rs (Rust) into the *accept path*: a yes/no verdict in ~1.6 µs for an order, five
  times faster than the generated Python below, which matters at 20k events/s;
- by fastjsonschema into Python code that runs only when the accept path says no, to produce the
  precise error (field, rule, offending value) that goes into the dead letter. The two agree on
  every input (tests/test_schemas/test_validation_properties.py checks both against the files).

For the
event unions (`order_event`, `inventory_event`, `carrier_event`) we do not run the file's
`if type == ... then ...` chain per event: we look `type` up in a dict and run a validator compiled
from that type's own `definitions/<type>`. That is faster (no trial validation of every `if`) and
makes errors name the real field instead of failing the whole union.

After the compiled validator, a few small pure checks do what JSON Schema cannot express cleanly
(unique `line_id`s, `decision_id == f"{order_id}:v{version}"`) and normalise integral floats in
integer fields (`2.0` is a valid JSON Schema integer; consumers get `2`).

    >>> event = decode_and_validate("order_event", raw_bytes)   # doctest: +SKIP
    >>> check = validator("order_event")                         # hot loops: fetch once
    >>> check(event)                                             # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema_rs
import orjson
from fastjsonschema import JsonSchemaValueException

from schemas.errors import (
    UnknownNameError,
    ValidationError,
    from_schema_exception,
    json_type,
    show,
)

KINDS = ("order_event", "inventory_event", "carrier_event", "decision", "dead_letter", "approval",
         "config_record", "alert")
SCHEMA_DIR = Path(__file__).resolve().with_name("json")

#: A validator: takes a decoded event, returns it (defaults filled), raises ValidationError.
Validator = Callable[[Any], dict[str, Any]]
_Check = Callable[[dict[str, Any]], None]


def schema_path(kind: str) -> Path:
    """The schema file of `kind`, e.g. `schemas/json/order_event.schema.json`."""
    if kind not in KINDS:
        raise UnknownNameError(f"unknown schema kind {kind!r}; known: {', '.join(KINDS)}")
    return SCHEMA_DIR / f"{kind}.schema.json"


def load_schema(kind: str) -> dict[str, Any]:
    """A fresh parsed copy of the schema of `kind` (callers may mutate it)."""
    return orjson.loads(_schema_bytes(kind))


@cache
def _schema_bytes(kind: str) -> bytes:
    return schema_path(kind).read_bytes()


# -- semantic checks: pure, cheap, run after the compiled validator -------------------------------


def _ints(event: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Turn integral floats (already validated as JSON Schema integers) into ints, in place."""
    for key in keys:
        value = event.get(key)
        if value.__class__ is float:
            event[key] = int(value)


def check_destination(event: dict[str, Any]) -> None:
    """`destination` has lat and lng, or postal_code: the schema's `anyOf`, done in Python.

    fastjsonschema runs an anyOf by raising and catching an exception per failed branch, which
    cost 1-5 us per order; this costs ~0.1 us. (lat without lng is the compiled `dependencies`.)
    """
    dest = event["destination"]
    if "postal_code" not in dest and ("lat" not in dest or "lng" not in dest):
        msg = f"destination must have lat and lng, or postal_code; got {show(dest)}"
        raise ValidationError("schema", "destination", "anyOf", msg)


def check_address_changed(event: dict[str, Any]) -> None:
    """The destination rule; integer fields are ints."""
    check_destination(event)
    _ints(event, ("occurred_at",))


def check_order_created(event: dict[str, Any]) -> None:
    """The destination rule; line ids are unique (decisions refer to lines by id); integer
    fields are ints."""
    check_destination(event)
    _ints(event, ("occurred_at", "promised_by", "priority"))
    seen: set[str] = set()
    for i, line in enumerate(event["lines"]):
        line_id = line["line_id"]
        if line_id in seen:
            field = f"lines[{i}].line_id"
            msg = f"{field} must be unique within the order; got {show(line_id)} twice"
            raise ValidationError("schema", field, "unique", msg)
        seen.add(line_id)
        if line["qty"].__class__ is float:
            line["qty"] = int(line["qty"])
        if line.get("weight_g").__class__ is float:
            line["weight_g"] = int(line["weight_g"])


def check_decision(decision: dict[str, Any]) -> None:
    """decision_id is f"{order_id}:v{version}", so replays produce the same id."""
    _ints(decision, ("version", "splits"))
    expected = f"{decision['order_id']}:v{decision['version']}"
    if decision["decision_id"] != expected:
        msg = (
            f"decision_id must be {show(expected)} (order_id:v<version>); "
            f"got {show(decision['decision_id'])}"
        )
        raise ValidationError("schema", "decision_id", "decision-id", msg)


def _ints_check(*keys: str) -> _Check:
    def check(event: dict[str, Any]) -> None:
        _ints(event, keys)

    check.__doc__ = f"Normalise integral floats in {', '.join(keys)}."
    return check


#: Checks per event type (unions) or per kind (decision, dead_letter).
CHECKS: Mapping[str, _Check] = {
    "order.created": check_order_created,
    "order.address_changed": check_address_changed,
    "order.cancelled": _ints_check("occurred_at"),
    "order.approved": _ints_check("occurred_at"),
    "order.rejected": _ints_check("occurred_at"),
    "order.reroute_requested": _ints_check("occurred_at"),
    "order.merge_requested": _ints_check("occurred_at"),
    "order.split_requested": _ints_check("occurred_at"),
    "inventory.snapshot": _ints_check("version", "on_hand", "occurred_at"),
    "inventory.adjusted": _ints_check("version", "delta", "occurred_at"),
    "lane.status": _ints_check("occurred_at", "valid_until", "valid_from"),
    "shipment.tracking": _ints_check("occurred_at", "picked_up_at", "promised_by"),
    "node.closure": _ints_check("occurred_at", "valid_from", "valid_until"),
    "decision": check_decision,
    "dead_letter": _ints_check("at"),
}


# -- compiling ------------------------------------------------------------------------------------


def _defaults(schema: Mapping[str, Any]) -> Callable[[Any], None] | None:
    """A function that fills the schema's `default`s into a valid event, in place (what
    fastjsonschema does while validating); None when the schema declares none.

    Covers what the contracts use: defaults of object properties, at any depth, including the
    objects inside arrays. A default is copied per event (it may be a dict)."""
    own = [(k, v["default"]) for k, v in schema.get("properties", {}).items() if "default" in v]
    nested = [(k, f) for k, v in schema.get("properties", {}).items()
              if (f := _defaults(v)) is not None]
    items = schema.get("items")
    each = _defaults(items) if isinstance(items, Mapping) else None
    if not own and not nested and each is None:
        return None

    def fill(node: Any) -> None:
        if node.__class__ is dict:
            for key, value in own:
                if key not in node:
                    node[key] = copy.deepcopy(value)
            for key, inner in nested:
                if key in node:
                    inner(node[key])
        elif node.__class__ is list and each is not None:
            for item in node:
                each(item)

    return fill


def _guarded(schema: dict[str, Any], check: _Check | None) -> Validator:
    """The accept path (jsonschema-rs), the error path (fastjsonschema), then `check`; failures
    come out as our ValidationError."""
    explain = fastjsonschema.compile(schema)
    accepts = jsonschema_rs.Draft7Validator(schema).is_valid
    fill = _defaults(schema)

    def run(event: Any) -> dict[str, Any]:
        if accepts(event):
            if fill is not None:
                fill(event)
        else:
            try:
                explain(event)
            except JsonSchemaValueException as exc:
                raise from_schema_exception(exc) from None
        if check is not None:
            check(event)
        return event

    return run


_ANNOTATIONS = frozenset({"description", "title", "default", "examples"})


def inline_refs(node: Any, definitions: Mapping[str, Any]) -> Any:
    """`node` with every local `{"$ref": "#/definitions/x"}` replaced by a copy of x.

    fastjsonschema compiles each $ref into a function call that formats the error-path prefix
    eagerly (a `str.format(**locals())` per order line), which tripled the cost of a valid order.
    Our definitions are not recursive, so inlining them is finite. Annotations beside a $ref
    (description, default) are kept: fastjsonschema reads `default` from the property itself.
    """
    if isinstance(node, list):
        return [inline_refs(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        target = inline_refs(definitions[ref.removeprefix("#/definitions/")], definitions)
        target.update((k, v) for k, v in node.items() if k in _ANNOTATIONS)
        return target
    return {k: (v if k == "definitions" else inline_refs(v, definitions)) for k, v in node.items()}


def _variant_schema(doc: dict[str, Any], variant: str) -> dict[str, Any]:
    """The file's `definitions/<variant>` as a standalone schema with no $ref left."""
    return inline_refs(doc["definitions"][variant], doc["definitions"])


def _envelope_error(event: Any, variants: tuple[str, ...]) -> ValidationError:
    """Why `event` has no usable `type` (the union's own rules: object, required, enum)."""
    if not isinstance(event, dict):
        msg = f"event must be object; got {json_type(event)} {show(event)}"
        return ValidationError("schema", "", "type", msg)
    if "type" not in event:
        return ValidationError("schema", "type", "required", f"type is required; got {show(event)}")
    options = ", ".join(show(v) for v in variants)
    msg = f"type must be one of {options}; got {show(event['type'])}"
    return ValidationError("schema", "type", "enum", msg)


def _dispatcher(doc: dict[str, Any]) -> Validator:
    """One compiled validator per `type`, chosen by a dict lookup."""
    variants = tuple(doc["properties"]["type"]["enum"])
    table = {
        v: _guarded(_variant_schema(doc, v), CHECKS.get(v))
        for v in variants
    }

    def run(event: Any) -> dict[str, Any]:
        try:
            guarded = table[event["type"]]
        except (KeyError, TypeError):  # no/unknown/unhashable type, or not an object
            raise _envelope_error(event, variants) from None
        return guarded(event)

    return run


def _is_union(doc: dict[str, Any]) -> bool:
    variants = doc.get("properties", {}).get("type", {}).get("enum")
    return bool(variants) and all(v in doc.get("definitions", {}) for v in variants)


#: (kind, definition, keyword) that the compiled validators leave out because a function in
#: CHECKS enforces the same rule faster. tests/test_schemas proves the result agrees with the file.
PYTHON_ENFORCED: tuple[tuple[str, str, str], ...] = (("order_event", "destination", "anyOf"),)


def _build(kind: str) -> Validator:
    doc = load_schema(kind)
    for owner, definition, keyword in PYTHON_ENFORCED:
        if owner == kind:
            del doc["definitions"][definition][keyword]
    if _is_union(doc):
        return _dispatcher(doc)
    body = {k: v for k, v in doc.items() if k != "definitions"}
    flat = inline_refs(body, doc.get("definitions", {}))
    return _guarded(flat, CHECKS.get(kind))


_VALIDATORS: dict[str, Validator] = {}


def validator(kind: str) -> Validator:
    """The compiled validator of `kind` (built on first use, then cached). Fetch it once for
    hot loops: calling it costs one dict lookup less than `validate`."""
    try:
        return _VALIDATORS[kind]
    except KeyError:
        schema_path(kind)  # raises UnknownNameError for an unknown kind
        return _VALIDATORS.setdefault(kind, _build(kind))


def validate(kind: str, obj: Any) -> dict[str, Any]:
    """Validate a decoded event of `kind`; returns it with defaults filled, in place
    (`customer.tier` "standard", `priority` 0). Raises ValidationError(code="schema")."""
    try:
        run = _VALIDATORS[kind]
    except KeyError:
        run = validator(kind)
    return run(obj)


# -- decoding -------------------------------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# orjson turns integer literals beyond 64 bits into floats silently (2**70 -> 1.18e21), losing
# digits. Every such literal has 19+ digits; mapping digits to '0' and searching for 19 zeros is
# ~0.5 us on a typical order (a regex is ~4 us), and only hits send us down the exact slow path.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


class _Wide(int):
    """Marks an integer literal outside int64 while re-parsing, so we can find its path."""

    literal: str


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    # > 19 digits is beyond int64 for sure; skipping int() also avoids Python's limit on
    # converting very long digit strings.
    if digits <= 19 and _INT64_MIN <= int(text) <= _INT64_MAX:
        return int(text)
    wide = _Wide(0)
    wide.literal = text
    return wide


def _find_wide(obj: Any) -> tuple[str, str] | None:
    """(path, literal) of the first _Wide in a parsed tree (iterative: trees nest 1000 deep)."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Wide):
            return path, node.literal
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}" if path else k, v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))
    return None


def _reject_wide_ints(raw: bytes, parsed: bool) -> None:
    """Raise a decode error naming the first integer beyond int64 in `raw`, if any.

    `parsed`: orjson accepted `raw`, so a failure to re-parse here must not let it through
    unchecked (fail closed). When orjson rejected it, a failure here just means "not JSON".
    """
    try:
        tree = json.loads(raw.decode("utf-8"), parse_int=_parse_int)
    except (RecursionError, ValueError) as exc:
        if not parsed:
            return
        msg = f"payload could not be checked for integers beyond 64 bits: {exc!r}"
        raise ValidationError("decode", "", "json", msg) from None
    found = _find_wide(tree)
    if found is not None:
        path, literal = found
        shown = literal if len(literal) <= 40 else f"{literal[:37]}..."
        msg = f"{path or 'payload'} is an integer beyond 64 bits; got {shown} (send ids as strings)"
        raise ValidationError("decode", path, "int64", msg)


def decode(raw: bytes | bytearray | memoryview | str | None) -> dict[str, Any]:
    """Parse one message value into a dict. Raises ValidationError(code="decode") for an empty
    value, invalid UTF-8, invalid JSON, an integer beyond 64 bits, or a non-object."""
    if raw is None or len(raw) == 0:
        raise ValidationError("decode", "", "empty", "payload is empty (null or zero bytes)")
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            msg = f"payload is not valid UTF-8 ({exc})"
            raise ValidationError("decode", "", "utf-8", msg) from None
    elif not isinstance(raw, bytes):
        raw = bytes(raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "UTF-8" in reason and "BOM" not in reason:
            msg = f"payload is not valid UTF-8 ({reason})"
            raise ValidationError("decode", "", "utf-8", msg) from None
        if _LONG_DIGIT_RUN in raw.translate(_DIGITS_TO_ZERO):  # a literal too big even for a float
            _reject_wide_ints(raw, parsed=False)
        msg = f"payload is not valid JSON ({reason})"
        raise ValidationError("decode", "", "json", msg) from None
    if obj.__class__ is not dict:
        msg = f"payload must be a JSON object; got {json_type(obj)} {show(obj)}"
        raise ValidationError("decode", "", "type", msg)
    if _LONG_DIGIT_RUN in raw.translate(_DIGITS_TO_ZERO):
        _reject_wide_ints(raw, parsed=True)
    return obj


def decode_and_validate(kind: str, raw: bytes | bytearray | memoryview | str | None) -> dict:
    """decode() then validate(): the one call a flow makes per consumed message."""
    try:
        run = _VALIDATORS[kind]
    except KeyError:
        run = validator(kind)
    return run(decode(raw))
