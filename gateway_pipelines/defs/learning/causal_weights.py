"""The causal_weights asset: nightly DML effects of the serve-time features on watch completion.

Thin layer over `gateway_pipelines.lib.learning.causal_weights` (docs/causal.md): reads the window of
impressions ending at the partition's day, estimates, writes a versioned run, reports."""


import base64
from datetime import date, timedelta

import dagster as dg

from gateway_pipelines.defs.learning.partitions import as_of, learning_partitions
from gateway_pipelines.lib.learning.causal_weights import (
    CausalParams,
    estimate_all,
    estimates_markdown,
    forest_plot_png,
    prepare_sample,
    read_sample,
    read_truth,
    run_id_for,
    score_against_truth,
    write_result,
)
from gateway_pipelines.lib.warehouse import WarehouseResource

OWNERS = ["team:learning"]
REFUTATIONS_CHECK = "causal_refutations_pass"
COUNTS_CHECK = "causal_sample_counts_add_up"


def _col(name: str, type_: str, description: str) -> dg.TableColumn:
    return dg.TableColumn(name, type_, description=description)


SCHEMA = dg.TableSchema(columns=[
    _col("feature", "text", "one of the nine serve-time features (placebo:<feature> for the placebo)"),
    _col("segment", "text", "all, device=..., time_of_day=... or user_type=new|returning"),
    _col("effect", "double precision", "effect on completion per unit of the feature; NULL when not estimable"),
    _col("std_error", "double precision", "DoubleML's (or HC1 for naive_ols) standard error"),
    _col("ci_low", "double precision", "95% interval, lower end"),
    _col("ci_high", "double precision", "95% interval, upper end"),
    _col("n", "integer", "clicked impressions in the segment"),
    _col("method", "text", "dml_plr | dml_irm | naive_ols | refute_placebo | refute_random_common_cause"),
    _col("run_id", "text", "cw-<serve date>-<fingerprint>: one version per distinct sample and settings"),
    _col("status", "text", "ok | not_estimable"),
    _col("reason", "text", "why not estimable (or the refutation's verdict)"),
    _col("serve_date", "date", "the partition: the last serve date of the window"),
])


class CausalConfig(dg.Config):
    window_days: int = 7  # impressions served in the window_days days ending with the partition's day
    source: str | None = "simulator"  # learning.impressions.source to learn from; None: every source
    n_folds: int = 3
    seed: int = 0
    segments: list[str] | None = None  # default: all, per device, per daypart, new vs returning
    n_rep: int = 1  # repeated cross-fitting (median aggregation)
    segment_fit: str = "pooled"  # pooled nuisances, segment final stage; or per_segment refits (docs/causal.md)


def _fail(text: str) -> dg.Failure:
    return dg.Failure(description=text, allow_retries=False)


@dg.asset(
    name="causal_weights",
    group_name="learning",
    owners=OWNERS,
    kinds={"postgres", "scikitlearn"},
    partitions_def=learning_partitions(),
    deps=["watch_event_simulation"],
    tags={"gateway/trigger": "schedule"},
    retry_policy=dg.RetryPolicy(max_retries=1, delay=30),
    metadata={"dagster/table_name": "learning.causal_weights", "dagster/column_schema": SCHEMA},
    check_specs=[
        dg.AssetCheckSpec(COUNTS_CHECK, asset="causal_weights",
                          description="impressions read = used + skipped with a reason"),
        dg.AssetCheckSpec(REFUTATIONS_CHECK, asset="causal_weights",
                          description="the placebo's interval covers 0 and a random common cause moves no "
                          "estimate by a quarter of its standard error"),
    ],
    description="Double machine learning (DoubleML: partially linear model for continuous features, "
    "interactive model for binary ones, cross-fitted scikit-learn nuisances) of each serve-time feature's "
    "effect on watch completion, globally and per device, daypart and new/returning user, with the naive "
    "OLS beside it, a placebo and a random-common-cause refutation; over the window of impressions ending "
    "on the partition's serve date; versioned by run in learning.causal_weights. The recommender reads "
    "the newest run. Coverage of the simulator's planted effects when the data is simulated.",
)
def causal_weights(context: dg.AssetExecutionContext, config: CausalConfig, warehouse: WarehouseResource):
    if not 1 <= config.window_days <= 366:
        raise _fail(f"causal_weights: window_days must be 1..366, got {config.window_days}")
    params = CausalParams(n_folds=config.n_folds, seed=config.seed, n_rep=config.n_rep, segment_fit=config.segment_fit,
                          **({"segments": tuple(config.segments)} if config.segments else {}))
    try:
        params.validate()
    except ValueError as exc:
        raise _fail(f"causal_weights: {exc}") from exc
    day = date.fromisoformat(context.partition_key)
    end = as_of(context.partition_key)
    start = end - timedelta(days=config.window_days)
    with warehouse.connection() as conn:
        if conn.execute("SELECT to_regclass('learning.causal_runs')").fetchone()[0] is None:
            raise _fail("causal_weights: learning.causal_runs does not exist (sql/014_causal_weights.sql); run "
                        "`gateway db migrate` (or `gateway run`) first")
        rows = read_sample(conn, start, end, config.source)
    sample = prepare_sample(rows)
    run_id = run_id_for(day, sample, params, config.window_days)
    with warehouse.connection() as conn:
        stored = conn.execute("SELECT refutations, ground_truth, computed_at FROM learning.causal_runs "
                              "WHERE run_id = %s", (run_id,)).fetchone()
    if stored is not None:  # the same sample and settings: the stored run is the answer, nothing to redo
        yield from _already_stored(context, warehouse, run_id, sample, *stored)
        return
    result = estimate_all(sample, params)
    truth, scored, truth_run = {}, {}, None
    if sample.runs:
        truth_run = max(sample.runs, key=sample.runs.get)  # the dominant simulation run of the window
        with warehouse.connection() as conn:
            truth = read_truth(conn, truth_run)
        scored = score_against_truth(result, truth) if truth else {}
        if scored:
            scored["simulation_run"] = truth_run
    with warehouse.connection() as conn:
        written = write_result(conn, run_id, day, config.window_days, result, ground_truth=scored or None,
                               dagster_run_id=context.run_id)
        stored = conn.execute("SELECT count(*) FROM learning.causal_weights WHERE run_id = %s", (run_id,)).fetchone()[0]
    dml = result.dml()
    ok = [e for e in dml if e.ok]
    refs = result.refutations
    metadata: dict = {
        "dagster/row_count": int(stored),
        "causal_run_id": run_id,
        "written": written,
        "window": f"{start.date()}..{day}",
        "impressions_read": sample.read,
        "impressions_used": sample.used,
        "impressions_skipped": dg.MetadataValue.json(sample.skipped),
        "counts_add_up": sample.adds_up,
        "estimates_ok": len(ok),
        "not_estimable": len([e for e in dml if not e.ok]),
        "seconds": round(result.seconds, 2),
        "estimator": f"segment_fit={params.segment_fit}, n_folds={params.n_folds}, n_rep={params.n_rep}",
        "weights": dg.MetadataValue.md(estimates_markdown(result, truth or None) if sample.used else
                                       "no usable impressions in the window: every cell is not estimable"),
    }
    reasons = sorted({e.reason for e in dml if not e.ok})
    if reasons:
        metadata["not_estimable_reasons"] = dg.MetadataValue.md("\n".join(f"* {r}" for r in reasons[:30]))
    if refs:
        metadata["placebo_covers_zero"] = refs["placebo_covers_zero"]
        metadata["random_common_cause_max_shift_se"] = dg.MetadataValue.float(
            float(refs["random_common_cause_max_shift_se"] or 0.0))
    for key in ("dml_coverage", "naive_coverage", "dml_mean_abs_bias", "rank_dml", "rank_naive"):
        if scored.get(key) is not None:
            metadata[f"truth/{key}"] = dg.MetadataValue.float(float(scored[key]))
    if scored:
        metadata["truth/detail"] = dg.MetadataValue.json(scored)
    if ok:
        png = forest_plot_png(result, truth or None)
        metadata["forest_plot"] = dg.MetadataValue.md(
            f"![naive OLS against DML, 95% CI](data:image/png;base64,{base64.b64encode(png).decode()})")
    context.log.info(f"causal_weights {day}: {sample.used} of {sample.read} impressions used, {len(ok)} of "
                     f"{len(dml)} cells estimated; run {run_id} {'written' if written else 'already stored'}")
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name=COUNTS_CHECK, passed=sample.adds_up,
                              description=f"read {sample.read} = used {sample.used} + skipped "
                              f"{sum(sample.skipped.values())}",
                              metadata={"skipped": dg.MetadataValue.json(sample.skipped)})
    if refs:
        passed = bool(refs["placebo_covers_zero"] and refs["random_common_cause_stable"])
        text = (f"placebo {refs['placebo_effect']:+.4f} [{refs['placebo_ci'][0]:+.4f}, {refs['placebo_ci'][1]:+.4f}]; "
                f"random common cause max shift {refs['random_common_cause_max_shift_se']} SE")
    else:
        passed, text = True, "too few impressions to refute anything (nothing was estimated)"
    yield dg.AssetCheckResult(check_name=REFUTATIONS_CHECK, passed=passed, description=text,
                              severity=dg.AssetCheckSeverity.WARN)


def _already_stored(context, warehouse: WarehouseResource, run_id: str, sample, refutations: dict,
                    ground_truth: dict | None, computed_at):
    with warehouse.connection() as conn:
        n, ok = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'ok' AND method IN ('dml_plr', "
                             "'dml_irm')) FROM learning.causal_weights WHERE run_id = %s", (run_id,)).fetchone()
    context.log.info(f"causal_weights {context.partition_key}: run {run_id} is already stored ({computed_at}); "
                     "nothing recomputed")
    metadata = {"dagster/row_count": int(n), "causal_run_id": run_id, "written": False,
                "stored_at": computed_at.isoformat(), "impressions_read": sample.read,
                "impressions_used": sample.used, "counts_add_up": sample.adds_up, "estimates_ok": int(ok)}
    if ground_truth:
        metadata["truth/detail"] = dg.MetadataValue.json(ground_truth)
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name=COUNTS_CHECK, passed=sample.adds_up, description="stored run")
    passed = not refutations or bool(refutations.get("placebo_covers_zero") and
                                     refutations.get("random_common_cause_stable"))
    yield dg.AssetCheckResult(check_name=REFUTATIONS_CHECK, passed=passed, description="stored run",
                              severity=dg.AssetCheckSeverity.WARN)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[causal_weights])
