"""The routing step alone: µs per order through `Router.route` on a real Redis, no Kafka.

    python benchmarks/router_bench.py [--orders 60000] [--batch 200] [--profile]

Why: the end-to-end benchmark (`routing_bench.py`) shows what users get, but its figures mix the
broker, bytewax and the engine. This one times only the engine's step, so a change to the hot
path can be judged in seconds, and `--profile` shows where the Python time goes. It starts its
own redis-server on a free port, loads the demo network's initial stock, and routes simulator
orders in batches the size the Kafka source hands over under load.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from dataflows.connectors import RawMessage  # noqa: E402
from dataflows.router import Router  # noqa: E402
from fulfil import heap  # noqa: E402
from fulfil.config import Config  # noqa: E402
from fulfil.infra import start_redis  # noqa: E402
from fulfil.sim.events import stamp  # noqa: E402
from operators.network import load_default  # noqa: E402
from operators.rules import compile_rules, empty_ruleset  # noqa: E402
from state.ledger import InventoryUpdate, Ledger  # noqa: E402
from state.redis_client import connect  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from routing_bench import order_templates, stock_events  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="profile the timed part")
    ap.add_argument("--rules", help="a rules file to route under (default: no rules)")
    ap.add_argument("--set", metavar="JSON", default="{}",
                    help='configuration fields, e.g. \'{"abnormal": {"enabled": false}}\'')
    ap.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    templates = order_templates(args.orders)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            run(args, templates, f"redis://127.0.0.1:{server.port}/0")
        finally:
            server.stop()


def run(args: argparse.Namespace, templates: list[tuple[bytes, bytes]], url: str) -> None:
    if True:
        client = connect(url)
        ledger = Ledger(client)
        ledger.apply_inventory([
            InventoryUpdate(e["node_id"], e["sku"], int(e["version"]), "snapshot",
                            int(e["on_hand"]))
            for e in (orjson.loads(v) for _, v in stock_events())
            if e["type"] == "inventory.snapshot"
        ])
        network = load_default()
        rules = empty_ruleset()
        if args.rules:
            rules = compile_rules(Path(args.rules).read_text(), network, args.rules)
        config = Config(redis_url=url, **orjson.loads(args.set))
        router = Router(config, network, client, lambda: rules)
        # the garbage-collector settings the routing flow applies (fulfil/heap.py)
        heap.configure(config.gc_gen0_threshold)
        route = heap.after_warmup(router.route, config.gc_freeze_after_batches)
        now = int(time.time() * 1000)
        raws = [RawMessage("fulfil.orders", 0, i, k, stamp(v, now), now, now)
                for i, (k, v) in enumerate(templates)]
        batches = [raws[i:i + args.batch] for i in range(0, len(raws), args.batch)]
        warm = max(1, len(batches) // 10, config.gc_freeze_after_batches)
        for b in batches[:warm]:  # numba compile, caches, connections, the heap frozen
            route(b)
        timed = batches[warm:]
        n = sum(len(b) for b in timed)
        client.config_resetstat()
        prof = cProfile.Profile() if args.profile else None
        redis_cpu0 = _redis_cpu_s(client)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        outputs = 0
        took: list[float] = []
        for b in timed:
            t = time.perf_counter()
            outputs += len(route(b))
            took.append(time.perf_counter() - t)
        if prof:
            prof.disable()
        dt = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        redis_cpu = _redis_cpu_s(client) - redis_cpu0
        info = client.info("commandstats")
        server_us = sum(v["usec"] for k, v in info.items() if k.startswith("cmdstat_"))
        for k, v in sorted(info.items(), key=lambda kv: -kv[1]["usec"])[:6]:
            print(f"  {k[8:]:10s} {v['calls'] / n:6.2f} calls/order  "
                  f"{v['usec_per_call']:7.1f} µs/call  {v['usec'] / n:5.1f} µs/order")
    print(f"orders timed      {n:,} in batches of {args.batch} ({outputs:,} outputs)")
    print(f"per order         {dt / n * 1e6:.1f} µs  ->  {n / dt:,.0f} orders/s on one core")
    print(f"redis server time {server_us / n:.1f} µs per order (all commands)")
    print(f"CPU per order     engine {cpu / n * 1e6:.1f} µs, "
          f"redis-server {redis_cpu / n * 1e6:.1f} µs (steadier than wall time on shared cores)")
    ms = sorted(t * 1000 for t in took)
    print(f"batch time ms     p50 {ms[len(ms) // 2]:.1f}  p99 {ms[int(len(ms) * 0.99)]:.1f}  "
          f"max {ms[-1]:.1f}")
    if prof:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


def _redis_cpu_s(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


if __name__ == "__main__":
    main()
