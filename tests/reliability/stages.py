"""The platform's write stages, each runnable to completion or killed with SIGKILL from inside it.

A stage is built on a template database that holds the state before it (`prepare`), and runs the
real library code (`run`) that the Dagster assets call: the raw COPY of a TMDB ingest, the dbt
models, the embedding asset, the vector merge, the HNSW index build, and the legacy migration's
promotion (swap). `kill_inside` starts the stage in a process of its own
(``python -m tests.reliability.stages NAME URL WORKDIR``), watches `pg_stat_activity` until one of the
stage's statements is running inside an open transaction, and kills the process with -9.
`fingerprint` reads what a stage's tables hold (row count and a checksum of the rows, leaving out
columns that differ by run: timestamps and sequence-generated ids), so that a test can say "the old
state, exactly" after a kill and "the same as an uninterrupted run" after the rerun.

Used by tests/reliability/test_kill9.py and bench/reliability/run.py.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY_1, DAY_2 = date(2026, 4, 1), date(2026, 4, 2)
_names = itertools.count()


# -- fingerprints -----------------------------------------------------------------------------------

_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
# run-dependent by design: when a row was written, by which run, how long it took
_VOLATILE_NAMES = re.compile(r"(_at|_seconds|_s|_ms)$|^(run_id|path|source_path|build_id|counts|seconds)$")


def _stable_columns(conn: psycopg.Connection, table: str) -> list[str]:
    columns = []
    for name, type_, identity, default in conn.execute(_COLUMNS_SQL, (table,)).fetchall():
        if type_.startswith("timestamp") or identity or (default or "").startswith("nextval("):
            continue
        if _VOLATILE_NAMES.search(name):
            continue
        columns.append(name)
    return columns


def fingerprint(url: str, tables: tuple[str, ...], ignore: tuple[str, ...] = ()) -> dict[str, tuple[int, str] | str]:
    """{table: (rows, md5 of the sorted row checksums)} over the run-independent columns (and not the
    `ignore`d "table.column"s); "absent" for a table that does not exist."""
    out: dict[str, tuple[int, str] | str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                out[table] = "absent"
                continue
            columns = [c for c in _stable_columns(conn, table) if f"{table}.{c}" not in ignore]
            row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in columns))
            query = sql.SQL("SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') "
                            "FROM (SELECT md5({row}::text) AS h FROM {table} t) AS s").format(
                row=row, table=sql.Identifier(*table.split(".")))
            rows, digest = conn.execute(query).fetchone()
            out[table] = (int(rows), digest)
    return out


# -- databases --------------------------------------------------------------------------------------


def _admin(server_url: str):
    return psycopg.connect(server_url, autocommit=True)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    from gateway_pipelines.lib.warehouse import with_database

    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if template:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                         sql.Identifier(template)))
        else:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_name(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")  # not rsplit("/"): the socket folder in the query has slashes


# -- the stages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    name: str
    tables: tuple[str, ...]  # what the stage writes: after a kill, exactly as before it
    marker: str  # a statement of the stage (regex over pg_stat_activity.query) seen inside a transaction
    prepare: Callable[[str, Path], None]  # the state before the stage, in a fresh migrated database
    run: Callable[[str, Path], None]  # the stage, to completion
    # "table.column"s left out of the fingerprint: values drawn from a sequence inside the stage's
    # transaction (a killed transaction consumes them, so the rerun draws others)
    ignore: tuple[str, ...] = ()
    extra: Callable[[str], object] | None = None  # more state to compare, e.g. the served indexes
    # One transaction for all its tables, so a kill leaves all of them old or all new. dbt builds each
    # model in its own transaction, by design: a kill between two models leaves the first new and the
    # next old ("mixed"), each table whole, and the rerun finishes the rest.
    atomic: bool = True

    def fingerprint(self, url: str) -> dict:
        found: dict = fingerprint(url, self.tables, self.ignore)
        if self.extra:
            found["extra"] = self.extra(url)
        return found


def _connect(url: str):
    from gateway_pipelines.lib.warehouse import connect

    return connect(url)


def _genres(conn) -> None:
    from gateway_pipelines.lib.tmdb.genres import MOVIE_GENRES, TV_GENRES
    from gateway_pipelines.lib.tmdb.raw_store import upsert_genres

    upsert_genres(conn, "movie", [{"id": k, "name": v} for k, v in MOVIE_GENRES.items()])
    upsert_genres(conn, "tv", [{"id": k, "name": v} for k, v in TV_GENRES.items()])


def _ingest(url: str, *, seed: int, n: int, day: date) -> None:
    from gateway_pipelines.lib.tmdb.raw_store import ingest
    from gateway_pipelines.lib.tmdb.sources import SampleSource

    with _connect(url) as conn:
        _genres(conn)
        ingest(conn, SampleSource(seed=seed, n_movies=n, n_tv=0).records(day), source="sample", partition=day)
        conn.commit()


def _dbt(url: str, *args: str) -> None:
    from tests.integration.vector_store.data import dbt_build

    dbt_build(url, "run", *args)


# raw COPY: yesterday's 200 titles are in raw; today's ingest of 600 (another seed: new and changed titles)
def _raw_prepare(url: str, work: Path) -> None:
    _ingest(url, seed=7, n=200, day=DAY_1)


def _raw_run(url: str, work: Path) -> None:
    _ingest(url, seed=8, n=600, day=DAY_2)


# dbt: the models built from yesterday's raw; today's raw landed; the models run again
DBT_MODELS = ("--select", "stg_tmdb__titles dim_content")


def _dbt_prepare(url: str, work: Path) -> None:
    _ingest(url, seed=7, n=300, day=DAY_1)
    _dbt(url, *DBT_MODELS)
    _ingest(url, seed=8, n=500, day=DAY_2)


def _dbt_run(url: str, work: Path) -> None:
    _dbt(url, *DBT_MODELS)


# embedding: 300 titles embedded once; then every overview changed and a tenth of the titles gone, so the
# asset re-embeds them all and deletes the rest
def _embed(url: str, work: Path) -> None:
    import dagster as dg

    from gateway_pipelines.defs.embeddings.assets import content_embeddings
    from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
    from gateway_pipelines.lib.warehouse import WarehouseResource

    warehouse = WarehouseResource(database_url=url)
    try:
        result = dg.materialize([content_embeddings], resources={
            "warehouse": warehouse, "embeddings": EmbeddingResource(models_dir=str(work / "models"))})
    finally:
        warehouse.close()
    if not result.success:
        raise RuntimeError("content_embeddings failed")


def _catalogue(url: str, n: int) -> tuple[list[str], object]:
    """`n` titles in analytics.dim_content (the dbt model's exact columns); their keys and vectors."""
    from tests.integration.vector_store.data import create_dim_content, insert_dim_content, skewed_catalogue

    keys, vectors, dims = skewed_catalogue(n)
    with _connect(url) as conn:
        create_dim_content(conn)
        insert_dim_content(conn, dims)
        conn.commit()
    return keys, vectors


def _embedding_prepare(url: str, work: Path) -> None:
    _catalogue(url, 300)
    _embed(url, work)  # fits the local model once, in `work`, for every later run of the stage
    with _connect(url) as conn:
        conn.execute("UPDATE analytics.dim_content SET overview = overview || ' Restored edition.'")
        conn.execute("DELETE FROM analytics.dim_content WHERE tmdb_id % 10 = 3")
        conn.commit()


# vector merge: 1,000 embeddings stored; a load of 1,500 (1,000 new, 500 changed) that replaces the set
N_MERGE = 1500


def _merge_rows(start: int, n: int, seed: int):
    from tests.integration.vector_store.data import clustered_vectors, embedding_rows

    keys = [f"movie-{i}" for i in range(start, start + n)]
    return embedding_rows(keys, clustered_vectors(n, seed=seed))


def _merge_prepare(url: str, work: Path) -> None:
    from gateway_pipelines.lib.vector_store import copy_merge_embeddings

    with _connect(url) as conn:
        copy_merge_embeddings(conn, _merge_rows(0, 1000, seed=1))


def _merge_run(url: str, work: Path) -> None:
    from gateway_pipelines.lib.vector_store import copy_merge_embeddings

    rows = _merge_rows(500, N_MERGE, seed=2)  # keys 0-499 go, 500-999 change, 1000-1999 are new
    with _connect(url) as conn:
        copy_merge_embeddings(conn, rows, delete_absent=True)


# index build: 800 titles served with their HNSW index; a forced rebuild (shadow build, then swap)
def _index_prepare(url: str, work: Path) -> None:
    from gateway_pipelines.lib.vector_store import copy_merge_embeddings, sync_content_vectors
    from tests.integration.vector_store.data import embedding_rows

    keys, vectors = _catalogue(url, 800)
    with _connect(url) as conn:
        copy_merge_embeddings(conn, embedding_rows(keys, vectors))
        sync_content_vectors(conn)


def _index_run(url: str, work: Path) -> None:
    from gateway_pipelines.lib.vector_store import sync_content_vectors

    with _connect(url) as conn:
        sync_content_vectors(conn, force_rebuild=True)


# migration swap: a 1,000-record RuVector export staged; its promotion into vectors.vector_store
def _migration_prepare(url: str, work: Path) -> None:
    from gateway_pipelines.lib.migration.ruvector import RuVectorReader
    from gateway_pipelines.lib.migration.samples import write_ruvector_jsonl
    from gateway_pipelines.lib.migration.staging import stage_source, start_import

    path = write_ruvector_jsonl(work / "legacy_vectors.jsonl", n=1000, dim=384, seed=3)
    reader = RuVectorReader(path)
    with _connect(url) as conn:
        import_id, _ = start_import(conn, kind="ruvector", path=str(path), fingerprint=reader.fingerprint(),
                                    run_id="kill9-prepare", dry_run=False)
        conn.commit()
    stage_source(lambda: _connect(url), reader, import_id=import_id, knn_queries=5, k=5)


def _migration_run(url: str, work: Path) -> None:
    from gateway_pipelines.lib.migration.promote import promote

    with _connect(url) as conn:
        import_id, key = conn.execute(
            "SELECT import_id, source_key FROM meta.legacy_imports WHERE status = 'staged' "
            "ORDER BY import_id DESC LIMIT 1").fetchone()
        conn.rollback()
        promote(conn, import_id, key)


STAGES: dict[str, Stage] = {s.name: s for s in (
    # raw_watermark fingerprints row versions (ctid, xmin): transaction ids differ between two copies
    Stage("raw_copy", ("raw.tmdb_titles", "raw.tmdb_rejects", "raw.tmdb_batches", "raw.tmdb_held_titles"),
          r"^\s*COPY\s+tmdb_titles_stage", _raw_prepare, _raw_run, ignore=("raw.tmdb_batches.raw_watermark",)),
    Stage("dbt", ("analytics.stg_tmdb__titles", "analytics.dim_content"),
          r"stg_tmdb__titles|dim_content", _dbt_prepare, _dbt_run, atomic=False),
    Stage("embedding", ("vectors.content_embeddings",),
          r"content_embeddings", _embedding_prepare, _embed),
    Stage("vector_merge", ("vectors.content_embeddings",),
          r"_stage_content_embeddings", _merge_prepare, _merge_run),
    Stage("index_build", ("vectors.content_vectors", "meta.vector_serving"),
          r"CREATE\s+INDEX", _index_prepare, _index_run,
          extra=lambda url: served_indexes(url, "vectors.content_vectors")),
    Stage("migration_swap", ("vectors.vector_store", "meta.legacy_id_map", "meta.legacy_imports"),
          r"vector_store|legacy_id_map|legacy_imports", _migration_prepare, _migration_run,
          ignore=("meta.legacy_id_map.target_id",)),
)}


def served_indexes(url: str, table: str) -> list[str]:
    """Valid indexes on `table`, by access method and column: a rebuild must leave one, valid."""
    with psycopg.connect(url, autocommit=True) as conn:
        return sorted(f"{am}:{cols}" for am, cols in conn.execute(
            "SELECT am.amname, pg_get_indexdef(i.indexrelid, 1, true) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisvalid", (table,)).fetchall())


# -- killing a stage from inside --------------------------------------------------------------------

_INSIDE_SQL = """
SELECT pid, state, left(query, 200) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND xact_start IS NOT NULL AND state IN ('active', 'idle in transaction') AND query ~* %s
LIMIT 1
"""
_OTHERS_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


@dataclass
class KillResult:
    caught: bool  # killed inside the stage (False: it finished, or failed, before the marker showed)
    statement: str = ""
    returncode: int | None = None
    survivors: int = 0  # processes of the killed stage (dbt's, say) still alive afterwards
    seconds_to_catch: float = 0.0
    log: str = ""
    delay: float = 0.0


def stage_command(name: str, url: str, work: Path) -> list[str]:
    return [sys.executable, "-m", "tests.reliability.stages", name, url, str(work)]


def kill_inside(stage: Stage, url: str, work: Path, *, timeout: float = 300.0, delay: float = 0.0) -> KillResult:
    """Run `stage` in a process of its own; SIGKILL it `delay` s after one of its statements shows up
    inside a transaction; then wait until the server has noticed (the dead session's backend is gone)."""
    import psutil

    log_path = work / f"{stage.name}-{next(_names)}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log, psycopg.connect(url, autocommit=True) as watcher:
        proc = subprocess.Popen(stage_command(stage.name, url, work), cwd=PROJECT_ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        try:
            seen = None
            while seen is None:
                if proc.poll() is not None:
                    return KillResult(False, returncode=proc.returncode, log=log_path.read_text(errors="replace"))
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"{stage.name}: no statement matching {stage.marker!r} within {timeout:.0f}s")
                seen = watcher.execute(_INSIDE_SQL, (stage.marker,)).fetchone()
                if seen is None:
                    time.sleep(0.003)
            caught_after = time.monotonic() - started
            if delay:
                time.sleep(delay)
            family = psutil.Process(proc.pid).children(recursive=True)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        _, alive = psutil.wait_procs(family, timeout=20)
        deadline = time.monotonic() + timeout
        while watcher.execute(_OTHERS_SQL).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stage.name}: the killed session's backend is still there after {timeout:.0f}s")
            time.sleep(0.05)
    return KillResult(True, f"{seen[1]}: {seen[2]}", proc.returncode, len(alive), caught_after,
                      log_path.read_text(errors="replace"), delay)


def run_to_completion(stage: Stage, url: str, work: Path) -> None:
    """The stage in a process of its own, as an operator's rerun would be; raises if it fails."""
    done = subprocess.run(stage_command(stage.name, url, work), cwd=PROJECT_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{stage.name} rerun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


# -- one trial, and the template it starts from -----------------------------------------------------


@dataclass
class Prepared:
    stage: Stage
    template: str  # database holding the state before the stage
    work: Path
    before: dict
    expected: dict  # what an uninterrupted run ends with


def prepare(stage: Stage, server_url: str, work: Path) -> Prepared:
    """The stage's "before" database (a template for the trials) and an uninterrupted run's result."""
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect
    from gateway_pipelines.settings import SQL_DIR

    template = f"k9_{stage.name}_{os.getpid()}"
    url = create_database(server_url, template)
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
    stage.prepare(url, work)
    reference = create_database(server_url, f"{template}_ref", template=template)
    stage.run(reference, work)
    expected = stage.fingerprint(reference)
    drop_database(server_url, f"{template}_ref")
    return Prepared(stage, template, work, stage.fingerprint(url), expected)


@dataclass
class TrialOutcome:
    stage: str
    trial: int
    delay: float
    caught: bool  # the kill landed inside the stage
    killed_at: str
    after_kill: str  # "old" (as before), "new" (the commit came first: only after a delay), "partial"
    survivors: int  # processes of the stage alive after the kill
    converged: bool  # the rerun ended exactly as an uninterrupted run
    rows_lost: int  # rows the rerun ended short of an uninterrupted run, over the stage's tables
    duplicates: int  # rows it ended with beyond an uninterrupted run
    detail: str = ""
    partial_tables: tuple[str, ...] = ()  # tables holding neither their old rows nor the new ones


def classify(state: dict, before: dict, expected: dict) -> tuple[str, tuple[str, ...]]:
    """After a kill, each table (and the extra state) is old, new, or partial (neither). The trial is
    "old" or "new" when every part is, "mixed" when whole parts of both kinds sit side by side, and
    "partial" when any part is neither."""
    kinds = {key: "old" if value == before.get(key) else "new" if value == expected.get(key) else "partial"
             for key, value in state.items()}
    partial = tuple(sorted(key for key, kind in kinds.items() if kind == "partial"))
    found = set(kinds.values())
    if partial:
        return "partial", partial
    return (found.pop() if len(found) == 1 else "mixed"), ()


def _row_gap(got: dict, expected: dict) -> tuple[int, int]:
    lost = extra = 0
    for table, want in expected.items():
        have = got.get(table)
        want_rows = want[0] if isinstance(want, tuple) else 0
        have_rows = have[0] if isinstance(have, tuple) else 0
        lost += max(0, want_rows - have_rows)
        extra += max(0, have_rows - want_rows)
    return lost, extra


def kill_trial(prepared: Prepared, server_url: str, *, trial: int, delay: float) -> TrialOutcome:
    """Copy the template, kill the stage inside it, read the tables, rerun it, read them again."""
    stage = prepared.stage
    url = create_database(server_url, f"{prepared.template}_t{trial}", template=prepared.template)
    try:
        killed = kill_inside(stage, url, prepared.work, delay=delay)
        if not killed.caught:
            return TrialOutcome(stage.name, trial, delay, False, "", "old", 0, False, 0, 0,
                                f"finished (rc {killed.returncode}) before the kill landed: {killed.log[-1500:]}")
        state = stage.fingerprint(url)
        after, partial = classify(state, prepared.before, prepared.expected)
        if after == "mixed" and stage.atomic:
            after = "partial"  # its tables share one transaction: old and new side by side is a torn commit
        detail = "" if after in ("old", "new", "mixed") else f"after the kill: {state}; before: {prepared.before}"
        stage.run(url, prepared.work)
        final = stage.fingerprint(url)
        lost, extra = _row_gap(final, prepared.expected)
        if final != prepared.expected:
            detail += f" rerun: {final}; uninterrupted: {prepared.expected}"
        return TrialOutcome(stage.name, trial, delay, True, killed.statement, after, killed.survivors,
                            final == prepared.expected, lost, extra, detail.strip(), partial)
    finally:
        drop_database(server_url, database_name(url))


def main(argv: list[str]) -> int:
    name, url, work = argv
    STAGES[name].run(url, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
