"""bytewax adapters for the watchtower's pure detectors: keyed state, event time, state sizes.

Every detector in `operators/watch/` is plain Python with no notion of bytewax: it takes an item
and the current event time, returns outputs, and says when it next needs to look (`deadline`, in
event time) and whether it holds anything (`empty`). `DetectorLogic` is the one
`StatefulBatchLogic` that runs them all:

- event time is the flow's shared `StreamClock` (the low watermark of every input partition, fed
  by the parse step): a detector's timers fire when the watermark passes their deadline, and
  bytewax is asked to wake the key when that should happen (`notify_at`);
- windows use the same watermark through `StreamWindowClock`, a bytewax `Clock`, so a window
  closes when *every* input has passed its end, not when the fastest partition has;
- a key whose detector is empty is discarded at once (`DISCARD`): no per-key state outlives its
  data, which is what keeps the flow's memory bounded;
- a `StateSizes` counts live keys and entries per step (tests read it; gauges export it; one per
  flow, `STATE` by default).

Recovery: `snapshot()` returns None and nothing is restored: the watchtower's state is a cache of
the last hours of the streams, rebuilt by reading them again (see docs/alerts.md), and bytewax
calls `snapshot` on every touched key at every epoch, so copying big states would be wasted work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bytewax.operators import StatefulBatchLogic
from bytewax.operators.windowing import Clock, ClockLogic

from fulfil import watch_metrics as wm
from operators.watch.clock import StreamClock
from operators.watch.facts import WindowResult

__all__ = ["STATE", "DetectorLogic", "StateSizes", "StreamWindowClock", "WindowResult",
           "builder"]


class Detector(Protocol):
    """What `DetectorLogic` needs from a pure detector of one key."""

    def on_item(self, value: Any, now: int) -> list[Any]: ...
    def on_timer(self, watermark: int) -> list[Any]: ...
    def deadline(self) -> int | None: ...
    def empty(self) -> bool: ...
    def size(self) -> int: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def event_time(value: Any) -> int:
    """The event time (ms) of anything a detector receives (facts, windows, verdicts)."""
    for name in ("ts", "at", "end"):
        ts = getattr(value, name, None)
        if ts is not None:
            return int(ts)
    if isinstance(value, tuple) and value and isinstance(value[0], int):
        return value[0]
    return now_ms()


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def from_datetime(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


# ---------------------------------------------------------------------- windows


class _StreamClockLogic(ClockLogic[Any, None]):
    def __init__(self, clock: StreamClock, ts_of: Callable[[Any], int]) -> None:
        self._clock, self._ts_of = clock, ts_of
        self._wall = now_ms()
        self._mark = datetime.min.replace(tzinfo=UTC)

    def _watermark(self) -> datetime:
        mark = self._clock.watermark(self._wall)
        if mark is not None:
            self._mark = max(self._mark, to_datetime(mark))
        return self._mark

    def before_batch(self) -> None:
        self._wall = now_ms()

    def on_item(self, value: Any) -> tuple[datetime, datetime]:
        return to_datetime(self._ts_of(value)), self._watermark()

    def on_notify(self) -> datetime:
        self._wall = now_ms()
        return self._watermark()

    def on_eof(self) -> datetime:
        # Not "close everything": a stopping flow must not judge half-filled windows.
        return self._watermark()

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        wall = now_ms()
        return to_datetime(self._clock.wake_at(from_datetime(timestamp), wall))

    def snapshot(self) -> None:
        return None


class StreamWindowClock(Clock[Any, None]):
    """bytewax windows in event time, closed by the flow's `StreamClock` watermark."""

    def __init__(self, clock: StreamClock, ts_of: Callable[[Any], int]) -> None:
        self._clock, self._ts_of = clock, ts_of

    def build(self, resume_state: None) -> _StreamClockLogic:
        return _StreamClockLogic(self._clock, self._ts_of)


# ---------------------------------------------------------------------- state sizes


class StateSizes:
    """Live keys and entries per step; exported as gauges at most once a second."""

    def __init__(self) -> None:
        self._sizes: dict[str, dict[int, int]] = {}
        self._published = 0.0
        self._lock = threading.Lock()

    def set(self, step: str, ident: int, size: int) -> None:
        self._sizes.setdefault(step, {})[ident] = size

    def drop(self, step: str, ident: int) -> None:
        self._sizes.get(step, {}).pop(ident, None)

    def totals(self) -> dict[str, tuple[int, int]]:
        """step -> (live keys, entries)."""
        with self._lock:
            out = {}
            for step, per_key in list(self._sizes.items()):
                sizes = list(per_key.values())
                out[step] = (len(sizes), sum(sizes))
            return out

    def maybe_publish(self) -> None:
        now = time.monotonic()
        if now - self._published < 1.0:
            return
        self._published = now
        for step, (keys, entries) in self.totals().items():
            wm.WATCH_STATE_KEYS.labels(step=step).set(keys)
            wm.WATCH_STATE_ENTRIES.labels(step=step).set(entries)


STATE = StateSizes()


# ---------------------------------------------------------------------- keyed detectors


class DetectorLogic(StatefulBatchLogic[tuple[str, Any], Any, None]):
    """Runs one key's detector; items arrive as (key, value) so the detector knows its key.

    A batch is handed over whole when the detector has `on_batch` (the incidents step merges
    every shard's partial of a batch before judging, so one lane change is one alert revision,
    not one per shard); otherwise item by item.
    """

    def __init__(self, step: str, make: Callable[[str], Detector], clock: StreamClock,
                 sizes: StateSizes) -> None:
        self._step, self._make, self._clock, self._sizes = step, make, clock, sizes
        self._det: Detector | None = None

    def on_batch(self, values: list[tuple[str, Any]]) -> tuple[list[Any], bool]:
        wall = now_ms()
        if self._det is None:
            self._det = self._make(values[0][0])
        det = self._det
        # "now" is how far every input has been read (items may run ahead of it: their own
        # times travel in them); before any input is known, the batch's own latest time.
        low = self._clock.now(wall)
        now = max(event_time(item) for _, item in values) if low is None else low
        batch_fn = getattr(det, "on_batch", None)
        if batch_fn is not None:
            out = batch_fn([item for _, item in values], now)
        else:
            out = []
            for _, item in values:
                out.extend(det.on_item(item, now))
        out.extend(self._due(wall))
        return out, self._done()

    def on_notify(self) -> tuple[list[Any], bool]:
        if self._det is None:
            return [], StatefulBatchLogic.DISCARD
        return self._due(now_ms()), self._done()

    def on_eof(self) -> tuple[list[Any], bool]:
        return [], self._det is None

    def notify_at(self) -> datetime | None:
        if self._det is None:
            return None
        due = self._det.deadline()
        return None if due is None else to_datetime(self._clock.wake_at(due, now_ms()))

    def snapshot(self) -> None:
        return None  # see the module docstring: the watchtower does not use recovery

    def _due(self, wall: int) -> list[Any]:
        det = self._det
        assert det is not None
        due, mark = det.deadline(), self._clock.watermark(wall)
        if due is None or mark is None or due > mark:
            return []
        return det.on_timer(mark)

    def _done(self) -> bool:
        det = self._det
        assert det is not None
        ident = id(self)
        if det.empty():
            self._sizes.drop(self._step, ident)
            self._det = None
            self._sizes.maybe_publish()
            return StatefulBatchLogic.DISCARD
        self._sizes.set(self._step, ident, det.size())
        self._sizes.maybe_publish()
        return StatefulBatchLogic.RETAIN


def builder(step: str, make: Callable[[str], Detector], clock: StreamClock,
            sizes: StateSizes | None = None) -> Callable[[Any], DetectorLogic]:
    """The `op.stateful_batch` builder of a detector step (resume state is ignored: see above)."""

    def build(_resume: Any) -> DetectorLogic:
        return DetectorLogic(step, make, clock, sizes or STATE)

    return build
