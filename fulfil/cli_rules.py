"""`fulfil rules ...` and `fulfil approvals ...`: business rules for operations staff.

    fulfil rules check RULES.yaml                    compile; every problem with its line
    fulfil rules test RULES.yaml ORDERS.jsonl        dry run against the current rules, with a diff
    fulfil rules publish RULES.yaml --by NAME        validate, then publish (all workers, < 1 s)
    fulfil rules show                                the version in force on the config topic
    fulfil approvals approve ORDER_ID --by NAME      release a held order (it is routed now)
    fulfil approvals reject ORDER_ID --by NAME       cancel a held order

Rolling back is publishing the older file again. Exit codes: 0 ok, 1 the file (or an order
line) is invalid, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fulfil.config import Config, ConfigError

ConfigFn = Callable[[argparse.Namespace], Config]


def _network(path: str | None) -> Any:
    from operators.network import Network, load_default

    return Network.load(path) if path else load_default()


def _compile(path: str, network: Any) -> Any:
    from operators.rules import FileError, compile_rules

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return compile_rules(text, network, path)
    except FileError as exc:
        print(exc, file=sys.stderr)
        return None


def _published(cfg: Config, network: Any, timeout_s: float = 30.0) -> Any:
    """The rules in force on the config topic (read to its end), or the empty set."""
    import threading

    from dataflows.config_feed import RulesFeed

    stop = threading.Event()
    feed = RulesFeed(cfg, network, stop, startup_timeout_s=timeout_s)
    try:
        return feed.current()
    finally:
        feed.close()


def cmd_check(args: argparse.Namespace, _config: ConfigFn) -> int:
    rules = _compile(args.file, _network(args.network))
    if rules is None:
        return 1
    print(f"{args.file}: ok, version {rules.version}, {len(rules.rules)} rules "
          f"(in precedence order: {', '.join(r.id for r in rules.rules)})")
    return 0


def cmd_test(args: argparse.Namespace, config: ConfigFn) -> int:
    from operators.orders import order_from_created
    from operators.planner import Planner
    from operators.rules import empty_ruleset
    from operators.rules.dryrun import dry_run, summary
    from schemas.errors import ValidationError
    from schemas.validation import decode_and_validate

    network = _network(args.network)
    candidate = _compile(args.file, network)
    if candidate is None:
        return 1
    cfg = config(args)
    if args.current:
        current = _compile(args.current, network)
        if current is None:
            return 1
    elif args.kafka_bootstrap or args.config:
        current = _published(cfg, network)
    else:
        current = empty_ruleset()
    orders = []
    for n, line in enumerate(Path(args.orders).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = decode_and_validate("order_event", line)
        except ValidationError as exc:
            print(f"{args.orders}:{n}: {exc}", file=sys.stderr)
            return 1
        if event["type"] == "order.created":
            orders.append(order_from_created(event))
    rows = dry_run(orders, current, candidate, network, Planner(network, cfg),
                   int(time.time() * 1000))
    print(f"current: {current.version}   candidate: {candidate.version}")
    for r in rows:
        if r.changed or args.all:
            mark = "*" if r.changed else " "
            print(f"{mark} {r.order_id}: {r.current}  ->  {r.candidate}")
    print(orjson.dumps(summary(rows), option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_publish(args: argparse.Namespace, config: ConfigFn) -> int:
    from confluent_kafka import Producer

    from dataflows.config_feed import rules_record
    from schemas.validation import validate

    rules = _compile(args.file, _network(args.network))
    if rules is None:
        return 1
    cfg = config(args)
    record = validate("config_record", rules_record(rules.source_text, rules.version, args.by))
    producer = Producer({**cfg.kafka_common(), "enable.idempotence": "true"})
    producer.produce(cfg.topic("config"), orjson.dumps(record), b"rules")
    if producer.flush(30):
        print(f"fulfil rules publish: not delivered to {cfg.topic('config')}", file=sys.stderr)
        return 2
    print(f"published rules {rules.version} to {cfg.topic('config')}")
    return 0


def cmd_show(args: argparse.Namespace, config: ConfigFn) -> int:
    rules = _published(config(args), _network(args.network))
    print(f"{rules.version}: {', '.join(r.id for r in rules.rules) or 'no rules'}")
    return 0


def cmd_decide(args: argparse.Namespace, config: ConfigFn) -> int:
    """Publish order.approved / order.rejected on the orders topic (keyed by the order id, so
    it is handled in order with the order's other events)."""
    from confluent_kafka import Producer

    from schemas.topics import TopicName, key_for
    from schemas.validation import validate

    cfg = config(args)
    event: dict[str, Any] = {
        "type": f"order.{args.decision}", "event_id": f"{args.decision}-{uuid.uuid4().hex}",
        "order_id": args.order_id, "occurred_at": int(time.time() * 1000), "by": args.by,
    }
    if args.text:
        event["note" if args.decision == "approved" else "reason"] = args.text
    validate("order_event", event)
    producer = Producer(cfg.kafka_common())
    producer.produce(cfg.topic("orders"), orjson.dumps(event),
                     key_for(TopicName.ORDERS, event).encode())
    if producer.flush(30):
        print("fulfil approvals: not delivered", file=sys.stderr)
        return 2
    print(f"{args.order_id}: {args.decision} by {args.by} ({event['event_id']})")
    return 0


def register(sub: Any, add_connection_args: Callable[[argparse.ArgumentParser], None],
             config: ConfigFn) -> None:
    """Add the `rules` and `approvals` commands to the top-level parser."""
    rules = sub.add_parser("rules", help="check, test and publish business rules")
    rsub = rules.add_subparsers(dest="rules_cmd", required=True)

    def command(parent: Any, name: str, helptext: str, func: Callable, connect: bool
                ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=helptext)
        if connect:
            add_connection_args(p)
        p.add_argument("--network", help="network JSON (default: the shipped network)")
        p.set_defaults(func=lambda a: func(a, config))
        return p

    p = command(rsub, "check", "compile a rules file; list every problem", cmd_check, False)
    p.add_argument("file")
    p = command(rsub, "test", "dry run: what the file changes for ORDERS.jsonl", cmd_test, True)
    p.add_argument("file")
    p.add_argument("orders", help="order events, one JSON per line (order.created are used)")
    p.add_argument("--current", help="compare with this file instead of the published rules")
    p.add_argument("--all", action="store_true", help="list unchanged orders too")
    p = command(rsub, "publish", "validate and publish to every worker", cmd_publish, True)
    p.add_argument("file")
    p.add_argument("--by", required=True, help="who publishes (audit trail)")
    command(rsub, "show", "the rules version in force", cmd_show, True)

    approvals = sub.add_parser("approvals", help="approve or reject orders held by a rule")
    asub = approvals.add_subparsers(dest="approvals_cmd", required=True)
    for verb, decision, label in (("approve", "approved", "--note"),
                                  ("reject", "rejected", "--reason")):
        p = asub.add_parser(verb, help=f"{verb} a held order")
        add_connection_args(p)
        p.add_argument("order_id")
        p.add_argument("--by", required=True, help="who decides (audit trail)")
        p.add_argument(label, dest="text", help="free text kept on the event")
        p.set_defaults(func=lambda a, d=decision: cmd_decide(
            argparse.Namespace(**{**vars(a), "decision": d}), config))
