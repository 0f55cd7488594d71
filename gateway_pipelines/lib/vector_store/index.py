"""HNSW index builds and index health for the vector tables.

A build is ``DROP INDEX IF EXISTS`` + ``CREATE INDEX ... USING hnsw`` run inside ``conn.transaction()``
(a savepoint when the caller already has a transaction open, so a bulk sync can drop, merge and
rebuild in one transaction), with three settings that decide how fast it is:

* ``maintenance_work_mem`` (``SET LOCAL``): the graph is built in memory; when it stops fitting,
  pgvector says so in a NOTICE and the build slows down a lot.
* ``max_parallel_maintenance_workers`` (``SET LOCAL``): the cap on workers.
* the table's ``parallel_workers`` reloption. Postgres sizes a parallel index build from the size
  of the table's *main fork*. A 768-d vector is 3 KB, which is TOASTed (the ``vector`` type has
  storage ``external``), so the main fork of 100k titles is only a few MB and the planner asks for
  **no** workers at all. The reloption overrides that estimate. It is set for the build and then
  restored, so it does not change how queries on the table are planned.

Whether workers really ran is read from the server, not assumed: with ``client_min_messages =
debug1`` Postgres reports ``building index "x" on table "y" serially`` or ``... with request for N
parallel workers``, and pgvector then reports ``using N parallel workers`` (nothing if none could be
launched, in which case it builds serially). Those messages arrive as notices and are captured with
``conn.add_notice_handler``.

Index kinds (``IndexConfig.kind``; docs/vector_store.md has the measurements behind the default):

* ``vector`` - HNSW on the ``vector(768)`` column itself (``vector_cosine_ops``).
* ``halfvec`` - HNSW on the expression ``vector::halfvec(768)`` (``halfvec_cosine_ops``): half the
  graph in memory and on disk, so it builds faster; the candidates are re-ranked by the full-precision
  distance, so results carry exact distances.
* ``bit`` - binary quantisation: HNSW on ``binary_quantize(vector)::bit(768)`` (``bit_hamming_ops``),
  1 bit a dimension; ``ef_search`` candidates by Hamming distance are re-ranked by the exact cosine
  distance.

The table keeps its full ``vector(768)`` column whatever the kind: the exact scans, re-ranking and
the recall ground truth read it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

__all__ = [
    "DEFAULT_INDEX",
    "INDEX_KINDS",
    "index_expression",
    "DEFAULT_TABLE",
    "IndexBuild",
    "IndexConfig",
    "IndexStatus",
    "build_hnsw",
    "index_status",
    "ensure_vector_types",
    "qualified",
]

DEFAULT_TABLE = "vectors.content_vectors"
DEFAULT_INDEX = "content_vectors_vector_hnsw"

INDEX_KINDS = ("vector", "halfvec", "bit")
DEFAULT_KIND = "halfvec"  # measured in bench/vector: docs/vector_store.md
DIM = 768
# what the HNSW index is built on, and with which operator class, per kind (fixed text, never input)
_EXPRESSIONS = {
    "vector": ("vector", "vector_cosine_ops"),
    "halfvec": ("(vector::halfvec(768))", "halfvec_cosine_ops"),
    "bit": ("(binary_quantize(vector)::bit(768))", "bit_hamming_ops"),
}


def index_expression(kind: str) -> tuple[str, str]:
    """(indexed expression, operator class) of an index kind; search orders by the same expression."""
    if kind not in _EXPRESSIONS:
        raise ValueError(f"index kind {kind!r}: must be one of {INDEX_KINDS}")
    return _EXPRESSIONS[kind]


_USING = re.compile(r"using (\d+) parallel workers?")
_REQUEST = re.compile(r"with request for (\d+) parallel workers?")


@dataclass(frozen=True)
class IndexConfig:
    """HNSW build parameters (the defaults are the ones in `sql/003_vectors.sql`)."""

    m: int = 16
    ef_construction: int = 64
    maintenance_work_mem: str = "1GB"
    parallel_workers: int = 2
    kind: str = DEFAULT_KIND  # see INDEX_KINDS
    # partial HNSW indexes for "hot" genres (.shadow.hot_genres): a genre gets one when filtering on it
    # is too broad for the exact scan and too narrow for the whole graph: more titles than the exact
    # threshold, at most this share of the table; at most `partial_max_indexes` of them (0: none)
    partial_max_share: float = 0.10
    partial_max_indexes: int = 2  # each build scans the whole table: ~5.5 s at 100k titles

    def __post_init__(self) -> None:
        if not 0 <= float(self.partial_max_share) <= 1 or not 0 <= int(self.partial_max_indexes) <= 64:
            raise ValueError(f"partial_max_share={self.partial_max_share} (0..1), partial_max_indexes="
                             f"{self.partial_max_indexes} (0..64)")
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"kind={self.kind!r}: must be one of {INDEX_KINDS}")
        if not 2 <= int(self.m) <= 100:
            raise ValueError(f"m={self.m}: pgvector accepts 2..100")
        if not 4 <= int(self.ef_construction) <= 1000 or self.ef_construction < 2 * self.m:
            raise ValueError(
                f"ef_construction={self.ef_construction}: pgvector accepts 4..1000 and at least 2*m ({2 * self.m})"
            )
        if not 0 <= int(self.parallel_workers) <= 1024:
            raise ValueError(f"parallel_workers={self.parallel_workers}: must be 0..1024")
        if not re.fullmatch(r"\d+\s*(kB|MB|GB|TB)?", str(self.maintenance_work_mem)):
            raise ValueError(f"maintenance_work_mem={self.maintenance_work_mem!r}: use e.g. '512MB' or '1GB'")


@dataclass(frozen=True)
class IndexBuild:
    duration_s: float
    rows: int
    m: int
    ef_construction: int
    parallel_workers_requested: int
    # None only if the server sent none of the DEBUG1 build messages (then we cannot tell)
    parallel_workers_launched: int | None
    notices: tuple[str, ...] = field(default=(), repr=False)  # e.g. "hnsw graph no longer fits into maintenance_work_mem"


@dataclass(frozen=True)
class IndexStatus:
    exists: bool
    valid: bool
    size_bytes: int
    rows_now: int
    rows_at_last_build: int | None
    drift_fraction: float | None  # rows inserted + updated + deleted since the last build / rows at that build
    last_built_at: datetime | None
    m: int | None
    ef_construction: int | None
    kind: str | None = None  # the index kind its operator class says (INDEX_KINDS)


def qualified(name: str) -> sql.Identifier:
    """'schema.table' (or 'table') as a quoted identifier; no SQL text from the caller is ever spliced in."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise ValueError(f"{name!r} is not a table name of the form schema.table")
    return sql.Identifier(*parts)


def ensure_vector_types(conn: psycopg.Connection) -> int:
    """The `vector` type's oid, registering pgvector's adapters first if this connection lacks them
    (a connection opened before the extension existed). Call it inside a transaction block."""
    try:
        return conn.adapters.types["vector"].oid
    except KeyError:
        from pgvector.psycopg import register_vector

        try:
            register_vector(conn)
        except psycopg.ProgrammingError:
            raise RuntimeError("the vector extension is not installed in this database: run the migrations") from None
        return conn.adapters.types["vector"].oid


def _schema_of(table: str) -> str:
    return table.split(".")[0] if "." in table else "public"


def parse_parallel_notices(messages: list[str]) -> int | None:
    """Workers launched according to the build's DEBUG1 messages (see the module docstring)."""
    launched: int | None = None
    for msg in messages:
        if (m := _USING.search(msg)) is not None:
            return int(m.group(1))
        if "serially" in msg and "building index" in msg:
            launched = 0
        elif _REQUEST.search(msg) is not None:
            launched = 0  # requested; stays 0 unless pgvector says it is using workers
    return launched


def _reloption(conn: psycopg.Connection, table: str, name: str) -> str | None:
    row = conn.execute(
        "SELECT option_value FROM pg_options_to_table((SELECT reloptions FROM pg_class WHERE oid = %s::regclass)) "
        "WHERE option_name = %s",
        (table, name),
    ).fetchone()
    return None if row is None else row[0]


def build_hnsw(
    conn: psycopg.Connection,
    *,
    config: IndexConfig = IndexConfig(),
    table: str = DEFAULT_TABLE,
    column: str | None = None,
    index_name: str = DEFAULT_INDEX,
    opclass: str | None = None,
) -> IndexBuild:
    """(Re)build the HNSW index and record it in `meta.index_builds`.

    What is indexed follows ``config.kind`` (see the module docstring); ``column`` / ``opclass``
    override it for other tables' plain vector columns.

    Runs in ``conn.transaction()``: on an idle connection it commits on return; inside a transaction
    the caller has open it is a savepoint and the caller's commit publishes the new index.
    """
    expression, default_opclass = index_expression(config.kind)
    opclass = opclass or default_opclass
    if not re.fullmatch(r"[a-z0-9_]+", opclass):
        raise ValueError(f"opclass {opclass!r} is not an operator class name")
    indexed = sql.Identifier(column) if column is not None else sql.SQL(expression)
    table_id = qualified(table)
    index_id = sql.Identifier(_schema_of(table), index_name)
    messages: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        messages.append(f"{diag.severity_nonlocalized or diag.severity}: {diag.message_primary}")

    conn.add_notice_handler(on_notice)
    try:
        with conn.transaction():
            previous_level = conn.execute("SELECT current_setting('client_min_messages')").fetchone()[0]
            conn.execute(
                "SELECT set_config('maintenance_work_mem', %s, true), "
                "set_config('max_parallel_maintenance_workers', %s, true)",
                (str(config.maintenance_work_mem), str(int(config.parallel_workers))),
            )
            previous_workers = _reloption(conn, table, "parallel_workers")
            conn.execute(
                sql.SQL("ALTER TABLE {} SET (parallel_workers = {})").format(
                    table_id, sql.Literal(int(config.parallel_workers))
                )
            )
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(index_id))
            conn.execute("SELECT set_config('client_min_messages', 'debug1', true)")
            started = time.perf_counter()
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} USING hnsw ({} {}) WITH (m = {}, ef_construction = {})").format(
                    sql.Identifier(index_name),
                    table_id,
                    indexed,
                    sql.SQL(opclass),
                    sql.Literal(int(config.m)),
                    sql.Literal(int(config.ef_construction)),
                )
            )
            duration = time.perf_counter() - started
            conn.execute("SELECT set_config('client_min_messages', %s, true)", (previous_level,))
            if previous_workers is None:
                conn.execute(sql.SQL("ALTER TABLE {} RESET (parallel_workers)").format(table_id))
            else:
                conn.execute(
                    sql.SQL("ALTER TABLE {} SET (parallel_workers = {})").format(
                        table_id, sql.Literal(int(previous_workers))
                    )
                )
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_id)).fetchone()[0]
            if index_name == DEFAULT_INDEX and column is None:
                # search orders by the expression of the index it is served by
                conn.execute("UPDATE meta.vector_serving SET index_kind = %s WHERE table_name = %s", (config.kind, table))
            launched = parse_parallel_notices(messages)
            conn.execute(
                "INSERT INTO meta.index_builds (table_name, index_name, rows_indexed, m, ef_construction, "
                "parallel_workers, duration_s) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    table,
                    index_name,
                    rows,
                    int(config.m),
                    int(config.ef_construction),
                    launched if launched is not None else int(config.parallel_workers),
                    duration,
                ),
            )
    finally:
        conn.remove_notice_handler(on_notice)
    interesting = tuple(m for m in messages if "NOTICE" in m or "WARNING" in m or "parallel" in m or "hnsw" in m)
    return IndexBuild(
        duration_s=duration,
        rows=int(rows),
        m=int(config.m),
        ef_construction=int(config.ef_construction),
        parallel_workers_requested=int(config.parallel_workers),
        parallel_workers_launched=launched,
        notices=interesting,
    )


def _has_columns(conn: psycopg.Connection, table: str, *columns: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = ANY(%s) AND NOT attisdropped",
        (table, list(columns)),
    ).fetchone()
    return row[0] == len(columns)


def index_status(
    conn: psycopg.Connection, table: str = DEFAULT_TABLE, index_name: str = DEFAULT_INDEX
) -> IndexStatus:
    """Does the index exist, is it valid, how far has the table moved since it was built.

    Drift counts rows inserted and updated since the last recorded build (from ``created_at`` /
    ``updated_at`` when the table has them) plus rows deleted, over the rows at that build. Tables
    without those columns fall back to the change in row count. Read-only; runs in the caller's
    transaction (or an implicit one).
    """
    table_id = qualified(table)
    schema = _schema_of(table)
    idx = conn.execute(
        "SELECT i.indisvalid, pg_relation_size(c.oid), c.reloptions, "
        "(SELECT opcname FROM pg_opclass WHERE oid = i.indclass[0]) FROM pg_class c "
        "JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indrelid = %s::regclass",
        (schema, index_name, table),
    ).fetchone()
    rows_now = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_id)).fetchone()[0])
    last = conn.execute(
        "SELECT rows_indexed, built_at, m, ef_construction FROM meta.index_builds "
        "WHERE table_name = %s AND index_name = %s ORDER BY built_at DESC, id DESC LIMIT 1",
        (table, index_name),
    ).fetchone()
    m = ef = None
    if idx is not None:
        opts = dict(o.split("=", 1) for o in (idx[2] or []))
        m = int(opts.get("m", 16))
        ef = int(opts.get("ef_construction", 64))
    rows_at = built_at = drift = None
    if last is not None:
        rows_at, built_at = int(last[0]), last[1]
        m = m if m is not None else last[2]
        ef = ef if ef is not None else last[3]
        if _has_columns(conn, table, "created_at", "updated_at"):
            inserted, updated = conn.execute(
                sql.SQL(
                    "SELECT count(*) FILTER (WHERE created_at > %(t)s), "
                    "count(*) FILTER (WHERE created_at <= %(t)s AND updated_at > %(t)s) FROM {}"
                ).format(table_id),
                {"t": built_at},
            ).fetchone()
            deleted = max(0, rows_at - (rows_now - int(inserted)))
            changed = int(inserted) + int(updated) + deleted
        else:
            changed = abs(rows_now - rows_at)
        drift = changed / max(rows_at, 1)
    return IndexStatus(
        exists=idx is not None,
        valid=bool(idx[0]) if idx is not None else False,
        size_bytes=int(idx[1]) if idx is not None else 0,
        rows_now=rows_now,
        rows_at_last_build=rows_at,
        drift_fraction=drift,
        last_built_at=built_at,
        m=m,
        ef_construction=ef,
        kind=None if idx is None else next((k for k, (_, opc) in _EXPRESSIONS.items() if opc == idx[3]), None),
    )


# Incremental inserts keep an HNSW graph valid but, past this share of the table, it was built for
# a different table: rebuilding restores recall and the build-time parameters.
DRIFT_REBUILD_FRACTION = 0.3


def rebuild_reason(status: IndexStatus, *, threshold: float = DRIFT_REBUILD_FRACTION, forced: bool = False) -> str | None:
    """Why the serving index must be rebuilt now, or None when it is healthy."""
    if forced:
        return "rebuild requested (force_index_rebuild)"
    if status.rows_now == 0:
        return None
    if not status.exists:
        return "index missing"
    if not status.valid:
        return "index invalid"
    if status.drift_fraction is not None and status.drift_fraction > threshold:
        return f"table moved {status.drift_fraction:.0%} since the last build (rebuild above {threshold:.0%})"
    return None
