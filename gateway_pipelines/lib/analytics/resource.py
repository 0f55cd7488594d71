"""dbt for Dagster, connected through a generated profile rather than variables in the process.

Every dbt invocation pays for Python start-up (about 3.5 s of CPU) and for parsing the project. The
parse is the part that can be skipped: dbt reuses `partial_parse.msgpack` when the command-line vars,
the target and the connection are the same as when it was written. So the partition window goes to
dbt as environment variables, which dbt re-reads when it compiles a model and does not fold into that
check, and each warehouse keeps its own parse cache under the state folder. A cache from another dbt
or another project is harmless: dbt checks it and parses in full.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from packaging import version
from psycopg import sql

from gateway_pipelines import settings
from gateway_pipelines.lib.warehouse import WarehouseResource, plain_url

PARSE_FILE = "partial_parse.msgpack"
# Invocation folders (logs, run_results.json, manifest) kept for reading after a run; older ones go.
KEEP_INVOCATIONS = 40
KEEP_AT_LEAST_S = 3600

def parse_cache_key(url: str) -> str:
    """Which warehouse a parse belongs to: dbt folds the connection (not the password) into its check."""
    info = psycopg.conninfo.conninfo_to_dict(plain_url(url))
    ident = "\x00".join(str(info.get(k) or "") for k in ("host", "port", "user", "dbname"))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def prune_invocations(target_root: Path, keep: int = KEEP_INVOCATIONS, now: float | None = None) -> int:
    """Remove old invocation folders; never one younger than an hour, which a running build may own."""
    now = time.time() if now is None else now
    folders = sorted((p for p in target_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True) if target_root.is_dir() else []
    removed = 0
    for folder in folders[keep:]:
        if now - folder.stat().st_mtime > KEEP_AT_LEAST_S:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class _DbtCli(DbtCliResource):
    """dagster-dbt's resource without its two set-up costs per invocation, which we measured at 12 s
    on a loaded 2-core machine against 2-4 s of dbt's own work for the sample:

    * `dbt --version` in a subprocess, to learn the version: our executable is this venv's dbt (through
      the `gateway-dbt` shim), so the installed package says it;
    * an in-process dbt adapter (profile, config and every macro parsed), used only to count rows
      after the build; `DbtWarehouseResource.stream` counts them over the warehouse's own pool instead.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]):
        return None


def count_rows(conn: psycopg.Connection, relation_name: str) -> int | None:
    """Rows in a relation named as dbt names it (`"db"."schema"."name"`); None if it is not there."""
    parts = [p.strip('"') for p in relation_name.split(".")][-2:]
    try:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*parts))).fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return None


class DbtWarehouseResource(dg.ConfigurableResource):
    """The dbt CLI pointed at the run's warehouse.

    `dbt/profiles.yml` (variables GATEWAY_PG_*) is for people running dbt by hand. Runs use a
    private profile that `warehouse` writes for its own URL, so the connection a model builds on is
    always the one the other assets of the run use.
    """

    project_dir: str
    dbt_executable: str = "dbt"
    target: str = "gateway"
    warehouse: WarehouseResource

    def cli_resource(self) -> DbtCliResource:
        return _DbtCli(
            project_dir=self.project_dir,
            profiles_dir=self.warehouse.dbt_profiles_dir(),
            dbt_executable=self.dbt_executable,
            target=self.target,
        )

    # ------------------------------------------------------------------ the parse cache

    def _parse_cache(self) -> Path | None:
        if not self.warehouse.gateway_home:
            return None
        return Path(self.warehouse.gateway_home) / "dbt" / "parse" / parse_cache_key(self.warehouse.url()) / PARSE_FILE

    def _target_path(self, context: dg.AssetExecutionContext | None) -> Path:
        run = context.run.run_id[:7] if context is not None else "cli"
        name = f"{context.op.name if context is not None else 'dbt'}-{run}-{uuid.uuid4().hex[:7]}"
        return Path(self.project_dir) / "target" / name

    def _seed(self, target_path: Path) -> None:
        cache = self._parse_cache()
        if cache is not None and cache.exists():
            target_path.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache, target_path / PARSE_FILE)

    def _remember(self, target_path: Path) -> None:
        cache, written = self._parse_cache(), target_path / PARSE_FILE
        if cache is None or not written.exists():
            return
        cache.parent.mkdir(parents=True, exist_ok=True)
        staged = cache.with_name(f".{uuid.uuid4().hex}.tmp")
        shutil.copyfile(written, staged)
        os.chmod(staged, 0o600)
        os.replace(staged, cache)  # atomic: a concurrent build reads the old file or the new one
        prune_invocations(target_path.parent)

    # ------------------------------------------------------------------ invocations

    def cli(self, args: Sequence[str], *, context: dg.AssetExecutionContext | None = None,
            raise_on_error: bool = True, env: Mapping[str, str] | None = None) -> DbtCliInvocation:
        """Start dbt (seeded with this warehouse's parse); `env` reaches dbt's `env_var()` only."""
        target_path = self._target_path(context)
        self._seed(target_path)
        with settings.lent_to_children(env or {}):  # dbt's env_var() reads it; see settings.py
            return self.cli_resource().cli(args, context=context, raise_on_error=raise_on_error,
                                           target_path=target_path)

    def run(self, args: Sequence[str], *, env: Mapping[str, str] | None = None) -> DbtCliInvocation:
        """A whole invocation outside an asset (tests, tools); the parse is remembered after it."""
        invocation = self.cli(args, env=env)
        try:
            invocation.wait()
        finally:
            self._remember(invocation.target_path)
        return invocation

    def stream(self, args: Sequence[str], *, context: dg.AssetExecutionContext,
               env: Mapping[str, str] | None = None) -> Iterator:
        """What a dbt asset yields: its events with row counts; the parse is remembered after it."""
        invocation = self.cli(args, context=context, env=env)
        try:
            yield from self._with_row_counts(invocation)
        finally:  # a failed build parsed too
            self._remember(invocation.target_path)

    def _with_row_counts(self, invocation: DbtCliInvocation) -> Iterator:
        """dagster-dbt's events, each built table or incremental model with `dagster/row_count`."""
        nodes = invocation.manifest.get("nodes", {})
        with self.warehouse.connection(autocommit=True) as conn:
            for event in invocation.stream():
                if isinstance(event, (dg.Output, dg.AssetMaterialization)) and "unique_id" in event.metadata:
                    node = nodes.get(event.metadata["unique_id"].value) or {}
                    relation = node.get("relation_name")
                    if relation and node.get("config", {}).get("materialized") != "view":
                        rows = count_rows(conn, relation)
                        if rows is not None:
                            event = event.with_metadata({**event.metadata, "dagster/row_count": rows})
                yield event
