"""fulfil/logs.py: one JSON object per line, the order's fields carried, secrets never shown."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from fulfil.config import Config
from fulfil.logs import LogConfigError, setup_logging


@pytest.fixture
def logs():
    """setup_logging into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    buf = io.StringIO()

    def configure(fmt: str, level: str = "INFO", process_id: int | None = None) -> io.StringIO:
        setup_logging(fmt, level, process_id=process_id, stream=buf)
        return buf

    yield configure
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


def test_should_write_one_json_object_per_line_with_the_orders_fields(logs):
    buf = logs("json", process_id=3)
    log = logging.getLogger("fulfil.router")
    log.info("routed", extra={"order_id": "o-1", "step": "route-orders", "version": 2})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("set aside\nwith a newline", extra={"order_id": "o-2", "step": "route"})
    log.debug("not at INFO")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["msg"] == "routed" and first["level"] == "INFO"
    assert first["logger"] == "fulfil.router" and first["ts"].endswith("Z")
    assert (first["order_id"], first["step"], first["version"], first["process_id"]) == (
        "o-1", "route-orders", 2, 3)
    assert second["msg"] == "set aside\nwith a newline" and second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"] and second["order_id"] == "o-2"


def test_should_never_log_a_secret(logs):
    buf = logs("json")
    cfg = Config(redis_url="redis://user:hunter2@redis:6379/0",
                 kafka={"sasl.password": "hunter2", "sasl.username": "alice"})
    log = logging.getLogger("fulfil.cli")
    log.info("starting", extra={"config": cfg.redacted()})
    # second line of defence: credentials that slip into a message, an error or an extra
    log.error("cannot reach redis://user:hunter2@redis:6379/0 (password=hunter2)",
              extra={"detail": {"sasl.password": "hunter2", "url": "rediss://:hunter2@h:1"}})
    text = buf.getvalue()
    assert "hunter2" not in text
    start, error = (orjson.loads(line) for line in text.splitlines())
    assert start["config"]["kafka"] == {"sasl.password": "***", "sasl.username": "alice"}
    assert "redis://user:***@redis:6379/0" in error["msg"]


def test_should_write_text_with_the_fields_appended(logs):
    buf = logs("text", "DEBUG", process_id=0)
    logging.getLogger("fulfil.tracking").debug("stored", extra={"order_id": "o-1"})
    line = buf.getvalue().strip()
    assert "DEBUG fulfil.tracking: stored" in line
    assert line.endswith("order_id=o-1 process_id=0")


def test_should_reject_unknown_formats_and_levels(logs):
    with pytest.raises(LogConfigError, match="log_format"):
        logs("yaml")
    with pytest.raises(LogConfigError, match="log_level"):
        logs("json", "LOUD")
