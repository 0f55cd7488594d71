"""The migration jobs: stage + gates + promotion in one run, or a dry run without the promotion."""

import dagster as dg

MIGRATION_JOB = "legacy_migration_job"
DRY_RUN_JOB = "legacy_migration_dry_run_job"

legacy_migration_job = dg.define_asset_job(
    MIGRATION_JOB,
    selection=dg.AssetSelection.assets("legacy_staging", "legacy_promotion"),
    description="Migrate one legacy source (op config legacy_staging: kind, path): stage it, run the blocking parity "
    "checks, and promote it in one transaction only if they all pass.",
)
legacy_migration_dry_run_job = dg.define_asset_job(
    DRY_RUN_JOB,
    selection=dg.AssetSelection.assets("legacy_staging"),
    description="Stage one legacy source and run its parity checks, without promoting anything: what would move, "
    "and the checks' verdicts.",
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[legacy_migration_job, legacy_migration_dry_run_job])
