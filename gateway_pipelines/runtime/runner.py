"""Execute the platform job on the Dagster instance and summarise what happened.

Runs go through the instance configured in DAGSTER_HOME, so everything `gateway run` does shows
in the UI afterwards: runs, materialisations, metadata and check results.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

PLATFORM_JOB = "platform_job"


@dataclass(frozen=True)
class JobStep:
    """One run of a job: the whole graph is one step, since unpartitioned assets share the run."""

    job: str = PLATFORM_JOB
    partition: str | None = "latest"  # "latest": the newest daily partition
    run_config: dict | None = None
    # extra run tags, e.g. dagster/asset_partition_range_start|end for a single-run range
    # (with partition=None) over assets whose BackfillPolicy is single_run
    tags: dict | None = None


CATALOGUE_STEPS: tuple[JobStep, ...] = (JobStep(),)
# The newer domains' part of `make run`, after the catalogue exists (each owned by its domain).
MIGRATION_STEPS: tuple[JobStep, ...] = tuple(  # legacy migration of the shipped demo sources (docs/migration.md)
    JobStep("legacy_migration_job", None, {"ops": {"legacy_staging": {"config": {"kind": kind, "sample": True}}}})
    for kind in ("chroma", "ruvector", "agentdb")
)
# Personalization: simulate 200 users x 14 days and a 300-user MovieLens-format dataset over the
# catalogue; load the MovieLens file over its days (2018-08-31..2018-09-30), then the simulator's file
# over its 14 days (plus the next, where late-night watches end) with dbt, the preference vectors and the offline evaluation. The names and dates
# are the simulator's defaults (SimulationParams, ML_START/ML_END); a test holds them together.
PERSONALIZATION_STEPS: tuple[JobStep, ...] = (
    JobStep("personalization_simulation_job", None,
            {"ops": {"watch_event_simulation": {"config": {"users": 200, "days": 14, "seed": 7, "movielens_users": 300}}}}),
    JobStep("personalization_ingest_job", None,
            {"ops": {"watch_events": {"config": {"paths": ["movielens-sim/ratings.csv"]}}}},
            {"dagster/asset_partition_range_start": "2018-08-31", "dagster/asset_partition_range_end": "2018-09-30"}),
    JobStep("personalization_job", None,
            {"ops": {"watch_events": {"config": {"paths": ["simulator-sim-s7-u200-d14-20261130.jsonl"]}}}},
            {"dagster/asset_partition_range_start": "2026-11-17", "dagster/asset_partition_range_end": "2026-12-01"}),
)
LEARNING_STEPS: tuple[JobStep, ...] = (  # a small generated episode set, then one nightly learning run
    JobStep("episodes_ingest_job", None, {"ops": {"agent_episodes": {"config": {"source": "simulate", "seed": 7,
                                                                               "n_sessions": 400}}}}),
    JobStep("nightly_learning_job"),
)
CAUSAL_STEPS: tuple[JobStep, ...] = (
    # causal weights over the simulator's last serve date (its 7-day window holds the whole simulation),
    # with the strategy bandits learning from a simulated strategy log that ends the same day; then the
    # evaluation again, which now scores the causal re-rank against similarity alone
    JobStep("strategy_log_simulation_job", None),
    JobStep("nightly_causal_job", "2026-11-30"),
    JobStep("personalization_evaluation_job", None),
)
MAIN_SEQUENCE: tuple[JobStep, ...] = (CATALOGUE_STEPS + MIGRATION_STEPS + PERSONALIZATION_STEPS + LEARNING_STEPS
                                      + CAUSAL_STEPS)


def ingest_sequence(source: str, path: str | None, day: str | None) -> tuple[JobStep, ...]:
    """`gateway ingest`: the same single run as `gateway run`, with tmdb_titles reading `source`."""
    config = {"source": source, **({"path": path} if path else {})}
    return (JobStep(PLATFORM_JOB, day or "latest", {"ops": {"tmdb_titles": {"config": config}}}),)


@dataclass
class AssetLine:
    asset: str
    rows: int | None
    detail: str


@dataclass
class CheckLine:
    asset: str
    check: str
    passed: bool
    blocking: bool
    severity: str = "ERROR"  # a failed WARN check is worth a look, not a failed run

    @property
    def failed(self) -> bool:
        return not self.passed and self.severity != "WARN"

    @property
    def warned(self) -> bool:
        return not self.passed and self.severity == "WARN"


@dataclass
class JobSummary:
    job: str
    partition: str | None
    run_id: str
    success: bool
    seconds: float
    assets: list[AssetLine] = field(default_factory=list)
    checks: list[CheckLine] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


_ROW_KEYS = ("dagster/row_count",)
_DETAIL_KEYS = ("rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected", "rows_embedded", "provider_calls")


def _value(entry) -> object:
    return getattr(entry, "value", entry)


def summarise(job: str, partition: str | None, result: dg.ExecuteInProcessResult, seconds: float) -> JobSummary:
    summary = JobSummary(job, partition, result.run_id, result.success, seconds)
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        metadata = mat.metadata
        rows = next((int(_value(metadata[k])) for k in _ROW_KEYS if k in metadata), None)
        detail = ", ".join(f"{k.removeprefix('rows_')}={_value(metadata[k])}" for k in _DETAIL_KEYS if k in metadata)
        summary.assets.append(AssetLine(mat.asset_key.to_user_string(), rows, detail))
    summary.assets = _one_line_per_asset(summary.assets)
    for evaluation in result.get_asset_check_evaluations():
        summary.checks.append(
            CheckLine(
                evaluation.asset_key.to_user_string(),
                evaluation.check_name,
                evaluation.passed,
                bool(getattr(evaluation, "blocking", False)),
                getattr(getattr(evaluation, "severity", None), "value", "ERROR"),
            )
        )
    for event in result.all_events:
        if event.event_type_value == "STEP_SKIPPED":
            summary.skipped.append(event.step_key or "?")
        if event.event_type_value == "STEP_FAILURE" and summary.error is None:
            data = event.step_failure_data
            summary.error = f"{event.step_key}: {data.error.message.strip() if data and data.error else 'failed'}"
    return summary


def _one_line_per_asset(lines: list[AssetLine]) -> list[AssetLine]:
    """A run over a range of partitions records one materialisation per day: show one line per asset,
    so a 31-day load is one line, not 31."""
    merged: dict[str, list[AssetLine]] = {}
    for line in lines:
        merged.setdefault(line.asset, []).append(line)
    out = []
    for asset, group in merged.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        # row counts are the table's after each partition: the last one is the table's now
        detail = f"{len(group)} partitions" + (f"; last: {group[-1].detail}" if group[-1].detail else "")
        out.append(AssetLine(asset, group[-1].rows, detail))
    return out


def run_jobs(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sequence: Sequence[JobStep] = MAIN_SEQUENCE,
    on_job=None,
    log_level: str = "WARNING",
) -> list[JobSummary]:
    """Run each step in order; stop at the first failure, since a later one reads what it writes."""
    from gateway_pipelines.runtime.instance import fail_dead_runs, worker_tags

    fail_dead_runs(instance)  # runs of a `gateway run` that was killed: failed, their slots freed
    summaries = []
    for step in sequence:
        job_name, partition = step.job, step.partition
        job = defs.resolve_job_def(job_name)
        if partition == "latest":  # an unpartitioned job has no latest day: it runs as it is
            partition = job.partitions_def.get_last_partition_key() if job.partitions_def else None
        if on_job:
            on_job(job_name, partition)
        started = time.perf_counter()
        config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(step.run_config or {})}
        result = job.execute_in_process(
            instance=instance, partition_key=partition, raise_on_error=False, run_config=config,
            tags={**(step.tags or {}), **worker_tags()},  # lets run monitoring see this process die
        )
        summary = summarise(job_name, partition, result, time.perf_counter() - started)
        summaries.append(summary)
        if not summary.success:
            break
    return summaries


def format_summary(summaries: Sequence[JobSummary], total_seconds: float) -> str:
    lines = []
    for s in summaries:
        part = f" [{s.partition}]" if s.partition else ""
        lines.append(f"{'✔' if s.success else '✘'} {s.job}{part}  {s.seconds:.1f}s  run {s.run_id[:8]}")
        for a in s.assets:
            rows = f"{a.rows:>8,} rows" if a.rows is not None else " " * 13
            lines.append(f"    {a.asset:<28} {rows}  {a.detail}")
        failed = [c for c in s.checks if c.failed]
        warned = [c for c in s.checks if c.warned]
        lines.append(f"    checks: {sum(c.passed for c in s.checks)} passed, {len(failed)} failed, {len(warned)} warnings")
        for c in failed:
            lines.append(f"      ✘ {c.asset}:{c.check}{' (blocking)' if c.blocking else ''}")
        for c in warned:
            lines.append(f"      ⚠ {c.asset}:{c.check} (WARN: worth a look, does not stop the line)")
        if s.skipped:
            lines.append(f"    skipped (blocked upstream): {', '.join(s.skipped)}")
        if s.error:
            lines.append(f"    error: {s.error}")
    n_assets = sum(len(s.assets) for s in summaries)
    n_checks = sum(len(s.checks) for s in summaries)
    n_passed = sum(c.passed for s in summaries for c in s.checks)
    n_warned = sum(c.warned for s in summaries for c in s.checks)
    lines.append(
        f"{'OK' if succeeded(summaries) else 'FAILED'}: {n_assets} asset materialisations, {n_passed}/{n_checks} checks "
        f"passed, {n_warned} warnings, {total_seconds:.1f}s"
    )
    return "\n".join(lines)


def succeeded(summaries: Sequence[JobSummary]) -> bool:
    """Every run succeeded and no ERROR check failed (a failed WARN check does not fail the command)."""
    return all(s.success for s in summaries) and not any(c.failed for s in summaries for c in s.checks)
