"""Real legacy sources, built once per session (Chroma's client is slow to start), and a helper that
runs the migration job in process against a fresh warehouse, as `gateway migrate` does."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from gateway_pipelines.lib.migration.samples import write_agentdb, write_chroma_dir, write_ruvector_jsonl

N = 300  # records per collection: big enough for k-NN structure, small enough for the test budget


@pytest.fixture(scope="session")
def legacy_sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("legacy")
    return {
        # records stay in Chroma's write-ahead queue, as in most field directories
        "chroma": write_chroma_dir(root / "chroma", n=N, sync_threshold=100_000),
        "ruvector": write_ruvector_jsonl(root / "export.jsonl", n=N),
        "agentdb": write_agentdb(root / "agentdb.sqlite", episodes=N),
    }


@pytest.fixture
def copy_source(legacy_sources, tmp_path):
    """A private copy of a session source, for tests that change it."""

    def copy(kind: str) -> Path:
        src = legacy_sources[kind]
        dst = tmp_path / f"{kind}-copy{src.suffix}"
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        return dst

    return copy


def migration_defs(fresh_db: str, home: Path) -> dg.Definitions:
    from gateway_pipelines.defs.migration import assets, checks, jobs
    from gateway_pipelines.defs.resources import build_resources
    from gateway_pipelines.lib.warehouse import WarehouseResource

    # the legacy resource exactly as the code location wires it under this GATEWAY_HOME
    legacy = build_resources({"GATEWAY_HOME": str(home)})["legacy"]
    return dg.Definitions(
        assets=[assets.legacy_staging, assets.legacy_promotion],
        asset_checks=[checks.legacy_rows_match_source, checks.legacy_vectors_bit_identical, checks.legacy_knn_parity,
                      checks.legacy_rejects_within_limit],
        jobs=[jobs.legacy_migration_job, jobs.legacy_migration_dry_run_job],
        resources={"warehouse": WarehouseResource(database_url=fresh_db), "legacy": legacy},
    )


@pytest.fixture
def migrate(fresh_db, tmp_path):
    """migrate(kind, path, dry_run=False, accept_rejects=False) -> ExecuteInProcessResult"""
    defs = migration_defs(fresh_db, tmp_path / "home")
    instance = dg.DagsterInstance.ephemeral()

    def run(kind: str, path: Path, *, dry_run: bool = False, accept_rejects: bool = False, hook=None):
        job = defs.resolve_job_def("legacy_migration_dry_run_job" if dry_run else "legacy_migration_job")
        config = {"kind": kind, "path": str(path), "dry_run": dry_run, "accept_rejects": accept_rejects}
        return job.execute_in_process(instance=instance, raise_on_error=False,
                                      run_config={"ops": {"legacy_staging": {"config": config}}})

    return run
