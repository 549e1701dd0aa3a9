"""Structured logs: one JSON object per line, so one order can be followed across processes.

    >>> setup_logging("json", "INFO", process_id=0)                          # doctest: +SKIP
    >>> log.warning("set aside", extra={"order_id": "o-1", "step": "route-orders", "version": 2})
    {"ts":"2026-05-01T12:00:00.123Z","level":"WARNING","logger":"fulfil.router","msg":"set aside",
     "process_id":0,"order_id":"o-1","step":"route-orders","version":2}

Fields: `ts` (UTC, ms), `level`, `logger`, `msg`, `exc` (the traceback, when there is one), the
`process_id` given to `setup_logging`, and every field passed with `extra=` — by convention
`order_id`, `step`, `version` (decision version), `event_id`, `decision_id`. A traceback or a
message with a newline stays on its one line (JSON escapes it), so log shippers never split a
record.

Secrets: configuration is logged only through `Config.redacted()`. As a second line of defence
the formatters also mask credentials in URLs (`redis://user:***@host`) and `password=...`-style
pairs in every message, traceback and extra string, so an exception quoting a URL cannot leak one.

No log line per event on a hot path at INFO: per-event detail is DEBUG; flows log per batch or
per incident (see dataflows/tracking.py for a rate-limited warning).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

import orjson

FORMATS = ("text", "json")
#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName",
}
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")
_SECRET_PAIRS = re.compile(
    r"((?:password|passwd|secret|token|api[_-]?key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',}&]+",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(r"password|passwd|secret|token|api[_-]?key|ssl\.key", re.IGNORECASE)
_HANDLER_NAME = "fulfil-logs"


class LogConfigError(ValueError):
    """An unknown log format or level; the message names the setting and the choices."""


def scrub(value: Any) -> Any:
    """`value` with credentials masked in every string it holds (dicts and lists walked; a dict
    value under a secret-looking key is masked whole)."""
    if isinstance(value, str):
        return _SECRET_PAIRS.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", value))
    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and _SECRET_KEY.search(k) else scrub(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(created: float) -> str:
    ms = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return orjson.dumps(scrub(out), default=str,
                            option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: message key=value ...` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record.created)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = [f"{k}={v if isinstance(v, str) else orjson.dumps(v, default=str).decode()}"
                 for k, v in _extras(record).items()]
        if pairs:
            head, nl, rest = text.partition("\n")  # extras before a traceback, on the first line
            text = f"{head} {' '.join(pairs)}{nl}{rest}"
        return scrub(text)


class _ProcessId(logging.Filter):
    """Stamps every record with this process's bytewax process id (unless it carries one)."""

    def __init__(self, process_id: int) -> None:
        super().__init__()
        self.process_id = process_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "process_id"):
            record.process_id = self.process_id
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record, not at set-up (a command
    run in-process by a test or an embedding program may have it swapped)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def parse_level(level: str | int) -> int:
    """A logging level from a name ('info', 'DEBUG') or number; LogConfigError otherwise."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(str(level).strip().upper())
    if not isinstance(value, int):
        raise LogConfigError(
            f"setting 'log_level' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; "
            f"got {level!r}"
        )
    return value


def setup_logging(fmt: str = "text", level: str | int = "INFO", *, process_id: int | None = None,
                  stream: TextIO | None = None) -> logging.Handler:
    """Install fulfil's handler on the root logger (replacing one installed before).

    Idempotent, so a command may call it again with other settings. Returns the handler.
    """
    if fmt not in FORMATS:
        raise LogConfigError(f"setting 'log_format' must be one of {', '.join(FORMATS)}; "
                             f"got {fmt!r}")
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if process_id is not None:
        handler.addFilter(_ProcessId(process_id))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    return handler
