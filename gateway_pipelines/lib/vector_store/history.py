"""Recall measurements across builds, in `meta.recall_measurements` (sql/008_recall_history.sql).

Each ``content_vectors`` materialisation measures the live index once (:func:`measure_serving_recall`:
a sweep over ef_search on sampled queries) and stores one row (:func:`record_measurement`): the
figures at the serving ef_search next to the parameters that produced them (table size, m,
ef_construction, the build measured, whether this run rebuilt the index), plus the whole sweep as
jsonb. :func:`recent_measurements` reads the last N back for the history plot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Sequence

import psycopg
from psycopg.types.json import Jsonb

from .index import DEFAULT_INDEX, DEFAULT_TABLE, IndexStatus
from .recall import DEFAULT_SWEEP, RecallPoint, ef_search_sweep, measure_recall, sample_queries

__all__ = [
    "HISTORY_POINTS",
    "RecallMeasurement",
    "measure_serving_recall",
    "recent_measurements",
    "record_measurement",
]

HISTORY_POINTS = 30  # measurements in the history plot: about a month of daily builds

INSERT_SQL = """
INSERT INTO meta.recall_measurements (
    table_name, index_name, built_at, table_rows, rows_at_last_build, m, ef_construction, ef_search, k,
    recall, p50_ms, p99_ms, queries, index_rebuilt, sweep, run_id)
VALUES (%(table_name)s, %(index_name)s, %(built_at)s, %(table_rows)s, %(rows_at_last_build)s, %(m)s,
        %(ef_construction)s, %(ef_search)s, %(k)s, %(recall)s, %(p50_ms)s, %(p99_ms)s, %(queries)s,
        %(index_rebuilt)s, %(sweep)s, %(run_id)s)
RETURNING id, measured_at
"""

# the newest `limit`, returned oldest first (the order they are plotted in)
RECENT_SQL = """
SELECT * FROM (
    SELECT id, table_name, index_name, measured_at, built_at, table_rows, rows_at_last_build, m, ef_construction,
           ef_search, k, recall, p50_ms, p99_ms, queries, index_rebuilt, sweep, run_id
      FROM meta.recall_measurements
     WHERE table_name = %(table_name)s AND index_name = %(index_name)s
     ORDER BY measured_at DESC, id DESC
     LIMIT %(limit)s
) newest ORDER BY measured_at, id
"""


@dataclass(frozen=True)
class RecallMeasurement:
    table_rows: int
    m: int
    ef_construction: int
    ef_search: int  # the serving value: recall / p50 / p99 below are at this setting
    k: int
    recall: float
    p50_ms: float
    p99_ms: float
    queries: int
    index_rebuilt: bool
    built_at: datetime | None = None
    rows_at_last_build: int | None = None
    sweep: tuple[RecallPoint, ...] = ()
    table_name: str = DEFAULT_TABLE
    index_name: str = DEFAULT_INDEX
    run_id: str | None = None
    id: int | None = None  # set once recorded
    measured_at: datetime | None = None  # set once recorded (the database's clock)


def measure_serving_recall(
    conn: psycopg.Connection,
    status: IndexStatus,
    *,
    serving_ef: int,
    index_rebuilt: bool,
    k: int = 10,
    n_queries: int = 100,
    seed: int = 0,
    sweep: Sequence[int] = DEFAULT_SWEEP,
) -> RecallMeasurement:
    """Sweep ef_search on ``n_queries`` sampled queries and describe the index at ``serving_ef``.

    ``status`` is the :func:`.index.index_status` of the index measured; a missing or invalid index
    is refused, since queries would then be answered by a sequential scan at a perfect, meaningless
    recall.
    """
    if not status.exists or not status.valid:
        raise ValueError(f"the HNSW index is {'missing' if not status.exists else 'invalid'}: nothing to measure")
    if status.rows_now == 0:
        raise ValueError("the table is empty: nothing to measure")
    values = ef_search_sweep(serving_ef, k=k, base=sweep)
    serving = max(int(serving_ef), int(k))
    queries = sample_queries(conn, n=n_queries, seed=seed)
    points = measure_recall(conn, queries, k=k, ef_search_values=values)
    at = next(p for p in points if p.ef_search == serving)
    return RecallMeasurement(
        table_rows=status.rows_now,
        m=int(status.m if status.m is not None else 0),
        ef_construction=int(status.ef_construction if status.ef_construction is not None else 0),
        ef_search=serving,
        k=int(k),
        recall=at.recall,
        p50_ms=at.p50_ms,
        p99_ms=at.p99_ms,
        queries=at.queries,
        index_rebuilt=bool(index_rebuilt),
        built_at=status.last_built_at,
        rows_at_last_build=status.rows_at_last_build,
        sweep=tuple(points),
    )


def record_measurement(
    conn: psycopg.Connection, measurement: RecallMeasurement, *, run_id: str | None = None
) -> RecallMeasurement:
    """Insert one row; returns the measurement with its id and ``measured_at``. Runs in
    ``conn.transaction()``: commits on an idle connection, a savepoint inside the caller's transaction."""
    row = asdict(measurement)
    row["sweep"] = Jsonb([asdict(p) for p in measurement.sweep])
    row["run_id"] = run_id if run_id is not None else measurement.run_id
    with conn.transaction():
        new_id, measured_at = conn.execute(INSERT_SQL, row).fetchone()
    return replace(measurement, id=int(new_id), measured_at=measured_at, run_id=row["run_id"])


_POINT_FIELDS = {f.name for f in fields(RecallPoint)}


def _points(raw: object) -> tuple[RecallPoint, ...]:
    items = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return tuple(RecallPoint(**{k: v for k, v in item.items() if k in _POINT_FIELDS}) for item in items)


def recent_measurements(
    conn: psycopg.Connection,
    limit: int = HISTORY_POINTS,
    *,
    table: str = DEFAULT_TABLE,
    index_name: str = DEFAULT_INDEX,
) -> list[RecallMeasurement]:
    """The last ``limit`` measurements of this index, oldest first."""
    if int(limit) < 1:
        raise ValueError(f"limit={limit}: must be at least 1")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(RECENT_SQL, {"table_name": table, "index_name": index_name, "limit": int(limit)})
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    out = []
    for r in rows:
        r["sweep"] = _points(r["sweep"])
        out.append(RecallMeasurement(**r))
    return out
