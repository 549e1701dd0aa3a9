"""Decode a channel's raw payload so that every integer survives exactly.

Channels send large numeric ids as JSON integers (Shopify's order, customer and line ids are
~1e18, beyond 2^53, so JavaScript-style parsers round them). orjson keeps integers exactly up to
64 bits (signed and unsigned) but turns a longer literal into a float *silently*; Python's `json`
keeps integers of any length exactly but is ~5x slower. So: orjson first, and only when the
bytes hold a run of 19+ digits (a literal that may not fit in 64 bits; the same cheap test
`schemas.validation.decode` uses) the exact `json` parser. The mapping then emits ids as text.

This is unlike `schemas.validation.decode`, which *rejects* integers beyond 64 bits: fulfil's
own topics promise 64-bit integers, but a channel's payload is whatever the channel sends.

Errors are `ValidationError(code="decode")`, as everywhere else, so a payload that is not JSON
becomes a dead letter saying so.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from schemas.errors import ValidationError, json_type, show

_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _exact(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise ValidationError("decode", "", "utf-8", f"payload is not valid UTF-8 ({exc})") \
            from None
    except (ValueError, RecursionError) as exc:
        raise ValidationError("decode", "", "json", f"payload is not valid JSON ({exc})") \
            from None


def decode_payload(raw: bytes | bytearray | memoryview | str | None) -> dict[str, Any]:
    """The payload as a dict with exact integers; ValidationError(code="decode") otherwise."""
    if raw is None or len(raw) == 0:
        raise ValidationError("decode", "", "empty", "payload is empty (null or zero bytes)")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    elif not isinstance(raw, bytes):
        raw = bytes(raw)
    if _LONG_DIGIT_RUN in raw.translate(_DIGITS_TO_ZERO):
        obj = _exact(raw)
    else:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reason = str(exc)
            rule = "utf-8" if "UTF-8" in reason and "BOM" not in reason else "json"
            what = "valid UTF-8" if rule == "utf-8" else "valid JSON"
            raise ValidationError("decode", "", rule, f"payload is not {what} ({reason})") \
                from None
    if obj.__class__ is not dict:
        msg = f"payload must be a JSON object; got {json_type(obj)} {show(obj)}"
        raise ValidationError("decode", "", "type", msg)
    return obj
