"""The `fulfil` command line.

    fulfil run      --kafka HOST:PORT --redis redis://... [--workers N] [-i/-a cluster] [--config F]
    fulfil topics   create the registry's topics on a broker
    fulfil simulate publish a simulated workload to a broker
    fulfil demo     everything embedded: broker, Redis, engine, simulator, live view
    fulfil network  build the default network from the Olist data
    fulfil track    run the order-tracking flow and serve GET /orders/<id>
    fulfil order    print one order's lifecycle (where is it, and why)
    fulfil rules    check, dry-run and publish business rules (hot reload, no restart)
    fulfil approvals  approve or reject orders a rule held
    fulfil model    train / evaluate the delivery-time model on a delivery history
    fulfil channels check/topics/run: sales-channel mappings; `fulfil gateway` their webhooks
    fulfil watch    run the watchtower (anomaly detection -> alerts); `fulfil alerts bridge`
    fulfil evaluate compare routing policies on a scenario (and the hindsight optimum); tune
    fulfil edge     run an edge site: local engine, links to the centre, `fulfil edge status`

Every `run` setting can also come from `FULFIL_*` environment variables or a JSON config file;
flags win. Kafka security settings pass through as `--kafka-prop security.protocol=SASL_SSL` (or
`FULFIL_KAFKA__SASL_USERNAME=...` etc.). Secrets are never printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta
from pathlib import Path

import orjson

from fulfil.config import Config, ConfigError, load_config

log = logging.getLogger("fulfil.cli")


def _kafka_props(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    props = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--kafka-prop expects key=value; got {pair!r}")
        props[key.strip()] = value
    return props


def _add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="JSON config file (also FULFIL_CONFIG)")
    p.add_argument("--kafka", dest="kafka_bootstrap", help="bootstrap servers (FULFIL_KAFKA)")
    p.add_argument("--kafka-prop", action="append", metavar="KEY=VALUE",
                   help="librdkafka property for every client, e.g. sasl.mechanism=SCRAM-SHA-512")
    p.add_argument("--redis", dest="redis_url", help="redis://, rediss:// or redis+cluster:// URL")
    p.add_argument("--topic-prefix", help="topic name prefix (default 'fulfil.')")


def _config(args: argparse.Namespace, **extra: object) -> Config:
    flags = {
        "kafka_bootstrap": getattr(args, "kafka_bootstrap", None),
        "kafka": _kafka_props(getattr(args, "kafka_prop", None)),
        "redis_url": getattr(args, "redis_url", None),
        "topic_prefix": getattr(args, "topic_prefix", None),
        "log_format": getattr(args, "log_format", None),
        "log_level": getattr(args, "log_level", None),
        **extra,
    }
    return load_config(getattr(args, "config", None), **flags)


def _add_log_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-format", choices=["text", "json"],
                   help="text, or one JSON object per line (FULFIL_LOG_FORMAT)")
    p.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ... (FULFIL_LOG_LEVEL)")


def _setup_logs(cfg: Config, process_id: int | None = None) -> None:
    from fulfil.logs import setup_logging

    setup_logging(cfg.log_format, cfg.log_level, process_id=process_id)


def cmd_run(args: argparse.Namespace) -> int:
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from fulfil import metrics

    if args.flow == "consolidation":
        from dataflows.consolidation import build_flow
    else:
        from dataflows.routing import build_flow

    addresses = args.addresses.split(";") if args.addresses else None
    cfg = _config(
        args, workers=args.workers, network_path=args.network, start_from=args.start_from,
        source_slots=args.source_slots,
        recovery_dir=args.recovery_dir, metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        snapshot_interval_s=args.snapshot_interval, batch_size=args.batch_size,
    )
    _setup_logs(cfg, args.process_id)
    log.info("fulfil run: starting", extra={"config": cfg.redacted(), "step": "startup"})
    problem = _preflight(cfg)
    if problem:
        log.error("fulfil run: %s", problem, extra={"step": "startup"})
        return 2
    if cfg.metrics_port:
        offset = (args.process_id or 0) if cfg.metrics_port_per_process else 0
        metrics.publish_build_info(cfg.network_path)
        metrics.serve(cfg.metrics_port + offset, cfg.metrics_addr)
    recovery = None
    epoch = timedelta(seconds=cfg.epoch_interval_s)
    if cfg.recovery_dir:
        recovery = RecoveryConfig(Path(cfg.recovery_dir), timedelta(seconds=args.backup_interval))
        epoch = timedelta(seconds=cfg.snapshot_interval_s)
    if cfg.source_slots < cfg.workers * len(addresses or [None]):
        print(f"fulfil run: warning: {cfg.source_slots} source slot(s) for "
              f"{cfg.workers * len(addresses or [None])} workers; some workers will not read "
              "(raise --source-slots)", file=sys.stderr)
    cli_main(
        build_flow(cfg), workers_per_process=cfg.workers, process_id=args.process_id,
        addresses=addresses, epoch_interval=epoch, recovery_config=recovery,
    )
    return 0


def _preflight(cfg: Config) -> str | None:
    """One clear line instead of a worker traceback when Redis or the topics are not there."""
    from dataflows.connectors import KafkaConnectorError, list_partitions
    from state.redis_client import connect

    try:
        connect(cfg.redis_url)
    except Exception as exc:  # RedisUnavailable / RedisConfigError carry redacted messages
        return str(exc)
    try:
        list_partitions(cfg.kafka_common(),
                        [cfg.topic(t) for t in ("orders", "inventory", "carrier-status",
                                                "config")])
    except KafkaConnectorError as exc:
        return f"{exc} (create the topics with `fulfil topics`)"
    return None


def cmd_topics(args: argparse.Namespace) -> int:
    from dataflows.connectors import ensure_topics
    from schemas.topics import TOPICS

    cfg = _config(args)
    specs = {cfg.topic(t.name): (args.partitions or t.partitions) for t in TOPICS.values()}
    compacted = [cfg.topic(t.name) for t in TOPICS.values() if t.compacted]
    created = ensure_topics(cfg.kafka_common(), specs, compacted=compacted)
    for name, n in specs.items():
        print(f"{name:40s} {n:3d} partitions  {'created' if name in created else 'exists'}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from fulfil.sim.publisher import publish
    from fulfil.sim.scenario import Scenario

    cfg = _config(args)
    overrides = {k: v for k, v in (("rate", args.rate), ("duration_s", args.duration)) if v}
    if args.scenario:
        data = orjson.loads(Path(args.scenario).read_bytes())
        scenario = Scenario.from_dict({**data, **overrides})
    else:  # the demo day, stretched over the requested duration
        scenario = Scenario.demo(**overrides)
    stats = publish(cfg.kafka_bootstrap, scenario, prefix=cfg.topic_prefix,
                    producer_config=dict(cfg.kafka))
    print(stats)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fulfil.demo import run_demo

    return run_demo(duration_s=args.duration, rate=args.rate, workers=args.workers)


def cmd_network(args: argparse.Namespace) -> int:
    from fulfil import netbuild

    return netbuild.main(args.rest)


def cmd_track(args: argparse.Namespace) -> int:
    from fulfil.track import run_track

    cfg = _config(
        args, workers=args.workers, start_from=args.start_from, source_slots=args.source_slots,
        batch_size=args.batch_size, recovery_dir=args.recovery_dir,
        snapshot_interval_s=args.snapshot_interval, metrics_port=args.metrics_port,
        http_addr=args.http_addr, http_port=args.http_port,
        tracking_ttl_days=args.retention_days, tracking_max_entries=args.max_entries,
    )
    _setup_logs(cfg)
    return run_track(cfg, backup_interval_s=args.backup_interval, serve_http=not args.no_http)


def cmd_order(args: argparse.Namespace) -> int:
    from fulfil.track import show_order

    return show_order(_config(args), args.order_id, as_json=args.json)


def cmd_recovery_init(args: argparse.Namespace) -> int:
    """Create recovery partitions; with `--only I`, just partition I of N, for process I.

    Why `--only`: in a cluster each process keeps its recovery partition on its own volume (a
    StatefulSet's PVC); together they must hold the whole set, and no partition twice.
    `--if-missing` makes it safe to run at every start (an init container): bytewax refuses to
    initialise over existing partitions, and an existing one must never be replaced.
    """
    import os
    import tempfile

    from bytewax.recovery import init_db_dir

    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    if any(target.glob("part-*.sqlite3")):
        if args.if_missing:
            print(f"{args.dir} already holds recovery partitions; left as they are")
            return 0
        raise ConfigError(f"{args.dir} already holds recovery partitions; they are never "
                          "replaced (delete them to reset recovery, or pass --if-missing)")
    if args.only is None:
        init_db_dir(target, args.partitions)
        print(f"initialised {args.partitions} recovery partitions in {args.dir}")
        return 0
    if args.only < 0:
        raise ConfigError(f"--only must be a process id >= 0; got {args.only}")
    if args.only >= args.partitions:  # allowed by bytewax: a process may hold no partition
        print(f"process {args.only} holds none of the {args.partitions} recovery partitions")
        return 0
    name = f"part-{args.only}.sqlite3"
    with tempfile.TemporaryDirectory(dir=target, prefix=".init-") as tmp:  # same file system
        init_db_dir(Path(tmp), args.partitions)
        os.replace(Path(tmp) / name, target / name)
    print(f"initialised recovery partition {args.only} of {args.partitions} in {args.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulfil", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the routing dataflow against your Kafka and Redis")
    _add_connection_args(run)
    run.add_argument("--workers", type=int, help="worker threads per process (GIL-bound: "
                     "prefer processes, see -i/-a)")
    run.add_argument("-i", "--process-id", type=int, help="this process's id in a cluster")
    run.add_argument("-a", "--addresses", help="'host:port;host:port' of every process")
    run.add_argument("--network", help="network JSON file (default: the shipped Olist network)")
    run.add_argument("--start-from", choices=["earliest", "latest"])
    run.add_argument("--batch-size", type=int)
    run.add_argument("--source-slots", type=int, help="consumers per input topic (>= total "
                     "workers; keep constant across restarts with recovery)")
    run.add_argument("--recovery-dir", help="bytewax recovery partitions (fulfil recovery init)")
    run.add_argument("--snapshot-interval", type=float, help="seconds between snapshots")
    run.add_argument("--backup-interval", type=float, default=0.0)
    run.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (+ process id)")
    run.add_argument("--metrics-addr", help="/metrics bind address (default 127.0.0.1)")
    run.add_argument("--flow", choices=["routing", "consolidation"], default="routing",
                     help="which dataflow: routing (default), or consolidation (merged "
                     "delivery, run beside routing; docs/predictive.md)")
    _add_log_args(run)
    run.set_defaults(func=cmd_run)

    topics = sub.add_parser("topics", help="create the registry's topics")
    _add_connection_args(topics)
    topics.add_argument("--partitions", type=int, help="override every topic's partition count")
    topics.set_defaults(func=cmd_topics)

    sim = sub.add_parser("simulate", help="publish a simulated workload")
    _add_connection_args(sim)
    sim.add_argument("--scenario", help="scenario JSON (default: the demo scenario)")
    sim.add_argument("--rate", type=float, help="orders per second")
    sim.add_argument("--duration", type=float, help="seconds")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="run everything embedded with a live view")
    demo.add_argument("--duration", type=float, default=60.0)
    demo.add_argument("--rate", type=float, default=1000.0,
                      help="orders/s averaged over the simulated day (one day per run); the "
                      "network ships ~93k orders/day, so above ~1,500/s nodes fill up")
    demo.add_argument("--workers", type=int, default=1, help="engine processes")
    demo.set_defaults(func=cmd_demo)

    net = sub.add_parser("network", help="build the network file from Olist data")
    net.add_argument("rest", nargs=argparse.REMAINDER)
    net.set_defaults(func=cmd_network)

    track = sub.add_parser("track", help="run the order-tracking flow and GET /orders/<id>")
    _add_connection_args(track)
    _add_log_args(track)
    track.add_argument("--workers", type=int, help="worker threads")
    track.add_argument("--start-from", choices=["earliest", "latest"])
    track.add_argument("--batch-size", type=int)
    track.add_argument("--source-slots", type=int, help="consumers (>= workers)")
    track.add_argument("--recovery-dir", help="bytewax recovery partitions of THIS flow (not "
                       "the routing flow's)")
    track.add_argument("--snapshot-interval", type=float, help="seconds between snapshots")
    track.add_argument("--backup-interval", type=float, default=0.0)
    track.add_argument("--metrics-port", type=int, help="Prometheus /metrics port")
    track.add_argument("--http-addr", help="endpoint bind address (default 127.0.0.1)")
    track.add_argument("--http-port", type=int, help="endpoint port (default 9480; 0 = any)")
    track.add_argument("--no-http", action="store_true", help="run the flow only")
    track.add_argument("--retention-days", type=int,
                       help="days an order's trace is kept after its last event (default 14)")
    track.add_argument("--max-entries", type=int, help="entries kept per order (default 256)")
    track.set_defaults(func=cmd_track)

    order = sub.add_parser("order", help="print one order's lifecycle")
    order.add_argument("order_id")
    order.add_argument("--config", help="JSON config file (also FULFIL_CONFIG)")
    order.add_argument("--redis", dest="redis_url", help="redis://... URL (FULFIL_REDIS)")
    order.add_argument("--json", action="store_true", help="the JSON the HTTP endpoint returns")
    order.set_defaults(func=cmd_order)

    rec = sub.add_parser("recovery-init", help="create bytewax recovery partitions")
    rec.add_argument("dir")
    rec.add_argument("partitions", type=int)
    rec.add_argument("--only", type=int, metavar="PROCESS_ID",
                     help="create only this process's partition (one volume per process)")
    rec.add_argument("--if-missing", action="store_true",
                     help="do nothing if DIR already holds partitions (safe at every start)")
    rec.set_defaults(func=cmd_recovery_init)

    from fulfil import cli_rules

    cli_rules.register(sub, _add_connection_args, _config)
    from fulfil import cli_channels

    cli_channels.register(sub, _add_connection_args, _config)
    from fulfil import cli_watch

    cli_watch.register(sub)
    from fulfil import cli_model

    cli_model.register(sub)
    from fulfil import cli_eval

    cli_eval.register(sub, _config)
    from fulfil import cli_edge

    cli_edge.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except ConfigError as exc:
        print(f"fulfil: {exc}", file=sys.stderr)
        code = 2
    raise SystemExit(code)


if __name__ == "__main__":
    main()
