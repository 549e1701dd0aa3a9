"""Dead-letter records: bad input is never dropped silently, it is described and set aside.

A dead letter carries where the input came from (topic, partition, offset, key), which step
rejected it, a machine-readable code with the field and rule when known, a human message, and the
original payload (text when it is UTF-8, base64 otherwise) so it can be fixed and replayed.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

MAX_PAYLOAD_BYTES = 64 * 1024


def _payload(raw: bytes | None) -> tuple[str, str]:
    if raw is None:
        return "", "utf8"
    clipped = raw[:MAX_PAYLOAD_BYTES]
    try:
        return clipped.decode("utf-8"), "utf8"
    except UnicodeDecodeError:
        return base64.b64encode(clipped).decode("ascii"), "base64"


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    payload: bytes | None,
    step: str,
    code: str,
    message: str,
    at_ms: int,
    field: str = "",
    rule: str = "",
) -> bytes:
    """Serialized dead-letter record (schema `dead_letter`)."""
    text, encoding = _payload(payload)
    record: dict[str, Any] = {
        "source": {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": None if key is None else key.decode("utf-8", "replace"),
        },
        "step": step,
        "error": {"code": code, "field": field, "rule": rule, "message": message},
        "payload": text,
        "payload_encoding": encoding,
        "at": at_ms,
    }
    if payload is not None and len(payload) > MAX_PAYLOAD_BYTES:
        record["payload_truncated"] = True
    return orjson.dumps(record)
