"""Write validated titles and rejects into `raw`, idempotently, in one transaction.

Titles stream into a temporary staging table by COPY (Python memory stays flat however large the
file), then one statement merges them: the latest duplicate wins, unchanged content is not
touched (no new row, no new `fetched_at`), and a failure anywhere rolls back the whole load.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import psycopg

from gateway_pipelines.lib.tmdb.records import Reject, SourceRecord, ValidTitle
from gateway_pipelines.lib.tmdb.validation import validate_record

STAGE_DDL = """
CREATE TEMP TABLE tmdb_titles_stage (
    seq          bigint  NOT NULL,
    id           integer NOT NULL,
    media_type   text    NOT NULL,
    payload      jsonb   NOT NULL,
    content_hash text    NOT NULL
) ON COMMIT DROP
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


@dataclass
class IngestReport:
    source: str
    partition: str
    records_in: int = 0
    valid: int = 0
    distinct: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    missing: int = 0
    rejects_new: int = 0
    warnings: int = 0
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return self.distinct - self.inserted - self.updated

    @property
    def duplicates(self) -> int:
        return self.valid - self.distinct

    @property
    def reject_ratio(self) -> float:
        judged = self.valid + self.rejected
        return self.rejected / judged if judged else 0.0

    @property
    def titles_per_second(self) -> float:
        return self.records_in / self.seconds if self.seconds else 0.0


def record_hash(record: dict) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def ingest(
    conn: psycopg.Connection,
    records: Iterable[SourceRecord],
    *,
    source: str,
    partition: date,
    missing: Iterable[Reject] = (),
) -> IngestReport:
    """Validate `records`, stage and merge the valid ones, quarantine the rest. Caller commits."""
    started = time.perf_counter()
    report = IngestReport(source=source, partition=partition.isoformat())
    rejects: list[Reject] = []
    # a second ingest in the same transaction finds the first one's stage (it drops on commit)
    conn.execute("DROP TABLE IF EXISTS pg_temp.tmdb_titles_stage")
    conn.execute(STAGE_DDL)
    with conn.cursor().copy(
        "COPY tmdb_titles_stage (seq, id, media_type, payload, content_hash) FROM STDIN"
    ) as copy:
        for seq, item in enumerate(_validated(records, source, report.partition, report, rejects)):
            copy.write_row((seq, item.tmdb_id, item.media_type, item.payload_json or _json(item.payload), item.content_hash))
    distinct, inserted, updated = conn.execute(
        MERGE_SQL, {"source": source, "partition": partition}
    ).fetchone()
    report.distinct, report.inserted, report.updated = int(distinct), int(inserted), int(updated)
    all_rejects = rejects + list(missing)  # read only now: a source fills its 404 list while streaming
    report.missing = sum(r.kind == "missing" for r in all_rejects)
    report.rejects_new = quarantine(conn, all_rejects)
    report.seconds = time.perf_counter() - started
    return report


def _validated(
    records: Iterable[SourceRecord], source: str, partition: str, report: IngestReport, rejects: list[Reject]
) -> Iterator[ValidTitle]:
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
        yield result


def quarantine(conn: psycopg.Connection, rejects: Iterable[Reject]) -> int:
    """Store rejects once per (source, partition, record, field); returns how many were new."""
    rows = [
        (r.source, r.partition, _json(r.record), record_hash(r.record), r.field, r.reason, r.kind) for r in rejects
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
