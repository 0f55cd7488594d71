"""A thread-safe token bucket that paces calls to a steady rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Allow `rate` acquisitions per second with bursts of at most `capacity`.

    The default capacity is 1, so calls are evenly spaced: any one-second
    window then holds at most rate + 1 calls, which keeps us under TMDB's
    per-second limit even when the window is measured server side.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"TokenBucket rate={rate!r} must be > 0 (calls per second)")
        self.rate = float(rate)
        self.capacity = float(capacity) if capacity is not None else 1.0
        if not self.capacity > 0:
            raise ValueError(f"TokenBucket capacity={capacity!r} must be > 0")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._last = clock()

    def acquire(self, n: float = 1) -> float:
        """Block until `n` tokens are available; return the seconds waited."""
        if n <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            # Reserve now and sleep outside the lock: waiters queue in order
            # without holding each other up, and the debt paces later callers.
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
