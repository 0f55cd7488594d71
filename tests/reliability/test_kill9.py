"""kill -9 inside every write stage never leaves a partial table, and the rerun converges.

For each stage (raw COPY, dbt, embedding, vector merge, index build, migration swap) and each trial:
a copy of the stage's "before" database, the stage started in a process of its own, SIGKILLed once
one of its statements is running inside an open transaction (seen in pg_stat_activity), then:

* every table the stage writes holds exactly what it held before (row count and row checksum);
* no process of the stage survives (dbt dies with the process that started it);
* the stage run again ends with exactly what an uninterrupted run on another copy ends with (the
  index build's fingerprint includes the served table's valid indexes, so "old" means still indexed).

The kill lands at the first statement seen in trial 1, later in trial 2 (after a short delay), so
both "just started" and "well into it" are covered; dbt and the embedding asset run one trial here
(each of their runs costs tens of seconds), bench/reliability runs 5 trials of every stage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.reliability.stages import STAGES, Prepared, classify, drop_database, kill_trial, prepare

pytestmark = pytest.mark.slow

# 1 trial a stage in the suite (it must fit CI's budget), unless GATEWAY_KILL9_TRIALS says otherwise;
# bench/reliability runs 5 of each and reports them
TRIALS = int(os.environ.get("GATEWAY_KILL9_TRIALS", "1"))
HEAVY_TRIALS = int(os.environ.get("GATEWAY_KILL9_TRIALS", "1"))
HEAVY = {"dbt", "embedding"}
DELAYS = (0.0, 0.15, 0.05, 0.3, 0.1)  # seconds between seeing the stage's statement and the kill


@pytest.fixture(scope="module", params=list(STAGES))
def prepared(request, server_url: str, tmp_path_factory) -> Iterator[Prepared]:
    stage = STAGES[request.param]
    ready = prepare(stage, server_url, tmp_path_factory.mktemp(f"kill9-{stage.name}"))
    yield ready
    drop_database(server_url, ready.template)


def test_a_kill_inside_the_stage_leaves_the_old_state_and_the_rerun_converges(prepared, server_url):
    name = prepared.stage.name
    assert prepared.before != prepared.expected, f"{name}: the stage changes nothing, so a kill could not be seen"
    for trial in range(HEAVY_TRIALS if name in HEAVY else TRIALS):
        delay = DELAYS[trial % len(DELAYS)]
        outcome = kill_trial(prepared, server_url, trial=trial, delay=delay)
        assert outcome.caught, f"{name} trial {trial}: {outcome.detail}"
        assert outcome.survivors == 0, f"{name}: {outcome.survivors} processes outlived the kill"
        # killed at one of its statements, the stage's transaction never commits; a kill after a delay
        # may land after the commit: then the whole new state, never a part of it
        # (dbt commits model by model: after a delay the first model may be new and the next still old)
        allowed = ("old",) if not delay else ("old", "new") if prepared.stage.atomic else ("old", "new", "mixed")
        assert outcome.after_kill in allowed, (
            f"{name} trial {trial}, killed at {outcome.killed_at!r}: {outcome.after_kill}. {outcome.detail}")
        assert outcome.converged and outcome.rows_lost == outcome.duplicates == 0, (
            f"{name} trial {trial}: the rerun diverged. {outcome.detail}")


def test_a_kill_is_judged_table_by_table():
    before, after = {"a": (1, "x"), "b": (1, "y")}, {"a": (2, "x2"), "b": (2, "y2")}
    assert classify(dict(before), before, after) == ("old", ())
    assert classify(dict(after), before, after) == ("new", ())
    assert classify({"a": after["a"], "b": before["b"]}, before, after) == ("mixed", ())
    assert classify({"a": (2, "torn"), "b": before["b"]}, before, after) == ("partial", ("a",))
    assert not STAGES["dbt"].atomic and all(s.atomic for n, s in STAGES.items() if n != "dbt")


# -- run monitoring: a run whose worker was killed is marked failed, not STARTED forever ----------------

WORKER = """
import time
import dagster as dg
from gateway_pipelines.runtime.instance import worker_tags

@dg.op
def wait_here():
    print("inside", flush=True)
    time.sleep(300)

@dg.job
def kill9_monitored_job():
    wait_here()

kill9_monitored_job.execute_in_process(instance=dg.DagsterInstance.get(), tags=worker_tags())
"""


def _monitoring_pass(instance) -> None:
    """One iteration of the daemon's run monitoring (what `dagster-daemon` runs every poll interval)."""
    import logging

    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

    with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
        errors = [e for e in execute_run_monitoring_iteration(context, logging.getLogger("kill9")) if e]
    assert not errors, errors


@pytest.mark.parametrize("sweeper", ["daemon_run_monitoring", "next_gateway_run"])
def test_a_run_whose_worker_is_killed_is_marked_failed(platform, sweeper):
    import subprocess
    import sys

    import dagster as dg

    from gateway_pipelines.runtime.instance import GatewayRunLauncher, fail_dead_runs

    instance = dg.DagsterInstance.get()
    assert isinstance(instance.run_launcher, GatewayRunLauncher) and instance.run_monitoring_enabled
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "inside"
        [run] = [r for r in instance.get_runs(dg.RunsFilter(job_name="kill9_monitored_job",
                                                            statuses=[dg.DagsterRunStatus.STARTED]))
                 if r.tags.get("gateway/run_worker", "").split("|")[1:2] == [str(worker.pid)]]
        _monitoring_pass(instance)  # a live worker is left alone
        assert fail_dead_runs(instance) == []
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    finally:
        worker.kill()
        worker.wait()
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # what used to linger
    if sweeper == "daemon_run_monitoring":
        _monitoring_pass(instance)
    else:
        assert run.run_id in fail_dead_runs(instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    messages = [e.message for e in instance.all_logs(run.run_id) if e.message]
    assert any(f"pid {worker.pid}" in m and "killed or crashed" in m for m in messages), messages[-3:]
