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

import itertools
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from .index import DEFAULT_INDEX, DEFAULT_TABLE, IndexBuild, IndexConfig, ensure_vector_types, qualified
from .shadow import BUCKETS, ShadowBuild, serving_state, shadow_rebuild

__all__ = [
    "DIM",
    "IndexConfig",
    "MergeReport",
    "load_resumably",
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
    complete: bool = True  # the source is the whole table-to-be, so rows_after must equal rows_in - skipped
    skipped: int = 0  # source rows deliberately not written, for `skip_reason`
    skip_reason: str | None = None

    def problems(self) -> list[str]:
        out = []
        if self.inserted + self.updated + self.unchanged + self.skipped != self.rows_in:
            out.append(
                f"rows_in {self.rows_in} != inserted {self.inserted} + updated {self.updated} + unchanged {self.unchanged}"
                + (f" + skipped {self.skipped}" if self.skipped else "")
            )
        if self.rows_before + self.inserted - self.deleted != self.rows_after:
            out.append(
                f"rows_after {self.rows_after} != rows_before {self.rows_before} + inserted {self.inserted} "
                f"- deleted {self.deleted}"
            )
        if self.complete and self.rows_after != self.rows_in - self.skipped:
            out.append(f"rows_after {self.rows_after} != rows_in {self.rows_in} - skipped {self.skipped} "
                       "(a full sync leaves the table = source)")
        return out

    @property
    def adds_up(self) -> bool:
        return not self.problems()

    def summary(self) -> str:
        skipped = f" + {self.skipped} skipped ({self.skip_reason})" if self.skipped else ""
        return (
            f"{self.rows_in} in = {self.inserted} inserted + {self.updated} updated + {self.unchanged} unchanged"
            f"{skipped}; table {self.rows_before} → {self.rows_after} (+{self.inserted} −{self.deleted} deleted)"
        )

    def as_metadata(self) -> dict[str, object]:
        extra: dict[str, object] = {"rows_skipped": self.skipped, "skip_reason": self.skip_reason} if self.skipped else {}
        return {
            **extra,
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
    skipped: int = 0  # source rows of another model than the served one, for titles not served yet
    embedding_model: str | None = None  # what the table serves after the sync
    models_in_source: dict[str, int] | None = None  # source rows per embedding model
    rebuild_reason: str | None = None  # why a shadow build replaced the table (None: incremental)
    shadow: ShadowBuild | None = None
    kept_previous: int = 0  # titles being re-embedded that keep serving their row of the served model

    def accounting(self) -> RowAccounting:
        # the source (embeddings ⋈ dim_content) is what the table holds after the sync, but for the
        # titles of another model that are not served yet (skipped, awaiting the model's swap)
        return RowAccounting(
            rows_in=self.inserted + self.updated + self.unchanged + self.skipped,
            inserted=self.inserted,
            updated=self.updated,
            unchanged=self.unchanged,
            deleted=self.deleted,
            rows_before=self.rows_before,
            rows_after=self.rows_after,
            skipped=self.skipped,
            skip_reason="awaiting model swap" if self.skipped else None,
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

# Rows per committed load. A re-embed (a model change: every title) commits as it goes, so a run that
# fails or is killed keeps what it committed and the rerun embeds only the rest: the plan skips every
# title whose stored hash is already the new one. Readers lose nothing by it: search serves
# content_vectors, which takes a new model only once every title has it (sync_content_vectors below).
RESUME_CHUNK_ROWS = 16_384


def load_resumably(conn, rows, *, delete_missing_keys, chunk_rows: int = RESUME_CHUNK_ROWS) -> MergeReport:
    """`copy_merge_embeddings` in committed chunks of ``chunk_rows`` (deletions with the first), as one
    report: the counts summed, the table's rows before the first chunk and after the last."""
    started = time.perf_counter()
    it = iter(rows)
    reports: list[MergeReport] = []
    while True:
        chunk = list(itertools.islice(it, chunk_rows))
        if reports and not chunk:
            break
        reports.append(copy_merge_embeddings(conn, chunk, delete_missing_keys=() if reports else delete_missing_keys))
        conn.commit()
        if len(chunk) < chunk_rows:
            break
    return MergeReport(
        staged=sum(r.staged for r in reports), inserted=sum(r.inserted for r in reports),
        updated=sum(r.updated for r in reports), deleted=sum(r.deleted for r in reports),
        # wall time, with the rows' production (the plan and the embedding stream into the chunks)
        unchanged=sum(r.unchanged for r in reports), seconds=time.perf_counter() - started,
        copy_seconds=sum(r.copy_seconds for r in reports), merge_seconds=sum(r.merge_seconds for r in reports),
        path="+".join(dict.fromkeys(r.path for r in reports)), rows_before=reports[0].rows_before,
        rows_after=reports[-1].rows_after,
    )


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


_COLUMNS = ("id", "vector", "content_id", "media_type", "title", "genre_ids", "year", "vote_average",
            "original_language", "metadata", "embedding_model", "content_hash")
_SYNC_LOCK = "vectors.content_vectors sync"  # advisory lock key text: one sync (incremental or shadow) at a time


def _cols(alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(*((alias, c) if alias else (c,))) for c in _COLUMNS)


def _of_model() -> sql.Composable:
    return sql.SQL("SELECT * FROM ({}) s WHERE s.embedding_model = %(model)s").format(sql.SQL(_SOURCE))


def _merge(conn: psycopg.Connection, table: str, model: str) -> tuple[int, int, int]:
    """Make ``table`` equal to the source rows of ``model`` (deleted, inserted, updated).

    Rows whose key is still in the source under another model are left as they are: that title is
    being re-embedded, and keeps serving its vector of ``model`` until the model change is swapped in.
    """
    target = qualified(table)
    source = sql.SQL(_SOURCE)
    deleted = conn.execute(
        sql.SQL("DELETE FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM ({source}) src WHERE src.id = t.id)").format(
            target=target, source=source)
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
        ).format(target=target, cols=_cols(), source=_of_model(), trow=_row("t"), erow=_row("excluded"),
                 crow=_row("c"), srow=_row("src")),
        {"model": model},
    ).fetchone()
    return int(deleted), int(inserted), int(updated)


def _load_bucket_sql(table: str, shadow: str) -> tuple[sql.Composed, sql.Composed]:
    bucket = sql.SQL("(hashtext({}) & 2147483647) %% %(buckets)s = %(bucket)s")
    new_rows = sql.SQL(
        "INSERT INTO {shadow} ({cols}, created_at) SELECT {srccols}, coalesce(t.created_at, now()) "
        "FROM ({source}) src LEFT JOIN {table} t ON t.id = src.id WHERE {bucket}"
    ).format(shadow=qualified(shadow), cols=_cols(), srccols=_cols("src"), source=_of_model(),
             table=qualified(table), bucket=bucket.format(sql.Identifier("src", "id")))
    # titles being re-embedded under another model keep their served row of this model
    kept_rows = sql.SQL(
        "INSERT INTO {shadow} ({cols}, created_at, updated_at) SELECT {tcols}, t.created_at, t.updated_at "
        "FROM {table} t WHERE t.embedding_model = %(model)s AND {bucket} AND EXISTS "
        "(SELECT 1 FROM ({source}) src WHERE src.id = t.id AND src.embedding_model <> %(model)s)"
    ).format(shadow=qualified(shadow), cols=_cols(), tcols=_cols("t"), table=qualified(table),
             bucket=bucket.format(sql.Identifier("t", "id")), source=sql.SQL(_SOURCE))
    return new_rows, kept_rows


def _target_model(conn: psycopg.Connection, served: str | None) -> tuple[str | None, dict[str, int]]:
    """The model the table is to serve: the served one while any title still has it (a model change
    in progress is not served until it is complete), else the one most titles have."""
    by_model = dict(conn.execute(
        "SELECT e.embedding_model, count(*) FROM vectors.content_embeddings e "
        "JOIN analytics.dim_content d ON d.content_key = e.content_key GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall())
    if served is not None and served in by_model:
        return served, by_model
    return (next(iter(by_model)) if by_model else served), by_model


def sync_content_vectors(
    conn: psycopg.Connection,
    *,
    bulk_fraction: float = 0.2,
    index: IndexConfig = IndexConfig(),
    table: str = DEFAULT_TABLE,
    index_name: str = DEFAULT_INDEX,
    force_rebuild: bool = False,
    buckets: int | None = None,
    fail_after_buckets: int | None = None,
) -> SyncReport:
    """Make `vectors.content_vectors` equal to `vectors.content_embeddings` ⋈ `analytics.dim_content`,
    serving one embedding model.

    **One model.** The table serves the model in `meta.vector_serving` while any title still has an
    embedding of it: rows of another model (a re-embed in progress) are not served; a title being
    re-embedded keeps its served row, a new title waits (``skipped``, reason "awaiting model swap").
    When every title has the new model, the new model is built in a shadow and swapped in.

    **Incremental** (small changes): one transaction on the served table: titles that disappeared
    are deleted, new ones inserted, a row rewritten (``updated_at`` bumped) only when its
    ``content_hash`` or a served column differs, so a second sync changes nothing. Readers are not
    blocked (row locks only).

    **Shadow build and swap** (:mod:`.shadow`): the table is empty, inserts + updates + deletes >
    ``bulk_fraction`` x rows, the model changes, the index is missing, invalid or of another kind
    than ``index.kind``, or ``force_rebuild``. The new table is loaded beside the served one in
    resumable hash buckets, indexed, and swapped in by one short transaction; searches keep running on
    the old table until then and never wait for the build.

    Needs a connection with no transaction open (it commits; the shadow path commits step by step).
    """
    if not 0 <= bulk_fraction <= 1:
        raise ValueError(f"bulk_fraction={bulk_fraction}: must be within [0, 1]")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("sync_content_vectors commits: call it with no transaction open")
    started = time.perf_counter()
    target = qualified(table)
    schema = table.split(".")[0] if "." in table else "public"
    with conn.transaction():
        if conn.execute("SELECT to_regclass('analytics.dim_content')").fetchone()[0] is None:
            raise RuntimeError(
                "analytics.dim_content does not exist: build the dbt models (the analytics assets) before "
                "syncing content vectors."
            )
    # a session lock, held across the shadow build's transactions: one sync at a time; readers never take it
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (_SYNC_LOCK,))
    conn.commit()
    try:
        with conn.transaction():
            served = serving_state(conn, table)
            rows_before = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0])
            served_model = served.embedding_model if rows_before else None
            model, by_model = _target_model(conn, served_model)
            # one full join of source and served rows gives every count (six subqueries over the same
            # join took 2.2 s of a no-change sync at 100k titles)
            counts = conn.execute(
                sql.SQL(
                    """
                    WITH src AS ({source}),
                    j AS (SELECT src.id AS sid, t.id AS tid, src.embedding_model AS smodel,
                                 t.embedding_model AS tmodel, {trow} IS DISTINCT FROM {srow} AS differs
                            FROM src FULL JOIN {target} t ON t.id = src.id)
                    SELECT count(*) FILTER (WHERE tid IS NULL AND smodel = %(model)s),
                           count(*) FILTER (WHERE sid IS NOT NULL AND tid IS NOT NULL AND smodel = %(model)s
                                              AND differs),
                           count(*) FILTER (WHERE sid IS NULL),
                           count(*) FILTER (WHERE tid IS NULL AND smodel IS DISTINCT FROM %(model)s),
                           count(*) FILTER (WHERE sid IS NOT NULL AND tid IS NOT NULL
                                              AND smodel IS DISTINCT FROM %(model)s AND tmodel = %(model)s),
                           count(*) FILTER (WHERE sid IS NOT NULL AND tid IS NOT NULL
                                              AND smodel IS DISTINCT FROM %(model)s
                                              AND tmodel IS DISTINCT FROM %(model)s)
                      FROM j
                    """
                ).format(source=sql.SQL(_SOURCE), target=target, trow=_row("t"), srow=_row("src")),
                {"model": model},
            ).fetchone()
            to_insert, to_update, to_delete, awaiting, kept, stale = (int(c) for c in counts)
            idx = conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (schema, index_name),
            ).fetchone()
        changed = to_insert + to_update + to_delete
        reason = None
        if model is not None and served_model is not None and model != served_model:
            reason = f"embedding model {served_model} → {model}"
        elif changed and rows_before == 0:
            reason = "initial load"
        elif changed > bulk_fraction * rows_before and changed:
            reason = f"bulk: {changed} of {rows_before} rows change (> {bulk_fraction:.0%})"
        elif force_rebuild:
            reason = "rebuild requested"
        elif rows_before and (idx is None or not idx[0]):
            reason = "index missing" if idx is None else "index invalid"
        elif rows_before and served.index_kind != index.kind:
            reason = f"index kind {served.index_kind} → {index.kind}"
        shadow = None
        build = None
        if reason is not None and model is not None:
            new_rows, kept_rows = _load_bucket_sql(table, table + "_shadow")

            def load(c: psycopg.Connection, shadow_table: str, bucket: int, n_buckets: int) -> int:
                params = {"model": model, "buckets": n_buckets, "bucket": bucket}
                return c.execute(new_rows, params).rowcount + c.execute(kept_rows, params).rowcount

            def catch_up(c: psycopg.Connection, shadow_table: str) -> int:
                return sum(_merge(c, shadow_table, model))

            shadow = shadow_rebuild(
                conn, load=load, catch_up=catch_up, model=model, reason=reason, index=index, table=table,
                buckets=buckets or BUCKETS, fail_after_buckets=fail_after_buckets,
            )
            build = shadow.index_build
            inserted, updated, deleted = to_insert, to_update, to_delete + stale
            unchanged_kept = kept
        elif (not changed and model is not None and served.embedding_model == model
              and served.rows == rows_before):
            # the counts found nothing to write: the merge's three passes over the source would write
            # nothing either (2 of the 3 s of a no-change sync at 100k). Syncs are serialised by the
            # advisory lock, so no other sync wrote meanwhile; the next sync sees any other writer.
            deleted = inserted = updated = 0
            unchanged_kept = kept + stale
        else:
            with conn.transaction():
                # serialise with writers of the table that are not syncs (tests, the synthetic catalogue)
                conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
                deleted, inserted, updated = _merge(conn, table, model) if model is not None else (0, 0, 0)
                if model is None and rows_before:  # no source rows at all: nothing may be served
                    deleted = conn.execute(sql.SQL("DELETE FROM {}").format(target)).rowcount
                conn.execute(
                    sql.SQL(
                        "INSERT INTO meta.vector_serving (table_name, embedding_model, index_kind, rows_served) "
                        "SELECT %(t)s, CASE WHEN count(*) > 0 THEN %(m)s END, %(k)s, count(*) FROM {} "
                        "ON CONFLICT (table_name) DO UPDATE SET embedding_model = EXCLUDED.embedding_model, "
                        "rows_served = EXCLUDED.rows_served"
                    ).format(target),
                    {"t": table, "m": model, "k": served.index_kind},
                )
            unchanged_kept = kept + stale
        with conn.transaction():
            rows_now = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0])
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_SYNC_LOCK,))
        conn.commit()
    unchanged = rows_now - int(inserted) - int(updated)
    return SyncReport(
        inserted=int(inserted),
        updated=int(updated),
        deleted=int(deleted),
        unchanged=unchanged,
        bulk=shadow is not None,
        index_rebuilt=shadow is not None,
        index_build=build,
        seconds=time.perf_counter() - started,
        rows_before=rows_before,
        rows_after=rows_now,
        skipped=awaiting,
        embedding_model=model,
        models_in_source=by_model,
        rebuild_reason=reason if shadow is not None else None,
        shadow=shadow,
        kept_previous=unchanged_kept if unchanged_kept else 0,
    )
