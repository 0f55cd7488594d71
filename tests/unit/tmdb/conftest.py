"""Fixtures for the TMDB unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_pipelines.lib.tmdb import TMDBClient
from tests.fakes.tmdb_server import FIXTURES, FakeTMDB, fake_tmdb  # noqa: F401 (fixture)


class SleepRecorder:
    """Stands in for time.sleep in backoff: records delays, never waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def client(fake_tmdb: FakeTMDB, sleeps: SleepRecorder) -> Iterator[TMDBClient]:
    # A high rate so tests that are not about pacing do not wait on the bucket.
    with TMDBClient(api_key=fake_tmdb.api_key, base_url=fake_tmdb.base_url, rate_per_second=1000,
                    max_retries=3, sleep=sleeps) as c:
        yield c
