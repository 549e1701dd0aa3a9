"""How fast the channel mappings turn raw payloads into canonical orders.

Prints, for the real Shopify orders/create and WooCommerce v3 samples (../shared/payloads,
read at run time): µs per payload for decoding (integers exact), mapping (the compiled closures)
and validating against the order_event contract, and payloads/s for the whole
`ChannelMapping.map_bytes` on one core (best of several repeats). With `--flow N` it also runs
the channels dataflow on an embedded broker over N preloaded payloads of each channel and prints
payloads/s end to end (Kafka in, map, Kafka out). No assertions: a measurement, not a test.

    .venv/bin/python benchmarks/mapping_bench.py [--n 20000] [--flow 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from operators.channels import load_mapping
from operators.channels.decode import decode_payload
from operators.channels.model import Scope
from schemas.validation import validate

PAYLOADS = Path(__file__).resolve().parents[2] / "shared" / "payloads"
SAMPLES = {"shopify": "shopify_orders_create.json", "woocommerce": "woocommerce_order_v3.json"}


def best_us(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Best mean µs per call over `repeats` runs of `n` calls."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best


def in_process(n: int) -> None:
    print(f"one core, best of 5 x {n:,} payloads")
    print(f"{'channel':12s} {'bytes':>6s} {'decode':>9s} {'map':>9s} {'validate':>9s} "
          f"{'map_bytes':>10s} {'payloads/s':>11s}")
    for name, file in SAMPLES.items():
        mapping = load_mapping(f"builtin:{name}")
        raw = (PAYLOADS / file).read_bytes()
        payload = decode_payload(raw)
        event = mapping.map_bytes(raw)

        def build(p: dict = payload, m: object = mapping, ch: str = name) -> object:
            return m.compiled.build(Scope(p, p, 0, {"type": "order.created", "channel": ch},
                                          "", {}))

        decode = best_us(lambda r=raw: decode_payload(r), n)
        mapped = best_us(build, n)
        check = best_us(lambda e=event: validate("order_event", e), n)
        whole = best_us(lambda r=raw, m=mapping: m.map_bytes(r), n)
        print(f"{name:12s} {len(raw):6d} {decode:7.1f}µs {mapped:7.1f}µs {check:7.1f}µs "
              f"{whole:8.1f}µs {1e6 / whole:11,.0f}")


def through_flow(n: int) -> None:
    """N payloads per channel preloaded on an embedded broker, then the channels flow."""
    from bytewax.testing import run_main
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    from dataflows.channels import build_flow
    from dataflows.connectors import ensure_topics, list_partitions
    from fulfil.channels_config import load_channels
    from fulfil.config import Config
    from fulfil.infra import embedded_stack

    with embedded_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "channels.yaml"
        path.write_text("channels:\n" + "".join(
            f"  {c}:\n    mapping: builtin:{c}\n    signature: {c}\n    secret: x\n"
            for c in SAMPLES))
        chans = load_channels(path)
        cfg = Config(kafka_bootstrap=stack.bootstrap, redis_url=stack.redis_url,
                     topic_prefix="bench.", fetch_wait_max_ms=50, epoch_interval_s=1.0)
        topics = {cfg.topic(s.topic_name()): s.partitions for s in chans.channels.values()}
        ensure_topics(cfg.kafka_common(), {**topics, cfg.topic("orders"): 8,
                                           cfg.topic("dead-letters"): 2})
        producer = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 20})
        for name, file in SAMPLES.items():
            raw = (PAYLOADS / file).read_bytes()
            for i in range(n):
                producer.produce(cfg.topic(f"channel.{name}"), raw, str(i).encode())
                if i % 1000 == 0:
                    producer.poll(0)
        producer.flush(120)
        consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "bench",
                             "fetch.wait.max.ms": "50"})
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in
                         list_partitions(cfg.kafka_common(), [cfg.topic("orders")])])
        stop = threading.Event()
        flow = build_flow(cfg, stop=stop, channels=chans)
        thread = threading.Thread(target=run_main, args=(flow,),
                                  kwargs={"epoch_interval": timedelta(seconds=1)}, daemon=True)
        started = time.perf_counter()
        thread.start()
        seen, first, deadline = 0, 0.0, time.monotonic() + 300
        while seen < 2 * n and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(1000, 0.2) if m.error() is None)
            if seen and not first:
                first = time.perf_counter()
        elapsed = time.perf_counter() - started
        steady = time.perf_counter() - first if first else float("nan")
        stop.set()
        thread.join(30)
        consumer.close()
        print(f"\nchannels flow, 1 worker, embedded broker: {seen:,} of {2 * n:,} payloads "
              f"({n:,} per channel) mapped into orders in {elapsed:.2f} s = "
              f"{seen / elapsed:,.0f} payloads/s including the flow's start-up; "
              f"{seen / steady:,.0f} payloads/s from the first order out to the last "
              "(both Kafka hops included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="payloads per timing run")
    parser.add_argument("--flow", type=int, default=0, metavar="N",
                        help="also run the channels flow over N payloads per channel")
    args = parser.parse_args()
    if not PAYLOADS.is_dir():
        sys.exit(f"{PAYLOADS} not found: the samples come from ../shared/payloads")
    in_process(args.n)
    if args.flow:
        through_flow(args.flow)


if __name__ == "__main__":
    main()
