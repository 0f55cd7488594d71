"""`gateway`: what is not a Dagster action, plus the main job and the UI.

    gateway run                 materialise the whole asset graph in one run (embedded Postgres by default)
    gateway ui                  webserver + daemon on http://127.0.0.1:3000
    gateway config              every setting, its effective value and where it comes from
    gateway db migrate | url    apply sql/ migrations | print the warehouse URL (password hidden)
    gateway status              what the warehouse holds
    gateway ingest --source csv_dump --path tmdb_5000_movies.csv [--date YYYY-MM-DD]
    gateway tmdb batches [--status held]      the load ledger: every batch, its counts and status
    gateway tmdb release BATCH_ID             load a held batch after all (through Dagster)
    gateway search "space heist with a rogue AI" [--genre 878] [--year 1990-2010] [--k 10]
    gateway similar movie-100001
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings

from gateway_pipelines.runtime import cli_args as args_
from gateway_pipelines.runtime.cli_args import safe


def _quiet() -> None:
    # Library chatter (platformdirs, Dagster's experimental-API warnings) buries the summary.
    warnings.filterwarnings("ignore")
    from gateway_pipelines import settings

    settings.export_default("DAGSTER_DISABLE_TELEMETRY", "1")


def cmd_run(args: argparse.Namespace) -> int:
    from gateway_pipelines.runtime.runner import MAIN_SEQUENCE

    return _run_sequence(MAIN_SEQUENCE, log_level="WARNING", quiet=True)


def cmd_ingest(args: argparse.Namespace) -> int:
    from gateway_pipelines.runtime.runner import ingest_sequence

    if args.source in ("csv_dump", "export") and not args.path:
        print(f"error: --source {args.source} needs --path FILE", file=sys.stderr)
        return 2
    if args.path and args.source not in ("csv_dump", "export"):
        print(f"error: --source {args.source} reads no file; drop --path, or use --source csv_dump|export",
              file=sys.stderr)
        return 2
    return _run_sequence(ingest_sequence(args.source, args.path, args.date), log_level="INFO")


def _run_sequence(sequence, *, log_level: str, quiet: bool = False) -> int:
    import dagster as dg

    from gateway_pipelines.runtime.instance import bootstrap
    from gateway_pipelines.runtime.runner import format_summary, run_jobs, succeeded

    started = time.perf_counter()
    paths, urls = bootstrap()
    print(f"warehouse: {'embedded Postgres in ' + str(paths.pgdata) if urls.embedded else 'DATABASE_URL'}")
    from gateway_pipelines.definitions import defs

    definitions = defs()
    instance = dg.DagsterInstance.get()
    terminal = sys.stdout
    log_path = paths.logs / "gateway-run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # dbt's own output (which dagster-dbt echoes to stdout for the compute logs) goes to a file
    # with `quiet`, so the terminal shows progress and the summary
    with (open(log_path, "w") if quiet else contextlib.nullcontext()) as log_file, (
        contextlib.redirect_stdout(log_file) if quiet else contextlib.nullcontext()
    ):
        summaries = run_jobs(
            definitions,
            instance,
            sequence,
            on_job=lambda job, part: print(f"→ {job}{f' [{part}]' if part else ''} …", file=terminal, flush=True),
            log_level=log_level,
        )
    if quiet:
        print(f"(dbt and step output: {log_path})")
    print()
    print(format_summary(summaries, time.perf_counter() - started))
    print(f"\nRuns are recorded in the Dagster instance at {paths.dagster_home}.")
    print("Open the UI with `make ui` (or `.venv/bin/gateway ui`), then http://127.0.0.1:3000")
    return 0 if succeeded(summaries) else 1


def cmd_ui(args: argparse.Namespace) -> int:
    from gateway_pipelines.runtime.instance import bootstrap
    from gateway_pipelines.runtime.services import start_services

    paths, _ = bootstrap()
    print("starting code server, webserver and daemon …", flush=True)
    services = start_services(paths, host=args.host, port=args.port)
    print(f"Dagster UI: {services.url}   (logs in {paths.home / 'logs'}; Ctrl-C stops)", flush=True)
    return services.wait()


@contextlib.contextmanager
def _resources(*names: str):
    """Resources exactly as the code location wires them (same settings, same defaults), set up and
    torn down by Dagster as a run would."""
    import dagster as dg

    from gateway_pipelines.defs.resources import build_resources, warehouse_resource

    wired = {"warehouse": warehouse_resource()} if set(names) == {"warehouse"} else build_resources()
    with dg.build_resources({k: wired[k] for k in names}) as resources:
        yield resources


@contextlib.contextmanager
def _warehouse():
    with _resources("warehouse") as r:
        yield r.warehouse


def cmd_db(args: argparse.Namespace) -> int:
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import redact_url
    from gateway_pipelines.settings import SQL_DIR

    with _warehouse() as warehouse:
        if args.db_command == "url":
            print(redact_url(warehouse.url()))
            return 0
        with warehouse.connection() as conn:
            report = apply_migrations(conn, SQL_DIR)
    print(f"applied: {', '.join(report.applied) or 'nothing new'}; already applied: {len(report.already_applied)}")
    print(f"pgvector {report.pgvector_version}; {report.duration_s:.2f}s; warehouse {redact_url(warehouse.url())}")
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

    from gateway_pipelines.lib.warehouse import redact_url

    with _warehouse() as warehouse, warehouse.connection(autocommit=True) as conn:
        urls = warehouse.urls()
        print(f"warehouse: {redact_url(urls.warehouse)}{' (embedded)' if urls.embedded else ''}")
        for label, query in STATUS_QUERIES:
            try:
                value = conn.execute(query).fetchone()[0]
            except psycopg.errors.UndefinedTable:
                value = "not created yet (run `gateway run`)"
            print(f"  {label:<28} {value}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from gateway_pipelines.runtime.config_report import config_report

    print(config_report(resolve=not args.no_resolve))
    return 0


def cmd_tmdb(args: argparse.Namespace) -> int:
    from gateway_pipelines.lib.tmdb.batches import get_batch, list_batches

    with _warehouse() as warehouse, warehouse.connection() as conn:
        if args.tmdb_command == "batches":
            batches = list_batches(conn, status=args.status, limit=args.limit)
            print(f"{'batch':>6}  {'day':<10} {'source':<9} {'status':<9} {'file':<28} counts")
            for b in batches:
                reason = f"; top reason: {b.top_reason.field}: {b.top_reason.reason}" if b.top_reason and b.status == "held" else ""
                print(f"{b.batch_id:>6}  {b.partition.isoformat():<10} {b.source:<9} {b.status:<9} "
                      f"{safe(b.file_name or '-')[:28]:<28} {b.counts.identity()}{safe(reason)}")
            if not batches:
                print("(no batches)")
            return 0
        batch = get_batch(conn, args.batch_id)
    if batch is None:
        print(f"error: there is no batch {args.batch_id}; `gateway tmdb batches` lists them", file=sys.stderr)
        return 2
    if batch.status != "held":
        print(f"error: batch {batch.batch_id} is {batch.status}, not held: nothing to release", file=sys.stderr)
        return 2
    from gateway_pipelines.runtime.runner import JobStep

    # the whole graph for the batch's day, so the released rows reach search in the same run
    step = JobStep(partition=batch.partition.isoformat(),
                   run_config={"ops": {"tmdb_titles": {"config": {"release_batch": batch.batch_id}}}})
    return _run_sequence((step,), log_level="INFO")


def _search_filters(args: argparse.Namespace):
    from gateway_pipelines.lib.vector_store.search import SearchFilters

    year_min, year_max = args.year or (None, None)
    return SearchFilters(
        media_type=args.type,
        genre_ids=tuple(args.genre or ()),
        year_min=year_min,
        year_max=year_max,
        min_rating=args.min_rating,
        language=args.language,
    )


def _print_hits(result) -> None:
    print(f"{'#':>2}  {'id':<14} {'title':<44} {'year':>4} {'rating':>6} {'similarity':>10}")
    for i, hit in enumerate(result.hits, 1):
        print(
            f"{i:>2}  {hit.id:<14} {safe(hit.title)[:44]:<44} {hit.year or '':>4} "
            f"{(f'{hit.vote_average:.1f}' if hit.vote_average is not None else ''):>6} {hit.similarity:>10.3f}"
        )
    print(f"({len(result.hits)} results, {result.strategy}, ef_search={result.ef_search}, {result.latency_ms:.1f} ms)")


def cmd_search(args: argparse.Namespace) -> int:
    from gateway_pipelines.lib.embeddings.hybrid import EmptyQueryError
    from gateway_pipelines.lib.vector_store.models import query_provider
    from gateway_pipelines.lib.vector_store.search import ModelMismatchError, search_by_text

    with _resources("warehouse", "embeddings", "vector_search") as r, r.warehouse.connection() as conn:
        try:
            provider = r.embeddings.open()
            result = search_by_text(
                conn, args.query, provider, k=args.k, filters=_search_filters(args),
                weights=r.embeddings.weights(), ef_search=r.vector_search.serving_ef_search(conn),
                provider_for=query_provider(r.embeddings.models_dir, provider),
            )
        except ModelMismatchError as exc:
            print(f"error: {safe(str(exc))}; the search index is being rebuilt for a new embedding model, "
                  "try again once `gateway run` has finished", file=sys.stderr)
            return 2
        except EmptyQueryError:
            print(f"error: no word of {safe(args.query)!r} is known to the embedding model, and no filter gives "
                  "the search a direction; use other words, or add --genre, --year or --min-rating", file=sys.stderr)
            return 2
    _print_hits(result)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from gateway_pipelines.lib.vector_store.search import similar

    with _resources("warehouse", "vector_search") as r, r.warehouse.connection() as conn:
        try:
            result = similar(conn, args.content_key, k=args.k, filters=_search_filters(args),
                             ef_search=r.vector_search.serving_ef_search(conn))
        except KeyError as exc:
            print(f"error: {safe(exc.args[0])}", file=sys.stderr)
            return 2
    _print_hits(result)
    return 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=args_.k_results, default=10, help=f"how many results, 1-{args_.MAX_K} (default 10)")
    parser.add_argument("--genre", type=args_.genre_id, action="append", help="TMDB genre id; repeat for any-of")
    parser.add_argument("--year", type=args_.year_range, help="YYYY, YYYY-YYYY, YYYY- or -YYYY")
    parser.add_argument("--type", choices=["movie", "tv"], help="media type")
    parser.add_argument("--min-rating", type=args_.rating, help="minimum vote average (0-10)")
    parser.add_argument("--language", type=args_.language, help="original language, e.g. en")


def _partition_day(text: str) -> str:
    """A day of the TMDB partitions (GATEWAY_TMDB_START_DATE to today), as YYYY-MM-DD."""
    from datetime import date

    from gateway_pipelines.defs.tmdb.partitions import tmdb_partitions

    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{safe(text)!r} is not a YYYY-MM-DD date") from None
    partitions = tmdb_partitions()
    if not partitions.has_partition_key(day.isoformat()):
        first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
        raise argparse.ArgumentTypeError(f"{day} is not a partition: days run from {first} to {last} "
                                         "(GATEWAY_TMDB_START_DATE sets the first)")
    return day.isoformat()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="materialise the whole asset graph through Dagster, in one run").set_defaults(func=cmd_run)

    ui = sub.add_parser("ui", help="serve dagster-webserver and the daemon")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    db = sub.add_parser("db", help="warehouse schema")
    db.add_argument("db_command", choices=["migrate", "url"])
    db.set_defaults(func=cmd_db)

    sub.add_parser("status", help="row counts of the main tables").set_defaults(func=cmd_status)

    config = sub.add_parser("config", help="every setting: effective value and where it comes from")
    config.add_argument("--no-resolve", action="store_true", help="don't start the embedded server to show its URL")
    config.set_defaults(func=cmd_config)

    ingest = sub.add_parser("ingest", help="ingest one TMDB source through Dagster, then embed and index")
    ingest.add_argument("--source", choices=["sample", "csv_dump", "export", "api"], default="sample")
    ingest.add_argument("--path", type=args_.existing_file, help="the file, for csv_dump and export")
    ingest.add_argument("--date", type=_partition_day, help="partition YYYY-MM-DD (default: the newest)")
    ingest.set_defaults(func=cmd_ingest)

    tmdb = sub.add_parser("tmdb", help="TMDB load batches: list them, release a held one")
    tmdb_sub = tmdb.add_subparsers(dest="tmdb_command", required=True)
    batches = tmdb_sub.add_parser("batches", help="every load, newest first")
    batches.add_argument("--status", choices=["loaded", "held", "released"])
    batches.add_argument("--limit", type=args_.bounded_int(1, 10_000, "a number of batches"), default=50)
    release = tmdb_sub.add_parser("release", help="load a batch held by the reject gate, after all")
    release.add_argument("batch_id", type=args_.positive_id)
    tmdb.set_defaults(func=cmd_tmdb)

    search = sub.add_parser("search", help="semantic search over the catalogue")
    search.add_argument("query", type=args_.query_text)
    _add_filters(search)
    search.set_defaults(func=cmd_search)

    sim = sub.add_parser("similar", help="titles similar to one title")
    sim.add_argument("content_key", type=args_.content_key, help="e.g. movie-100001")
    _add_filters(sim)
    sim.set_defaults(func=cmd_similar)

    from gateway_pipelines.runtime.commands import learning, migration, personalization

    migration.register(sub)
    personalization.register(sub)
    learning.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet()
    parser = build_parser()
    args = parser.parse_args(argv)
    from gateway_pipelines.lib.warehouse import WarehouseError

    try:
        return args.func(args)
    except WarehouseError as exc:
        print(f"error: {safe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: whatever was mid-load rolled back; rerun the same command to finish", file=sys.stderr)
        return 130
    except Exception as exc:
        lost = _lost_database(exc)
        if lost is None:
            raise
        print(f"error: {lost}", file=sys.stderr)
        return 1


def _lost_database(exc: BaseException) -> str | None:
    """A message for a database that went away mid-command (a crashed or restarted Postgres), which
    reaches here as a storage error of Dagster's or a driver error; None for anything else."""
    from gateway_pipelines.lib.warehouse import redact_url

    chain, link = [], exc
    while link is not None and len(chain) < 10:
        chain.append(link)
        link = link.__cause__ or link.__context__
    names = {type(e).__module__.split(".")[0] + "." + type(e).__name__ for e in chain}
    lost = {"dagster_postgres.DagsterPostgresException", "psycopg2.OperationalError", "psycopg.OperationalError",
            "sqlalchemy.OperationalError", "psycopg_pool.PoolTimeout"}
    if not names & lost and not any("OperationalError" in n for n in names):
        return None
    detail = redact_url(str(chain[-1]).strip().splitlines()[0] if str(chain[-1]).strip() else type(chain[-1]).__name__)
    return (f"the database stopped answering in the middle of the command ({safe(detail)}). Postgres may have "
            "crashed or restarted. Every load is one transaction, so nothing half-written was kept: check the "
            "server (`gateway status`), then rerun the same command.")


if __name__ == "__main__":
    sys.exit(main())
