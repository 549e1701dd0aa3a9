"""`make demo`: the whole engine on an embedded broker and Redis, with a live view.

Starts a tansu broker and a redis-server on free loopback ports, creates the topics, starts the
routing dataflow as separate process(es) exactly as `fulfil run` would against production
infrastructure, publishes the simulated workload (real Olist network and catalogue, scripted
disruptions), shows live figures from the output topics every second, then prints a summary and
stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulfil.infra import Stack, embedded_stack, free_port
from fulfil.monitor import OutputTap, TapStats, percentile

ROOT = Path(__file__).resolve().parents[1]

#: The embedded broker's fetch cost grows with the number of record batches a partition holds
#: (../shared/PERFORMANCE-NOTES.md): over a minute at thousands of events/s, 2-5 ms producer
#: batches make the broker use more CPU than the engine. The demo therefore batches harder
#: everywhere (20 ms) and waits up to 50 ms per fetch; production Kafka needs none of this.
#: Client settings for the embedded broker (tansu): its fetch cost grows with the record batches
#: a partition holds, so producers batch (linger) and consumers make fewer, fuller fetches
#: (a fetch waits for 256 KiB or 50 ms). Without `fetch.min.bytes` every consumer fetched
#: again the moment anything arrived, the broker's CPU climbed past a core within a minute at
#: 440 orders/s and the routing latency ran away (p50 30 ms -> 7 s); with it, p50 stayed
#: under 160 ms (benchmarks/detection_eval.py --timeline, docs/alerts.md).
EMBEDDED_KAFKA_ENV = {"FULFIL_PRODUCER_LINGER_MS": "20", "FULFIL_FETCH_WAIT_MAX_MS": "50",
                      "FULFIL_FETCH_MIN_BYTES": "262144"}
EMBEDDED_PRODUCER = {"linger.ms": 20}


def create_topics(bootstrap: str, prefix: str, partitions: int | None = None) -> None:
    from dataflows.connectors import ensure_topics
    from schemas.topics import TOPICS

    specs = {t.full_name(prefix): partitions or t.partitions for t in TOPICS.values()}
    compacted = [t.full_name(prefix) for t in TOPICS.values() if t.compacted]
    ensure_topics({"bootstrap.servers": bootstrap}, specs, compacted=compacted)


def start_engine(stack: Stack, prefix: str, processes: int = 1, extra: Sequence[str] = (),
                 log_dir: Path | None = None, metrics_port: int | None = None
                 ) -> list[subprocess.Popen]:
    """Start the routing flow as `processes` bytewax processes (a cluster when > 1).

    With `metrics_port`, process i serves Prometheus metrics on `metrics_port + i`.
    """
    env = {**EMBEDDED_KAFKA_ENV, **os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "fulfil.cli", "run", "--kafka", stack.bootstrap,
            "--redis", stack.redis_url, "--topic-prefix", prefix,
            "--source-slots", str(processes), *extra]
    if metrics_port:
        base += ["--metrics-port", str(metrics_port)]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    procs = []
    for i in range(processes):
        argv = list(base)
        if processes > 1:
            argv += ["-i", str(i), "-a", addresses]
        log = open((log_dir or stack.workdir) / f"engine-{i}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def stop_engine(procs: Sequence[subprocess.Popen], timeout: float = 15.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def scrape(ports: Sequence[int], name: str) -> float:
    """Sum of a counter over the engine processes' /metrics endpoints (absent = 0)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for port in ports:
        try:
            with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    total += sample.value
    return total


def wait_inventory_applied(ports: Sequence[int], expected: int, timeout: float = 120.0) -> bool:
    """Block until the engine processes report `expected` inventory events handled.

    Uses the engine's own Prometheus counters, exactly what an SRE would watch.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scrape(ports, "fulfil_inventory_events_total") >= expected:
            return True
        time.sleep(0.2)
    return False


def _panel(stats: TapStats, published: int, elapsed: float, window_s: float = 5.0) -> list[str]:
    now = time.time()
    recent = [lat for t, lat in stats.recent if t >= now - window_s]
    rate = len(recent) / window_s
    total = sum(stats.decisions.values())
    routed = stats.decisions.get("routed", 0)
    top_nodes = ", ".join(f"{k} {v}" for k, v in stats.nodes.most_common(5))
    top_carriers = ", ".join(f"{k} {v}" for k, v in stats.carriers.most_common(4))
    dead = ", ".join(f"{k} {v}" for k, v in sorted(stats.dead_letters.items())) or "none"
    return [
        f"t={elapsed:5.1f}s  orders in {published:>8,}  decisions out {total:>8,}  "
        f"({rate:,.0f}/s over {window_s:.0f}s)",
        f"  routed {routed:,}  unroutable {stats.decisions.get('unroutable', 0):,}  "
        f"cancelled {stats.decisions.get('cancelled', 0):,}  split {stats.splits:,}  "
        f"late-vs-promise {stats.late:,}",
        f"  event->decision latency (last {window_s:.0f}s) p50 {percentile(recent, 50):6.1f} ms"
        f"  p99 {percentile(recent, 99):6.1f} ms",
        f"  top nodes: {top_nodes}",
        f"  top carriers: {top_carriers}",
        f"  dead letters: {dead}",
    ]


@dataclass
class DemoResult:
    published: Any  # PublishStats, or None when the simulator failed
    output: TapStats
    error: BaseException | None
    engine_exited: bool

    @property
    def ok(self) -> bool:
        return self.error is None and not self.engine_exited and self.published is not None


def run_demo(duration_s: float = 60.0, rate: float = 1000.0, workers: int = 1) -> int:
    """`fulfil demo`: exit code 0 when the run completed and every event was accounted for."""
    result = demo(duration_s, rate, workers)
    return 0 if result.ok else 1


def demo(duration_s: float = 60.0, rate: float = 1000.0, workers: int = 1,
         workdir: Path | None = None) -> DemoResult:
    from fulfil.sim.publisher import publish
    from fulfil.sim.scenario import Scenario

    prefix = "fulfil."
    scenario = Scenario.demo(rate=rate, duration_s=duration_s)
    tty = sys.stdout.isatty()
    workdir = workdir or ROOT / ".demo"
    workdir.mkdir(exist_ok=True)
    for old in workdir.glob("*.log"):  # logs of this run only
        old.unlink()
    engine_exited = False
    print(f"fulfil demo: {duration_s:.0f} s at {rate:,.0f} orders/s, {workers} engine process(es)")
    with embedded_stack(workdir) as stack:
        print(f"  broker {stack.bootstrap}   redis {stack.redis_url}   logs {workdir}")
        create_topics(stack.bootstrap, prefix)
        metrics_port = free_port()
        ports = [metrics_port + i for i in range(workers)]
        procs = start_engine(stack, prefix, workers, log_dir=workdir, metrics_port=metrics_port)
        tap = OutputTap(stack.bootstrap, f"{prefix}decisions", f"{prefix}dead-letters",
                        kafka={"fetch.wait.max.ms": "50"}).start()
        counts = {"orders": 0}
        done = threading.Event()
        result: dict = {}

        def on_tick(stats) -> None:
            counts["orders"] = stats.orders

        def wait_stocked(stats) -> None:
            print(f"  initial inventory published ({stats.initial_inventory:,} snapshots); "
                  "waiting for the engine to apply it ...", flush=True)
            wait_inventory_applied(ports, stats.initial_inventory)

        def publisher() -> None:
            try:
                result["stats"] = publish(stack.bootstrap, scenario, prefix=prefix,
                                          producer_config=EMBEDDED_PRODUCER, on_tick=on_tick,
                                          before_stream=wait_stocked)
            except Exception as exc:  # shown in the summary, never swallowed
                result["error"] = exc
            finally:
                done.set()

        t0 = time.monotonic()
        threading.Thread(target=publisher, name="simulator", daemon=True).start()
        lines_drawn = 0
        try:
            while True:
                time.sleep(1.0)
                if any(p.poll() is not None for p in procs):
                    print("engine process exited early; see", workdir)
                    engine_exited = True
                    break
                with tap.lock:
                    panel = _panel(tap.stats, counts["orders"], time.monotonic() - t0)
                if tty and lines_drawn:
                    sys.stdout.write(f"\x1b[{lines_drawn}F\x1b[J")
                print("\n".join(panel), flush=True)
                lines_drawn = len(panel)
                if done.is_set():
                    break
            # Drain: wait until the engine has caught up with everything published.
            # Every valid order event ends as a decision, or as an unknown-order dead letter (a
            # follow-up for an order cancelled just before).
            stats = result.get("stats")
            expected = getattr(stats, "valid_order_events", None)
            if expected and not engine_exited:
                tap.wait_for(lambda s: sum(s.decisions.values())
                             + s.dead_letters.get("unknown-order", 0) >= expected, timeout=30)
        finally:
            stop_engine(procs)
            tap.stop()
        _summary(tap.stats, result, time.monotonic() - t0)
    return DemoResult(result.get("stats"), tap.stats, result.get("error"), engine_exited)


def _summary(stats: TapStats, result: dict, elapsed: float) -> None:
    lat = stats.latencies_ms
    print("\n== summary ==")
    if "error" in result:
        print(f"simulator failed: {result['error']!r}")
    if "stats" in result:
        print(f"published: {result['stats']}")
    print(f"decisions: {dict(stats.decisions)}   dead letters: {dict(stats.dead_letters)}")
    print(f"latency over the run: p50 {percentile(lat, 50):.1f} ms  p99 {percentile(lat, 99):.1f}"
          f" ms  max {max(lat, default=float('nan')):.1f} ms   ({elapsed:.0f} s)")
    print(f"top nodes: {stats.nodes.most_common(8)}")
    print(f"carriers: {stats.carriers.most_common(6)}")
    print("everything started by the demo has been stopped.")
