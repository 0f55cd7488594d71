"""`gateway`: what is not a Dagster action, plus the main job and the UI.

    gateway run                 materialise the whole platform (embedded Postgres by default)
    gateway ui                  webserver + daemon on http://127.0.0.1:3000
    gateway db migrate | url    apply sql/ migrations | print the warehouse URL (password hidden)
    gateway status              what the warehouse holds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def _quiet() -> None:
    # Library chatter (platformdirs, Dagster's experimental-API warnings) buries the summary.
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def cmd_run(args: argparse.Namespace) -> int:
    import dagster as dg

    from gateway_pipelines.lib.instance import bootstrap
    from gateway_pipelines.lib.runner import MAIN_SEQUENCE, format_summary, run_jobs

    started = time.perf_counter()
    paths, urls = bootstrap()
    print(f"warehouse: {'embedded Postgres in ' + str(paths.pgdata) if urls.embedded else 'DATABASE_URL'}")
    from gateway_pipelines.definitions import defs

    definitions = defs()
    instance = dg.DagsterInstance.get()
    summaries = run_jobs(
        definitions,
        instance,
        MAIN_SEQUENCE,
        on_job=lambda job, part: print(f"→ {job}{f' [{part}]' if part else ''} …", flush=True),
    )
    print()
    print(format_summary(summaries, time.perf_counter() - started))
    print(f"\nRuns are recorded in the Dagster instance at {paths.dagster_home}.")
    print("Open the UI with `make ui` (or `.venv/bin/gateway ui`), then http://127.0.0.1:3000")
    failed = any(not s.success or any(not c.passed for c in s.checks) for s in summaries)
    return 1 if failed else 0


def cmd_ui(args: argparse.Namespace) -> int:
    from gateway_pipelines.lib.instance import bootstrap
    from gateway_pipelines.lib.services import start_services

    paths, _ = bootstrap()
    print("starting code server, webserver and daemon …", flush=True)
    services = start_services(paths, host=args.host, port=args.port)
    print(f"Dagster UI: {services.url}   (logs in {paths.home / 'logs'}; Ctrl-C stops)", flush=True)
    return services.wait()


def cmd_db(args: argparse.Namespace) -> int:
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.state import sql_dir, state_paths
    from gateway_pipelines.lib.warehouse import connect, redact_url, resolve_urls

    urls = resolve_urls()
    if args.db_command == "url":
        print(redact_url(urls.warehouse))
        return 0
    with connect(urls.warehouse) as conn:
        report = apply_migrations(conn, sql_dir())
    print(f"applied: {', '.join(report.applied) or 'nothing new'}; already applied: {len(report.already_applied)}")
    print(f"pgvector {report.pgvector_version}; {report.duration_s:.2f}s; data in {state_paths().pgdata if urls.embedded else redact_url(urls.warehouse)}")
    return 0


STATUS_QUERIES = (
    ("schema migrations", "SELECT count(*) FROM meta.schema_migrations"),
    ("raw.tmdb_titles", "SELECT count(*) FROM raw.tmdb_titles"),
    ("raw.tmdb_rejects", "SELECT count(*) FROM raw.tmdb_rejects"),
    ("analytics.dim_content", "SELECT count(*) FROM analytics.dim_content"),
    ("vectors.content_vectors", "SELECT count(*) FROM vectors.content_vectors"),
    ("vectors.vector_search_logs", "SELECT count(*) FROM vectors.vector_search_logs"),
)


def cmd_status(args: argparse.Namespace) -> int:
    import psycopg

    from gateway_pipelines.lib.warehouse import connect, redact_url, resolve_urls

    urls = resolve_urls()
    print(f"warehouse: {redact_url(urls.warehouse)}{' (embedded)' if urls.embedded else ''}")
    with connect(urls.warehouse, autocommit=True) as conn:
        for label, query in STATUS_QUERIES:
            try:
                value = conn.execute(query).fetchone()[0]
            except psycopg.errors.UndefinedTable:
                value = "not created yet (run `gateway run`)"
            print(f"  {label:<28} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="materialise the whole platform through Dagster").set_defaults(func=cmd_run)

    ui = sub.add_parser("ui", help="serve dagster-webserver and the daemon")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    db = sub.add_parser("db", help="warehouse schema")
    db.add_argument("db_command", choices=["migrate", "url"])
    db.set_defaults(func=cmd_db)

    sub.add_parser("status", help="row counts of the main tables").set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet()
    parser = build_parser()
    args = parser.parse_args(argv)
    from gateway_pipelines.lib.warehouse import WarehouseError

    try:
        return args.func(args)
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
