"""`fulfil track` and `fulfil order`: run the tracking flow with its endpoint; look one order up.

Kept out of `fulfil/cli.py` (which only parses arguments and calls these) so the command line
stays a table of contents.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson

from fulfil.config import Config

log = logging.getLogger("fulfil.track")


def preflight(cfg: Config) -> str | None:
    """One clear line instead of a worker traceback when Redis or the topics are not there."""
    from dataflows.connectors import KafkaConnectorError, list_partitions
    from operators.lifecycle import TRACKED_TOPICS
    from state.redis_client import connect

    try:
        connect(cfg.redis_url)
    except Exception as exc:  # RedisUnavailable / RedisConfigError carry redacted messages
        return str(exc)
    try:
        list_partitions(cfg.kafka_common(), [cfg.topic(t) for t in TRACKED_TOPICS])
    except KafkaConnectorError as exc:
        return f"{exc} (create the topics with `fulfil topics`)"
    return None


def run_track(cfg: Config, *, backup_interval_s: float = 0.0, serve_http: bool = True) -> int:
    """Run the tracking dataflow (blocking) and, beside it, `GET /orders/<id>`.

    One process (scale with `--workers` threads and `--source-slots`): the flow's work per event
    is small and batched, so it does not need a cluster; its metrics use `metrics_port` as is.
    """
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from dataflows.tracking import build_flow, store_for
    from fulfil import metrics
    from fulfil.order_query import OrderServer

    log.info("fulfil track: starting", extra={"config": cfg.redacted(), "step": "startup"})
    problem = preflight(cfg)
    if problem:
        log.error("fulfil track: %s", problem, extra={"step": "startup"})
        return 2
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, cfg.metrics_addr)
    server = None
    if serve_http:
        try:
            server = OrderServer(store_for(cfg), cfg.http_addr, cfg.http_port).start()
        except OSError as exc:
            log.error("fulfil track: cannot serve HTTP on %s:%d: %s", cfg.http_addr,
                      cfg.http_port, exc.strerror or exc, extra={"step": "startup"})
            return 2
    recovery = None
    epoch = timedelta(seconds=cfg.epoch_interval_s)
    if cfg.recovery_dir:
        recovery = RecoveryConfig(Path(cfg.recovery_dir), timedelta(seconds=backup_interval_s))
        epoch = timedelta(seconds=cfg.snapshot_interval_s)
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    try:
        cli_main(build_flow(cfg, stop=stop), workers_per_process=cfg.workers, process_id=None,
                 addresses=None, epoch_interval=epoch, recovery_config=recovery)
    finally:
        restore()
        if server is not None:
            server.close()
    log.info("fulfil track: stopped", extra={"step": "shutdown"})
    return 0


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT end the flow cleanly: the source stops, the last batch is written.

    bytewax turns the default SIGINT (KeyboardInterrupt) into a worker panic, and the default
    SIGTERM kills without a word; neither loses anything here (writes are idempotent), but a
    clean stop is what an orchestrator expects. A second signal stops at once.
    """
    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("fulfil track: %s received, stopping", signal.Signals(signum).name,
                 extra={"step": "shutdown"})
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def show_order(cfg: Config, order_id: str, as_json: bool = False) -> int:
    """Print one order's timeline; exit code 1 when the order is unknown."""
    from dataflows.tracking import store_for
    from fulfil.order_query import lookup, render_text
    from state.redis_client import RedisConfigError, RedisUnavailable, connect

    try:
        store = store_for(cfg, connect(cfg.redis_url))
    except (RedisUnavailable, RedisConfigError) as exc:  # messages are redacted
        print(f"fulfil order: {exc}", file=sys.stderr)
        return 2
    view = lookup(store, order_id)
    if view is None:
        if as_json:
            print(orjson.dumps({"error": "unknown order", "order_id": order_id}).decode())
        print(f"fulfil order: no trace of order {order_id!r} (unknown, or older than "
              f"{cfg.tracking_ttl_days} days)", file=sys.stderr)
        return 1
    print(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode() if as_json
          else render_text(view))
    return 0
