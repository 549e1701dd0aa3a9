"""Reserve throughput of the Redis ledger: batched (one EVALSHA per node per batch, one round
trip per batch) against one call per order, next to the raw-Lua ceilings of
../shared/PERFORMANCE-NOTES.md re-measured in the same run.

    .venv/bin/python benchmarks/ledger_bench.py [--batches 40] [--runs 3]

Starts its own throwaway redis-server (fulfil.infra.start_redis) in a temp dir. Prints figures
only (medians of --runs); no assertions. Stock is ample, so every order is "reserved" and the
figures measure the success path, the common one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from fulfil.infra import start_redis
from state.ledger import InventoryUpdate, Ledger, ReserveRequest

NODES = [f"N{i:02d}" for i in range(40)]
SKUS = [f"sku-{i}" for i in range(300)]
BATCH = 500
DAY = "20250301"

# The PERFORMANCE-NOTES baseline: check-and-decrement of 1-3 skus in one node's hash, no
# records, no idempotency, no load counter.
BASELINE_LUA = """
for i = 1, #ARGV, 2 do
  if (tonumber(redis.call('HGET', KEYS[1], ARGV[i])) or 0) < tonumber(ARGV[i + 1]) then
    return 0
  end
end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1])) end
return 1
"""


def make_orders(rng: random.Random, tag: str, n: int) -> list[ReserveRequest]:
    """n single-node orders, each 1-3 lines of qty 1-3, spread uniformly over the 40 nodes."""
    return [
        ReserveRequest(
            f"{tag}-{i}",
            rng.choice(NODES),
            tuple((rng.choice(SKUS), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))),
        )
        for i in range(n)
    ]


def median_rate(runs: int, count: int, fn: Callable[[int], None]) -> float:
    """Median items/s of `runs` timed calls of fn(run_index), each handling `count` items."""
    rates = []
    for run in range(runs):
        start = time.perf_counter()
        fn(run)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def server_usec(client: redis.Redis, command: str) -> tuple[int, int]:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="batches of 500 per run")
    parser.add_argument("--single", type=int, default=3000, help="orders per one-at-a-time run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)

    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        server = start_redis(Path(tmp))
        try:
            client = redis.Redis(port=server.port)
            ledger = Ledger(client)
            ledger.apply_inventory(
                [InventoryUpdate(n, s, 1, "snapshot", 10**9) for n in NODES for s in SKUS]
            )
            try:
                import hiredis  # type: ignore[import-not-found]  # noqa: F401
                parser_name = "hiredis"
            except ImportError:
                parser_name = "pure-Python parser (no hiredis)"
            print(f"redis-server {client.info()['redis_version']}, redis-py {redis.__version__}, "
                  f"{parser_name}; {len(NODES)} nodes, {BATCH} orders/batch, 1-3 lines each, "
                  f"median of {args.runs} runs")

            # ledger, batched: one pipeline round trip per 500 orders
            batches = {
                r: [make_orders(rng, f"b{r}-{b}", BATCH) for b in range(args.batches)]
                for r in range(args.runs)
            }
            calls0, usec0 = server_usec(client, "evalsha")

            def batched(run: int) -> None:
                for batch in batches[run]:
                    ledger.reserve(batch, DAY)

            rate = median_rate(args.runs, args.batches * BATCH, batched)
            calls1, usec1 = server_usec(client, "evalsha")
            per_order = (usec1 - usec0) / (args.runs * args.batches * BATCH)
            print(f"  Ledger.reserve, batches of {BATCH} over {len(NODES)} nodes  "
                  f"{rate:>9,.0f} orders/s  (server {per_order:.1f} us/order, "
                  f"{(usec1 - usec0) / max(calls1 - calls0, 1):.0f} us per EVALSHA)")

            # ledger, one order per call (one round trip per order)
            singles = {r: make_orders(rng, f"s{r}", args.single) for r in range(args.runs)}

            def one_by_one(run: int) -> None:
                for order in singles[run]:
                    ledger.reserve([order], DAY)

            single_rate = median_rate(args.runs, args.single, one_by_one)
            print(f"  Ledger.reserve, one order per call            {single_rate:>9,.0f} orders/s"
                  f"  (batched is {rate / single_rate:.1f}x)")

            # the PERFORMANCE-NOTES ceilings, same server, same run
            sha = client.script_load(BASELINE_LUA)
            base_orders = {r: make_orders(rng, f"c{r}", args.batches * BATCH)
                           for r in range(args.runs)}

            def raw_pipelined(run: int) -> None:
                orders = base_orders[run]
                for start in range(0, len(orders), BATCH):
                    pipe = client.pipeline(transaction=False)
                    for o in orders[start:start + BATCH]:
                        argv = [x for sku, q in o.lines for x in (f"oh:{sku}", q)]
                        pipe.execute_command("EVALSHA", sha, 1, ledger.node_keys(o.node_id)[0],
                                             *argv)
                    pipe.execute()

            def raw_single(run: int) -> None:
                for o in base_orders[run][: args.single]:
                    argv = [x for sku, q in o.lines for x in (f"oh:{sku}", q)]
                    client.evalsha(sha, 1, ledger.node_keys(o.node_id)[0], *argv)

            raw_rate = median_rate(args.runs, args.batches * BATCH, raw_pipelined)
            raw_single_rate = median_rate(args.runs, args.single, raw_single)
            print(f"  baseline: raw EVALSHA per order, pipelined 500 {raw_rate:>9,.0f} orders/s")
            print(f"  baseline: raw EVALSHA per order, one at a time {raw_single_rate:>9,.0f}"
                  " orders/s")

            # the other hot calls of the routing flow, for scale
            skus = SKUS[:200]
            avail_rate = median_rate(args.runs, 50, lambda _r: [
                ledger.availability(NODES, skus, DAY) for _ in range(50)])
            print(f"  Ledger.availability, {len(NODES)} nodes x {len(skus)} skus    "
                  f"{avail_rate:>9,.0f} calls/s ({1000 / avail_rate:.2f} ms each)")
            reserved = {n: [] for n in NODES}
            for batch in batches[0]:
                for o in batch:
                    reserved[o.node_id].append(o.order_id)
            count = sum(len(v) for v in reserved.values())
            start = time.perf_counter()
            for i in range(0, max(len(v) for v in reserved.values()), 13):
                ledger.release({n: v[i:i + 13] for n, v in reserved.items() if v[i:i + 13]}, DAY)
            print(f"  Ledger.release, ~500 orders per call           "
                  f"{count / (time.perf_counter() - start):>9,.0f} orders/s")
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
