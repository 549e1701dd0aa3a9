"""`fulfil watch` (the watchtower flow) and `fulfil alerts bridge` (delivery to receivers).

Kept out of `fulfil/cli.py`, which only calls `register(subparsers)`, so the command table stays
short and each owner edits their own module.

    fulfil watch  --kafka HOST:PORT [--thresholds watch.yaml] [--start-from latest] [--workers N]
    fulfil alerts bridge --config routes.yaml --kafka HOST:PORT --redis redis://...
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta

from fulfil.cli import _kafka_props
from fulfil.config import Config, load_config

log = logging.getLogger("fulfil.watch")
WATCH_TOPICS = ("orders", "inventory", "carrier-status", "decisions", "dead-letters", "alerts")
#: The watchtower's epoch, seconds (at least). It takes no snapshots (its state is rebuilt by
#: re-reading the streams), yet bytewax's window operators deep-copy every window touched in an
#: epoch when it closes, recovery or not: at the default 1 s epoch that copy was a quarter of
#: the watchtower's CPU. Epochs carry nothing else here (alerts leave as they are made), and 60 s
#: stays well inside the "no snapshot for 180 s" alert rule.
WATCH_EPOCH_S = 60.0


def _connection(p: argparse.ArgumentParser, config_flag: str) -> None:
    p.add_argument(config_flag, dest="fulfil_config", help="fulfil JSON config file "
                   "(also FULFIL_CONFIG)")
    p.add_argument("--kafka", dest="kafka_bootstrap", help="bootstrap servers (FULFIL_KAFKA)")
    p.add_argument("--kafka-prop", action="append", metavar="KEY=VALUE",
                   help="librdkafka property for every client, e.g. sasl.mechanism=SCRAM-SHA-512")
    p.add_argument("--redis", dest="redis_url", help="redis:// URL (FULFIL_REDIS)")
    p.add_argument("--topic-prefix", help="topic name prefix (default 'fulfil.')")
    p.add_argument("--start-from", choices=["earliest", "latest"],
                   help="where to start without stored progress")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port")
    p.add_argument("--log-format", choices=["text", "json"])
    p.add_argument("--log-level")


def _config(args: argparse.Namespace, **extra: object) -> Config:
    return load_config(args.fulfil_config, kafka_bootstrap=args.kafka_bootstrap,
                       kafka=_kafka_props(args.kafka_prop), redis_url=args.redis_url,
                       topic_prefix=args.topic_prefix, start_from=args.start_from,
                       metrics_port=args.metrics_port, log_format=args.log_format,
                       log_level=args.log_level, **extra)


def _start(cfg: Config, what: str) -> None:
    from fulfil import metrics
    from fulfil.logs import setup_logging

    setup_logging(cfg.log_format, cfg.log_level)
    log.info("fulfil %s: starting", what, extra={"config": cfg.redacted(), "step": "startup"})
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, cfg.metrics_addr)


def _missing_topics(cfg: Config, names: tuple[str, ...]) -> str | None:
    from dataflows.connectors import KafkaConnectorError, list_partitions

    try:
        list_partitions(cfg.kafka_common(), [cfg.topic(t) for t in names])
    except KafkaConnectorError as exc:
        return f"{exc} (create the topics with `fulfil topics`)"
    return None


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT end cleanly (sources stop, the last batch is written); twice: at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received, stopping", signal.Signals(signum).name, extra={"step": "shutdown"})
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def cmd_watch(args: argparse.Namespace) -> int:
    from bytewax.run import cli_main

    from dataflows.watchtower import build_flow
    from operators.watch.settings import SettingsError, load_settings

    cfg = _config(args, workers=args.workers, batch_size=args.batch_size,
                  source_slots=args.source_slots, network_path=args.network)
    _start(cfg, "watch")
    try:
        settings = load_settings(args.thresholds)
    except SettingsError as exc:
        print(f"fulfil watch: {exc}", file=sys.stderr)
        return 2
    problem = _missing_topics(cfg, WATCH_TOPICS)
    if problem:
        log.error("fulfil watch: %s", problem, extra={"step": "startup"})
        return 2
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    try:
        cli_main(build_flow(cfg, stop=stop, settings=settings), workers_per_process=cfg.workers,
                 process_id=None, addresses=None,
                 epoch_interval=timedelta(seconds=max(cfg.epoch_interval_s, WATCH_EPOCH_S)),
                 recovery_config=None)
    finally:
        restore()
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    from fulfil.alerts.bridge import Bridge
    from fulfil.alerts.config import BridgeConfigError, load_bridge_config
    from state.redis_client import connect

    cfg = _config(args)
    _start(cfg, "alerts bridge")
    try:
        routes = load_bridge_config(args.config)
    except BridgeConfigError as exc:
        print(f"fulfil alerts bridge: {args.config}: {exc}", file=sys.stderr)
        return 2
    log.info("routes", extra={"routes": routes.redacted(), "step": "startup"})
    problem = _missing_topics(cfg, ("alerts",))
    if problem:
        log.error("fulfil alerts bridge: %s", problem, extra={"step": "startup"})
        return 2
    try:
        redis = connect(cfg.redis_url)
    except Exception as exc:  # RedisUnavailable / RedisConfigError carry redacted messages
        log.error("fulfil alerts bridge: %s", exc, extra={"step": "startup"})
        return 2
    bridge = Bridge(routes, cfg.kafka_common(), cfg.topic("alerts"), redis, cfg.redis_prefix,
                    name=args.name, start_from=cfg.start_from)
    restore = _stop_on_signals(bridge.stop)
    try:
        return bridge.run()
    finally:
        restore()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `watch` and `alerts` to the `fulfil` command line."""
    watch = sub.add_parser("watch", help="run the watchtower (anomaly detection -> alerts)")
    _connection(watch, "--config")
    watch.add_argument("--thresholds", help="detection thresholds, JSON or YAML (default: "
                       "built-in; see docs/alerts.md)")
    watch.add_argument("--workers", type=int, help="worker threads")
    watch.add_argument("--batch-size", type=int)
    watch.add_argument("--source-slots", type=int, help="consumers (>= workers)")
    watch.add_argument("--network", help="network JSON file (default: the shipped one)")
    watch.set_defaults(func=cmd_watch)

    alerts = sub.add_parser("alerts", help="alert delivery")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    bridge = alerts_sub.add_parser("bridge", help="deliver the alerts topic to PagerDuty, "
                                   "Slack, Feishu, DingTalk, WeCom and webhooks")
    bridge.add_argument("--config", required=True, help="routes file (YAML or JSON)")
    _connection(bridge, "--fulfil-config")
    bridge.add_argument("--name", default="default", help="bridge name: its progress is kept "
                        "under this name (one running process per name)")
    bridge.set_defaults(func=cmd_bridge)
