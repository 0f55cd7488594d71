"""Serving `ef_search` that meets the recall target within a latency budget, chosen by measurement.

New titles can make a healthy index's recall dip under the target at the configured ef_search
(dense, low-diversity clusters). Failing the run then would stop data that is fine. Instead the
recall check raises ef_search step by step (doubling, up to `max_ef_search`), measures recall and
p99 at each, and serves the smallest setting that meets the target with p99 inside the budget.
Only when no such setting exists does the check fail. The choice is recorded in
`meta.serving_settings`, and search reads it from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from .recall import RecallPoint, measure_recall

TABLE = "vectors.content_vectors"
SETTING = "hnsw.ef_search"

UPSERT_SQL = """
INSERT INTO meta.serving_settings (table_name, setting, value, configured, recall, p99_ms, reason, chosen_at,
                                   table_rows, built_at, tuned_for)
VALUES (%(table)s, %(setting)s, %(value)s, %(configured)s, %(recall)s, %(p99)s, %(reason)s, now(), %(rows)s,
        %(built_at)s, %(tuned_for)s)
ON CONFLICT (table_name, setting) DO UPDATE
    SET value = EXCLUDED.value, configured = EXCLUDED.configured, recall = EXCLUDED.recall,
        p99_ms = EXCLUDED.p99_ms, reason = EXCLUDED.reason, chosen_at = EXCLUDED.chosen_at,
        table_rows = EXCLUDED.table_rows, built_at = EXCLUDED.built_at, tuned_for = EXCLUDED.tuned_for
"""
# the last choice, with the table state it was measured on
LAST_SQL = """
SELECT value, configured, recall, p99_ms, reason, chosen_at, table_rows, built_at,
       (SELECT max(greatest(created_at, updated_at)) FROM vectors.content_vectors) <= chosen_at, tuned_for
  FROM meta.serving_settings WHERE table_name = %s AND setting = %s
"""
SERVING_SQL = "SELECT value, configured FROM meta.serving_settings WHERE table_name = %s AND setting = %s"


@dataclass(frozen=True)
class Tuning:
    configured: RecallPoint
    chosen: RecallPoint  # what search serves: the configured point, or the raised one
    tried: tuple[RecallPoint, ...]  # the raised settings measured, in order
    target: float
    budget_ms: float

    @property
    def raised(self) -> bool:
        return self.chosen.ef_search != self.configured.ef_search

    @property
    def reason(self) -> str:
        c = self.configured
        if c.recall >= self.target:
            return f"configured ef_search={c.ef_search} meets recall {self.target:g} ({c.recall:.3f})"
        if self.raised:
            ch = self.chosen
            return (f"raised ef_search {c.ef_search}→{ch.ef_search}: recall {c.recall:.3f}→{ch.recall:.3f} meets "
                    f"{self.target:g} with p99 {ch.p99_ms:.2f} ms inside the {self.budget_ms:g} ms budget")
        tried = ", ".join(f"{p.ef_search}: {p.recall:.3f} @ p99 {p.p99_ms:.2f} ms" for p in self.tried) or "none"
        return (f"no ef_search up to the limit meets recall {self.target:g} within p99 {self.budget_ms:g} ms "
                f"(tried {tried}); rebuild the index with a larger m or ef_construction")


def ef_ladder(start: int, max_ef: int) -> list[int]:
    """The settings to try above `start`: doubling, ending exactly at `max_ef`."""
    steps, ef = [], start
    while ef < max_ef:
        ef = min(ef * 2, max_ef)
        steps.append(ef)
    return steps


def tune_ef_search(
    conn: psycopg.Connection,
    queries: np.ndarray,
    *,
    k: int,
    configured: int,
    target: float,
    budget_ms: float,
    max_ef: int,
    exact_ids: Sequence[Sequence[str]] | None = None,
) -> Tuning:
    """Measure at `configured`; under `target`, climb the ladder until a setting meets it within budget."""
    from .recall import exact_neighbours

    exact = exact_ids if exact_ids is not None else exact_neighbours(conn, queries, k=k)
    [point] = measure_recall(conn, queries, k=k, ef_search_values=(configured,), exact_ids=exact)
    tried: list[RecallPoint] = []
    chosen = point
    if point.recall < target:
        for ef in ef_ladder(configured, max_ef):
            [candidate] = measure_recall(conn, queries, k=k, ef_search_values=(ef,), exact_ids=exact)
            tried.append(candidate)
            if candidate.p99_ms > budget_ms:
                break  # latency only grows with ef_search
            if candidate.recall >= target:
                chosen = candidate
                break
    return Tuning(point, chosen, tuple(tried), target, budget_ms)


def tuned_for(*, target: float, budget_ms: float, max_ef: int, queries: int) -> str:
    """The parameters a choice depends on besides the table: a choice made under others is not reused."""
    return f"target={target:g} budget_ms={budget_ms:g} max_ef={int(max_ef)} queries={int(queries)}"


def record(conn: psycopg.Connection, tuning: Tuning, *, table_rows: int | None = None,
           built_at=None, params: str | None = None) -> None:
    """Store what search must serve (the configured setting unless it was raised), and the table
    state (rows, index build) it was measured on."""
    chosen = tuning.chosen
    conn.execute(UPSERT_SQL, {
        "table": TABLE, "setting": SETTING, "value": chosen.ef_search, "configured": tuning.configured.ef_search,
        "recall": chosen.recall, "p99": chosen.p99_ms, "reason": tuning.reason, "rows": table_rows,
        "built_at": built_at, "tuned_for": params,
    })


@dataclass(frozen=True)
class LastTuning:
    value: int
    configured: int
    recall: float | None
    p99_ms: float | None
    reason: str
    chosen_at: object


def still_valid(conn: psycopg.Connection, *, configured: int, table_rows: int, built_at,
                params: str) -> LastTuning | None:
    """The last recorded choice when it was measured for this configuration on this very table state
    (same rows, same index build, nothing written since), else None: measure again."""
    try:
        with conn.transaction():
            row = conn.execute(LAST_SQL, (TABLE, SETTING)).fetchone()
    except psycopg.errors.UndefinedColumn:
        return None
    if row is None or row[1] != configured or row[6] is None or int(row[6]) != int(table_rows):
        return None
    if built_at is None or row[7] != built_at or not row[8] or row[9] != params:
        return None
    return LastTuning(int(row[0]), int(row[1]), row[2], row[3], row[4], row[5])


def serving_ef_search(conn: psycopg.Connection, configured: int) -> int:
    """The ef_search search should use: the tuned one when it was chosen for this configuration."""
    try:
        with conn.transaction():
            row = conn.execute(SERVING_SQL, (TABLE, SETTING)).fetchone()
    except psycopg.errors.UndefinedTable:
        return configured
    if row is None or row[1] != configured:
        return configured  # chosen for another configuration: the configured value is the intent now
    return max(int(row[0]), configured)
