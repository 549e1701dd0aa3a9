"""Garbage-collector settings for a long-running worker process.

Why: CPython's cyclic collector walks every tracked object of a generation. A worker's heap is
mostly what it built at start-up and never frees (the network, numba's compiled dispatchers,
the delivery model, lookup tables), so each full (generation 2) collection walked all of it:
~75 ms a time on this project's 2-core machine, in the middle of whatever batch allocated the
object that tipped the count. That made the routing step's batch-time p99 ~2.3x its median
(`benchmarks/router_bench.py`: p50 ~60 ms, p99 ~190 ms) and cost ~10% of its CPU.

Two standard remedies, both CPython's own API (`gc.freeze`, `gc.set_threshold`):

- **Freeze after warm-up.** Once a step has handled a few batches (numba compiled, caches and
  clients built), one `gc.collect()` then `gc.freeze()` moves everything alive into the
  permanent generation, which later collections skip. Objects made afterwards are collected
  as usual. The price: a reference cycle made during warm-up that becomes garbage later is
  never freed. What warm-up makes lives as long as the process, so that is a bounded few.
- **A larger generation-0 threshold** (700 by default): a batch of a thousand orders allocates
  tens of thousands of short-lived objects, most freed by reference counting before any
  collection sees them; collecting every 700 allocations walked the survivors over and over.

Both are configuration (`gc_gen0_threshold`, `gc_freeze_after_batches`; 0 turns either off) and
process-wide: every worker thread of a process shares one heap, so the freeze happens once.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from fulfil import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_configured = False
_frozen = False


def configure(gen0_threshold: int) -> None:
    """Set the generation-0 threshold once per process; 0 keeps Python's default."""
    global _configured
    with _lock:
        if _configured or gen0_threshold <= 0:
            return
        _configured = True
        _, gen1, gen2 = gc.get_threshold()
        # Fewer generation-0 runs means fewer generation-1 runs at the same ratio; keep the
        # older generations' pace roughly where it was by raising their ratios only modestly.
        gc.set_threshold(gen0_threshold, max(gen1, 20), gen2)


def after_warmup(step: Callable[[T], R], batches: int) -> Callable[[T], R]:
    """`step` (a flow's batch mapper), freezing the heap once it has run `batches` times;
    `step` itself when `batches` is 0 (nothing added to the step).

    One wrapper per step and process (bytewax shares a step's mapper between the worker
    threads of a process); the freeze itself is once per process, whichever step gets there
    first.
    """
    if batches <= 0:
        return step
    ran = 0

    def run(batch: T) -> R:
        nonlocal ran
        out = step(batch)
        if not _frozen:
            ran += 1
            if ran >= batches:
                freeze_heap()
        return out

    return run


def freeze_heap() -> bool:
    """Collect once, then move every live object into the permanent generation.

    Returns True if this call froze the heap (False: already done in this process).
    """
    global _frozen
    with _lock:
        if _frozen:
            return False
        _frozen = True
        t0 = time.perf_counter()
        gc.collect()
        gc.freeze()
        frozen = gc.get_freeze_count()
        metrics.HEAP_FROZEN.set(frozen)
        log.info("heap frozen after warm-up: %d objects in %.0f ms (gc threshold %s)",
                 frozen, (time.perf_counter() - t0) * 1000, gc.get_threshold())
        return True
