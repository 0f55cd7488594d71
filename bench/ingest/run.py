"""Ingestion benchmark: titles a second into raw (sample and csv_dump), the dbt build, and memory.

Prints one JSON document. Targets (measured, never asserted in tests):
  - at least 5,000 titles/s into raw for both sources;
  - a 4,800-row TMDB 5000 dump through raw and dbt in under 15 s;
  - peak memory flat in the number of titles (the readers stream).

    .venv/bin/python bench/ingest/run.py [--n 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway_pipelines.lib.tmdb.dump_writer import write_tmdb5000_csv  # noqa: E402

DAY = date(2026, 3, 1)


def _fresh_database(base_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect, with_database
    from gateway_pipelines.settings import SQL_DIR

    with psycopg.connect(with_database(base_url, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(base_url, name)
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
    return url


def ingest_once(url: str, source_name: str, n: int, path: Path | None) -> dict:
    from gateway_pipelines.lib.tmdb.raw_store import ingest
    from gateway_pipelines.lib.tmdb.sources import CsvDumpSource, SampleSource
    from gateway_pipelines.lib.warehouse import connect

    source = SampleSource(n_movies=int(n * 0.8), n_tv=n - int(n * 0.8)) if source_name == "sample" else CsvDumpSource(path)
    with connect(url) as conn:
        started = time.perf_counter()
        report = ingest(conn, source.records(DAY), source=source_name, partition=DAY)
        conn.commit()
        seconds = time.perf_counter() - started
    return {"titles": report.records_in, "loaded": report.inserted, "rejected": report.rejected,
            "seconds": round(seconds, 3), "titles_per_second": round(report.records_in / seconds, 1)}


def dbt_build(url: str, target_path: Path) -> float:
    """dbt build into its own target folder: the platform's dbt/target/manifest.json names the
    platform's database, and overwriting it would send Dagster's row counts to the bench's."""
    from gateway_pipelines.lib.warehouse import dbt_env
    from gateway_pipelines.settings import DBT_DIR

    env = {**os.environ, **dbt_env(url)}
    dbt = str(Path(sys.executable).with_name("dbt"))
    started = time.perf_counter()
    subprocess.run([dbt, "build", "--quiet", "--project-dir", str(DBT_DIR), "--profiles-dir",
                    str(DBT_DIR), "--target-path", str(target_path)],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def child_peak_rss(url: str, source_name: str, n: int, path: Path | None) -> dict:
    """Ingest in a fresh process and report its peak RSS: the memory-flatness probe."""
    code = (
        "import json,resource,sys; sys.path.insert(0, %r); from bench.ingest.run import ingest_once;"
        "r = ingest_once(%r, %r, %d, %r);"
        "r['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(r))"
    ) % (str(ROOT), url, source_name, n, str(path) if path else None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000, help="titles for the throughput runs")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    os.environ["GATEWAY_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)
    from gateway_pipelines.lib.warehouse import with_database
    from gateway_pipelines.runtime.instance import warehouse_urls

    base = with_database(warehouse_urls().warehouse, "postgres")
    work = home / "files"
    work.mkdir()
    dump_4800 = work / "tmdb_5000_movies.csv"
    write_tmdb5000_csv(dump_4800, 4800)
    dump_n = work / "dump_n.csv"
    write_tmdb5000_csv(dump_n, args.n)

    results: dict = {"machine": {"cpus": os.cpu_count()}, "n": args.n}
    results["sample_into_raw"] = ingest_once(_fresh_database(base, "bench_sample"), "sample", args.n, None)
    results["csv_dump_into_raw"] = ingest_once(_fresh_database(base, "bench_csv"), "csv_dump", args.n, dump_n)

    url = _fresh_database(base, "bench_4800")
    from gateway_pipelines.lib.tmdb.genres import MOVIE_GENRES
    from gateway_pipelines.lib.tmdb.raw_store import upsert_genres
    from gateway_pipelines.lib.warehouse import connect

    with connect(url) as conn:
        upsert_genres(conn, "movie", [{"id": k, "name": v} for k, v in MOVIE_GENRES.items()])
        conn.commit()
    raw = ingest_once(url, "csv_dump", 4800, dump_4800)
    dbt_seconds = dbt_build(url, home / "dbt-target")
    results["dump_4800_raw_and_dbt"] = {
        "raw_seconds": raw["seconds"], "dbt_build_seconds": round(dbt_seconds, 3),
        "total_seconds": round(raw["seconds"] + dbt_seconds, 3),
        "dbt_titles_per_second": round(4800 / dbt_seconds, 1), "target_seconds": 15,
    }

    small, large = max(args.n // 4, 1000), args.n
    dump_small = work / "dump_small.csv"
    write_tmdb5000_csv(dump_small, small)
    mem = {}
    for label, n, path in (("small", small, dump_small), ("large", large, dump_n)):
        mem[label] = child_peak_rss(_fresh_database(base, f"bench_mem_{label}"), "csv_dump", n, path)
    results["memory_csv_dump"] = {
        "titles_small": small, "peak_rss_mb_small": round(mem["small"]["peak_rss_mb"], 1),
        "titles_large": large, "peak_rss_mb_large": round(mem["large"]["peak_rss_mb"], 1),
        "growth_ratio_for_4x_titles": round(mem["large"]["peak_rss_mb"] / mem["small"]["peak_rss_mb"], 3),
    }
    results["targets"] = {
        "sample_titles_per_second_ge_5000": results["sample_into_raw"]["titles_per_second"] >= 5000,
        "csv_titles_per_second_ge_5000": results["csv_dump_into_raw"]["titles_per_second"] >= 5000,
        "dump_4800_under_15s": results["dump_4800_raw_and_dbt"]["total_seconds"] < 15,
        "memory_flat_within_1_25x": results["memory_csv_dump"]["growth_ratio_for_4x_titles"] <= 1.25,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
