"""A token bucket per destination: chat bots reject (or silently drop) bursts.

`rate_per_s` tokens accrue continuously up to `burst`; each message takes one. `wait_s` says
how long until one is available, so the sender sleeps instead of being throttled by the service.
The clock is injectable, so tests check the arithmetic without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1; got {rate_per_s}, {burst}")
        self.rate, self.burst, self._clock = rate_per_s, float(burst), clock
        self._tokens, self._at = float(burst), clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_s(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> bool:
        """Take a token if one is available."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
