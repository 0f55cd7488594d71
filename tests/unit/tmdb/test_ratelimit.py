"""TokenBucket with a fake clock, plus real threads."""

from __future__ import annotations

import threading
import time

import pytest

from gateway_pipelines.lib.tmdb import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_spaces_calls_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    for _ in range(11):
        bucket.acquire()
    assert clock.now == pytest.approx(1.0)  # first call free, then 0.1 s apart


def test_capacity_allows_a_burst_then_refills() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, capacity=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert clock.sleeps == []
    bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.2)]
    clock.now += 10  # idle time refills only up to capacity
    for _ in range(5):
        bucket.acquire()
    assert len(clock.sleeps) == 1


def test_rejects_bad_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)


def test_thread_safe_under_contention() -> None:
    bucket = TokenBucket(50)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 40
    # 40 calls at 50/s with one token of burst need at least 39/50 s.
    assert stamps[-1] - stamps[0] >= 39 / 50 * 0.95
