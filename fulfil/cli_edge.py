"""`fulfil edge ...`: run one edge site (docs/edge.md).

Kept out of `fulfil/cli.py`, which only calls `register(subparsers)`.

    fulfil edge network --site site.json [--out FILE]   derive the site's network file
    fulfil edge topics  --site site.json                create the registry's topics at the edge
    fulfil edge run     --site site.json [--workers N]  the routing engine on the edge's own
                                                        broker + Redis, plus the handoff
    fulfil edge link    --site site.json [--only uplink|downlink] [--metrics-port P]
                                                        the links to the centre
    fulfil edge status  --site site.json [--json]       link state, backlog, oldest unsent

Exit codes: 0 ok, 2 bad usage or configuration (the message names the setting).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("fulfil.edge")


def _settings(args: argparse.Namespace) -> Any:
    from fulfil.edge.config import load_site

    return load_site(args.site)


def _logs(cfg: Any) -> None:
    from fulfil.logs import setup_logging

    setup_logging(cfg.log_format, cfg.log_level)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_network(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.out:
        from dataclasses import replace

        settings = replace(settings, state_dir=str(Path(args.out).parent))
        path = settings.write_site_network()
        path.replace(args.out)
        path = Path(args.out)
    else:
        path = settings.write_site_network()
    print(f"site {settings.site}: network with {len(settings.nodes)} node(s) written to {path}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from dataflows.connectors import ensure_topics
    from schemas.topics import TOPICS

    cfg = _settings(args).edge
    specs = {cfg.topic(t.name): t.partitions for t in TOPICS.values()}
    created = ensure_topics(cfg.kafka_common(), specs,
                            compacted=[cfg.topic(t.name) for t in TOPICS.values() if t.compacted])
    for name in specs:
        print(f"{name:40s} {'created' if name in created else 'exists'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bytewax.run import cli_main

    from dataflows.routing import build_flow
    from fulfil import metrics
    from fulfil.edge.handoff import Handoff

    settings = _settings(args)
    cfg = settings.edge_engine_config().with_overrides(workers=args.workers,
                                                       metrics_port=args.metrics_port)
    _logs(cfg)
    log.info("edge %s: routing on %s with network %s", settings.site, cfg.kafka_bootstrap,
             cfg.network_path)
    if cfg.metrics_port:
        metrics.publish_build_info(cfg.network_path)
        metrics.serve(cfg.metrics_port, cfg.metrics_addr)
    if not args.no_handoff:
        threading.Thread(target=Handoff(settings).run, name="edge-handoff", daemon=True).start()
    cli_main(build_flow(cfg), workers_per_process=cfg.workers,
             epoch_interval=timedelta(seconds=cfg.epoch_interval_s))
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    from fulfil.edge.downlink import Downlink
    from fulfil.edge.link import Uplink

    settings = _settings(args)
    _logs(settings.edge)
    stop = _stop_on_signals()
    if args.metrics_port:  # the links' own /metrics (docs/edge.md#metrics)
        from fulfil import metrics

        metrics.serve(args.metrics_port, settings.edge.metrics_addr)
    kinds = {"uplink": Uplink, "downlink": Downlink}
    failed: list[BaseException] = []

    def run(link: Any) -> None:
        try:
            link.run()
        except BaseException as exc:  # a bug, not an outage (those are waited out): stop all
            log.exception("edge %s: %s stopped", settings.site, link.name)
            failed.append(exc)
            stop.set()

    threads = [threading.Thread(target=run, args=(kinds[k](settings, stop),), name=f"edge-{k}")
               for k in ([args.only] if args.only else list(kinds))]
    for t in threads:
        t.start()
    while not stop.wait(0.5):
        pass
    for t in threads:
        t.join(15)
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from fulfil.edge.status import edge_status, format_status

    status = edge_status(_settings(args))
    print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() if args.json
          else format_status(status))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `edge` to the `fulfil` command line."""
    edge = sub.add_parser("edge", help="run an edge site: local engine, links to the centre")
    edge_sub = edge.add_subparsers(dest="edge_command", required=True)

    def cmd(name: str, help_: str, func: Any) -> argparse.ArgumentParser:
        p = edge_sub.add_parser(name, help=help_)
        p.add_argument("--site", required=True, help="the site file (JSON, see docs/edge.md)")
        p.set_defaults(func=func)
        return p

    net = cmd("network", "derive the site's network file from the central one", cmd_network)
    net.add_argument("--out", help="where to write it (default: <state_dir>/network-<site>.json)")
    cmd("topics", "create the registry's topics on the edge's broker", cmd_topics)
    run = cmd("run", "run the routing engine on the edge's broker and Redis", cmd_run)
    run.add_argument("--workers", type=int, help="worker threads")
    run.add_argument("--metrics-port", type=int, help="Prometheus /metrics port")
    run.add_argument("--no-handoff", action="store_true",
                     help="do not close handed-off orders here (another process does)")
    link = cmd("link", "run the uplink and the downlink to the centre", cmd_link)
    link.add_argument("--only", choices=["uplink", "downlink"], help="run one link only")
    link.add_argument("--metrics-port", type=int,
                      help="Prometheus /metrics port of the links (fulfil_edge_*)")
    status = cmd("status", "link state, backlog to send, age of the oldest unsent event",
                 cmd_status)
    status.add_argument("--json", action="store_true", help="machine-readable")
