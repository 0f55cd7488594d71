"""Write validated titles and rejects into `raw`, idempotently, in one transaction.

Titles stream into a temporary staging table by COPY (Python memory stays flat however large the
file), then one statement merges them: the latest duplicate wins, unchanged content is not
touched (no new row, no new `fetched_at`), and a failure anywhere rolls back the whole load.

Every load is a batch in `raw.tmdb_batches` (see `batches`). When a batch's reject ratio is over
the limit, its valid rows are held in `raw.tmdb_held_titles` instead of merged, so nothing of a
suspect file reaches dbt until an operator releases it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timezone

import psycopg

from gateway_pipelines.lib.tmdb.batches import (
    BatchCounts,
    BatchError,
    BatchRecord,
    ReasonCount,
    RejectExample,
    examples_json,
    find_batch,
    get_batch,
    held_row_count,
    reasons_json,
    reject_examples,
    summarise_rejects,
)
from gateway_pipelines.lib.tmdb.records import Reject, SourceRecord, ValidTitle
from gateway_pipelines.lib.tmdb.unchanged import LOADER_VERSION, raw_watermark
from gateway_pipelines.lib.tmdb.validation import validate_record

DEFAULT_MAX_REJECT_RATIO = 0.05

STAGE_DDL = """
CREATE TEMP TABLE tmdb_titles_stage (
    seq          bigint  NOT NULL,
    id           integer NOT NULL,
    media_type   text    NOT NULL,
    payload      jsonb   NOT NULL,
    content_hash text    NOT NULL,
    ref          text
) ON COMMIT DROP
"""

# Rows of the stage that a later row of the same title supersedes, with the line that did.
SUPERSEDED_SQL = """
SELECT s.media_type, s.id, s.payload, s.ref, l.ref
FROM tmdb_titles_stage AS s
JOIN (
    SELECT DISTINCT ON (media_type, id) media_type, id, seq, ref
    FROM tmdb_titles_stage
    ORDER BY media_type, id, seq DESC
) AS l ON l.media_type = s.media_type AND l.id = s.id
WHERE s.seq < l.seq
ORDER BY s.seq
"""

# Distinct titles, and a digest of what was staged in read order (the batch's content checksum).
STAGE_SUMMARY_SQL = """
SELECT
    (SELECT count(*) FROM (SELECT DISTINCT media_type, id FROM tmdb_titles_stage) AS d),
    encode(sha256(convert_to(coalesce(
        string_agg(media_type || ':' || id || ':' || content_hash, ',' ORDER BY seq), ''), 'UTF8')), 'hex')
FROM tmdb_titles_stage
"""

MERGE_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (media_type, id) id, media_type, payload, content_hash
    FROM tmdb_titles_stage
    ORDER BY media_type, id, seq DESC
), upserted AS (
    INSERT INTO raw.tmdb_titles AS t (id, media_type, payload, content_hash, source, partition_date, fetched_at)
    SELECT id, media_type, payload, content_hash, %(source)s, %(partition)s, now()
    FROM latest
    ON CONFLICT (media_type, id) DO UPDATE
        SET payload = EXCLUDED.payload,
            content_hash = EXCLUDED.content_hash,
            source = EXCLUDED.source,
            partition_date = EXCLUDED.partition_date,
            fetched_at = EXCLUDED.fetched_at
        WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
    RETURNING (xmax = 0) AS inserted
)
SELECT
    (SELECT count(*) FROM latest),
    count(*) FILTER (WHERE inserted),
    count(*) FILTER (WHERE NOT inserted)
FROM upserted
"""

REJECT_SQL = """
INSERT INTO raw.tmdb_rejects (source, partition, record, record_hash, field, reason, kind)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source, partition, record_hash, field) DO NOTHING
"""

# Two loads of the same batch at once would both find no ledger row; this serialises them.
BATCH_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# Merges into raw.tmdb_titles take turns from the merge to their commit, so the watermark a load
# takes right after its merge is the state it left: no other load's merge can commit in between.
# Always the last lock a load takes (after the batch's), so the two cannot deadlock.
MERGE_LOCK_KEY = "raw.tmdb_titles merge"

# After a batch's rows went into raw (load, release or rerun): raw's state as it left it, and the
# loader whose counts the ledger holds (kept as it was when this run's reading differed from them).
# A rerun that changed nothing leaves the row alone, applied_at included: raw is still as it was then.
STAMP_APPLIED_SQL = """
UPDATE raw.tmdb_batches
SET raw_watermark = %(watermark)s, applied_at = now(), loader_version = coalesce(%(loader_version)s, loader_version)
WHERE batch_id = %(batch_id)s
  AND (raw_watermark IS DISTINCT FROM %(watermark)s
       OR loader_version IS DISTINCT FROM coalesce(%(loader_version)s, loader_version))
"""

HOLD_SQL = """
INSERT INTO raw.tmdb_held_titles (batch_id, id, media_type, payload, content_hash)
SELECT DISTINCT ON (media_type, id) %s::bigint, id, media_type, payload, content_hash
FROM tmdb_titles_stage
ORDER BY media_type, id, seq DESC
"""

STAGE_FROM_HELD_SQL = """
INSERT INTO tmdb_titles_stage (seq, id, media_type, payload, content_hash)
SELECT row_number() OVER (ORDER BY media_type, id), id, media_type, payload, content_hash
FROM raw.tmdb_held_titles
WHERE batch_id = %s
"""

DELETE_HELD_SQL = "DELETE FROM raw.tmdb_held_titles WHERE batch_id = %s"

INSERT_BATCH_SQL = """
INSERT INTO raw.tmdb_batches (
    partition_date, source, file_name, file_sha256, content_sha256, batch_key, status,
    records_read, inserted, updated, unchanged, held, quarantined, skipped_missing, duplicates,
    reject_ratio, max_reject_ratio, accepted_rejects, reject_reasons, reject_examples, run_id, loader_version)
VALUES (
    %(partition)s, %(source)s, %(file_name)s, %(file_sha256)s, %(content_sha256)s, %(batch_key)s, %(status)s,
    %(read)s, %(inserted)s, %(updated)s, %(unchanged)s, %(held)s, %(quarantined)s, %(skipped)s, %(duplicates)s,
    %(reject_ratio)s, %(max_reject_ratio)s, %(accepted_rejects)s, %(reasons)s, %(examples)s, %(run_id)s,
    %(loader_version)s)
RETURNING batch_id
"""

# A held batch let through: by a rerun of its file (this run's counts) or by release_batch.
RELEASE_BATCH_SQL = """
UPDATE raw.tmdb_batches
SET status = 'released',
    records_read = %(read)s, inserted = %(inserted)s, updated = %(updated)s, unchanged = %(unchanged)s,
    held = 0, quarantined = %(quarantined)s, skipped_missing = %(skipped)s, duplicates = %(duplicates)s,
    reject_ratio = %(reject_ratio)s, max_reject_ratio = %(max_reject_ratio)s,
    accepted_rejects = %(accepted_rejects)s, reject_reasons = %(reasons)s, reject_examples = %(examples)s,
    released_run_id = %(run_id)s, released_at = now()
WHERE batch_id = %(batch_id)s AND status = 'held'
"""


@dataclass
class IngestReport:
    """What one ingest did. Counts are this run's; `batch` is the ledger row as it stands after it.

    `action` says what happened to the batch: 'loaded' (new, merged), 'held' (new, over the limit),
    'still_held' (a rerun of a held batch that still fails: nothing written), 'released' (a rerun of
    a held batch that now passes: merged), 'reloaded' (a rerun of a loaded batch: merged again,
    normally changing nothing).
    """

    source: str
    partition: str
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO
    records_in: int = 0  # delivered by the source (404s are not delivered: see `missing`)
    valid: int = 0
    distinct: int = 0
    merged: int = 0  # distinct titles that went through the merge (0 when held)
    inserted: int = 0
    updated: int = 0
    held: int = 0
    rejected: int = 0
    missing: int = 0
    rejects_new: int = 0
    warnings: int = 0
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    reasons: list[ReasonCount] = field(default_factory=list)
    examples: list[RejectExample] = field(default_factory=list)
    accepted_rejects: bool = False
    action: str = ""
    batch: BatchRecord | None = None

    @property
    def unchanged(self) -> int:
        return self.merged - self.inserted - self.updated

    @property
    def duplicates(self) -> int:
        return self.valid - self.distinct

    @property
    def records_read(self) -> int:
        return self.records_in + self.missing

    @property
    def reject_ratio(self) -> float:
        judged = self.valid + self.rejected
        return self.rejected / judged if judged else 0.0

    @property
    def over_limit(self) -> bool:
        return self.reject_ratio > self.max_reject_ratio

    @property
    def titles_per_second(self) -> float:
        return self.records_in / self.seconds if self.seconds else 0.0

    @property
    def batch_id(self) -> int | None:
        return self.batch.batch_id if self.batch else None

    @property
    def status(self) -> str | None:
        return self.batch.status if self.batch else None

    def counts(self) -> BatchCounts:
        return BatchCounts(read=self.records_read, inserted=self.inserted, updated=self.updated,
                           unchanged=self.unchanged, held=self.held, quarantined=self.rejected,
                           skipped=self.missing, duplicates=self.duplicates)


@dataclass(frozen=True)
class ReleaseReport:
    """release_batch's outcome: the ledger row after the release, and what the merge did."""

    batch: BatchRecord
    inserted: int
    updated: int
    unchanged: int
    seconds: float

    @property
    def released(self) -> int:
        return self.inserted + self.updated + self.unchanged


def record_hash(record: dict) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _open_stage(conn: psycopg.Connection) -> None:
    # a second ingest in the same transaction finds the first one's stage (it drops on commit)
    conn.execute("DROP TABLE IF EXISTS pg_temp.tmdb_titles_stage")
    conn.execute(STAGE_DDL)


def _merge_stage(conn: psycopg.Connection, source: str, partition: date) -> tuple[int, int, int]:
    """(distinct titles merged, inserted, updated) of merging the stage into raw.tmdb_titles."""
    conn.execute(BATCH_LOCK_SQL, (MERGE_LOCK_KEY,))
    merged, inserted, updated = conn.execute(MERGE_SQL, {"source": source, "partition": partition}).fetchone()
    return int(merged), int(inserted), int(updated)


def _stamp_applied(conn: psycopg.Connection, batch_id: int, source: str, partition: date,
                   loader_version: str | None) -> None:
    """Record raw's state after this batch's merge (see lib/tmdb/unchanged.py); call it last in the load."""
    conn.execute(STAMP_APPLIED_SQL, {"watermark": raw_watermark(conn, source, partition),
                                     "loader_version": loader_version, "batch_id": batch_id})


def _content_sha256(stage_digest: str, rejects: list[tuple[Reject, str]]) -> str:
    digest = hashlib.sha256(stage_digest.encode())
    for reject, hashed in rejects:
        digest.update(f"\n{reject.kind}:{reject.field}:{hashed}".encode())
    return digest.hexdigest()


def ingest(
    conn: psycopg.Connection,
    records: Iterable[SourceRecord],
    *,
    source: str,
    partition: date,
    missing: Iterable[Reject] = (),
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO,
    accept_rejects: bool = False,
    file_name: str | None = None,
    file_sha256: str | None = None,
    run_id: str | None = None,
) -> IngestReport:
    """Validate `records`, quarantine the invalid ones, and merge or hold the valid ones as one batch.

    Over `max_reject_ratio` the valid rows are held, unless `accept_rejects`. A batch is identified
    by partition, source and `file_sha256` (else the content's checksum), so a rerun of the same
    file is the same batch: never a second ledger row or a second held copy. Caller commits.
    """
    started = time.perf_counter()
    report = IngestReport(source=source, partition=partition.isoformat(), max_reject_ratio=max_reject_ratio)
    rejects: list[Reject] = []
    _open_stage(conn)
    with conn.cursor().copy(
        "COPY tmdb_titles_stage (seq, id, media_type, payload, content_hash, ref) FROM STDIN"
    ) as copy:
        for seq, (item, ref) in enumerate(_validated(records, source, report.partition, report, rejects)):
            copy.write_row((seq, item.tmdb_id, item.media_type, item.payload_json or _json(item.payload),
                            item.content_hash, ref))
    distinct, stage_digest = conn.execute(STAGE_SUMMARY_SQL).fetchone()
    report.distinct = int(distinct)
    all_rejects = rejects + list(missing)  # read only now: a source fills its 404 list while streaming
    report.missing = sum(r.kind == "missing" for r in all_rejects)
    report.reasons = summarise_rejects(rejects)
    report.examples = reject_examples(rejects)
    hashed = [(r, record_hash(r.record)) for r in all_rejects]
    content_sha256 = _content_sha256(stage_digest, hashed)
    batch_key = file_sha256 or content_sha256

    conn.execute(BATCH_LOCK_SQL, (f"{partition.isoformat()}|{source}|{batch_key}",))
    existing = find_batch(conn, partition, source, batch_key)
    passes = not report.over_limit or accept_rejects
    report.accepted_rejects = report.over_limit and accept_rejects
    ledger = {
        "partition": partition, "source": source, "file_name": file_name, "file_sha256": file_sha256,
        "content_sha256": content_sha256, "batch_key": batch_key, "run_id": run_id,
        "reject_ratio": report.reject_ratio, "max_reject_ratio": max_reject_ratio,
        "accepted_rejects": report.accepted_rejects,
        "reasons": reasons_json(report.reasons), "examples": examples_json(report.examples),
        "loader_version": LOADER_VERSION,
    }

    if existing is None and not passes:
        report.held, report.action = report.distinct, "held"
        batch_id = _insert_batch(conn, ledger, report, status="held")
        conn.execute(HOLD_SQL, (batch_id,))
    elif existing is None:
        report.merged, report.inserted, report.updated = _merge_stage(conn, source, partition)
        report.action = "loaded"
        batch_id = _insert_batch(conn, ledger, report, status="loaded")
    elif existing.status == "held" and not passes:
        # The same file again, still over the limit: its rows are already held, once.
        report.held, report.action = report.distinct, "still_held"
        batch_id = existing.batch_id
    elif existing.status == "held":
        # Released by rerunning its file: this run's rows are the ones merged, so this run's counts
        # replace the ledger's and the held copy goes.
        report.merged, report.inserted, report.updated = _merge_stage(conn, source, partition)
        report.action = "released"
        batch_id = existing.batch_id
        conn.execute(DELETE_HELD_SQL, (batch_id,))
        conn.execute(RELEASE_BATCH_SQL, {**ledger, **_count_params(report.counts()), "batch_id": batch_id})
    else:
        # Already loaded: merging again is a no-op unless raw moved on since, and the ledger keeps
        # the load it recorded, so a rerun changes nothing there either.
        report.merged, report.inserted, report.updated = _merge_stage(conn, source, partition)
        report.action = "reloaded"
        batch_id = existing.batch_id
    superseded = _superseded(conn, source, report.partition) if report.duplicates else []
    report.rejects_new = quarantine(conn, all_rejects + superseded,
                                    hashed=[h for _, h in hashed] + [record_hash(r.record) for r in superseded])
    if report.action in ("loaded", "released", "reloaded"):
        # A rerun whose reading differs from the recorded one (another loader, or a source whose
        # records are not its file's alone) leaves the ledger's loader as it was: its counts are that one's.
        same_reading = existing is None or existing.content_sha256 == content_sha256 or report.action == "released"
        _stamp_applied(conn, batch_id, source, partition, LOADER_VERSION if same_reading else None)
    report.batch = get_batch(conn, batch_id)
    report.seconds = time.perf_counter() - started
    return report


def _count_params(counts: BatchCounts) -> dict:
    return {"read": counts.read, "inserted": counts.inserted, "updated": counts.updated,
            "unchanged": counts.unchanged, "held": counts.held, "quarantined": counts.quarantined,
            "skipped": counts.skipped, "duplicates": counts.duplicates}


def _insert_batch(conn: psycopg.Connection, ledger: dict, report: IngestReport, *, status: str) -> int:
    params = {**ledger, **_count_params(report.counts()), "status": status}
    return int(conn.execute(INSERT_BATCH_SQL, params).fetchone()[0])


def release_batch(conn: psycopg.Connection, batch_id: int, *, run_id: str | None = None) -> ReleaseReport:
    """Merge a held batch's rows into raw.tmdb_titles and mark it released. Caller commits.

    Its rejects stay in raw.tmdb_rejects. Raises BatchError when there is no such batch or it is
    not held (already loaded or released).
    """
    started = time.perf_counter()
    batch = get_batch(conn, batch_id, for_update=True)
    if batch is None:
        raise BatchError(f"there is no batch {batch_id} in raw.tmdb_batches; list the held ones with "
                         "`gateway tmdb batches --status held`")
    if batch.status != "held":
        when = f" since {batch.released_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" if batch.released_at else ""
        raise BatchError(f"batch {batch_id} ({batch.source}, {batch.partition}) is {batch.status}{when}, "
                         "not held: there is nothing to release")
    stored = held_row_count(conn, batch_id)
    if stored != batch.counts.held:
        raise BatchError(f"batch {batch_id}: the ledger says {batch.counts.held} rows are held but "
                         f"raw.tmdb_held_titles has {stored}; the holding table was edited by hand, so "
                         "rerun the file instead of releasing")
    _open_stage(conn)
    conn.execute(STAGE_FROM_HELD_SQL, (batch_id,))
    merged, inserted, updated = _merge_stage(conn, batch.source, batch.partition)
    conn.execute(DELETE_HELD_SQL, (batch_id,))
    c = batch.counts
    counts = BatchCounts(read=c.read, inserted=inserted, updated=updated, unchanged=merged - inserted - updated,
                         held=0, quarantined=c.quarantined, skipped=c.skipped, duplicates=c.duplicates)
    conn.execute(RELEASE_BATCH_SQL, {
        **_count_params(counts), "batch_id": batch_id, "run_id": run_id, "reject_ratio": batch.reject_ratio,
        "max_reject_ratio": batch.max_reject_ratio, "accepted_rejects": True,
        "reasons": reasons_json(batch.reasons), "examples": examples_json(batch.examples),
    })
    _stamp_applied(conn, batch_id, batch.source, batch.partition, None)  # its rows: the loader that held them
    released = get_batch(conn, batch_id)
    assert released is not None  # locked above
    return ReleaseReport(released, inserted, updated, merged - inserted - updated, time.perf_counter() - started)


def _superseded(conn: psycopg.Connection, source: str, partition: str) -> list[Reject]:
    """The earlier rows of titles that appear more than once in the batch, as 'duplicate' rejects."""
    return [
        Reject(source=source, partition=partition, record=payload, field="id", kind="duplicate",
               reason=f"{media_type}-{tmdb_id} appears again at {kept}; that later row was loaded ({ref})",
               rule="the title appears again later in the same batch; the later row was loaded")
        for media_type, tmdb_id, payload, ref, kept in conn.execute(SUPERSEDED_SQL).fetchall()
    ]


def _validated(
    records: Iterable[SourceRecord], source: str, partition: str, report: IngestReport, rejects: list[Reject]
) -> Iterator[tuple[ValidTitle, str]]:
    for record in records:
        report.records_in += 1
        result = validate_record(record, source=source, partition=partition)
        if isinstance(result, Reject):
            report.rejected += 1
            report.reject_reasons[result.field] = report.reject_reasons.get(result.field, 0) + 1
            rejects.append(result)  # rejects are few; a flood trips the reject-ratio check
            continue
        report.valid += 1
        report.warnings += len(result.warnings)
        yield result, record.ref


def quarantine(conn: psycopg.Connection, rejects: Iterable[Reject], *, hashed: list[str] | None = None) -> int:
    """Store rejects once per (source, partition, record, field); returns how many were new."""
    rejects = list(rejects)
    hashes = hashed if hashed is not None else [record_hash(r.record) for r in rejects]
    rows = [
        (r.source, r.partition, _json(r.record), h, r.field, r.reason, r.kind) for r, h in zip(rejects, hashes)
    ]
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(REJECT_SQL, rows, returning=False)
        return max(cur.rowcount, 0)


def upsert_genres(conn: psycopg.Connection, media_type: str, genres: Iterable[dict]) -> int:
    rows = [(media_type, int(g["id"]), str(g["name"])) for g in genres]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO raw.tmdb_genres (media_type, genre_id, name) VALUES (%s, %s, %s) "
            "ON CONFLICT (media_type, genre_id) DO UPDATE SET name = EXCLUDED.name "
            "WHERE raw.tmdb_genres.name IS DISTINCT FROM EXCLUDED.name",
            rows,
        )
    return len(rows)


PREVIEW_SQL = """
SELECT media_type || '-' || id AS content_key,
       coalesce(payload->>'title', payload->>'name') AS title,
       coalesce(payload->>'release_date', payload->>'first_air_date') AS released,
       payload->>'vote_average' AS rating,
       left(payload->>'overview', 90) AS overview
FROM raw.tmdb_titles
WHERE partition_date = %s
ORDER BY (payload->>'popularity')::float DESC NULLS LAST
LIMIT %s
"""

# Payloads of a partition that lack what every downstream model reads.
SHAPE_SQL = """
SELECT media_type, id
FROM raw.tmdb_titles
WHERE partition_date = %s
  AND NOT (
        jsonb_typeof(payload->'id') = 'number'
    AND coalesce(payload->>'title', payload->>'name', '') <> ''
    AND jsonb_typeof(coalesce(payload->'genres', '[]'::jsonb)) = 'array'
  )
LIMIT 100
"""
