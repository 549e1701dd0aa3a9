"""A tiny stateful bytewax flow that test_recovery_layout runs as the processes of a cluster.

`python -m tests.test_deploy.recovery_probe PROCESS_ID ADDRESSES RECOVERY_DIR` prints one line
`resume <partition> <state>` per source partition it builds (state None = fresh), then counts
forever, snapshotting its counters every epoch, until killed.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main


class _Counter(StatefulSourcePartition[int, int]):
    def __init__(self, name: str, state: int | None) -> None:
        print(f"resume {name} {state}", flush=True)
        self._n = state or 0

    def next_batch(self) -> list[int]:
        time.sleep(0.02)
        self._n += 1
        return [self._n]

    def snapshot(self) -> int:
        return self._n


class _Counters(FixedPartitionedSource[int, int]):
    def list_parts(self) -> list[str]:
        return ["a", "b", "c", "d"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Counter:
        return _Counter(for_part, resume_state)


class _Discard(StatelessSinkPartition[int]):
    def write_batch(self, items: list[int]) -> None:
        pass


class _Nowhere(DynamicSink[int]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard()


def main(argv: list[str]) -> None:
    process_id, addresses, recovery_dir = int(argv[0]), argv[1].split(";"), Path(argv[2])
    flow = Dataflow("recovery-probe")
    op.output("out", op.input("in", flow, _Counters()), _Nowhere())
    cli_main(flow, process_id=process_id, addresses=addresses,
             epoch_interval=timedelta(seconds=0.2), recovery_config=RecoveryConfig(recovery_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
