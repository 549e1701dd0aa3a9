"""`fulfil channels ...` and `fulfil gateway`: sales channels as configuration.

    fulfil channels check MAPPING.yaml [PAYLOAD.json]   compile; map a payload, or every failure
    fulfil channels topics --channels channels.yaml     create the channels' raw topics
    fulfil channels run --channels channels.yaml        the mapping flow (raw topics -> orders)
    fulfil gateway --channels channels.yaml             the webhook gateway (HTTP -> raw topics)

MAPPING may be `builtin:shopify` / `builtin:woocommerce`. Without --channels, the shipped
channels.yaml (Shopify and WooCommerce, secrets from FULFIL_SHOPIFY_SECRET and
FULFIL_WOOCOMMERCE_SECRET) is used. Exit codes: 0 ok, 1 the mapping or payload fails, 2 bad
usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fulfil.config import Config, ConfigError

ConfigFn = Callable[..., Config]


def _channels(args: argparse.Namespace) -> Any:
    from fulfil.channels_config import load_channels
    from operators.channels import MappingFileError

    try:
        return load_channels(args.channels)
    except MappingFileError as exc:
        raise ConfigError(str(exc)) from None


def cmd_check(args: argparse.Namespace) -> int:
    """Print the mapped order (JSON) or every failure; 1 on failure."""
    from operators.channels import MappingFileError, load_mapping
    from schemas.errors import ValidationError

    try:
        mapping = load_mapping(args.mapping)
    except MappingFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.payload is None:
        print(f"{mapping.source}: ok ({len(mapping.compiled.rules)} rules, channel "
              f"{mapping.channel}, emits {mapping.emits})")
        return 0
    try:
        raw = sys.stdin.buffer.read() if args.payload == "-" else Path(args.payload).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.payload}: {exc.strerror}") from None
    try:
        event = mapping.map_bytes(raw)
    except ValidationError as exc:
        print(f"{args.payload}: does not map ({exc.code}/{exc.rule}) at "
              f"{exc.field or 'the payload'}:\n  {exc.message}", file=sys.stderr)
        return 1
    print(orjson.dumps(event, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_topics(args: argparse.Namespace, config_fn: ConfigFn) -> int:
    from dataflows.connectors import ensure_topics

    cfg, chans = config_fn(args), _channels(args)
    specs = {cfg.topic(s.topic_name()): s.partitions for s in chans.channels.values()}
    created = ensure_topics(cfg.kafka_common(), specs)
    for name, n in specs.items():
        print(f"{name:40s} {n:3d} partitions  {'created' if name in created else 'exists'}")
    return 0


def cmd_run(args: argparse.Namespace, config_fn: ConfigFn) -> int:
    """The channels flow in this process (blocking; SIGINT stops it)."""
    from datetime import timedelta

    from bytewax.run import cli_main

    from dataflows.channels import build_flow
    from dataflows.connectors import KafkaConnectorError, list_partitions
    from fulfil import metrics
    from operators.channels import MappingFileError

    cfg = config_fn(args, workers=args.workers, start_from=args.start_from,
                    source_slots=args.source_slots, metrics_port=args.metrics_port)
    chans = _channels(args)
    topics = [cfg.topic(s.topic_name()) for s in chans.channels.values()]
    try:
        list_partitions(cfg.kafka_common(), [*topics, cfg.topic("orders"),
                                             cfg.topic("dead-letters")])
    except KafkaConnectorError as exc:
        print(f"fulfil channels run: {exc} (create them with `fulfil topics` and "
              "`fulfil channels topics`)", file=sys.stderr)
        return 2
    try:
        flow = build_flow(cfg, channels=chans)
    except MappingFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, cfg.metrics_addr)
    cli_main(flow, workers_per_process=cfg.workers, process_id=None, addresses=None,
             epoch_interval=timedelta(seconds=cfg.epoch_interval_s))
    return 0


def cmd_gateway(args: argparse.Namespace, config_fn: ConfigFn) -> int:
    from fulfil import metrics
    from fulfil.gateway import run_gateway
    from fulfil.logs import setup_logging

    cfg = config_fn(args, metrics_port=args.metrics_port)
    setup_logging(cfg.log_format, cfg.log_level)
    chans = _channels(args)
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, cfg.metrics_addr)
    return run_gateway(cfg, chans, host=args.listen, port=args.port)


def register(sub: Any, add_connection_args: Callable[[argparse.ArgumentParser], None],
             config_fn: ConfigFn) -> None:
    """Add `channels` and `gateway` to the `fulfil` command line."""
    channels = sub.add_parser("channels", help="sales channel mappings: check, topics, run")
    csub = channels.add_subparsers(dest="channels_command", required=True)

    check = csub.add_parser("check", help="compile a mapping; map a payload with it")
    check.add_argument("mapping", help="mapping file, or builtin:shopify / builtin:woocommerce")
    check.add_argument("payload", nargs="?", help="a raw channel payload (JSON file, - = stdin)")
    check.set_defaults(func=cmd_check)

    def with_channels(p: argparse.ArgumentParser) -> None:
        add_connection_args(p)
        p.add_argument("--channels", help="channels.yaml (default: the shipped one; also "
                       "FULFIL_CHANNELS for the flow)")

    topics = csub.add_parser("topics", help="create the configured channels' raw topics")
    with_channels(topics)
    topics.set_defaults(func=lambda a: cmd_topics(a, config_fn))

    run = csub.add_parser("run", help="run the mapping flow: channel topics -> orders")
    with_channels(run)
    run.add_argument("--workers", type=int, help="worker threads")
    run.add_argument("--start-from", choices=["earliest", "latest"])
    run.add_argument("--source-slots", type=int, help="consumers per channel topic")
    run.add_argument("--metrics-port", type=int, help="Prometheus /metrics port")
    run.set_defaults(func=lambda a: cmd_run(a, config_fn))

    gateway = sub.add_parser("gateway", help="serve POST /webhooks/<channel> (verify, dedupe, "
                             "publish)")
    with_channels(gateway)
    gateway.add_argument("--listen", help="bind address (default 127.0.0.1, from channels.yaml)")
    gateway.add_argument("--port", type=int, help="port (default 9470, from channels.yaml)")
    gateway.add_argument("--metrics-port", type=int, help="Prometheus /metrics port")
    gateway.add_argument("--log-format", choices=["text", "json"])
    gateway.add_argument("--log-level")
    gateway.set_defaults(func=lambda a: cmd_gateway(a, config_fn))
