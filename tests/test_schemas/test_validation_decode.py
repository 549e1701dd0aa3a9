"""Validation of raw bytes: undecodable payloads, integers beyond 64 bits and deep nesting are
decode errors, never crashes."""

from __future__ import annotations

import orjson
import pytest

from schemas.errors import ValidationError
from schemas.validation import decode, decode_and_validate

# -- decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        pytest.param(b'{"type": "order.created", ', "json", id="truncated"),
        pytest.param(b'{"type": NaN}', "json", id="nan"),
        pytest.param(b'{"a": 1e400}', "json", id="float-overflow"),
        pytest.param(b"\xef\xbb\xbf{}", "json", id="bom"),
        pytest.param(b"\xff\xfe\x00", "utf-8", id="not-utf8"),
        pytest.param(b'{"type": "order.created", "order_id": "o-\xe9"}', "utf-8", id="latin1"),
        pytest.param(b"[1, 2]", "type", id="array"),
        pytest.param(b'"order"', "type", id="string"),
        pytest.param(b"null", "type", id="null"),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(None, "empty", id="tombstone"),
        pytest.param(b"[" * 2000 + b"]" * 2000, "json", id="too-deep"),
    ],
)  # fmt: skip
def test_undecodable_payload_is_a_decode_error(raw: bytes | None, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        decode_and_validate("order_event", raw)
    assert (info.value.code, info.value.field, info.value.rule) == ("decode", "", rule)


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        (str(2**70), "lines[0].qty"),
        (str(2**64 - 1), "lines[0].qty"),  # orjson keeps this one exact, but it is not int64
        (str(2**63), "lines[0].qty"),
        (str(-(2**63) - 1), "lines[0].qty"),
        ("9" * 5000, "lines[0].qty"),  # beyond Python's int-from-str digit limit
    ],
)
def test_integer_beyond_64_bits_is_a_decode_error(event_factory, literal: str, field: str) -> None:
    _, order = event_factory("order.created")
    raw = orjson.dumps(order).replace(b'"qty":2', b'"qty":' + literal.encode())
    with pytest.raises(ValidationError) as info:
        decode_and_validate("order_event", raw)
    assert (info.value.code, info.value.field, info.value.rule) == ("decode", field, "int64")


def test_int64_edges_and_long_digit_strings_still_decode(event_factory) -> None:
    _, order = event_factory("order.created")
    order["order_id"] = "123456789012345678901234567890"  # a long numeric id, sent as a string
    order["shopify_id"] = 2**63 - 1  # extra field at the int64 edge
    order["refund"] = -(2**63)
    out = decode_and_validate("order_event", orjson.dumps(order))
    assert out["shopify_id"] == 2**63 - 1 and out["refund"] == -(2**63)


def test_deep_nesting_with_a_long_number_is_a_decode_error_not_a_crash() -> None:
    raw = b'{"type": "order.created", "x": ' + b"[" * 1000 + b"1" * 25 + b"]" * 1000 + b"}"
    with pytest.raises(ValidationError) as info:
        decode_and_validate("order_event", raw)
    assert info.value.code == "decode"


def test_decode_accepts_any_bytes_like(event_factory) -> None:
    _, order = event_factory("order.cancelled")
    raw = orjson.dumps(order)
    for value in (raw, bytearray(raw), memoryview(raw), raw.decode()):
        assert decode(value) == order
