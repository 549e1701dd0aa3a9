"""The garbage-collector settings (fulfil/heap.py), in a fresh interpreter each: they are
process-wide and applied once per process, so no case may see another's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

from fulfil.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return orjson.loads(done.stdout.splitlines()[-1])


def test_the_heap_is_frozen_once_after_the_warmup_batches_and_new_garbage_is_still_collected(
) -> None:
    out = _run("""
        import gc, weakref, orjson
        from fulfil import heap, metrics
        seen = []
        step = heap.after_warmup(lambda batch: [x * 2 for x in batch], 3)
        keep = [{"startup": i} for i in range(1000)]  # a start-up heap, alive for good
        for i in range(5):
            assert step([i]) == [2 * i]
            seen.append(gc.get_freeze_count())
        frozen_gauge = metrics.HEAP_FROZEN._value.get()
        again = heap.freeze_heap()

        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze: still the collector's
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        print(orjson.dumps({"seen": seen, "gauge": frozen_gauge, "again": again,
                            "cycle_freed": gone() is None}).decode())
    """)
    before, at_third = out["seen"][:2], out["seen"][2]
    assert before == [0, 0]
    assert at_third > 1000  # the start-up objects went to the permanent generation
    assert out["seen"][3:] == [at_third, at_third]  # once per process
    # the gauge holds the count at the freeze (frozen objects freed later leave the count)
    assert at_third <= out["gauge"] <= at_third * 1.01
    assert out["again"] is False
    assert out["cycle_freed"] is True


def test_zero_turns_both_settings_off() -> None:
    out = _run("""
        import gc, orjson
        from fulfil import heap
        default = gc.get_threshold()
        heap.configure(0)
        step = heap.after_warmup(lambda batch: batch, 0)
        for _ in range(50):
            step([1])
        print(orjson.dumps({"default": default, "after": gc.get_threshold(),
                            "frozen": gc.get_freeze_count()}).decode())
    """)
    assert out["after"] == out["default"]
    assert out["frozen"] == 0


def test_the_threshold_is_set_once_per_process() -> None:
    out = _run("""
        import gc, orjson
        from fulfil import heap
        heap.configure(12000)
        first = gc.get_threshold()
        heap.configure(5000)  # a second flow in the same process does not fight the first
        print(orjson.dumps({"first": first, "second": gc.get_threshold()}).decode())
    """)
    assert out["first"][0] == 12000 and out["first"][1] >= 20
    assert out["second"] == out["first"]


def test_the_settings_come_from_the_environment() -> None:
    cfg = load_config(env={"FULFIL_GC_GEN0_THRESHOLD": "0",
                           "FULFIL_GC_FREEZE_AFTER_BATCHES": "5"})
    assert (cfg.gc_gen0_threshold, cfg.gc_freeze_after_batches) == (0, 5)
    assert load_config(env={}).gc_freeze_after_batches > 0  # on by default
