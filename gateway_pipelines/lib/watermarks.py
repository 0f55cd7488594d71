"""Fingerprints of tables, and the ledger of what a skippable step last saw (`meta.build_watermarks`).

A step that may skip its work (a dbt build, a GX validation) records, once it has succeeded, the
fingerprints of what it read; a rerun computes them again and does the work only when one differs.

A table's fingerprint is its row count and the sum of a hash of every visible row version's
(tableoid, ctid, xmin). Any committed INSERT, UPDATE or DELETE changes it: an update writes a new
row version, at a new ctid with a new xmin, even when it writes the same values. It reads only
tuple headers: no column is deformed and no TOASTed payload fetched, so 100k titles cost one pass
over the heap. What it cannot tell from a change (an update to the same values, VACUUM FULL, a
restore) counts as one: the price is one extra build, never a skipped one. Only a rolled-back
write leaves it as it was, which is right, since nothing changed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

LEDGER = "meta.build_watermarks"

_FINGERPRINT = sql.SQL(
    # tableoid: a partitioned table's partitions each number their ctids from the start
    "SELECT count(*), coalesce(sum(hashtextextended(tableoid::text || ctid::text || xmin::text, 0)::numeric), 0)::text "
    "FROM {table}"
)

READ_SQL = f"SELECT watermark, result, run_id, recorded_at FROM {LEDGER} WHERE subject = %s AND scope = %s"
RECORD_SQL = f"""
INSERT INTO {LEDGER} AS w (subject, scope, watermark, result, run_id, recorded_at)
VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, now())
ON CONFLICT (subject, scope) DO UPDATE
    SET watermark = EXCLUDED.watermark, result = EXCLUDED.result, run_id = EXCLUDED.run_id,
        recorded_at = EXCLUDED.recorded_at
"""


def split_relation(relation: str) -> tuple[str, str]:
    """`schema.name`, or a dbt relation name (`"db"."schema"."name"`), as (schema, name)."""
    parts = [p.strip('"') for p in relation.split(".")]
    if len(parts) < 2:
        raise ValueError(f"{relation!r} is not a schema-qualified relation name")
    return parts[-2], parts[-1]


def relation_kind(conn: psycopg.Connection, relation: str) -> str | None:
    """pg_class.relkind of the relation ('r' table, 'p' partitioned, 'v' view, 'm' matview), None if absent."""
    schema, name = split_relation(relation)
    row = conn.execute(
        "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return row[0] if row else None


def table_fingerprint(
    conn: psycopg.Connection,
    relation: str,
    *,
    where: sql.Composable | None = None,
    params: Sequence[Any] = (),
) -> dict[str, Any] | None:
    """{"rows": n, "versions": digest} of a table (optionally of the rows `where` selects), or None
    when it does not exist. Looked up first, so a missing table does not abort the caller's transaction.

    A relation without row versions of its own (a view, a foreign table) gets a fingerprint equal to
    no other, so that whatever depends on it is always redone rather than wrongly skipped."""
    kind = relation_kind(conn, relation)
    if kind is None:
        return None
    if kind not in ("r", "p", "m"):
        return {"kind": kind, "unversioned": uuid.uuid4().hex}
    query = _FINGERPRINT.format(table=sql.Identifier(*split_relation(relation)))
    if where is not None:
        query = query + sql.SQL(" WHERE ") + where
    rows, versions = conn.execute(query, params).fetchone()
    return {"rows": int(rows), "versions": versions}


def fingerprint_text(fingerprint: Mapping[str, Any] | None) -> str:
    if fingerprint is None:
        return "missing"
    if "rows" not in fingerprint:
        return json.dumps(fingerprint, sort_keys=True)
    return f"{fingerprint['rows']}:{fingerprint['versions']}"


@dataclass(frozen=True)
class LedgerEntry:
    subject: str
    scope: str
    watermark: dict[str, Any]
    result: dict[str, Any]
    run_id: str | None
    recorded_at: datetime


def _has_ledger(conn: psycopg.Connection) -> bool:
    # A warehouse migrated before sql/020 has no ledger: nothing is skipped there until it is.
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LEDGER,)).fetchone()[0]


def read_entry(conn: psycopg.Connection, subject: str, scope: str = "") -> LedgerEntry | None:
    if not _has_ledger(conn):
        return None
    row = conn.execute(READ_SQL, (subject, scope)).fetchone()
    if row is None:
        return None
    watermark, result, run_id, recorded_at = row
    return LedgerEntry(subject, scope, watermark, result, run_id, recorded_at)


def record_entry(
    conn: psycopg.Connection,
    subject: str,
    scope: str,
    watermark: Mapping[str, Any],
    result: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> bool:
    """Upsert what `subject` last saw; False (nothing written) on a warehouse without the ledger."""
    if not _has_ledger(conn):
        return False
    conn.execute(RECORD_SQL, (subject, scope, json.dumps(watermark, sort_keys=True, default=str),
                              json.dumps(result or {}, sort_keys=True, default=str), run_id))
    return True
