"""An edge site selling through a flapping link: acceptance, local decision latency, and what the
centre holds once the link is back (nothing lost, nothing applied twice).

    python benchmarks/edge_outage.py [--duration 30] [--rate 80] [--down 4] [--up 2]
                                     [--central-rate 6] [--kill-link]

Starts everything for real on loopback, each in its own process: a central broker and Redis, an
edge broker and Redis, the central engine (`fulfil run`), the edge engine (`fulfil edge run`:
the same routing flow on the site network, plus the handoff) and the links (`fulfil edge
link`). The links reach the centre only through two relays run here, which cut the link for
`--down` s and restore it for `--up` s, over and over, while orders arrive at the edge (`--rate`
per second: local sales, contested stock, orders for the centre, a few invalid ones, inventory
adjustments) and at the centre (`--central-rate`, half of them claiming the site's contested
stock); with `--kill-link` the link process is also killed (-9) half way and started again.
Then the link stays up until the centre and the edge agree, and the script checks every record
and every unit.

Targets (issue 6): 100% of valid orders accepted and decided at the edge; p99 local decision
<= 50 ms; zero lost and zero double-applied events after reconnection. Local decision latency is
the decision's own `decided_at - event_time` (the order event's timestamp, set just before it is
produced: the edge broker hop in, validation, routing, the Redis round trips); the script also
reports what a consumer of the edge's decisions topic sees (one more broker hop). Node capacity
is not enforced here (two stores do not ship thousands of parcels a day). The link process serves
its Prometheus metrics (`--metrics-port`), which the script samples once a second and reports
(what an SRE's dashboard would show), with the machine's load average at the start and the end
(the machine may be shared). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from dataflows.connectors import ensure_topics, list_partitions  # noqa: E402
from fulfil.demo import start_engine, stop_engine  # noqa: E402
from fulfil.edge.config import load_site  # noqa: E402
from fulfil.edge.relay import Relay  # noqa: E402
from fulfil.edge.status import edge_status  # noqa: E402
from fulfil.infra import Stack, free_port, start_broker, start_redis  # noqa: E402
from operators.edge.routes import is_handoff_decision  # noqa: E402
from schemas.topics import TOPICS, key_for  # noqa: E402
from state.ledger import Ledger  # noqa: E402
from state.redis_client import connect  # noqa: E402

SITE, NODES, PREFIX = "sul", ("N20", "N23"), "fulfil."
DESTS = [(-27.59, -48.52, "88010"), (-26.30, -48.85, "89201"), (-27.10, -52.62, "89801"),
         (-28.68, -49.37, "88801")]  # Florianópolis, Joinville, Chapecó, Criciúma
LOCAL = [f"loc-{i:02d}" for i in range(40)]
DAY = 86_400_000


def _now() -> int:
    return time.time_ns() // 1_000_000


def _order(oid: str, sku: str, qty: int = 1) -> dict[str, Any]:
    lat, lng, postal = random.choice(DESTS)
    return {"type": "order.created", "event_id": f"e-{oid}", "order_id": oid,
            "occurred_at": _now(), "channel": "store", "promised_by": _now() + 5 * DAY,
            "destination": {"lat": lat, "lng": lng, "postal_code": postal},
            "lines": [{"line_id": "1", "sku": sku, "qty": qty, "weight_g": 400}]}


def _stock(node: str, sku: str, on_hand: int, version: int = 1) -> dict[str, Any]:
    return {"type": "inventory.snapshot", "event_id": f"i-{node}-{sku}-{version}",
            "node_id": node, "sku": sku, "version": version, "on_hand": on_hand,
            "occurred_at": _now()}


def _produce(producer: Producer, topic: str, events: list[Any]) -> None:
    for ev in events:
        producer.produce(f"{PREFIX}{topic}", orjson.dumps(ev), key_for(topic, ev).encode())
    producer.flush(30)


class Tap(threading.Thread):
    """Reads a topic from the start; keeps (receive ms, decoded value, headers) per record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.records: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self._servers, self._topic, self._halt = bootstrap, topic, threading.Event()

    def run(self) -> None:
        c = Consumer({"bootstrap.servers": self._servers, "group.id": "bench",
                      "fetch.wait.max.ms": 10, "enable.auto.commit": False})
        c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in
                  list_partitions({"bootstrap.servers": self._servers}, [self._topic])])
        while not self._halt.is_set():
            for m in c.consume(500, 0.1):
                if m.error() is None:
                    headers = {k: v.decode() for k, v in (m.headers() or [])}
                    self.records.append((_now(), orjson.loads(m.value()), headers))
        c.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The link process's fulfil_edge_* samples, {(name, sorted labels): value}; {} if down."""
    from urllib.request import urlopen

    try:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("fulfil_edge_")}


def _get(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name
               and labels.items() <= dict(ls).items())


class MetricsSampler(threading.Thread):
    """Scrapes the link process once a second: the worst backlog and age it showed, and how
    many scrapes saw each link down."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self._halt = port, threading.Event()
        self.max_age = self.max_backlog = 0.0
        self.down: Counter[str] = Counter()
        self.scrapes = 0

    def run(self) -> None:
        while not self._halt.wait(1.0):
            got = scrape(self.port)
            if not got:
                continue
            self.scrapes += 1
            self.max_age = max(self.max_age, _get(got, "fulfil_edge_oldest_unsent_age_seconds",
                                                  link="uplink"))
            self.max_backlog = max(self.max_backlog, _get(got, "fulfil_edge_backlog_events",
                                                          link="uplink"))
            for link in ("uplink", "downlink"):
                if _get(got, "fulfil_edge_link_up", link=link) == 0:
                    self.down[link] += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def read_all(bootstrap: str, topics: list[str]) -> dict[str, list[Any]]:
    """Every record (value bytes, headers) of the topics, read to their end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-check",
                  "enable.partition.eof": True, "enable.auto.commit": False})
    parts = list_partitions({"bootstrap.servers": bootstrap}, [f"{PREFIX}{t}" for t in topics])
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
    out: dict[str, list[Any]] = {t: [] for t in topics}
    ended: set[tuple[str, int]] = set()
    while len(ended) < len(parts):
        for m in c.consume(2000, 0.5):
            if m.error() is not None:
                ended.add((m.topic(), m.partition()))
            else:
                out[m.topic()[len(PREFIX):]].append(
                    (m.partition(), m.offset(), m.value(),
                     {k: v.decode() for k, v in (m.headers() or [])}))
    c.close()
    return out


def start(work: Path) -> dict[str, Any]:
    relay_port = free_port()
    cb = start_broker(work, advertised_port=relay_port)
    kafka_relay = Relay(("127.0.0.1", cb.port), port=relay_port,
                        wan_clients="fulfil-edge-link").start()
    cr = start_redis(work)
    redis_relay = Relay(("127.0.0.1", cr.port)).start()
    eb, er = start_broker(work), start_redis(work)
    central = f"127.0.0.1:{relay_port}"
    edge = f"127.0.0.1:{eb.port}"
    for boot in (central, edge):
        ensure_topics({"bootstrap.servers": boot},
                      {f"{PREFIX}{t.name}": t.partitions for t in TOPICS.values()},
                      compacted=[f"{PREFIX}{t.name}" for t in TOPICS.values() if t.compacted])
    knobs = {"enforce_capacity": False, "fetch_wait_max_ms": 25, "producer_linger_ms": 5}
    site = {"site": SITE, "nodes": list(NODES), "state_dir": str(work),
            "edge": {"kafka_bootstrap": edge, "redis_url": f"redis://127.0.0.1:{er.port}/0",
                     **knobs},
            "centre": {"kafka_bootstrap": central,
                       "redis_url": f"redis://127.0.0.1:{redis_relay.port}/0"},
            "link": {"link_timeout_s": 1.0}}
    (work / "site.json").write_text(json.dumps(site))
    procs = start_engine(Stack(cb, cr, work), PREFIX, extra=["--start-from", "earliest"])
    procs.append(_spawn(work, "edge-engine", "run"))
    metrics_port = free_port()
    procs.append(_spawn(work, "edge-link", "link", "--metrics-port", str(metrics_port)))
    return {"servers": [cb, cr, eb, er], "relays": [kafka_relay, redis_relay], "procs": procs,
            "central": central, "edge": edge, "central_redis": f"redis://127.0.0.1:{cr.port}/0",
            "edge_redis": f"redis://127.0.0.1:{er.port}/0", "work": work,
            "metrics_port": metrics_port}


def _spawn(work: Path, name: str, command: str, *extra: str) -> subprocess.Popen:
    """`fulfil edge <command>` as its own process, logging to the work directory."""
    log = open(work / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "fulfil.cli", "edge", command, "--site",
                             str(work / "site.json"), *extra], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def site_stock(url: str, skus: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    ledger = Ledger(connect(url), "fulfil")
    return {(n, s): ledger.stock(n, s)[:2] for n in NODES for s in skus}


def run(args: argparse.Namespace) -> None:
    random.seed(7)
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="edge-outage-"))
    env = start(work)
    kafka_relay, redis_relay = env["relays"]
    edge_p = Producer({"bootstrap.servers": env["edge"], "linger.ms": 2})
    central_p = Producer({"bootstrap.servers": env["central"], "linger.ms": 5})
    skus = [*LOCAL, "hot"]
    try:
        _produce(edge_p, "inventory", [_stock(n, s, 100_000) for n in NODES for s in LOCAL]
                 + [_stock("N20", "hot", args.hot), _stock("N23", "hot", args.hot // 2)])
        _produce(central_p, "inventory", [_stock("N01", "far", 1_000_000)])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if site_stock(env["central_redis"], skus) == site_stock(env["edge_redis"], skus) \
                    and site_stock(env["edge_redis"], ["hot"])[("N20", "hot")][0] == args.hot:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"the centre never saw the site's stock (logs in {work})")
        for k in range(int(args.rate * 3)):  # warm-up, not measured: a running store's engine
            _produce(edge_p, "orders", [_order(f"w-{k}", random.choice(LOCAL))])
            time.sleep(1 / args.rate)
        tap = Tap(env["edge"], f"{PREFIX}decisions")
        tap.start()
        sampler = MetricsSampler(env["metrics_port"])
        sampler.start()
        print(f"warm: site stock at the centre; flapping the link {args.down:.0f} s down / "
              f"{args.up:.0f} s up for {args.duration:.0f} s; {args.rate:.0f} edge orders/s, "
              f"{args.central_rate:.0f} central orders/s (logs: {work})")

        sent: dict[str, tuple[int, bool]] = {}  # order id -> (occurred_at, link down)
        invalid = 0
        for relay in (kafka_relay, redis_relay):
            relay.flap(args.down, args.up)
        started, i, version, killed = time.monotonic(), 0, 1, not args.kill_link
        while (elapsed := time.monotonic() - started) < args.duration:
            if not killed and elapsed > args.duration / 2:
                # kill -9 the links mid-batch and start them again: at most the batch in flight
                # is re-sent, and the receivers must make that harmless
                env["procs"][-1].kill()
                env["procs"][-1].wait()
                env["procs"][-1] = _spawn(env["work"], "edge-link", "link", "--metrics-port",
                                          str(env["metrics_port"]))
                killed = True
            target = started + i / args.rate
            if target > time.monotonic():
                time.sleep(target - time.monotonic())
            i += 1
            r = random.random()
            if r < 0.005:
                edge_p.produce(f"{PREFIX}orders", b'{"type": "order.created", "order_id": ',
                               b"broken")
                invalid += 1
                continue
            oid = f"e-{i}"
            sku = "far" if r < 0.05 else "hot" if r < 0.08 else random.choice(LOCAL)
            ev = _order(oid, sku)
            edge_p.produce(f"{PREFIX}orders", orjson.dumps(ev), oid.encode())
            sent[oid] = (ev["occurred_at"], kafka_relay.is_down)
            edge_p.poll(0)
            if i % max(1, int(args.rate / args.central_rate)) == 0:
                c = f"c-{i}"
                central_p.produce(f"{PREFIX}orders", orjson.dumps(
                    _order(c, "hot", 2) if i % 2 else {**_order(c, "far"), "destination": {
                        "lat": -23.55, "lng": -46.63, "postal_code": "01310"}}), c.encode())
                central_p.poll(0)
            if i % int(args.rate) == 0:  # a count correction at a store, once a second
                version += 1
                edge_p.produce(f"{PREFIX}inventory", orjson.dumps(_stock(
                    "N23", "loc-00", 100_000 + version, version)), b"N23|loc-00")
        edge_p.flush(30)
        central_p.flush(30)
        for relay in (kafka_relay, redis_relay):
            relay.stop_flapping()
        kill = "; the link process was killed (-9) and restarted half way" if args.kill_link \
            else ""
        print(f"sent {len(sent)} valid + {invalid} invalid edge orders in {elapsed:.1f} s; "
              f"{len(kafka_relay.stats.cuts)} cuts{kill}; link up again, converging ...")
        converged = _converge(env, skus, sent, tap)
        tap.stop()
        sampler.stop()
        _report(env, args, sent, invalid, tap, converged, skus)
        _report_metrics(env, sampler)
        load_end = os.getloadavg()
        print(f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in load_start)} at the "
              f"start, {' '.join(f'{x:.2f}' for x in load_end)} at the end "
              f"({os.cpu_count()} cores)")
    finally:
        stop_engine(env["procs"])
        for relay in env["relays"]:
            relay.stop()
        for server in env["servers"]:
            server.stop()


def _converge(env: dict[str, Any], skus: list[str], sent: dict[str, Any], tap: Tap) -> float:
    """Seconds until the uplink has nothing left and both ledgers agree three checks running."""
    settings = load_site(env["work"] / "site.json")
    t0, agreeing = time.monotonic(), 0
    while time.monotonic() - t0 < 180:
        decided = {d["order_id"] for _, d, _ in tap.records}
        same = site_stock(env["central_redis"], skus) == site_stock(env["edge_redis"], skus)
        backlog = edge_status(settings)["uplink_backlog"]
        agreeing = agreeing + 1 if same and backlog == 0 and set(sent) <= decided else 0
        if agreeing >= 3:
            return time.monotonic() - t0 - 2.0
        time.sleep(1.0)
    return float("nan")


def _report(env: dict[str, Any], args: argparse.Namespace, sent: dict[str, Any], invalid: int,
            tap: Tap, converged: float, skus: list[str]) -> None:
    first = {}
    for recv, d, _ in tap.records:
        if d["version"] == 1 and d["order_id"] not in first:
            first[d["order_id"]] = (recv, d)
    accepted = [o for o in sent if o in first]
    local = np.array([first[o][1]["timings"]["decided_at"] - first[o][1]["timings"]["event_time"]
                      for o in accepted])
    seen = np.array([first[o][0] - sent[o][0] for o in accepted])
    down = np.array([sent[o][1] for o in accepted], dtype=bool)
    status = Counter(first[o][1]["status"] for o in accepted)

    def pct(a: np.ndarray) -> str:
        if not a.size:
            return "n/a"
        return (f"p50 {np.percentile(a, 50):5.1f}  p99 {np.percentile(a, 99):5.1f}  "
                f"max {a.max():6.1f} ms  ({a.size} orders)")

    print("\n== edge, during the flapping link ==")
    print(f"accepted and decided at the edge: {len(accepted)}/{len(sent)} valid orders "
          f"({100 * len(accepted) / max(1, len(sent)):.2f}%); {dict(status)}; "
          f"{invalid} invalid set aside")
    print(f"local decision latency, link down: {pct(local[down])}")
    print(f"local decision latency, link up:   {pct(local[~down])}")
    print(f"local decision latency, all:       {pct(local)}")
    print(f"as a consumer of the edge's decisions sees it: {pct(seen)}")

    central = read_all(env["central"], ["decisions", "alerts", "orders", "edge.sul.orders",
                                        "edge.sul.decisions", "edge.sul.inventory",
                                        "edge.sul.dead-letters"])
    edge = read_all(env["edge"], ["orders", "decisions", "inventory", "dead-letters"])
    lost, dup_copies = 0, 0
    for name in ("orders", "decisions", "inventory", "dead-letters"):
        srcs = Counter(h["fulfil-src"] for *_, h in central[f"edge.sul.{name}"])
        want = {f"edge:sul|{name}#{p}@{o}" for p, o, _, h in edge[name] if "fulfil-origin" not in h}
        lost += len(want - set(srcs))
        dup_copies += sum(n - 1 for n in srcs.values())
    by_id: dict[str, set[bytes]] = {}
    for _, _, value, _ in central["decisions"]:
        by_id.setdefault(orjson.loads(value)["decision_id"], set()).add(value)
    promoted = {orjson.loads(v)["decision_id"] for _, _, v, _ in edge["decisions"]
                if not is_handoff_decision(orjson.loads(v))}
    lost_decisions = len(promoted - set(by_id))
    conflicting = sum(1 for v in by_id.values() if len(v) > 1)
    a, b = site_stock(env["central_redis"], skus), site_stock(env["edge_redis"], skus)
    mismatched = [k for k in a if a[k] != b[k]]
    negative = [k for k, (oh, rs) in a.items() if oh < 0 or rs < 0 or rs > oh]
    handed = {orjson.loads(v)["order_id"] for *_, v, h in central["orders"]
              if h.get("fulfil-origin") == "edge:sul"}
    print(f"\n== after reconnection (converged {converged:.1f} s after the link came back) ==")
    print(f"lost: {lost} edge records missing at the centre, {lost_decisions} edge decisions "
          f"missing from its decisions topic")
    print(f"double-applied: {len(mismatched)} (node, sku) where the centre's on-hand/reserved "
          f"differ from the edge's, {conflicting} decision ids with differing copies, "
          f"{len(negative)} over-allocated or negative; {dup_copies} duplicate copies "
          f"received (identified by fulfil-src, dropped by it)")
    print(f"handed to the centre: {len(handed)} orders; oversell alerts: "
          f"{len(central['alerts'])} (central claims on the site's stock the edge had sold)")
    hot = sum(b[(n, "hot")][1] for n in NODES)
    print(f"contested stock: {hot} of {args.hot + args.hot // 2} units of 'hot' held at the "
          "site, the same on both sides" if not mismatched else "contested stock: DIVERGED")
    outage = local[down] if down.any() else local
    p99 = float(np.percentile(outage, 99)) if outage.size else float("inf")
    ok = (len(accepted) == len(sent), p99 <= 50.0, lost + lost_decisions == 0,
          not mismatched and not conflicting and not negative)
    names = ("100% accepted at the edge", "p99 local decision <= 50 ms while the link was down",
             "zero lost", "zero double-applied")
    print("\ntargets: " + "; ".join(f"{n}: {'met' if m else 'MISSED'}"
                                    for n, m in zip(names, ok, strict=True)))


def _report_metrics(env: dict[str, Any], sampler: MetricsSampler) -> None:
    """What the link process's /metrics showed (docs/edge.md#metrics)."""
    got = scrape(env["metrics_port"])
    if not got:
        print("\nlink metrics: the link process did not answer")
        return

    def kinds(name: str, label: str, **labels: str) -> str:
        vals: Counter[str] = Counter()
        for (n, ls), v in got.items():
            d = dict(ls)
            if n == name and labels.items() <= d.items():
                vals[d[label]] += int(v)
        return ", ".join(f"{k} {v}" for k, v in sorted(vals.items())) or "none"

    print(f"\n== link metrics (fulfil_edge_*, {sampler.scrapes} scrapes, 1/s) ==")
    print(f"scrapes with the link down: uplink {sampler.down['uplink']}, downlink "
          f"{sampler.down['downlink']}; worst uplink backlog {sampler.max_backlog:.0f} events, "
          f"oldest unsent {sampler.max_age:.1f} s")
    print(f"forwarded up: {kinds('fulfil_edge_events_forwarded_total', 'topic', link='uplink')}")
    print(f"forwarded down: "
          f"{kinds('fulfil_edge_events_forwarded_total', 'topic', link='downlink')}")
    print(f"duplicates dropped: {kinds('fulfil_edge_duplicates_dropped_total', 'kind')}; "
          f"conflicts: {kinds('fulfil_edge_conflicts_total', 'kind')}; link state: "
          f"{kinds('fulfil_edge_link_state_entries', 'side')} entries")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=30.0, help="seconds of orders")
    p.add_argument("--rate", type=float, default=80.0, help="edge orders per second")
    p.add_argument("--central-rate", type=float, default=6.0, help="central orders per second")
    p.add_argument("--down", type=float, default=4.0, help="seconds the link stays cut")
    p.add_argument("--up", type=float, default=2.0, help="seconds it comes back between cuts")
    p.add_argument("--hot", type=int, default=60, help="contested units at N20 (N23: half)")
    p.add_argument("--kill-link", action="store_true",
                   help="also kill -9 the link process half way and start it again")
    run(p.parse_args())


if __name__ == "__main__":
    main()
