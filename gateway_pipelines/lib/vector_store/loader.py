"""Bulk loading of vectors: binary COPY into a staging table, then one set-based merge.

Transactions: every function here runs inside ``conn.transaction()``. On a connection with no
transaction open (the normal case) that is a real transaction and the function **commits on
return** (or rolls back on error). Called inside a transaction the caller has open, it is a
savepoint and nothing is published until the caller commits. Either way a failure, or the process
being killed, leaves the target tables exactly as they were.

Staging table: a ``TEMP`` table created inside the load's transaction. A temp table is unlogged
(no WAL), private to the session (two loaders never see each other's rows or collide on a name),
and Postgres drops it when the session ends, including when the loader process is killed in the
middle of the COPY: the backend sees the socket close, aborts the transaction and removes its temp
relations, so there are no orphans to clean up (a permanent UNLOGGED table would need an orphan
sweep, and its catalog rows are visible to everyone). The vector column is ``STORAGE PLAIN`` so a
3 KB vector stays in the heap page instead of going through a TOAST table, and the COPY uses
``FREEZE`` (allowed because the table was created in the same transaction), so staging costs about
a third of a raw COPY into a logged table; the merge then writes the target once. When the target
is empty there is nothing to merge with, and the rows are COPYed straight into it (same transaction,
same lock), which is as fast as a raw COPY.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from .index import DEFAULT_INDEX, DEFAULT_TABLE, IndexBuild, IndexConfig, build_hnsw, ensure_vector_types, qualified

__all__ = [
    "DIM",
    "IndexConfig",
    "MergeReport",
    "RowAccounting",
    "SyncReport",
    "copy_merge_embeddings",
    "raw_binary_copy",
    "sync_content_vectors",
]

DIM = 768
STAGE_TABLE = "_stage_content_embeddings"  # in pg_temp: one per session, dropped at the end of the load


@dataclass(frozen=True)
class RowAccounting:
    """Where every row of one load went, for metadata that adds up.

    Each source row is exactly one of inserted (new key), updated (key existed, content differed)
    or unchanged; ``deleted`` counts target rows whose key is no longer in the source. Hence
    ``rows_in = inserted + updated + unchanged`` and ``rows_after = rows_before + inserted - deleted``;
    when the source is the complete set (a full sync) also ``rows_after = rows_in``.
    """

    rows_in: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    rows_before: int
    rows_after: int
    complete: bool = True  # the source is the whole table-to-be, so rows_after must equal rows_in

    def problems(self) -> list[str]:
        out = []
        if self.inserted + self.updated + self.unchanged != self.rows_in:
            out.append(
                f"rows_in {self.rows_in} != inserted {self.inserted} + updated {self.updated} + unchanged {self.unchanged}"
            )
        if self.rows_before + self.inserted - self.deleted != self.rows_after:
            out.append(
                f"rows_after {self.rows_after} != rows_before {self.rows_before} + inserted {self.inserted} "
                f"- deleted {self.deleted}"
            )
        if self.complete and self.rows_after != self.rows_in:
            out.append(f"rows_after {self.rows_after} != rows_in {self.rows_in} (a full sync leaves the table = source)")
        return out

    @property
    def adds_up(self) -> bool:
        return not self.problems()

    def summary(self) -> str:
        return (
            f"{self.rows_in} in = {self.inserted} inserted + {self.updated} updated + {self.unchanged} unchanged; "
            f"table {self.rows_before} → {self.rows_after} (+{self.inserted} −{self.deleted} deleted)"
        )

    def as_metadata(self) -> dict[str, object]:
        return {
            "rows_in": self.rows_in,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_unchanged": self.unchanged,
            "rows_deleted": self.deleted,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "counts_add_up": self.adds_up,
            "row_accounting": self.summary() if self.adds_up else self.summary() + "; MISMATCH: " + "; ".join(self.problems()),
        }


@dataclass
class MergeReport:
    staged: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int  # staged rows whose hash was already stored
    seconds: float
    copy_seconds: float
    merge_seconds: float
    path: str = "staged"  # 'direct' (empty table: COPY straight in) or 'staged' (COPY to a temp stage + merge)
    rows_before: int = 0  # target rows when the load took its lock
    rows_after: int = 0  # target rows at its commit


@dataclass
class SyncReport:
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    bulk: bool
    index_rebuilt: bool
    index_build: IndexBuild | None
    seconds: float
    rows_before: int = 0  # content_vectors rows when the sync took its lock
    rows_after: int = 0  # content_vectors rows at its commit (= source rows: the sync is complete)

    def accounting(self) -> RowAccounting:
        # the source (embeddings ⋈ dim_content) is exactly what the table holds after the sync
        return RowAccounting(
            rows_in=self.inserted + self.updated + self.unchanged,
            inserted=self.inserted,
            updated=self.updated,
            unchanged=self.unchanged,
            deleted=self.deleted,
            rows_before=self.rows_before,
            rows_after=self.rows_after,
        )


# --------------------------------------------------------------------------- COPY


def _vector_dumper(conn: psycopg.Connection) -> type[Dumper]:
    """A binary dumper for numpy vectors: one ``astype('>f4')`` instead of pgvector's per-element copy.

    Same wire format as ``pgvector.psycopg`` (uint16 dim, uint16 unused, big-endian float4s), about
    3x cheaper in Python. Used by both the pipeline and the raw-COPY baseline.
    """
    oid = ensure_vector_types(conn)

    class FastVectorBinaryDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: np.ndarray) -> bytes:
            if obj.ndim != 1:
                raise ValueError(f"a vector must be 1-d, got shape {obj.shape}")
            return struct.pack(">HH", obj.shape[0], 0) + obj.astype(">f4", copy=False).tobytes()

    FastVectorBinaryDumper.oid = oid
    return FastVectorBinaryDumper


def _checked(rows: Iterable[tuple[str, np.ndarray, str, str]], dim: int) -> Iterator[tuple]:
    for n, row in enumerate(rows):
        key, vec, model, digest = row
        v = np.asarray(vec, dtype=np.float32)
        if v.shape != (dim,):
            raise ValueError(f"row {n} ({key!r}): vector shape {v.shape}, expected ({dim},)")
        if not (key and model and digest):
            raise ValueError(f"row {n}: content_key, embedding_model and embedding_hash must be non-empty")
        yield key, v, model, digest


def _copy_rows(conn: psycopg.Connection, target: sql.Composable, rows: Iterable[tuple], *, freeze: bool) -> int:
    n = 0
    stmt = sql.SQL(
        "COPY {} (content_key, vector, embedding_model, embedding_hash) FROM STDIN (FORMAT BINARY{})"
    ).format(target, sql.SQL(", FREEZE") if freeze else sql.SQL(""))
    with conn.cursor() as cur:
        cur.adapters.register_dumper(np.ndarray, _vector_dumper(conn))
        with cur.copy(stmt) as copy:
            copy.set_types(["text", conn.adapters.types["vector"].oid, "text", "text"])
            for row in rows:
                copy.write_row(row)
                n += 1
    return n


def raw_binary_copy(conn: psycopg.Connection, table: str, rows: Iterable[tuple[str, np.ndarray, str, str]]) -> int:
    """Plain binary COPY of (content_key, vector, embedding_model, embedding_hash) rows into ``table``.

    The baseline for the loader benchmark: the same rows and the same encoding as
    :func:`copy_merge_embeddings`, with no staging and no merge. Commits like the loader does.
    """
    with conn.transaction():
        return _copy_rows(conn, qualified(table), _checked(rows, DIM), freeze=False)


def copy_merge_embeddings(
    conn: psycopg.Connection,
    rows: Iterable[tuple[str, np.ndarray, str, str]],
    *,
    delete_missing_keys: Iterable[str] | None = None,
    delete_absent: bool = False,
) -> MergeReport:
    """Load (content_key, vector (768,), embedding_model, embedding_hash) rows into `vectors.content_embeddings`.

    New keys are inserted; existing keys are rewritten only when their ``embedding_hash`` differs
    (so loading the same rows again writes nothing and keeps ``embedded_at``). ``delete_missing_keys``
    deletes those keys (unless they are in ``rows``); ``delete_absent=True`` treats the rows as the
    complete set and deletes every key that is not in them (an empty ``rows`` then empties the
    table). Everything is one transaction; see the module docstring for when it commits.

    The table is locked against other writers for the load (SHARE ROW EXCLUSIVE: readers are not
    blocked), which makes two plans safe:

    * ``direct``: the table is empty (first load, or after a truncate), so no row can conflict and
      the rows are COPYed straight into it, still inside the transaction;
    * ``staged``: COPY into the temp stage, then ``UPDATE`` the rows whose hash changed and
      ``INSERT`` the new keys, set-based.
    """
    started = time.perf_counter()
    stage = sql.Identifier(STAGE_TABLE)
    staged_rel = sql.SQL("pg_temp.{}").format(stage)
    target = sql.Identifier("vectors", "content_embeddings")
    inserted = updated = deleted = 0
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
        rows_before = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0])
        if rows_before == 0:
            path = "direct"
            try:
                with conn.transaction():  # a savepoint, so the duplicate-key error can be reported clearly
                    staged = _copy_rows(conn, target, _checked(rows, DIM), freeze=False)
            except psycopg.errors.UniqueViolation as exc:
                key = exc.diag.message_detail or ""
                raise ValueError(f"duplicate content_key in one load ({key}); each title must appear once") from None
            copy_done = time.perf_counter()
            inserted = staged
        else:
            path = "staged"
            # one stage per session: a leftover from an earlier load in the same (still open) transaction goes first
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staged_rel))
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {} (content_key text NOT NULL, vector vector(768) NOT NULL, "
                    "embedding_model text NOT NULL, embedding_hash text NOT NULL) ON COMMIT DROP"
                ).format(stage)
            )
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN vector SET STORAGE PLAIN").format(staged_rel))
            staged = _copy_rows(conn, staged_rel, _checked(rows, DIM), freeze=True)
            copy_done = time.perf_counter()
            dups = conn.execute(
                sql.SQL("SELECT content_key FROM {} GROUP BY content_key HAVING count(*) > 1 LIMIT 5").format(
                    staged_rel
                )
            ).fetchall()
            if dups:
                raise ValueError(
                    f"duplicate content_key in one load: {[d[0] for d in dups]}; each title must appear once"
                )
            updated = conn.execute(
                sql.SQL(
                    "UPDATE {target} t SET vector = s.vector, embedding_model = s.embedding_model, "
                    "embedding_hash = s.embedding_hash, embedded_at = now() "
                    "FROM {stage} s WHERE t.content_key = s.content_key AND t.embedding_hash <> s.embedding_hash"
                ).format(target=target, stage=staged_rel)
            ).rowcount
            inserted = conn.execute(
                sql.SQL(
                    "INSERT INTO {target} (content_key, vector, embedding_model, embedding_hash) "
                    "SELECT s.content_key, s.vector, s.embedding_model, s.embedding_hash FROM {stage} s "
                    "WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.content_key = s.content_key)"
                ).format(target=target, stage=staged_rel)
            ).rowcount
            if delete_absent:
                deleted += conn.execute(
                    sql.SQL(
                        "DELETE FROM {target} t WHERE NOT EXISTS "
                        "(SELECT 1 FROM {stage} s WHERE s.content_key = t.content_key)"
                    ).format(target=target, stage=staged_rel)
                ).rowcount
            keys = sorted(set(delete_missing_keys or ()))
            if keys:
                deleted += conn.execute(
                    sql.SQL(
                        "DELETE FROM {target} t WHERE t.content_key = ANY(%s) AND NOT EXISTS "
                        "(SELECT 1 FROM {stage} s WHERE s.content_key = t.content_key)"
                    ).format(target=target, stage=staged_rel),
                    (keys,),
                ).rowcount
            conn.execute(sql.SQL("DROP TABLE {}").format(staged_rel))
        rows_after = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0])
    done = time.perf_counter()
    return MergeReport(
        staged=staged,
        inserted=int(inserted),
        updated=int(updated),
        deleted=int(deleted),
        unchanged=staged - int(inserted) - int(updated),
        seconds=done - started,
        copy_seconds=copy_done - started,
        merge_seconds=done - copy_done,
        path=path,
        rows_before=rows_before,
        rows_after=rows_after,
    )


# --------------------------------------------------------------------------- content_vectors sync

# The serving rows as they should be: content_embeddings joined with the dbt dimension.
_SOURCE = """
SELECT e.content_key                    AS id,
       e.vector                         AS vector,
       d.tmdb_id                        AS content_id,
       d.media_type                     AS media_type,
       d.title                          AS title,
       coalesce(d.genre_ids, '{}')      AS genre_ids,
       d.year                           AS year,
       d.vote_average                   AS vote_average,
       d.original_language             AS original_language,
       jsonb_strip_nulls(jsonb_build_object(
           'genre_names', d.genre_names,
           'keywords', d.keywords,
           'release_date', d.release_date,
           'runtime', d.runtime,
           'vote_count', d.vote_count,
           'popularity', d.popularity,
           'poster_path', d.poster_path,
           'overview', left(d.overview, 300)
       ))                               AS metadata,
       e.embedding_model                AS embedding_model,
       e.embedding_hash                 AS content_hash
  FROM vectors.content_embeddings e
  JOIN analytics.dim_content d ON d.content_key = e.content_key
"""

# Every served column but the vector itself (content_hash stands for the vector).
_COMPARED = ("content_hash", "embedding_model", "content_id", "media_type", "title", "genre_ids", "year",
             "vote_average", "original_language", "metadata")


def _row(alias: str) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(alias, c) for c in _COMPARED))


def sync_content_vectors(
    conn: psycopg.Connection,
    *,
    bulk_fraction: float = 0.2,
    index: IndexConfig = IndexConfig(),
    table: str = DEFAULT_TABLE,
    index_name: str = DEFAULT_INDEX,
) -> SyncReport:
    """Make `vectors.content_vectors` equal to `vectors.content_embeddings` ⋈ `analytics.dim_content`.

    One transaction (committed on return, or the caller's savepoint; see the module docstring):
    titles that disappeared are deleted, new ones inserted, and a row is rewritten (``updated_at``
    bumped) only when its ``content_hash`` or one of its served columns differs, so a second sync
    changes nothing.

    Bulk mode (the table is empty, or inserts + updates + deletes > ``bulk_fraction`` x rows): the
    HNSW index is dropped first, the merge runs without index maintenance, and the index is rebuilt
    (:func:`build_hnsw`), all in the same transaction. Note what that means for readers: DROP INDEX
    takes an ACCESS EXCLUSIVE lock, so searches *wait* until the commit (they never see a
    half-built state, and then see the new rows and index). Small changes go straight into the
    indexed table, and readers are not blocked. A missing or invalid index is rebuilt either way.
    """
    if not 0 <= bulk_fraction <= 1:
        raise ValueError(f"bulk_fraction={bulk_fraction}: must be within [0, 1]")
    started = time.perf_counter()
    target = qualified(table)
    schema = table.split(".")[0] if "." in table else "public"
    cols = sql.SQL(", ").join(
        sql.Identifier(c)
        for c in ("id", "vector", "content_id", "media_type", "title", "genre_ids", "year", "vote_average",
                  "original_language", "metadata", "embedding_model", "content_hash")
    )
    source = sql.SQL(_SOURCE)
    build: IndexBuild | None = None
    with conn.transaction():
        if conn.execute("SELECT to_regclass('analytics.dim_content')").fetchone()[0] is None:
            raise RuntimeError(
                "analytics.dim_content does not exist: build the dbt models (the analytics assets) before "
                "syncing content vectors."
            )
        # serialise syncs; readers (and searches) are not blocked by this lock
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
        total, to_insert, to_update, to_delete = conn.execute(
            sql.SQL(
                """
                WITH src AS ({source})
                SELECT (SELECT count(*) FROM {target}),
                       (SELECT count(*) FROM src WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = src.id)),
                       (SELECT count(*) FROM src JOIN {target} t ON t.id = src.id
                         WHERE {trow} IS DISTINCT FROM {srow}),
                       (SELECT count(*) FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM src WHERE src.id = t.id))
                """
            ).format(source=source, target=target, trow=_row("t"), srow=_row("src"))
        ).fetchone()
        changed = int(to_insert) + int(to_update) + int(to_delete)
        bulk = changed > 0 and (int(total) == 0 or changed > bulk_fraction * int(total))
        idx = conn.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, index_name),
        ).fetchone()
        rebuild = bulk or idx is None or not idx[0]
        if bulk:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, index_name)))

        deleted = conn.execute(
            sql.SQL(
                "DELETE FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM ({source}) src WHERE src.id = t.id)"
            ).format(target=target, source=source)
        ).rowcount
        inserted, updated = conn.execute(
            sql.SQL(
                """
                WITH merged AS (
                    INSERT INTO {target} AS t ({cols})
                    SELECT {cols} FROM ({source}) src
                     WHERE NOT EXISTS (SELECT 1 FROM {target} c WHERE c.id = src.id AND {crow} IS NOT DISTINCT FROM {srow})
                    ON CONFLICT (id) DO UPDATE
                       SET vector = excluded.vector, content_id = excluded.content_id,
                           media_type = excluded.media_type, title = excluded.title,
                           genre_ids = excluded.genre_ids, year = excluded.year,
                           vote_average = excluded.vote_average, original_language = excluded.original_language,
                           metadata = excluded.metadata, embedding_model = excluded.embedding_model,
                           content_hash = excluded.content_hash, updated_at = now()
                     WHERE {trow} IS DISTINCT FROM {erow}
                    RETURNING (xmax = 0) AS inserted
                )
                SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged
                """
            ).format(
                target=target, cols=cols, source=source, trow=_row("t"), erow=_row("excluded"), crow=_row("c"),
                srow=_row("src"),
            )
        ).fetchone()
        rows_now = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]
        if rebuild:
            build = build_hnsw(conn, config=index, table=table, index_name=index_name)
        if bulk:
            conn.execute(sql.SQL("ANALYZE {}").format(target))
    return SyncReport(
        inserted=int(inserted),
        updated=int(updated),
        deleted=int(deleted),
        unchanged=int(rows_now) - int(inserted) - int(updated),
        bulk=bulk,
        index_rebuilt=rebuild,
        index_build=build,
        seconds=time.perf_counter() - started,
        rows_before=int(total),
        rows_after=int(rows_now),
    )
