"""Passthrough pipelines for the routing benchmark's baseline (no logic, same broker, same run).

    python benchmarks/passthrough.py bytewax BOOTSTRAP IN_TOPIC OUT_TOPIC   # our connectors
    python benchmarks/passthrough.py plain   BOOTSTRAP IN_TOPIC OUT_TOPIC   # confluent loop

Both run until killed. The bytewax one uses exactly the source/sink the routing flow uses, with
the same settings, so the ratio routing/passthrough isolates the cost of the routing logic.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from dataflows.connectors import (
    KafkaSink,
    KafkaSource,
    OutMessage,
    RawMessage,
    list_partitions,
)
from fulfil.config import load_config


def bytewax_passthrough(bootstrap: str, src: str, dst: str) -> None:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.run import cli_main

    cfg = load_config(kafka_bootstrap=bootstrap)  # FULFIL_* env, as for the engine
    kafka = cfg.kafka_common()
    flow = Dataflow("passthrough")
    inp = op.input("in", flow, KafkaSource(kafka, [src], slots=cfg.source_slots,
                                           batch_size=cfg.batch_size,
                                           fetch_wait_max_ms=cfg.fetch_wait_max_ms))

    def forward(batch: list[RawMessage]) -> list[tuple[str, OutMessage]]:
        return [(m.key.decode(), OutMessage(dst, m.key, m.value)) for m in batch]

    out = op.flat_map_batch("forward", inp, forward)
    op.output("out", out, KafkaSink(kafka, 16, linger_ms=cfg.producer_linger_ms))
    cli_main(flow, epoch_interval=timedelta(seconds=cfg.epoch_interval_s))


def plain_passthrough(bootstrap: str, src: str, dst: str) -> None:
    cfg = load_config(kafka_bootstrap=bootstrap)  # FULFIL_* env, as for the engine
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pt",
                         "enable.auto.commit": "false",
                         "fetch.wait.max.ms": str(cfg.fetch_wait_max_ms)})
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                     for t, p in list_partitions({"bootstrap.servers": bootstrap}, [src])])
    producer = Producer({"bootstrap.servers": bootstrap,
                         "linger.ms": str(cfg.producer_linger_ms)})
    while True:
        for m in consumer.consume(1000, 0.01):
            if m.error() is None:
                while True:
                    try:
                        producer.produce(dst, m.value(), m.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
        producer.poll(0)


if __name__ == "__main__":
    kind, bootstrap, src, dst = sys.argv[1:5]
    (bytewax_passthrough if kind == "bytewax" else plain_passthrough)(bootstrap, src, dst)
