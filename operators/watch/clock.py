"""Event time for the watchtower: one low watermark over every input partition.

Detectors reason in event time (the `occurred_at` of what they saw), and both windows and timers
need to know when event time has *passed* a point: a window closes, an order never routed
becomes stuck. bytewax's `EventClock` answers per key with "the largest timestamp seen, minus a
lateness allowance, plus the system time since" — right for one ordered stream, wrong for many
partitions read unevenly: when a backlog is read (a start from `earliest`, a catch-up), one
partition runs minutes ahead of another, and everything the slower ones hold becomes "late" and
is dropped.

`StreamClock` is the low watermark of all inputs, as Kafka Streams and Flink define stream time:
the minimum over partitions of how far each has been read. Each partition's contribution is

- its latest event time, advanced with the wall clock since it was read **if it was read live**
  (the message was stamped less than `live_lag_ms` before we read it: nothing older is coming
  from it, so silence there means time passes — this is what fires timers and closes windows
  when a sparse partition, or a whole channel, goes quiet);
- its latest event time, not advanced, **while it is behind** (a backlog being read: older data
  from it may still come, so it holds the others back);
- and once a partition has said nothing for `idle_ms`, it is caught up: whatever it sends next
  is live data, so it moves with the wall clock (minus `idle_ms`) and stops holding the others
  back (an input that went quiet after a replay does not freeze the clock).

The watermark is that minimum minus `lateness_ms` (disorder within a partition, clock skew), and
never goes back. Pure: callers pass the wall time (ms); one instance is shared by every step of a
flow (one process; its worker threads).

    >>> c = StreamClock(lateness_ms=100, live_lag_ms=1000, idle_ms=2000)
    >>> c.observe(("orders", 0), 10_000, wall_ms=10_050)     # read live
    >>> c.observe(("orders", 1), 4_000, wall_ms=10_050)      # a backlog
    >>> c.watermark(10_050), c.watermark(11_050)             # held back by partition 1
    (3900, 3900)
    >>> c.watermark(12_100)                                  # partition 1 idle for 2 s
    10000
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

#: Events stamped further in the future than this (clock skew, a bad producer) do not drag the
#: clock ahead of the wall clock.
MAX_FUTURE_MS = 60_000
#: A wake-up is never scheduled closer than this (no busy loop on a deadline just ahead).
MIN_WAKE_MS = 20


@dataclass(slots=True)
class _Part:
    latest: int | None  # latest event time read from the partition (None: nothing yet)
    read_at: int  # wall time it was read (or expected, for a partition not read yet)
    live: bool  # read within live_lag_ms of its own stamp


@dataclass
class StreamClock:
    """The low watermark of a flow's inputs (see the module docstring)."""

    lateness_ms: int = 500
    live_lag_ms: int = 2_000
    idle_ms: int = 2_000
    _parts: dict[Hashable, _Part] = field(default_factory=dict)
    _last: int | None = None
    _cache: tuple[int, int | None] = (-1, None)  # (wall ms, watermark) of the last call
    _low_cache: tuple[int, int | None] = (-1, None)  # (wall ms, low) of the last call

    def expect(self, partition: Hashable, wall_ms: int) -> None:
        """A partition the flow reads: until it delivers something (or stays silent for
        `idle_ms`), event time cannot be known to have passed anything."""
        self._parts.setdefault(partition, _Part(None, wall_ms, False))
        self._cache = self._low_cache = (-1, None)

    def observe(self, partition: Hashable, event_ms: int, wall_ms: int) -> None:
        """The latest event time read from `partition` (at wall time `wall_ms`)."""
        event_ms = min(int(event_ms), wall_ms + MAX_FUTURE_MS)
        part = self._parts.get(partition)
        live = wall_ms - event_ms <= self.live_lag_ms
        if part is None:
            self._parts[partition] = _Part(event_ms, wall_ms, live)
        else:
            part.read_at = wall_ms
            if part.latest is None or event_ms >= part.latest:
                part.latest, part.live = event_ms, live
        self._cache = self._low_cache = (-1, None)

    def _low(self, wall_ms: int) -> int | None:
        """The minimum over partitions; every key of every step asks within the same
        millisecond, so it is computed once per wall ms (and again after an observation)."""
        at, cached = self._low_cache
        if at == wall_ms:
            return cached
        low = self._compute_low(wall_ms)
        self._low_cache = (wall_ms, low)
        return low

    def _compute_low(self, wall_ms: int) -> int | None:
        lows = []
        for p in list(self._parts.values()):
            quiet = wall_ms - p.read_at
            if p.latest is None:
                if quiet < self.idle_ms:
                    return None  # an expected partition has not spoken yet
                continue  # empty: it holds nothing back
            if p.live:
                lows.append(p.latest + max(0, quiet))
            elif quiet >= self.idle_ms:  # read to its end: from now on, new data is live data
                lows.append(max(p.latest, wall_ms - self.idle_ms))
            else:
                lows.append(p.latest)
        return min(lows) if lows else None

    def now(self, wall_ms: int) -> int | None:
        """Event time every input has reached (None before any input)."""
        return self._low(wall_ms)

    def watermark(self, wall_ms: int) -> int | None:
        """Event time before which nothing more is expected; never decreases."""
        at, cached = self._cache
        if at == wall_ms:
            return cached
        low = self._low(wall_ms)
        if low is not None:
            mark = low - self.lateness_ms
            self._last = mark if self._last is None else max(self._last, mark)
        self._cache = (wall_ms, self._last)
        return self._last

    def wake_at(self, deadline_ms: int, wall_ms: int) -> int:
        """Wall time (ms) worth checking again for the event-time `deadline_ms`.

        While every input is live, event time moves with the wall clock: wake when the
        watermark reaches the deadline. While an input is behind (a backlog), event time can
        jump forward as soon as it catches up, so check again within `idle_ms / 2`.
        """
        mark, low = self.watermark(wall_ms), self._low(wall_ms)
        ahead = deadline_ms - (mark if mark is not None else deadline_ms)
        if low is None or wall_ms - low > self.live_lag_ms:
            ahead = min(ahead, self.idle_ms // 2)
        return wall_ms + max(MIN_WAKE_MS, ahead)
