"""Strategy bandits in the learning group (docs/bandits.md): the simulated strategy log, and the nightly
Beta posteriors per context × strategy with their off-policy values.

Thin layer over `gateway_pipelines.lib.learning.bandits`; no job or schedule here: the nightly learning
job that runs `strategy_bandits` is defined beside the causal weights.
"""

import time
from datetime import date

import dagster as dg
import pandas as pd

from gateway_pipelines.defs.learning.partitions import as_of, learning_partitions
from gateway_pipelines.lib.learning import bandits as lib
from gateway_pipelines.lib.personalization.catalogue import load_catalogue
from gateway_pipelines.lib.personalization.simulator import (
    SIM_END_DATE,
    StrategyLogParams,
    best_strategy,
    simulate_strategy_log,
    strategy_outcomes,
)
from gateway_pipelines.lib.warehouse import WarehouseResource

OWNERS = ["team:learning"]


def _col(name: str, type_: str, description: str) -> dg.TableColumn:
    return dg.TableColumn(name, type_, description=description)


ARMS_SCHEMA = dg.TableSchema(columns=[
    _col("as_of", "date", "the partition day: the state from every impression served before its end"),
    _col("context", "text", "device|daypart|user_type (24 contexts)"),
    _col("arm", "text", ", ".join(lib.ARMS)),
    _col("alpha", "double precision", "1 + sum of rewards"),
    _col("beta", "double precision", "1 + sum of (1 - reward)"),
    _col("n", "integer", "impressions of the arm in the context"),
    _col("mean", "double precision", "posterior mean reward"),
    _col("p_best", "double precision", "Thompson probability that the arm is the context's best"),
    _col("state_hash", "text", "of the whole day's state; a rerun with the same hash writes nothing"),
])
TRUTH_SCHEMA = dg.TableSchema(columns=[
    _col("run_id", "text", "strat-s<seed>-u<users>-d<days>-<end date>"),
    _col("context", "text", "device|daypart|user_type"),
    _col("arm", "text", "the strategy"),
    _col("true_value", "double precision", "planted expected reward of one impression"),
    _col("logging_propensity", "double precision", "P(strategy | context) of the simulated logging policy"),
])


def _fail(text: str) -> dg.Failure:
    return dg.Failure(description=text, allow_retries=False)


def _require_tables(conn, asset: str) -> None:
    if conn.execute("SELECT to_regclass('learning.bandit_arms')").fetchone()[0] is None:
        raise _fail(f"{asset}: the warehouse has no bandit tables yet (sql/015_bandits.sql); run "
                    "`gateway db migrate` (or `gateway run`) first")


class StrategyLogConfig(dg.Config):
    users: int = 400
    days: int = 14
    seed: int = 11
    end_date: str | None = None  # YYYY-MM-DD; default the personalization simulator's fixed end date


@dg.asset(
    group_name="learning",
    owners=OWNERS,
    kinds={"python", "postgres"},
    deps=["content_vectors"],
    tags={"gateway/trigger": "manual"},
    metadata={"dagster/table_name": "learning.bandit_truth", "dagster/column_schema": TRUTH_SCHEMA},
    description="A simulated log of sessions served by the four recommendation strategies under a known "
    "logging policy, with a planted best strategy per context: learning.impressions (source "
    "strategy_simulator, with propensities) and outcomes, and the truth in learning.bandit_truth. "
    "The same run with the same data is written once.",
)
def strategy_log_simulation(context: dg.AssetExecutionContext, config: StrategyLogConfig,
                            warehouse: WarehouseResource) -> dg.MaterializeResult:
    try:
        end = date.fromisoformat(config.end_date) if config.end_date else SIM_END_DATE
        params = StrategyLogParams(config.users, config.days, config.seed, end)
        params.validate()
    except ValueError as exc:
        raise _fail(f"strategy_log_simulation: {exc}") from exc
    started = time.perf_counter()
    with warehouse.connection() as conn:
        _require_tables(conn, "strategy_log_simulation")
        catalogue = load_catalogue(conn)
    try:
        log = simulate_strategy_log(catalogue, params)
    except ValueError as exc:
        raise _fail(f"strategy_log_simulation: {exc}; run the catalogue first (`gateway run`)") from exc
    with warehouse.connection() as conn:
        written = lib.write_strategy_log(conn, log)
    by_ctx: dict[str, dict[str, float]] = {}
    for ctx, arm, value, _ in log.truth:
        by_ctx.setdefault(ctx, {})[arm] = value
    rows = [f"| {ctx} | " + " | ".join(f"{v[a]:.4f}" for a in lib.ARMS) + f" | {best_strategy(*ctx.split('|'))} |"
            for ctx, v in by_ctx.items()]
    online = _online_replay(log, config.seed)
    context.log.info(f"strategy log {log.run_id}: {log.stats}; {'written' if written else 'already stored'}")
    return dg.MaterializeResult(metadata={
        **online,
        "dagster/row_count": len(log.impressions), "simulation_run_id": log.run_id, "written": written,
        "data_hash": log.data_hash[:16], **log.stats,
        "truth": dg.MetadataValue.md("| context | " + " | ".join(lib.ARMS) + " | planted best |\n|---|"
                                     + "---|" * (len(lib.ARMS) + 1) + "\n" + "\n".join(rows)),
        "duration_s": round(time.perf_counter() - started, 3),
    })


ONLINE_SESSIONS, ONLINE_BLOCK = 6000, 500


def _online_replay(log, seed: int) -> dict:
    """Thompson sampling run online against the same planted model, contexts as often as in the log:
    the share of sessions it serves the planted best strategy, per block of sessions."""
    import numpy as np

    sessions = log.impressions.drop_duplicates("session_id")
    weights = [int((sessions["features"].str.contains(f'"context": "{c}"', regex=False)).sum()) + 1
               for c in lib.CONTEXTS]

    def serve(ctx, arm, rng):
        return lib.reward(*strategy_outcomes(*ctx.split("|"), arm, rng))

    run = lib.online_thompson(serve, lib.CONTEXTS, weights, ONLINE_SESSIONS, np.random.default_rng(seed))
    shares = lib.best_share_by_block(run, {c: best_strategy(*c.split("|")) for c in lib.CONTEXTS}, ONLINE_BLOCK)
    reached = next((ONLINE_BLOCK * (i + 1) for i, x in enumerate(shares) if x >= 0.9), None)
    return {"online_best_share_per_500_sessions": dg.MetadataValue.json([round(x, 3) for x in shares]),
            "online_sessions_until_90pct_best": reached if reached is not None else f"not within {ONLINE_SESSIONS}"}


class BanditConfig(dg.Config):
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    threshold: float = 0.95  # "posterior mass on the best arm" for the convergence figures


@dg.asset(
    name="strategy_bandits",
    group_name="learning",
    owners=OWNERS,
    kinds={"postgres", "python"},
    partitions_def=learning_partitions(),
    deps=["strategy_log_simulation"],
    tags={"gateway/trigger": "schedule"},
    metadata={"dagster/table_name": "learning.bandit_arms", "dagster/column_schema": ARMS_SCHEMA},
    description="Nightly Thompson-sampling state: Beta posteriors per context (device × daypart × new or "
    "returning user) × strategy from every logged impression and outcome served before the day's end "
    "(reward 0.2·click + 0.5·completion + 0.3·rating/10), versioned by day in learning.bandit_arms, with "
    "IPS and doubly robust values of each strategy from the logged propensities, and how fast the "
    "posterior mass reached the planted best strategy when the log is simulated. Recomputing gives identical state.",
)
def strategy_bandits(context: dg.AssetExecutionContext, config: BanditConfig,
                     warehouse: WarehouseResource) -> dg.MaterializeResult:
    if config.prior_alpha <= 0 or config.prior_beta <= 0:
        raise _fail(f"strategy_bandits: the prior must be positive, got ({config.prior_alpha}, {config.prior_beta})")
    if not 0.5 < config.threshold < 1:
        raise _fail(f"strategy_bandits: threshold must be in (0.5, 1), got {config.threshold}")
    started = time.perf_counter()
    end = as_of(context.partition_key)
    day = date.fromisoformat(context.partition_key)
    with warehouse.connection() as conn:
        _require_tables(conn, "strategy_bandits")
        frame = lib.read_log(conn, end)
        log = lib.prepare_log(frame)
        truth, sim_runs = lib.read_truth(conn, log.rows["run_id"].unique()) if log.used else (None, set())
    served_today = int((log.rows["served_at"].dt.date == day).sum()) if log.used else 0
    meta: dict = {
        "as_of": end.isoformat(), "rows_read": log.read, "rows_used": log.used,
        "rows_skipped": sum(log.skipped.values()), "counts_add_up": log.adds_up,
        "skipped": dg.MetadataValue.json(log.skipped),
        "unknown_strategies": dg.MetadataValue.json(log.unknown_strategies),
        "impressions_served_this_day": served_today,
    }
    if not log.used:
        # nothing to learn from: the stored versions stay as they are, and nothing is made up
        meta.update({"outcome": f"not estimable: no usable impression served before {end.isoformat()}; "
                     "learning.bandit_arms unchanged", "written": False, "dagster/row_count": 0,
                     "seconds": round(time.perf_counter() - started, 3)})
        context.log.warning(meta["outcome"])
        return dg.MaterializeResult(metadata=meta)
    state = lib.posteriors(log.rows, (config.prior_alpha, config.prior_beta))
    digest = lib.state_hash(state)
    with warehouse.connection() as conn:
        written = lib.write_state(conn, day, state, digest, context.run_id)
    if served_today == 0:
        meta["outcome"] = f"no impression served on {day}: the state is carried from the log before it"
    # the figures against the truth only when every used row comes from a simulated run
    sim_only = truth is not None and bool(log.rows["run_id"].isin(sim_runs).all())
    best = {c: max(lib.ARMS, key=lambda a: truth[(c, a)]) for c in lib.CONTEXTS} if sim_only else None
    conv = lib.convergence(log.rows, best, threshold=config.threshold)
    values, why = lib.off_policy_values(log.rows)
    true_values = lib.true_arm_values(log.rows, truth) if sim_only else None
    top = state.loc[state.groupby("context")["p_best"].idxmax()]
    seen = conv["context"].tolist()
    meta.update({
        "written": written, "state_hash": digest[:16], "dagster/row_count": len(state),
        "contexts_with_data": len(seen),
        "posteriors": dg.MetadataValue.md(lib.posterior_markdown(state, best)),
        "convergence": dg.MetadataValue.md(_convergence_md(conv, config.threshold)),
        f"contexts_p_best_over_{config.threshold:g}": int((conv["p_best_final"] >= config.threshold).sum()),
        "median_impressions_to_threshold": _median(conv["impressions_to_threshold"]),
    })
    if best is not None:
        correct = sum(best[r.context] == r.arm for r in top.itertuples() if r.context in seen)
        meta["posterior_best_is_planted_best"] = correct  # of contexts_with_data
    if values:
        meta["off_policy_values"] = dg.MetadataValue.md(lib.ope_markdown(values, true_values))
        meta["off_policy_estimates"] = dg.MetadataValue.json({
            v.arm: {"served": v.n_played, "ips": round(v.ips, 5), "ips_ci": [round(x, 5) for x in v.interval("ips")],
                    "dr": round(v.dr, 5), "dr_ci": [round(x, 5) for x in v.interval("dr")],
                    **({"true": round(true_values[v.arm], 5)} if true_values else {})} for v in values})
        if true_values:
            cov = [lo <= true_values[v.arm] <= hi for v in values for lo, hi in (v.interval("ips"), v.interval("dr"))]
            meta["ope_intervals_covering_truth"] = sum(cov)
            meta["ope_intervals"] = len(cov)
    else:
        meta["off_policy_values"] = why
    meta["seconds"] = round(time.perf_counter() - started, 3)
    context.log.info(f"strategy_bandits {day}: {log.used} impressions used of {log.read}; "
                     f"{'written' if written else 'state unchanged'}")
    return dg.MaterializeResult(metadata=meta)


def _median(series) -> float | str:
    s = series.dropna()
    return float(s.median()) if len(s) else "not reached in any context"


def _convergence_md(conv, threshold: float) -> str:
    head = f"| context | best arm | impressions | impressions until P(best) ≥ {threshold:g} for good | P(best) now |"
    lines = [head, "|---|---|---|---|---|"]
    for r in conv.itertuples():
        n = r.impressions_to_threshold
        reached = "not yet" if pd.isna(n) else int(n)
        lines.append(f"| {r.context} | {r.best_arm} | {r.impressions} | {reached} | {r.p_best_final:.3f} |")
    return "\n".join(lines)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[strategy_log_simulation, strategy_bandits])
