"""causal_weights through Dagster on the real warehouse: a simulated window in, versioned weights out,
a rerun writes nothing, an empty day is recorded as not estimable, the recommender reads the newest
run; the nightly job's schedule and the late-file sensor."""

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from gateway_pipelines.defs.learning.causal_jobs import (
    CAUSAL_JOB,
    late_events_causal_sensor,
    late_requests,
    nightly_causal_job,
    nightly_causal_schedule,
)
from gateway_pipelines.defs.learning.causal_weights import COUNTS_CHECK, REFUTATIONS_CHECK, causal_weights
from gateway_pipelines.lib.personalization.recommender import RecommenderModel
from gateway_pipelines.lib.personalization.simulator import SimulationParams, simulate
from gateway_pipelines.lib.personalization.store import latest_causal_weights, write_simulation
from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue
from gateway_pipelines.lib.warehouse import WarehouseResource, connect

DAY = "2026-11-30"
SEGMENTS = ["all", "user_type=new", "user_type=returning"]  # every segment is the unit tests' business: time


@pytest.fixture(scope="module")
def sim():
    return simulate(synthetic_catalogue(400, seed=4), SimulationParams(120, 7, 3, date(2026, 11, 30)))


def _run(url, tmp_path, partition, **config):
    config = {"segments": SEGMENTS, **config}
    resources = {"warehouse": WarehouseResource(database_url=url, gateway_home=str(tmp_path))}
    run_config = {"ops": {"causal_weights": {"config": config}}}
    return dg.materialize([causal_weights], partition_key=partition, resources=resources, run_config=run_config,
                          raise_on_error=False)


def _meta(result):
    mat = result.asset_materializations_for_node("causal_weights")[0]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_a_window_of_simulated_impressions_becomes_versioned_weights(fresh_db, tmp_path, sim):
    with connect(fresh_db) as conn:
        assert write_simulation(conn, sim)
        assert latest_causal_weights(conn) == ({}, None)
    first = _run(fresh_db, tmp_path, DAY)
    assert first.success
    meta = _meta(first)
    assert meta["written"] and meta["counts_add_up"] and meta["impressions_read"] == len(sim.impressions)
    assert meta["impressions_used"] == int(sim.outcomes["clicked"].sum())
    assert meta["truth/dml_coverage"] >= 0.8 and meta["truth/detail"]["rank_dml_covers"]
    assert not meta["truth/detail"]["rank_naive_covers"] and meta["placebo_covers_zero"]
    assert "forest_plot" in meta and "data:image/png;base64," in meta["forest_plot"]
    assert _checks(first) == {COUNTS_CHECK: True, REFUTATIONS_CHECK: True}
    run_id = meta["causal_run_id"]
    with connect(fresh_db) as conn:
        methods = dict(conn.execute("SELECT method, count(*) FROM learning.causal_weights WHERE run_id = %s "
                                    "GROUP BY 1", (run_id,)).fetchall())
        assert methods["dml_plr"] + methods["dml_irm"] == methods["naive_ols"] and methods["refute_placebo"] == 1
        bad = conn.execute("SELECT count(*) FROM learning.causal_weights WHERE run_id = %s AND status = 'ok' AND "
                           "NOT (ci_low <= effect AND effect <= ci_high)", (run_id,)).fetchone()[0]
        assert bad == 0
        weights, label = latest_causal_weights(conn)
        assert label == f"DML run {run_id}" and set(weights) == {
            "genre_match_score", "platform_availability", "release_recency_score", "rating_alignment", "time_of_day",
            "device_type", "recommendation_rank", "content_duration", "user_session_length"}
        before = conn.execute("SELECT count(*), max(computed_at) FROM learning.causal_weights").fetchone()
    model = RecommenderModel(synthetic_catalogue(50, seed=1), [], causal_weights=weights)
    assert set(model.causal_weights) | set(model.causal_dropped) == {
        "genre_match_score", "release_recency_score", "rating_alignment", "content_duration"}
    assert all(weights[f][1] > 0 or weights[f][2] < 0 for f in model.causal_weights)

    again = _run(fresh_db, tmp_path, DAY)
    assert again.success and not _meta(again)["written"] and _meta(again)["causal_run_id"] == run_id
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*), max(computed_at) FROM learning.causal_weights").fetchone() == before
        assert conn.execute("SELECT count(*) FROM learning.causal_runs").fetchone()[0] == 1

    # a day with no impressions: recorded as not estimable, and the older day's weights still serve
    empty = _run(fresh_db, tmp_path, "2026-10-01", window_days=1)
    assert empty.success
    meta = _meta(empty)
    assert meta["impressions_read"] == 0 and meta["estimates_ok"] == 0 and meta["not_estimable"] > 0
    with connect(fresh_db) as conn:
        reasons = conn.execute("SELECT DISTINCT status, reason, effect FROM learning.causal_weights "
                               "WHERE serve_date = '2026-10-01'").fetchall()
        assert reasons == [("not_estimable", "not estimable: no impressions on this day", None)]
        assert latest_causal_weights(conn) == (weights, label)


def test_bad_config_fails_clearly(fresh_db, tmp_path):
    result = _run(fresh_db, tmp_path, DAY, window_days=0)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "window_days must be 1..366" in failure.event_specific_data.error.message


def test_the_schedule_runs_yesterday_at_0230_utc():
    assert nightly_causal_schedule.cron_schedule == "30 2 * * *"
    assert nightly_causal_schedule.execution_timezone == "UTC" and nightly_causal_schedule.job_name == CAUSAL_JOB
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 12, 1, 2, 30, tzinfo=timezone.utc))
    request = nightly_causal_schedule(context)
    assert request.partition_key == "2026-11-30" and request.run_key == "causal:2026-11-30"
    assert nightly_causal_job.name == CAUSAL_JOB


def test_late_files_rerun_the_past_serve_dates_their_days_reach():
    t = lambda d: datetime.fromisoformat(d).replace(tzinfo=timezone.utc)  # noqa: E731
    keys = {(date(2026, 11, 1) + timedelta(days=k)).isoformat() for k in range(31)}
    files = [("a" * 64, "late.jsonl", t("2026-11-20T10:00"), t("2026-11-21T09:00"), t("2026-12-01T01:00")),
             ("b" * 64, "today.jsonl", t("2026-12-01T00:10"), t("2026-12-01T00:20"), t("2026-12-01T01:00"))]
    requests = late_requests(files, date(2026, 12, 1), keys, window_days=3)
    assert [r.partition_key for r in requests] == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
    assert requests[0].run_key == f"late:{'a' * 16}:2026-11-20" and requests[0].tags["gateway/file"] == "late.jsonl"


def test_the_sensor_reads_the_event_file_ledger_once(fresh_db, tmp_path):
    resources = {"warehouse": WarehouseResource(database_url=fresh_db, gateway_home=str(tmp_path))}
    with connect(fresh_db) as conn:
        conn.execute(
            "INSERT INTO raw.event_files (file_sha256, file_name, path, format, source, lines_read, loaded, "
            "quarantined, duplicates, not_in_catalogue, min_ts, max_ts) VALUES "
            "(%s, 'late.jsonl', '/x', 'jsonl', 'events:late', 1, 1, 0, 0, 0, %s, %s)",
            ("c" * 64, datetime(2026, 11, 28, 12, tzinfo=timezone.utc),
             datetime(2026, 11, 28, 13, tzinfo=timezone.utc)))
        conn.commit()
    with dg.build_sensor_context(resources=resources) as context:
        result = late_events_causal_sensor(context)
    assert [r.partition_key for r in result.run_requests][0] == "2026-11-28" and result.cursor
    with dg.build_sensor_context(resources=resources, cursor=result.cursor) as context:
        again = late_events_causal_sensor(context)
    assert isinstance(again, dg.SkipReason) or not again.run_requests
