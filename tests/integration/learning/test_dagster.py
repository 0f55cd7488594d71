"""The learning group through Dagster: make run's steps twice (the second changes nothing), the
sensors, the schedule and the failure table."""

from datetime import datetime, timezone

import dagster as dg
import pytest

from gateway_pipelines.defs.learning.assets import agent_episodes, causal_edges, causal_experiments, skills
from gateway_pipelines.defs.learning.jobs import JOBS
from gateway_pipelines.defs.learning.schedules import nightly_learning_schedule
from gateway_pipelines.defs.learning.sensors import (
    episodes_landing_sensor,
    learning_run_failure_sensor,
    new_episodes_request,
)
from gateway_pipelines.lib.learning.episodes import write_jsonl
from gateway_pipelines.lib.learning.generator import generate_episodes
from gateway_pipelines.lib.learning.resource import LearningResource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from gateway_pipelines.runtime.runner import LEARNING_STEPS, JobStep, run_jobs

TABLES = ("memory.episodes", "memory.skills", "memory.skill_links", "memory.skill_tasks", "memory.causal_edges",
          "memory.causal_experiments", "memory.causal_observations", "memory.task_embeddings")


def _snapshot(url):
    with connect(url) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}  # noqa: S608 (constants)


def _meta(instance, asset, run_id):
    for record in instance.fetch_materializations(dg.AssetKey(asset), limit=20).records:
        if record.run_id == run_id:
            return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}
    raise AssertionError(f"no materialisation of {asset} in {run_id}")


@pytest.fixture
def learning_defs(fresh_db, tmp_path):
    resources = {
        "warehouse": WarehouseResource(database_url=fresh_db, gateway_home=str(tmp_path)),
        "learning": LearningResource(landing_dir=str(tmp_path / "landing" / "episodes"),
                                     models_dir=str(tmp_path / "models")),
    }
    return dg.Definitions(assets=[agent_episodes, skills, causal_edges, causal_experiments], jobs=JOBS,
                          resources=resources), resources


@pytest.mark.slow
def test_make_run_steps_build_skills_and_edges_and_a_second_run_changes_nothing(learning_defs, fresh_db):
    defs, _ = learning_defs
    with dg.DagsterInstance.ephemeral() as instance:
        first = run_jobs(defs, instance, LEARNING_STEPS)
        assert [s.success for s in first] == [True, True], [s.error for s in first]
        assert all(c.passed for s in first for c in s.checks) and len(first[1].checks) == 3
        skills_meta = _meta(instance, "skills", first[1].run_id)
        edges_meta = _meta(instance, "causal_edges", first[1].run_id)
        assert skills_meta["ari"] >= 0.9 and skills_meta["ari_exact_string"] < 0.1
        assert skills_meta["rows_inserted"] == skills_meta["dagster/row_count"] >= 8
        assert "coverage_planted" in edges_meta and "forest_plot" in edges_meta
        assert edges_meta["episode_pairs_evaluated"] > 1000
        snapshot = _snapshot(fresh_db)
        second = run_jobs(defs, instance, LEARNING_STEPS)
        assert [s.success for s in second] == [True, True]
        assert all(c.passed for s in second for c in s.checks)
        skills2 = _meta(instance, "skills", second[1].run_id)
        edges2 = _meta(instance, "causal_edges", second[1].run_id)
        assert (skills2["rows_inserted"], skills2["rows_updated"]) == (0, 0)
        assert (edges2["rows_inserted"], edges2["rows_updated"], edges2["batch_processed"]) == (0, 0, False)
        assert _meta(instance, "agent_episodes", second[0].run_id)["rows_inserted"] == 0
        assert _snapshot(fresh_db) == snapshot


def test_bad_config_fails_once_with_a_clear_message_and_is_recorded(learning_defs, fresh_db):
    defs, resources = learning_defs
    bad = JobStep("episodes_ingest_job", None, {"ops": {"agent_episodes": {"config": {"source": "ftp"}}}})
    with dg.DagsterInstance.ephemeral() as instance:
        (summary,) = run_jobs(defs, instance, (bad,))
        assert not summary.success and "unknown source 'ftp'" in summary.error
        run = instance.get_run_by_id(summary.run_id)
        failure = next(e for e in instance.all_logs(summary.run_id) if e.dagster_event
                       and e.dagster_event.event_type_value == "PIPELINE_FAILURE")
        with dg.build_run_status_sensor_context(
                sensor_name="learning_run_failure_sensor", dagster_event=failure.dagster_event,
                dagster_instance=instance, dagster_run=run, resources={"warehouse": resources["warehouse"]}) as context:
            learning_run_failure_sensor(context.for_run_failure())
    with connect(fresh_db) as conn:
        rows = conn.execute("SELECT run_id, job_name, error FROM memory.learning_run_failures").fetchall()
    assert rows and rows[0][0] == summary.run_id and rows[0][1] == "episodes_ingest_job"


def test_landing_sensor_runs_each_file_once_and_new_episodes_sensor_needs_enough(tmp_path):
    landing = tmp_path / "landing" / "episodes"
    learning = LearningResource(landing_dir=str(landing), models_dir=str(tmp_path / "models"))

    def tick(cursor=None):
        with dg.DagsterInstance.ephemeral() as instance:
            return episodes_landing_sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                   resources={"learning": learning}))

    assert isinstance(tick(), dg.SkipReason)
    write_jsonl(generate_episodes(seed=1, n_sessions=3).episodes, landing / "day1.jsonl")
    (landing / "partial.jsonl.part").write_text("{}")
    first = tick()
    (request,) = first.run_requests
    assert request.run_config["ops"]["agent_episodes"]["config"]["source"] == "file"
    assert isinstance(tick(first.cursor), dg.SkipReason)
    assert isinstance(new_episodes_request(10, 50, 1000, "2026-07-01"), dg.SkipReason)
    fire = new_episodes_request(1001, 5000, 1000, "2026-07-01")
    assert fire.run_key == "new-episodes:5000" and fire.partition_key == "2026-07-01"


def test_nightly_schedule_runs_yesterday_at_two():
    assert nightly_learning_schedule.cron_schedule == "0 2 * * *"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 7, 2, 2, tzinfo=timezone.utc))
    request = nightly_learning_schedule(context)
    assert request.partition_key == "2026-07-01" and request.run_key == "nightly:2026-07-01"
