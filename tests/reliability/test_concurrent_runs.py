"""Two builds of the staging model at once never duplicate a title (they used to, 1 trial in 3).

The race is forced rather than hoped for: the test holds a lock on the raw table, starts two builds,
waits until both are blocked on it, and lets go, so that both reach their delete+insert together.
"""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg

from gateway_pipelines.lib.tmdb.raw_store import ingest
from gateway_pipelines.lib.tmdb.sources import SampleSource
from tests.integration.vector_store.data import dbt_build

TRIALS = 2
TITLES = 1200
WAITING_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type IN ('Lock', 'Advisory') AND pid <> pg_backend_pid()
"""


def _both_blocked(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as watcher:
        while watcher.execute(WAITING_SQL).fetchone()[0] < 2:
            assert time.monotonic() < deadline, "the two builds never both waited on the raw table"
            time.sleep(0.1)


def test_concurrent_staging_builds_never_duplicate_and_both_succeed(conn, fresh_db):
    source = SampleSource(n_movies=TITLES, n_tv=0)
    ingest(conn, source.records(date(2026, 4, 2)), source="sample", partition=date(2026, 4, 2))
    conn.commit()
    dbt_build(fresh_db, "run", "--select", "stg_tmdb__titles")  # the first build creates the table
    for trial in range(TRIALS):
        errors: list[BaseException] = []

        def build() -> None:
            try:
                dbt_build(fresh_db, "run", "--select", "stg_tmdb__titles")
            except BaseException as exc:  # noqa: BLE001 - reported below, with the trial
                errors.append(exc)

        with psycopg.connect(fresh_db) as gate:
            gate.execute("LOCK TABLE raw.tmdb_titles IN ACCESS EXCLUSIVE MODE")
            threads = [threading.Thread(target=build) for _ in range(2)]
            for t in threads:
                t.start()
            _both_blocked(fresh_db)
        for t in threads:  # the gate's transaction ended with the block: both go at once
            t.join()
        rows, keys = conn.execute(
            "SELECT count(*), count(DISTINCT content_key) FROM analytics.stg_tmdb__titles").fetchone()
        conn.commit()
        assert not errors, f"trial {trial}: {errors}"
        assert (rows, keys) == (TITLES, TITLES), f"trial {trial}: {rows} rows for {keys} keys"
