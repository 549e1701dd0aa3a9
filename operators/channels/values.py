"""Value conversions of the mapping language: text, numbers, times, units, types.

Each converter is built once, when a mapping file is compiled (`make_*` functions validate their
options and return a plain function), and then called per payload. A converter takes a value
and returns the converted one or raises `Mismatch` with a short reason; the compiler turns that
into a `MapFailure` naming the mapping rule and the payload field.

Why `Decimal` for arithmetic: channel amounts are decimal strings ("404.95"); summing them as
floats gives 0.30000000000000004-style artefacts in the emitted order. Results leave as `int`
when integral, `float` otherwise, because the wire format is JSON numbers (orjson cannot encode
Decimal).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class _Missing:
    """The one 'no value' marker: an absent field, a null, or a value listed in missing_if."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Mismatch(ValueError):
    """A payload value a converter cannot take; `check` names the check (a dead letter's rule)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


class OptionError(ValueError):
    """A converter option in a mapping file is wrong (raised at compile time only)."""


Converter = Callable[[Any], Any]


def text_key(value: Any) -> str:
    """How values compare in tables and conditions: by their text. `1`, `1.0` and "1" are all
    "1"; true is "true". So a YAML table key `0:` matches a payload's 0 and "0" alike."""
    if value.__class__ is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal):
        return to_text(plain_number(value))
    return str(value)


def to_text(value: Any) -> str:
    """A scalar as text for concat/format/as:string: ints exactly (however large), no '1.0'."""
    if value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return to_text(plain_number(value))
    raise Mismatch("type", f"expected text or a number; got {type_name(value)}")


def type_name(value: Any) -> str:
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")


#: Beyond this magnitude a "number" in an order is garbage (ms timestamps are ~1.7e12), and
#: exact decimal arithmetic on it would fail or build integers too long to print.
MAX_MAGNITUDE_DIGITS = 24


def to_decimal(value: Any) -> Decimal:
    """A number or numeric string as an exact Decimal ("404.95" stays 404.95)."""
    if isinstance(value, bool):
        raise Mismatch("number", f"expected a number; got boolean {to_text(value)}")
    d: Decimal | None = None
    if isinstance(value, int | Decimal):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(repr(value))
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
            d = None
    if d is None:
        raise Mismatch("number", f"expected a number; got {type_name(value)} {shown(value)}")
    if not d.is_finite() or d.adjusted() >= MAX_MAGNITUDE_DIGITS:
        raise Mismatch("number", f"number out of range: {shown(value)}")
    return d


def plain_number(d: Decimal) -> int | float:
    """A Decimal back to JSON terms: int when integral, float otherwise."""
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def shown(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- text operations ------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-./]+")
_NON_DIGITS = re.compile(r"\D+")
TEXT_OPS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "upper": str.upper,
    "lower": str.lower,
    "strip_separators": lambda s: _SEPARATORS.sub("", s),
    "digits": lambda s: _NON_DIGITS.sub("", s),
}


def make_text(ops: list[str]) -> Converter:
    unknown = [op for op in ops if op not in TEXT_OPS]
    if unknown:
        raise OptionError(f"unknown text operation {unknown[0]!r}; known: {', '.join(TEXT_OPS)}")
    funcs = [TEXT_OPS[op] for op in ops]

    def convert(value: Any) -> Any:
        text = to_text(value)
        for f in funcs:
            text = f(text)
        return text

    return convert


def make_split(sep: str) -> Converter:
    if not isinstance(sep, str) or not sep:
        raise OptionError("split needs a non-empty separator text, e.g. split: ','")

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return value
        return [part.strip() for part in to_text(value).split(sep) if part.strip()]

    return convert


def make_matches(pattern: str) -> Callable[[Any], bool]:
    try:
        rx = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise OptionError(f"keep_if_matches: not a valid regular expression ({exc})") from None
    return lambda value: rx.fullmatch(to_text(value)) is not None


# -- times ----------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def parse_tz(name: str) -> tzinfo:
    """'UTC', '+03:00' / '-0300', or an IANA zone name like 'America/Sao_Paulo'."""
    if not isinstance(name, str) or not name:
        raise OptionError("tz must be text: UTC, an offset like -03:00, or a zone name")
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = _OFFSET.fullmatch(name)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise OptionError(f"unknown time zone {name!r}; use UTC, -03:00 or e.g. "
                          "America/Sao_Paulo") from None


def _ms(dt: datetime, tz: tzinfo | None, text: Any) -> int:
    if dt.tzinfo is None:
        if tz is None:
            raise Mismatch("time", f"time {shown(text)} has no UTC offset; set tz: in the rule")
        dt = dt.replace(tzinfo=tz)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _epoch(scale: int) -> Callable[[Any, tzinfo | None], int]:
    def convert(value: Any, _tz: tzinfo | None) -> int:
        d = to_decimal(value) * scale
        return int(d.to_integral_value(ROUND_HALF_UP))

    return convert


def _iso(value: Any, tz: tzinfo | None) -> int:
    if not isinstance(value, str):
        raise Mismatch("time", f"expected an ISO-8601 time text; got {type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Mismatch("time", f"not an ISO-8601 time: {shown(value)}") from None
    return _ms(parsed, tz, value)


def _rfc2822(value: Any, tz: tzinfo | None) -> int:
    try:
        parsed = parsedate_to_datetime(to_text(value))
    except (TypeError, ValueError, IndexError):
        raise Mismatch("time", f"not an RFC 2822 time: {shown(value)}") from None
    return _ms(parsed, tz, value)


def _pattern(fmt: str) -> Callable[[Any, tzinfo | None], int]:
    def convert(value: Any, tz: tzinfo | None) -> int:
        try:
            parsed = datetime.strptime(to_text(value).strip(), fmt)
        except ValueError:
            raise Mismatch("time", f"time {shown(value)} does not match {fmt!r}") from None
        return _ms(parsed, tz, value)

    return convert


TIME_FORMATS = ("iso8601", "epoch_s", "epoch_ms", "rfc2822", "a strptime pattern with %")


def make_time(fmt: str, tz_name: str | None) -> Converter:
    """A converter from the channel's time format to ms since the epoch (UTC)."""
    tz = parse_tz(tz_name) if tz_name is not None else None
    named = {"iso8601": _iso, "epoch_s": _epoch(1000), "epoch_ms": _epoch(1),
             "rfc2822": _rfc2822}
    if fmt in named:
        parse = named[fmt]
    elif isinstance(fmt, str) and "%" in fmt:
        try:  # a round trip finds bad directives now rather than on the first payload
            datetime.strptime(datetime(2001, 2, 3, 4, 5, 6).strftime(fmt), fmt)
        except ValueError as exc:
            raise OptionError(f"time pattern {fmt!r} is not a strptime pattern ({exc})") \
                from None
        parse = _pattern(fmt)
    else:
        raise OptionError(f"unknown time format {fmt!r}; use one of {', '.join(TIME_FORMATS)}")
    return lambda value: parse(value, tz)


# -- units ----------------------------------------------------------------------------------------

UNITS: dict[str, tuple[str, Decimal]] = {
    "mg": ("mass", Decimal("0.001")), "g": ("mass", Decimal(1)), "kg": ("mass", Decimal(1000)),
    "oz": ("mass", Decimal("28.349523125")), "lb": ("mass", Decimal("453.59237")),
    "ms": ("duration", Decimal(1)), "s": ("duration", Decimal(1000)),
    "min": ("duration", Decimal(60_000)), "h": ("duration", Decimal(3_600_000)),
    "d": ("duration", Decimal(86_400_000)),
}


def make_unit(src: str, dst: str) -> Converter:
    """Multiply by the factor between two units of one dimension (mass or duration)."""
    for u in (src, dst):
        if u not in UNITS:
            raise OptionError(f"unknown unit {u!r}; known: {', '.join(UNITS)}")
    (dim_a, fa), (dim_b, fb) = UNITS[src], UNITS[dst]
    if dim_a != dim_b:
        raise OptionError(f"cannot convert {dim_a} ({src}) to {dim_b} ({dst})")
    factor = fa / fb
    return lambda value: plain_number(to_decimal(value) * factor)


def make_round(places: int) -> Converter:
    if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 12:
        raise OptionError("round takes a number of decimal places, 0..12")
    quantum = Decimal(1).scaleb(-places)

    def convert(value: Any) -> Any:
        if value.__class__ is int:  # already whole: nothing to round
            return value
        return plain_number(to_decimal(value).quantize(quantum, ROUND_HALF_UP))

    return convert


# -- types ----------------------------------------------------------------------------------------

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _as_integer(value: Any) -> int:
    if value.__class__ is int:
        return value
    d = to_decimal(value)
    if d != d.to_integral_value():
        raise Mismatch("integer", f"expected a whole number; got {shown(value)} (add round: 0)")
    return int(d)


def _as_number(value: Any) -> int | float:
    if value.__class__ in (int, float):
        return value
    return plain_number(to_decimal(value))


def _as_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = to_text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Mismatch("boolean", f"expected true/false; got {shown(value)}")


AS_TYPES: dict[str, Converter] = {
    "string": to_text, "integer": _as_integer, "number": _as_number, "boolean": _as_boolean,
}
