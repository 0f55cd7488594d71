"""Shadow build and swap: bulk rebuilds and model changes never make a reader wait.

The served table (`vectors.content_vectors`) keeps answering searches while its replacement is
built beside it, in ``<table>_shadow``:

1. **load, resumably** - the source rows of one embedding model go into the shadow in
   ``buckets`` hash buckets of the key (``hashtext(id) % buckets``), one committed transaction per
   bucket that also records the bucket in `meta.shadow_builds`. A run that dies (or is killed)
   leaves the finished buckets and its checkpoint behind; the next run for the same model and index
   kind continues with the buckets not yet done. A build for another model or kind is abandoned
   (its shadow dropped) and started afresh.
2. **catch up** - the same merge the incremental sync runs, against the shadow, for source rows that
   changed while the buckets were loaded (usually none).
3. **index** - the primary key, the filter indexes and the HNSW index of the configured kind are
   built on the shadow, then ``ANALYZE``. Nobody reads the shadow, so nothing waits on these locks.
4. **swap** - one short transaction: ``LOCK ... ACCESS EXCLUSIVE`` with a 20 ms ``lock_timeout`` (retried
   with a back-off, so the swap never queues for long behind a running search and readers never
   queue for long behind it), renames (served → ``_retired``, shadow → served, and their indexes),
   the new model / kind / generation in `meta.vector_serving`. The retired table is dropped after
   the commit. Prepared statements of readers re-resolve the name after the swap (the renames
   invalidate their plans), so pooled connections keep working.

The swap's own cost is catalog updates only, milliseconds at any table size; the minutes of a 100k
load and HNSW build happen while searches run on the old table.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from .index import DEFAULT_INDEX, DEFAULT_TABLE, IndexBuild, IndexConfig, build_hnsw, qualified

__all__ = [
    "BUCKETS",
    "ServingState",
    "ShadowBuild",
    "SwapTimeout",
    "serving_state",
    "shadow_rebuild",
    "shadow_table_name",
]

BUCKETS = 16
RETIRED_SUFFIX = "_retired"
SHADOW_SUFFIX = "_shadow"
# the served table's secondary indexes, by the name they carry when served (sql/003_vectors.sql)
_FILTER_INDEXES = (
    ("{t}_metadata_gin", "USING gin (metadata)"),
    ("{t}_genres_gin", "USING gin (genre_ids)"),
    ("{t}_filter_idx", "(media_type, year, vote_average)"),
)
_SERVING_SQL = (
    "SELECT embedding_model, index_kind, generation, rows_served, swapped_at FROM meta.vector_serving "
    "WHERE table_name = %s"
)


class SwapTimeout(RuntimeError):
    """The swap could not take its lock within its attempts: the shadow is kept, and served next run."""


@dataclass(frozen=True)
class ServingState:
    """What `meta.vector_serving` says the table serves (sql/017_vector_serving.sql)."""

    table: str
    embedding_model: str | None
    index_kind: str
    generation: int
    rows: int


@dataclass
class ShadowBuild:
    build_id: int
    reason: str
    embedding_model: str
    index_kind: str
    buckets: int
    buckets_loaded_now: int  # by this run (the rest were loaded by an earlier, interrupted one)
    resumed: bool
    rows_loaded: int
    caught_up: int  # rows the catch-up merge wrote after the buckets
    index_build: IndexBuild | None
    swap_ms: float
    swap_attempts: int
    generation: int  # of the table now served
    seconds: float
    partial_genres: list[int] = field(default_factory=list)  # genres given a partial HNSW index
    timings: dict[str, float] = field(default_factory=dict)
    # time.monotonic() (start, end) of each step: load, index, catch_up, swap
    phases: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)


def shadow_table_name(table: str) -> str:
    return table + SHADOW_SUFFIX


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return (schema or "public"), name


def serving_state(conn: psycopg.Connection, table: str = DEFAULT_TABLE) -> ServingState:
    """The served model and index kind; a table without a row serves nothing yet ('vector' index)."""
    row = conn.execute(_SERVING_SQL, (table,)).fetchone()
    if row is None:
        return ServingState(table, None, "vector", 0, 0)
    return ServingState(table, row[0], row[1], int(row[2]), int(row[3]))


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def _open_build(conn: psycopg.Connection, table: str) -> tuple | None:
    return conn.execute(
        "SELECT id, embedding_model, index_kind, buckets, buckets_done, rows_loaded, state FROM meta.shadow_builds "
        "WHERE table_name = %s AND state IN ('loading', 'indexing')",
        (table,),
    ).fetchone()


def _abandon(conn: psycopg.Connection, build_id: int, shadow: str) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(shadow)))
        conn.execute(
            "UPDATE meta.shadow_builds SET state = 'abandoned', updated_at = now(), finished_at = now() WHERE id = %s",
            (build_id,),
        )


def _create_shadow(conn: psycopg.Connection, table: str, shadow: str) -> None:
    # columns, defaults, CHECK constraints; no indexes: rows go in faster without them, and they are
    # built once at the end. The vector is kept in the heap page (PLAIN), not TOAST: the HNSW build,
    # exact scans and re-ranking then read one page per row instead of a TOAST index and chunks.
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS)").format(
            qualified(shadow), qualified(table)
        )
    )
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN vector SET STORAGE PLAIN").format(qualified(shadow)))
    # autovacuum would race the load for the same pages; ANALYZE runs explicitly before the swap
    conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(qualified(shadow)))


def _load_bucket(conn: psycopg.Connection, shadow: str, load, build_id: int, bucket: int, buckets: int) -> int:
    with conn.transaction():
        n = int(load(conn, shadow, bucket, buckets))
        conn.execute(
            "UPDATE meta.shadow_builds SET buckets_done = array_append(buckets_done, %s), "
            "rows_loaded = rows_loaded + %s, updated_at = now() WHERE id = %s",
            (bucket, n, build_id),
        )
    return n


def _index_shadow(conn: psycopg.Connection, table: str, shadow: str, index: IndexConfig) -> IndexBuild:
    _, served_name = _split(table)
    _, shadow_name = _split(shadow)
    target = qualified(shadow)
    with conn.transaction():
        # a run killed during the HNSW build below left these committed: the rerun keeps them
        if f"{shadow_name}_pkey" not in _index_names(conn, shadow):
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (id)").format(
                target, sql.Identifier(f"{shadow_name}_pkey")))
        for name, body in _FILTER_INDEXES:
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} {}").format(
                sql.Identifier(name.format(t=shadow_name)), target, sql.SQL(body)))
    build = build_hnsw(conn, config=index, table=shadow, index_name=DEFAULT_INDEX.replace(served_name, shadow_name))
    with conn.transaction():
        conn.execute(sql.SQL("ANALYZE {}").format(target))
        conn.execute(sql.SQL("ALTER TABLE {} RESET (autovacuum_enabled)").format(target))
    return build


def _has_valid_hnsw(conn: psycopg.Connection, table: str, index_name: str) -> bool:
    """The table's main HNSW index (by name: the partial ones of hot genres do not count) is valid."""
    return bool(conn.execute(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
        "WHERE i.indrelid = %s::regclass AND am.amname = 'hnsw' AND i.indisvalid AND c.relname = %s",
        (table, index_name),
    ).fetchone())


def partial_index_name(table_name: str, genre: int) -> str:
    return f"{table_name}_g{int(genre)}_hnsw"


_PARTIAL_NAME = re.compile(r"_g(\d+)_hnsw$")


def hot_genres(conn: psycopg.Connection, table: str, *, max_share: float, max_indexes: int, k: int = 10) -> list[int]:
    """Genres worth a partial HNSW index: filtering on one is too broad for the exact scan (more titles
    than `search.auto_exact_threshold`) and too narrow for the whole graph (at most ``max_share`` of the
    table, where most of each step of a filtered scan fails the filter); the most frequent first."""
    from .search import auto_exact_threshold

    if max_indexes <= 0 or max_share <= 0:
        return []
    rows = conn.execute(
        sql.SQL("SELECT g, count(*) FROM {}, unnest(genre_ids) g GROUP BY g ORDER BY 2 DESC, 1").format(qualified(table))
    ).fetchall()
    total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(qualified(table))).fetchone()[0]
    floor = auto_exact_threshold(k, total)
    return [int(g) for g, n in rows if floor <= n <= max_share * total][:max_indexes]


def _build_partial_indexes(conn: psycopg.Connection, shadow: str, index: IndexConfig) -> list[int]:
    """A partial HNSW index per hot genre on the shadow (same kind and graph parameters as the main
    one), each its own committed step, so a resumed build keeps the ones already built."""
    from .index import index_expression

    _, shadow_name = _split(shadow)
    expression, opclass = index_expression(index.kind)
    with conn.transaction():
        genres = hot_genres(conn, shadow, max_share=index.partial_max_share, max_indexes=index.partial_max_indexes)
    # the main index's graph parameters (half its ef_construction cost 0.03 of recall@10 at 5% of 100k
    # titles for 1 s of build) and its workers (the table's parallel_workers reloption sizes them)
    ef_construction = int(index.ef_construction)
    for genre in genres:
        with conn.transaction():
            conn.execute("SELECT set_config('maintenance_work_mem', %s, true), "
                         "set_config('max_parallel_maintenance_workers', %s, true)",
                         (str(index.maintenance_work_mem), str(int(index.parallel_workers))))
            conn.execute(sql.SQL("ALTER TABLE {} SET (parallel_workers = {})").format(
                qualified(shadow), sql.Literal(int(index.parallel_workers))))
            # the predicate is a literal, so the planner proves a filter on this genre implies it in
            # generic (prepared) plans too; search writes that filter with the same literal
            conn.execute(sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {}) WITH (m = {}, ef_construction = {}) "
                "WHERE genre_ids && {}::integer[]").format(
                sql.Identifier(partial_index_name(shadow_name, genre)), qualified(shadow), sql.SQL(expression),
                sql.SQL(opclass), sql.Literal(int(index.m)), sql.Literal(ef_construction),
                sql.Literal("{%d}" % int(genre))))
            conn.execute(sql.SQL("ALTER TABLE {} RESET (parallel_workers)").format(qualified(shadow)))
    return genres


def _partial_genres(names: list[str]) -> list[int]:
    return sorted(int(m.group(1)) for m in map(_PARTIAL_NAME.search, names) if m)


def _index_names(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
        (table,),
    ).fetchall()]


def _swap(conn: psycopg.Connection, table: str, shadow: str, *, build_id: int, model: str, kind: str,
          lock_timeout_ms: int, attempts: int) -> tuple[float, int, int]:
    schema, served_name = _split(table)
    _, shadow_name = _split(shadow)
    retired = f"{schema}.{served_name}{RETIRED_SUFFIX}"
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(retired)))  # a crash after a swap
        # counted before the lock, not under it (30-80 ms at 100k rows, which every reader queued behind
        # the lock would wait for): only the sync writes the shadow, and syncs hold one advisory lock
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(qualified(shadow))).fetchone()[0]
        new_indexes = _index_names(conn, shadow)
    for attempt in range(1, attempts + 1):
        started = time.perf_counter()
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_timeout_ms)}ms",))
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(qualified(table)))
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(qualified(shadow)))
                old_indexes = _index_names(conn, table)
                # the retired table and its indexes move aside first: index names are unique per schema
                for name in old_indexes:
                    conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(schema, name), sql.Identifier(f"{name}{RETIRED_SUFFIX}"[:63])))
                conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    qualified(table), sql.Identifier(f"{served_name}{RETIRED_SUFFIX}")))
                conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(qualified(shadow), sql.Identifier(served_name)))
                for name in new_indexes:
                    if name.startswith(shadow_name):
                        conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                            sql.Identifier(schema, name), sql.Identifier(served_name + name[len(shadow_name):])))
                partial = _partial_genres(new_indexes)
                # the build was recorded under the shadow's names: it is the served index's build now
                conn.execute(
                    "UPDATE meta.index_builds SET table_name = %s, index_name = %s WHERE table_name = %s",
                    (table, DEFAULT_INDEX if table == DEFAULT_TABLE else f"{served_name}_vector_hnsw", shadow),
                )
                generation = conn.execute(
                    "INSERT INTO meta.vector_serving AS s (table_name, embedding_model, index_kind, generation, "
                    "rows_served, swapped_at, partial_genres) VALUES (%s, %s, %s, 1, %s, now(), %s) "
                    "ON CONFLICT (table_name) DO UPDATE "
                    "SET embedding_model = EXCLUDED.embedding_model, index_kind = EXCLUDED.index_kind, "
                    "generation = s.generation + 1, rows_served = EXCLUDED.rows_served, swapped_at = now(), "
                    "partial_genres = EXCLUDED.partial_genres RETURNING generation",
                    (table, model if rows else None, kind, rows, partial),
                ).fetchone()[0]
                swap_ms = (time.perf_counter() - started) * 1000
                conn.execute(
                    "UPDATE meta.shadow_builds SET state = 'swapped', swap_ms = %s, updated_at = now(), "
                    "finished_at = now() WHERE id = %s",
                    (swap_ms, build_id),
                )
            break
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts:
                raise SwapTimeout(
                    f"could not lock {table} within {lock_timeout_ms} ms in {attempts} attempts (long-running "
                    f"readers?); the indexed shadow {shadow} is kept and is swapped in by the next sync"
                ) from None
            time.sleep(min(0.05 * attempt, 0.5))
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(retired)))
    return swap_ms, attempt, int(generation)


def shadow_rebuild(
    conn: psycopg.Connection,
    *,
    load,
    catch_up,
    model: str,
    reason: str,
    index: IndexConfig = IndexConfig(),
    table: str = DEFAULT_TABLE,
    buckets: int = BUCKETS,
    # a search queued behind the swap's lock request waits for as long as the request does: 20 ms,
    # then the swap steps back and retries (a search is ~2 ms), so no reader waits 100 ms on it
    lock_timeout_ms: int = 20,
    swap_attempts: int = 200,
    fail_after_buckets: int | None = None,
) -> ShadowBuild:
    """Build ``table``'s replacement, serving ``model``, and swap it in (module docstring).

    ``load(conn, shadow, bucket, buckets)`` inserts one bucket's rows into the shadow and returns how
    many; ``catch_up(conn, shadow)`` merges rows that changed during the load into the shadow and returns
    how many it wrote. ``fail_after_buckets`` raises after that many buckets of this run: the
    resumability test's stand-in for a killed process. Needs a connection with no transaction open
    (each step commits).
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("shadow_rebuild commits step by step: call it with no transaction open")
    if buckets < 1:
        raise ValueError(f"buckets={buckets}: must be at least 1")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    phases: dict[str, tuple[float, float]] = {}
    shadow = shadow_table_name(table)
    resumed = False
    with conn.transaction():
        open_build = _open_build(conn, table)
    if open_build is not None:
        build_id, o_model, o_kind, o_buckets, done, rows_loaded, state = open_build
        if (o_model, o_kind) != (model, index.kind) or not _exists(conn, shadow):
            _abandon(conn, build_id, shadow)
            open_build = None
        else:
            resumed = True
            buckets = int(o_buckets)
            with conn.transaction():
                conn.execute("UPDATE meta.shadow_builds SET resumed = resumed + 1, updated_at = now() WHERE id = %s",
                             (build_id,))
    if open_build is None:
        with conn.transaction():
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(shadow)))  # left by a crash
            _create_shadow(conn, table, shadow)
            build_id = conn.execute(
                "INSERT INTO meta.shadow_builds (table_name, shadow_table, embedding_model, index_kind, reason, "
                "buckets) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (table, shadow, model, index.kind, reason, buckets),
            ).fetchone()[0]
        done, rows_loaded, state = [], 0, "loading"
    t0 = time.perf_counter()
    loaded_now = 0
    if state == "loading":
        for bucket in range(buckets):
            if bucket in (done or []):
                continue
            if fail_after_buckets is not None and loaded_now >= fail_after_buckets:
                raise RuntimeError(f"shadow build {build_id}: stopped after {loaded_now} buckets (fail_after_buckets)")
            rows_loaded += _load_bucket(conn, shadow, load, build_id, bucket, buckets)
            loaded_now += 1
        with conn.transaction():
            conn.execute("UPDATE meta.shadow_builds SET state = 'indexing', updated_at = now() WHERE id = %s",
                         (build_id,))
    timings["load_s"] = time.perf_counter() - t0
    phases["load"] = (time.monotonic() - timings["load_s"], time.monotonic())
    t0 = time.perf_counter()
    m0 = time.monotonic()
    index_build = None
    _, served_name = _split(table)
    _, shadow_name = _split(shadow)
    main_index = DEFAULT_INDEX.replace(served_name, shadow_name)
    with conn.transaction():
        # the HNSW index is built last: only with it is the shadow indexed (a kill during its build
        # leaves the key and filter indexes, and swapping that in served a table with no vector index)
        indexed = _has_valid_hnsw(conn, shadow, main_index)
    if not indexed:
        index_build = _index_shadow(conn, table, shadow, index)
    t1 = time.perf_counter()
    partial = _build_partial_indexes(conn, shadow, index)
    timings["partial_index_s"] = time.perf_counter() - t1
    timings["index_s"] = time.perf_counter() - t0
    phases["index"] = (m0, time.monotonic())
    t0 = time.perf_counter()
    m0 = time.monotonic()
    with conn.transaction():
        caught_up = int(catch_up(conn, shadow))
    timings["catch_up_s"] = time.perf_counter() - t0
    phases["catch_up"] = (m0, time.monotonic())
    if index_build is not None:
        with conn.transaction():
            conn.execute("UPDATE meta.shadow_builds SET index_build_s = %s, updated_at = now() WHERE id = %s",
                         (index_build.duration_s, build_id))
    m0 = time.monotonic()
    swap_ms, attempts, generation = _swap(conn, table, shadow, build_id=build_id, model=model, kind=index.kind,
                                          lock_timeout_ms=lock_timeout_ms, attempts=swap_attempts)
    phases["swap"] = (m0, time.monotonic())
    timings["swap_ms"] = swap_ms
    return ShadowBuild(
        build_id=int(build_id), reason=reason, embedding_model=model, index_kind=index.kind, buckets=buckets,
        buckets_loaded_now=loaded_now, resumed=resumed, rows_loaded=int(rows_loaded), caught_up=caught_up,
        index_build=index_build, swap_ms=swap_ms, swap_attempts=attempts, generation=generation,
        seconds=time.perf_counter() - started, timings=timings, phases=phases, partial_genres=partial,
    )
