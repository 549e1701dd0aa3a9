"""Routing benchmark: orders/s and event-to-decision latency, next to passthroughs in the same run.

    python benchmarks/routing_bench.py [--preload 200000] [--rate 5000] [--seconds 15]
                                       [--processes 1] [--skip-plain]

One embedded broker and Redis for the whole run; fresh topics for every measurement (the broker's
fetch cost grows with the batches a partition holds, see ../shared/PERFORMANCE-NOTES.md). For each
pipeline — plain confluent-kafka consume->produce loop, bytewax passthrough with fulfil's own
connectors, and the routing flow (`fulfil run`, 1-3 line orders, 40 nodes, 3 carriers x 2
services, Redis reservations included) — it measures:

- throughput: N orders preloaded, then the pipeline started; rate = N / (last output - first
  output), as seen by a consumer of the output topic;
- latency at a fixed offered rate: orders stamped with the wall clock at produce time, latency =
  receive time at the output consumer - that stamp; the first second is dropped as warm-up.

Prints figures; asserts nothing (speed is checked here, never in tests).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from dataflows.connectors import ensure_topics, list_partitions  # noqa: E402
from fulfil.demo import (  # noqa: E402
    create_topics,
    start_engine,
    stop_engine,
    wait_inventory_applied,
)
from fulfil.infra import Stack, embedded_stack, free_port  # noqa: E402
from fulfil.sim.catalogue import initial_inventory, load_catalogue  # noqa: E402
from fulfil.sim.scenario import Scenario  # noqa: E402
from fulfil.sim.workload import Workload, stamp  # noqa: E402
from operators.network import load_default  # noqa: E402

PARTITIONS = 4
#: Soak runs batch harder (producers 20 ms, consumers wait up to 50 ms): the embedded broker's
#: fetch cost grows with the number of record batches a partition holds, and over minutes the
#: default small batches make the broker, not the pipelines, the thing being measured.
SOAK_TICK_S = 0.02
SOAK_ENV = {"FULFIL_PRODUCER_LINGER_MS": "20", "FULFIL_FETCH_WAIT_MAX_MS": "50",
            "FULFIL_FETCH_MIN_BYTES": "1"}
#: Short runs: every pipeline gets the same Kafka client settings (the engine would otherwise
#: take the demo's harder batching from fulfil.demo.EMBEDDED_KAFKA_ENV, and its latency would
#: not be comparable with the passthroughs').
RUN_ENV = {"FULFIL_PRODUCER_LINGER_MS": "2", "FULFIL_FETCH_WAIT_MAX_MS": "25",
           "FULFIL_FETCH_MIN_BYTES": "1"}
METRICS_PORT = free_port()


def order_templates(n: int, seed: int = 11) -> list[tuple[bytes, bytes]]:
    """n valid order.created templates (key, value-without-timestamp) from the simulator."""
    sc = Scenario.steady(rate=20_000.0, duration_s=n / 20_000.0 + 1.0, seed=seed,
                         cancel_rate=0.0, address_change_rate=0.0, invalid_rate=0.0,
                         stock_horizon_s=3_600.0)
    net = load_default()
    cat = load_catalogue(sc.sku_count, sc.seed, zipf_s=sc.zipf_s)
    wl = Workload(net, cat, sc)
    wl.anchor(int(time.time() * 1000))  # promises relative to now, as the publisher does
    out: list[tuple[bytes, bytes]] = []
    t = 0.0
    while len(out) < n:
        for ev in wl.events_at(t, t + 1.0):
            if ev.tag == "order.created":
                out.append((ev.key.encode(), ev.value))
        t += 1.0
    return out[:n]


def stock_events(seed: int = 11) -> list[tuple[bytes, bytes]]:
    sc = Scenario.steady(rate=20_000.0, duration_s=60.0, seed=seed, stock_horizon_s=3_600.0)
    net = load_default()
    cat = load_catalogue(sc.sku_count, sc.seed, zipf_s=sc.zipf_s)
    return [(f'{e["node_id"]}|{e["sku"]}'.encode(), orjson.dumps(e))
            for e in initial_inventory(net, cat, sc)]


def produce_all(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000})
    now = int(time.time() * 1000)
    for k, v in items:
        while True:
            try:
                p.produce(topic, stamp(v, now) if v.endswith(b":") else v, k)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


def paced(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]], rate: float,
          tick_s: float = 0.005) -> None:
    """Produce at `rate`/s in `tick_s` ticks, stamping each order with the wall clock."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": max(5, int(tick_s * 1000))})
    t0 = time.monotonic()
    i = 0
    while i < len(items):
        due = min(len(items), int((time.monotonic() - t0) * rate))
        now = int(time.time() * 1000)
        while i < due:
            k, v = items[i]
            p.produce(topic, stamp(v, now), k)
            i += 1
        p.poll(0)
        time.sleep(tick_s)
    p.flush(30)


class Tap:
    """Counts output messages and their latency (event time read by `event_time`)."""

    def __init__(self, bootstrap: str, topic: str, event_time) -> None:
        self.recv: list[float] = []
        self.lat: list[float] = []
        self._stop = threading.Event()
        self._event_time = event_time
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                      "enable.auto.commit": "false",
                      "fetch.wait.max.ms": os.environ.get("FULFIL_FETCH_WAIT_MAX_MS", "25")})
        c.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                  for t, p in list_partitions({"bootstrap.servers": bootstrap}, [topic])])
        self._c = c
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = self._c.consume(5000, 0.05)
            now = time.time() * 1000.0
            for m in msgs:
                if m.error() is None:
                    self.recv.append(now)
                    self.lat.append(now - self._event_time(m.value()))

    def wait(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.recv) < n:
            time.sleep(0.05)
        return len(self.recv) >= n

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self._c.close()


def _order_time(v: bytes) -> float:
    return float(orjson.loads(v)["occurred_at"])


def _decision_time(v: bytes) -> float:
    return float(orjson.loads(v)["timings"]["event_time"])


def start_passthrough(kind: str, stack: Stack, src: str, dst: str, log: Path) -> list:
    argv = [sys.executable, str(ROOT / "benchmarks" / "passthrough.py"), kind, stack.bootstrap,
            src, dst]
    return [subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT)]


def prepare(name: str, stack: Stack, prefix: str) -> tuple[str, str, Tap]:
    """Fresh topics (and, for routing, a clean Redis stocked again); returns (src, dst, tap).

    Redis is flushed because the same order ids are offered in every phase, and the engine
    would rightly treat them as replays of the previous phase's orders.
    """
    routing = name == "routing"
    src, dst = f"{prefix}orders", f"{prefix}decisions" if routing else f"{prefix}out"
    if routing:
        redis.Redis.from_url(stack.redis_url).flushall()
        create_topics(stack.bootstrap, prefix, PARTITIONS)
        produce_all(stack.bootstrap, f"{prefix}inventory", stock_events())
    else:
        ensure_topics({"bootstrap.servers": stack.bootstrap}, {src: PARTITIONS, dst: PARTITIONS})
    return src, dst, Tap(stack.bootstrap, dst, _decision_time if routing else _order_time)


def wait_ready(name: str, processes: int) -> None:
    if name == "routing":
        wait_inventory_applied([METRICS_PORT + i for i in range(processes)],
                               len(stock_events()), timeout=120)
    else:
        time.sleep(3.0)  # start-up


def measure(name: str, stack: Stack, run: int, start, orders, rate: float, seconds: float,
            processes: int) -> dict:
    """Throughput on a preloaded topic, then latency at `rate` on fresh topics."""
    res = {"name": name}
    for phase in ("throughput", "latency"):
        prefix = f"b{run}{phase[0]}-{name}."
        src, dst, tap = prepare(name, stack, prefix)
        items = orders if phase == "throughput" else orders[: int(rate * seconds)]
        if phase == "throughput":
            produce_all(stack.bootstrap, src, items)
        procs = start(stack, prefix, src, dst)
        meter = CpuMeter({"broker": stack.broker.proc.pid, "redis": stack.redis.proc.pid,
                          **{f"{name}{i}": p.pid for i, p in enumerate(procs)}})
        try:
            wait_ready(name, processes)
            if phase == "latency":
                # warm-up traffic so imports/JIT are done before measuring
                paced(stack.bootstrap, src, orders[-2000:], 1000.0)
                tap.wait(2000, 60)
                base = len(tap.recv)
                paced(stack.bootstrap, src, items, rate)
                ok = tap.wait(base + len(items), 60)
                lat = np.array(tap.lat[base:])
                recv = np.array(tap.recv[base:])
                keep = lat[recv >= recv.min() + 1000.0] if lat.size else lat
                res.update(lat_n=int(keep.size), complete=ok,
                           p50=float(np.percentile(keep, 50)), p99=float(np.percentile(keep, 99)),
                           max=float(keep.max()))
            else:
                ok = tap.wait(len(items), 300)
                recv = np.array(tap.recv)
                res.update(throughput=len(recv) / max(1e-3, (recv.max() - recv.min()) / 1000.0),
                           thr_complete=ok,
                           cpu={k: v / len(recv) * 1e6 for k, v in
                                meter.between(recv.min(), recv.max()).items()})
        finally:
            stop_engine(procs)
            tap.close()
    return res


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Samples the CPU seconds of named processes every 50 ms, so the CPU each one spent
    between two wall-clock instants (first and last output) can be read afterwards."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((time.time() * 1000.0,
                                 {k: cpu_s(p) for k, p in self.pids.items()}))

    def between(self, t0_ms: float, t1_ms: float) -> dict[str, float]:
        self._stop.set()
        self._t.join(1)
        a = next((c for t, c in self.samples if t >= t0_ms), self.samples[-1][1])
        b = next((c for t, c in reversed(self.samples) if t <= t1_ms), self.samples[-1][1])
        return {k: b[k] - a[k] for k in self.pids}


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def soak(name: str, stack: Stack, run: int, start, orders, rate: float, seconds: float,
         processes: int) -> list[tuple[int, float, float, float]]:
    """Offer `rate`/s for `seconds`; per minute: (minute, p50, p99, pipeline RSS MB)."""
    prefix = f"s{run}-{name}."
    src, dst, tap = prepare(name, stack, prefix)
    procs = start(stack, prefix, src, dst)
    rows = []
    try:
        wait_ready(name, processes)
        feeder = threading.Thread(target=paced, daemon=True, args=(
            stack.bootstrap, src, orders[: int(rate * seconds)], rate, SOAK_TICK_S))
        t0 = time.time() * 1000.0
        feeder.start()
        minute = 0
        while feeder.is_alive() or minute * 60 < seconds:
            time.sleep(max(0.0, t0 / 1000.0 + (minute + 1) * 60 - time.time()))
            lo, hi = t0 + minute * 60_000, t0 + (minute + 1) * 60_000
            lat = np.array([la for r, la in zip(list(tap.recv), list(tap.lat), strict=False)
                            if lo <= r < hi])
            rss = sum(rss_mb(p.pid) for p in procs)
            if lat.size:
                rows.append((minute + 1, float(np.percentile(lat, 50)),
                             float(np.percentile(lat, 99)), rss))
                print(f"  {name} minute {minute + 1}: p50 {rows[-1][1]:.1f} ms  p99 "
                      f"{rows[-1][2]:.1f} ms  rss {rss:.0f} MB", flush=True)
            minute += 1
            if minute * 60 >= seconds:
                break
        feeder.join()
    finally:
        stop_engine(procs)
        tap.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preload", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=5_000.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--engine-config", metavar="FILE",
                    help="a config file for the routing flow (fulfil run --config), e.g. "
                    '{"abnormal": {"enabled": false}} to price the abnormal-order flags')
    ap.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                    help="instead: offer --rate for SECONDS to the bytewax passthrough and the "
                    "routing flow, one after the other, and print latency and memory per minute")
    args = ap.parse_args()
    extra = ["--config", str(Path(args.engine_config).resolve())] if args.engine_config else []
    if args.soak:
        os.environ.update(SOAK_ENV)  # inherited by the pipelines' processes
        n = int(args.rate * args.soak) + 1
        print(f"generating {n:,} orders from the simulator ...", flush=True)
        orders = order_templates(n)
        with tempfile.TemporaryDirectory() as tmp, embedded_stack(Path(tmp)) as stack:
            logs = Path(tmp)
            results = {
                "bytewax": soak("bytewax", stack, 0, lambda s, pre, a, b: start_passthrough(
                    "bytewax", s, a, b, logs / f"{pre}log"), orders, args.rate, args.soak, 1),
                "routing": soak("routing", stack, 1, lambda s, pre, a, b: start_engine(
                    s, pre, args.processes, extra, log_dir=logs, metrics_port=METRICS_PORT),
                    orders, args.rate, args.soak, args.processes),
            }
        print(f"\nsoak at {args.rate:,.0f}/s: minute, p50 ms, p99 ms, RSS MB")
        for name, rows in results.items():
            for m, p50, p99, rss in rows:
                print(f"{name:8s} {m:3d} {p50:8.1f} {p99:8.1f} {rss:8.0f}")
        return
    for key, value in RUN_ENV.items():
        os.environ.setdefault(key, value)
    print(f"generating {args.preload:,} orders from the simulator ...", flush=True)
    orders = order_templates(max(args.preload, int(args.rate * args.seconds) + 2000))
    with tempfile.TemporaryDirectory() as tmp, embedded_stack(Path(tmp)) as stack:
        logs = Path(tmp)
        pipelines = []
        if not args.skip_plain:
            pipelines.append(("plain", lambda s, pre, a, b: start_passthrough(
                "plain", s, a, b, logs / f"{pre}log")))
        pipelines.append(("bytewax", lambda s, pre, a, b: start_passthrough(
            "bytewax", s, a, b, logs / f"{pre}log")))
        pipelines.append(("routing", lambda s, pre, a, b: start_engine(
            s, pre, args.processes, extra, log_dir=logs, metrics_port=METRICS_PORT)))
        results = []
        for i, (name, start) in enumerate(pipelines):
            print(f"measuring {name} ...", flush=True)
            results.append(measure(name, stack, i, start, orders[: args.preload], args.rate,
                                   args.seconds, args.processes))
        print()
        print(f"{'pipeline':10s} {'orders/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}"
              f"   (latency at {args.rate:,.0f}/s offered, {args.seconds:.0f} s)")
        for r in results:
            print(f"{r['name']:10s} {r['throughput']:10,.0f} {r['p50']:8.1f} {r['p99']:8.1f} "
                  f"{r['max']:8.1f}"
                  + ("" if r["complete"] and r["thr_complete"] else "  INCOMPLETE"))
        print("\nCPU per order while the preloaded topic drained, µs (2 cores = 2 s per s):")
        for r in results:
            print(f"{r['name']:10s} " + "  ".join(f"{k} {v:.1f}" for k, v in r["cpu"].items()))
        by = {r["name"]: r for r in results}
        if "bytewax" in by:
            print(f"\nrouting / bytewax passthrough throughput: "
                  f"{by['routing']['throughput'] / by['bytewax']['throughput']:.0%}; "
                  f"p99 gap {by['routing']['p99'] - by['bytewax']['p99']:+.1f} ms")


if __name__ == "__main__":
    main()
