"""The ledger of tmdb_titles loads (`raw.tmdb_batches`) and the rows a failed gate held back.

Every ingest is a batch, and the batch says where each record it read went:

    read = loaded + held + quarantined + skipped + duplicates      loaded = inserted + updated + unchanged

`read` is what the source delivered plus the ids it looked up that TMDB no longer has (`skipped`,
TMDB 404s); `duplicates` are earlier copies of a title within the batch (the last copy wins). The
table's CHECK constraint refuses a row whose counts do not add up.

A batch whose reject ratio is over the limit is `held`: its valid rows wait in
`raw.tmdb_held_titles` and reach `raw.tmdb_titles` (and dbt) only when an operator releases it
(`raw_store.release_batch`) or reruns the same file with `accept_rejects`. Writing lives in
`raw_store`; this module reads and describes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from gateway_pipelines.lib.tmdb.records import Reject

BATCH_STATUSES: tuple[str, ...] = ("loaded", "held", "released")
TOP_REASONS = 10
EXAMPLES = 5
EXAMPLE_CHARS = 240


class BatchError(ValueError):
    """An operation on a batch that cannot succeed as asked (unknown id, not held); retrying won't help."""


@dataclass(frozen=True)
class BatchCounts:
    """Where the records of one batch went. `adds_up` is the identity the ledger enforces."""

    read: int
    inserted: int
    updated: int
    unchanged: int
    held: int
    quarantined: int
    skipped: int
    duplicates: int

    @property
    def loaded(self) -> int:
        return self.inserted + self.updated + self.unchanged

    @property
    def adds_up(self) -> bool:
        return self.read == self.loaded + self.held + self.quarantined + self.skipped + self.duplicates

    def identity(self) -> str:
        """The identity with its numbers, as a person reads it in the UI or the CLI."""
        sign = "=" if self.adds_up else "≠"
        return (f"read {self.read} {sign} loaded {self.loaded} ({self.inserted} new, {self.updated} changed, "
                f"{self.unchanged} unchanged) + held {self.held} + quarantined {self.quarantined} "
                f"+ skipped {self.skipped} (404) + duplicates {self.duplicates}")


@dataclass(frozen=True)
class ReasonCount:
    field: str
    reason: str
    count: int


@dataclass(frozen=True)
class RejectExample:
    field: str
    reason: str
    record: str  # compact JSON, cut to EXAMPLE_CHARS


@dataclass(frozen=True)
class BatchRecord:
    """One row of raw.tmdb_batches."""

    batch_id: int
    partition: date
    source: str
    file_name: str | None
    file_sha256: str | None
    content_sha256: str
    batch_key: str
    status: str
    counts: BatchCounts
    reject_ratio: float
    max_reject_ratio: float
    accepted_rejects: bool
    reasons: tuple[ReasonCount, ...]
    examples: tuple[RejectExample, ...]
    run_id: str | None
    released_run_id: str | None
    created_at: datetime
    released_at: datetime | None
    loader_version: str | None = None  # the loader that counted it (lib/tmdb/unchanged.py)
    raw_watermark: str | None = None  # raw's fingerprint right after its rows were last merged
    applied_at: datetime | None = None  # when that was

    @property
    def top_reason(self) -> ReasonCount | None:
        return self.reasons[0] if self.reasons else None


BATCH_COLUMNS = """
    batch_id, partition_date, source, file_name, file_sha256, content_sha256, batch_key, status,
    records_read, inserted, updated, unchanged, held, quarantined, skipped_missing, duplicates,
    reject_ratio, max_reject_ratio, accepted_rejects, reject_reasons, reject_examples,
    run_id, released_run_id, created_at, released_at, loader_version, raw_watermark, applied_at
"""

GET_BATCH_SQL = "SELECT" + BATCH_COLUMNS + "FROM raw.tmdb_batches WHERE batch_id = %s"
GET_BATCH_FOR_UPDATE_SQL = GET_BATCH_SQL + " FOR UPDATE"
PEEK_BATCH_SQL = (
    "SELECT" + BATCH_COLUMNS + "FROM raw.tmdb_batches WHERE partition_date = %s AND source = %s AND batch_key = %s"
)
FIND_BATCH_SQL = PEEK_BATCH_SQL + " FOR UPDATE"
# Optional filters as NULL-tolerant parameters: one statement, nothing spliced into the SQL.
LIST_BATCHES_SQL = (
    "SELECT" + BATCH_COLUMNS + """FROM raw.tmdb_batches
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(partition)s::date IS NULL OR partition_date = %(partition)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
ORDER BY batch_id DESC
LIMIT %(limit)s"""
)
HELD_ROWS_SQL = "SELECT count(*) FROM raw.tmdb_held_titles WHERE batch_id = %s"


def _record(row: Sequence) -> BatchRecord:
    (batch_id, partition, source, file_name, file_sha256, content_sha256, batch_key, status, read, inserted,
     updated, unchanged, held, quarantined, skipped, duplicates, ratio, max_ratio, accepted, reasons, examples,
     run_id, released_run_id, created_at, released_at, loader_version, raw_watermark, applied_at) = row
    return BatchRecord(
        batch_id=int(batch_id), partition=partition, source=source, file_name=file_name, file_sha256=file_sha256,
        content_sha256=content_sha256, batch_key=batch_key, status=status,
        counts=BatchCounts(read, inserted, updated, unchanged, held, quarantined, skipped, duplicates),
        reject_ratio=float(ratio), max_reject_ratio=float(max_ratio), accepted_rejects=bool(accepted),
        reasons=tuple(ReasonCount(r["field"], r["reason"], int(r["count"])) for r in reasons or []),
        examples=tuple(RejectExample(e["field"], e["reason"], e["record"]) for e in examples or []),
        run_id=run_id, released_run_id=released_run_id, created_at=created_at, released_at=released_at,
        loader_version=loader_version, raw_watermark=raw_watermark, applied_at=applied_at,
    )


def get_batch(conn: psycopg.Connection, batch_id: int, *, for_update: bool = False) -> BatchRecord | None:
    """The ledger row of `batch_id`, or None when there is no such batch."""
    row = conn.execute(GET_BATCH_FOR_UPDATE_SQL if for_update else GET_BATCH_SQL, (batch_id,)).fetchone()
    return _record(row) if row else None


def find_batch(conn: psycopg.Connection, partition: date, source: str, batch_key: str, *,
               lock: bool = True) -> BatchRecord | None:
    """The batch a load of this partition, source and key would be, locked for this transaction
    unless `lock` is False (a look that decides whether to load at all)."""
    row = conn.execute(FIND_BATCH_SQL if lock else PEEK_BATCH_SQL, (partition, source, batch_key)).fetchone()
    return _record(row) if row else None


def list_batches(
    conn: psycopg.Connection,
    *,
    status: str | None = None,
    partition: date | None = None,
    source: str | None = None,
    limit: int = 50,
) -> list[BatchRecord]:
    """Batches newest first, optionally only one status ('loaded' | 'held' | 'released'), day or source."""
    if status is not None and status not in BATCH_STATUSES:
        raise BatchError(f"status {status!r} is unknown; use one of {', '.join(BATCH_STATUSES)}")
    rows = conn.execute(
        LIST_BATCHES_SQL, {"status": status, "partition": partition, "source": source, "limit": limit}
    ).fetchall()
    return [_record(row) for row in rows]


def held_row_count(conn: psycopg.Connection, batch_id: int) -> int:
    return int(conn.execute(HELD_ROWS_SQL, (batch_id,)).fetchone()[0])


# -- describing rejects ------------------------------------------------------------
def summarise_rejects(rejects: Iterable[Reject], top: int = TOP_REASONS) -> list[ReasonCount]:
    """The most frequent (field, reason) pairs, the reason without values or line numbers."""
    counts = Counter((r.field, r.rule_or_reason) for r in rejects)
    return [ReasonCount(field, reason, n) for (field, reason), n in counts.most_common(top)]


def reject_examples(rejects: Iterable[Reject], n: int = EXAMPLES) -> list[RejectExample]:
    """Up to n rejects, one per distinct reason first, so the examples show different problems."""
    first_of_kind: list[Reject] = []
    rest: list[Reject] = []
    seen: set[tuple[str, str]] = set()
    for reject in rejects:
        kind = (reject.field, reject.rule_or_reason)
        if kind not in seen:
            seen.add(kind)
            first_of_kind.append(reject)
        elif len(rest) < n:
            rest.append(reject)
    return [_example(r) for r in (first_of_kind + rest)[:n]]


def _example(reject: Reject) -> RejectExample:
    text = json.dumps(reject.record, ensure_ascii=False, separators=(",", ":"), default=str)
    return RejectExample(reject.field, _cut(reject.reason, EXAMPLE_CHARS), _cut(text, EXAMPLE_CHARS))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reasons_json(reasons: Iterable[ReasonCount]) -> str:
    return json.dumps([{"field": r.field, "reason": r.reason, "count": r.count} for r in reasons],
                      ensure_ascii=False)


def examples_json(examples: Iterable[RejectExample]) -> str:
    return json.dumps([{"field": e.field, "reason": e.reason, "record": e.record} for e in examples],
                      ensure_ascii=False)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def reasons_markdown(reasons: Sequence[ReasonCount]) -> str:
    if not reasons:
        return "No record was rejected."
    lines = ["| field | reason | count |", "|---|---|---:|"]
    lines += [f"| {_cell(r.field)} | {_cell(r.reason)} | {r.count} |" for r in reasons]
    return "\n".join(lines)


def examples_markdown(examples: Sequence[RejectExample]) -> str:
    if not examples:
        return "No record was rejected."
    lines = ["| field | reason | record (truncated) |", "|---|---|---|"]
    lines += [f"| {_cell(e.field)} | {_cell(e.reason)} | `{_cell(e.record).replace('`', chr(39))}` |"
              for e in examples]
    return "\n".join(lines)
