"""`gateway` commands of the migration domain.

    gateway migrate --from chroma   --path ./chroma_dir          [--dry-run]
    gateway migrate --from ruvector --path ./export.jsonl        [--dry-run] [--accept-rejects]
    gateway migrate --from agentdb  --path ./agentdb.sqlite      [--dry-run]
    gateway migrate --list                                       the ledger: every import, newest first

Runs through Dagster (legacy_migration_job, or legacy_migration_dry_run_job for --dry-run), so the
run, its parity checks and the figures show in the UI afterwards.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway_pipelines.lib.migration.sources import KINDS, source_key


def register(sub: argparse._SubParsersAction) -> None:
    """Add this domain's subcommands to the `gateway` parser."""
    migrate = sub.add_parser(
        "migrate", help="migrate a legacy vector store into pgvector (ChromaDB dir, RuVector export, AgentDB SQLite)",
        description="Stage a legacy source, prove it lossless with Great Expectations parity checks, and swap it "
        "into vectors.* / memory.* in one transaction. A failed check writes nothing.",
    )
    migrate.add_argument("--from", dest="kind", choices=KINDS, help="kind of source")
    migrate.add_argument("--path", help="the Chroma directory, the .jsonl/.json export, or the AgentDB .sqlite file")
    migrate.add_argument("--dry-run", action="store_true",
                         help="stage and check only: print what would move and the checks' verdicts, swap nothing")
    migrate.add_argument("--accept-rejects", action="store_true",
                         help="migrate an export's readable lines and leave the unreadable ones quarantined")
    migrate.add_argument("--list", action="store_true", help="list the ledger (meta.legacy_imports) and exit")
    migrate.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _run_sequence, _warehouse

    if args.list:
        with _warehouse() as warehouse, warehouse.connection() as conn:
            print(format_ledger(conn))
        return 0
    if not args.kind or not args.path:
        print("error: gateway migrate needs --from {chroma,ruvector,agentdb} and --path P (or --list)", file=sys.stderr)
        return 2
    path = Path(args.path).expanduser().resolve()
    if not path.exists():
        print(f"error: {args.kind} source {path} does not exist", file=sys.stderr)
        return 2
    if args.kind == "chroma":
        from gateway_pipelines.lib.migration.chroma import chromadb_module
        from gateway_pipelines.lib.migration.records import LegacySourceError

        try:
            chromadb_module()
        except LegacySourceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.settings import SQL_DIR

    with _warehouse() as warehouse, warehouse.connection() as conn:
        applied = apply_migrations(conn, SQL_DIR).applied  # the ledger and staging tables must exist
    if applied:
        print(f"warehouse schema migrated: {', '.join(applied)}")
    step = migration_step(args.kind, str(path), dry_run=args.dry_run, accept_rejects=args.accept_rejects)
    rc = _run_sequence((step,), log_level="WARNING")
    with _warehouse() as warehouse, warehouse.connection() as conn:
        print()
        print(format_import(conn, source_key(args.kind, path), dry_run=args.dry_run))
    return rc


def migration_step(kind: str, path: str, *, dry_run: bool = False, accept_rejects: bool = False):
    from gateway_pipelines.defs.migration.jobs import DRY_RUN_JOB, MIGRATION_JOB
    from gateway_pipelines.runtime.runner import JobStep

    config = {"kind": kind, "path": path, "dry_run": dry_run, "accept_rejects": accept_rejects}
    return JobStep(job=DRY_RUN_JOB if dry_run else MIGRATION_JOB, partition=None,
                   run_config={"ops": {"legacy_staging": {"config": config}}}, tags={"gateway/source": f"legacy:{kind}"})


def format_import(conn, key: str, *, dry_run: bool) -> str:
    row = conn.execute(
        "SELECT import_id, status, rows_read, rows_rejected, rows_written, counts, checks, source_state "
        "FROM meta.legacy_imports WHERE source_key = %s ORDER BY import_id DESC LIMIT 1",
        (key,),
    ).fetchone()
    if row is None:
        return "(no import recorded)"
    import_id, status, read, rejected, written, counts, checks, state = row
    head = "DRY RUN: nothing was swapped. " if dry_run else ""
    lines = [f"{head}import {import_id}: {status}; {read} rows read, {rejected} rejected, {written} written"]
    if status == "unchanged":
        lines.append("  the source's fingerprint equals its last promoted import: nothing to move (0 rows)")
    per = {k: v for k, v in (counts or {}).items() if k != "written"}
    if per:
        verb = "would move" if dry_run else "moved"
        lines.append(f"  {'collection / table':<24} {'target':<28} {'dim':>5} {'new':>7} {'changed':>8} {'same':>7}")
        for name, c in per.items():
            lines.append(f"  {name:<24} {c.get('target', ''):<28} {str(c.get('dim') or '-'):>5} {c.get('insert', 0):>7} "
                         f"{c.get('update', 0):>8} {c.get('unchanged', 0):>7}")
        lines.append(f"  ({verb}: new + changed; unchanged records are not written)")
    for name, verdict in (checks or {}).items():
        if isinstance(verdict, dict):
            lines.append(f"  {'✔' if verdict.get('passed') else '✘'} {name}: {verdict.get('description')}")
        else:
            lines.append(f"  ✘ {name}: {verdict}")
    notes = {k: v.get("note") for k, v in (state or {}).items() if isinstance(v, dict) and v.get("note")}
    for name, note in notes.items():
        lines.append(f"  chroma state of {name}: {note}")
    return "\n".join(lines)


def format_ledger(conn, limit: int = 50) -> str:
    rows = conn.execute(
        "SELECT import_id, started_at, source_kind, status, dry_run, rows_read, rows_rejected, rows_written, source_path "
        "FROM meta.legacy_imports ORDER BY import_id DESC LIMIT %s",
        (limit,),
    ).fetchall()
    lines = [f"{'import':>6}  {'started (UTC)':<19} {'kind':<8} {'status':<9} {'read':>8} {'rejected':>8} "
             f"{'written':>8}  path"]
    for iid, started, kind, status, dry, read, rej, written, path in rows:
        lines.append(f"{iid:>6}  {started:%Y-%m-%d %H:%M:%S} {kind:<8} {status + (' (dry)' if dry else ''):<9} "
                     f"{read:>8} {rej:>8} {written:>8}  {path}")
    return "\n".join(lines if rows else lines + ["(no imports yet)"])
