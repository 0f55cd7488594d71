"""The causal-edge learner on a real warehouse: every pair, incremental by watermark, late episodes re-open their
pairs (incremental == full recompute), decay, randomised experiments that finish."""

from datetime import datetime, timedelta, timezone

import pytest

from gateway_pipelines.lib.learning.consolidation import consolidate
from gateway_pipelines.lib.learning.embedding import TaskEmbedder
from gateway_pipelines.lib.learning.episodes import load_jsonl, store_generated, write_jsonl
from gateway_pipelines.lib.learning.experiments import ExperimentParams, honoured_interventions, run_experiments
from gateway_pipelines.lib.learning.generator import generate_episodes
from gateway_pipelines.lib.learning.learner import LearnerParams, learn_edges

DAY1 = datetime(2026, 7, 1, tzinfo=timezone.utc)
DAY2 = datetime(2026, 7, 21, tzinfo=timezone.utc)
EDGES = "SELECT * FROM memory.causal_edges ORDER BY id"
# what a recompute must reproduce: every column but the row's own bookkeeping
EDGE_VALUES = ("SELECT from_memory_id, to_memory_id, uplift, confidence, ci_low, ci_high, sample_size, evidence_ids, "
               "metadata - 'experiment', last_validated_at, verdict, p_value, std_error FROM memory.causal_edges "
               "ORDER BY from_memory_id, to_memory_id")
CELLS = "SELECT * FROM memory.causal_edge_cells ORDER BY 1, 2, 3"
# late episodes: 3 sessions of the first set get one more episode (their first task again), a minute
# before their last one, arriving after the learner counted them
LATE = """
INSERT INTO memory.episodes (session_id, task, reward, success, ts, metadata, source_key)
SELECT session_id, (array_agg(task ORDER BY id))[1], 0.9, true, max(ts) - interval '1 minute',
       (array_agg(metadata ORDER BY id))[1], 'late:' || session_id
FROM memory.episodes WHERE session_id IN (
    SELECT DISTINCT session_id FROM memory.episodes WHERE session_id LIKE 'sim-31-%' ORDER BY 1 LIMIT 3)
GROUP BY session_id
"""


def _consolidate(conn, tmp_path, as_of):
    return consolidate(conn, lambda tasks: TaskEmbedder.load_or_fit(tmp_path / "models", tasks), as_of, "run")


def test_learner_is_incremental_decays_and_experiments_finish(conn, tmp_path):
    # imported AgentDB episodes, long before the window, with metadata of their own: not units, no vote
    conn.execute("INSERT INTO memory.episodes (session_id, task, reward, success, ts, metadata) "
                 "SELECT 'legacy-' || (i % 7), 'summarise the plot', 0.5, true, "
                 "'2025-10-01'::timestamptz + i * interval '37 s', jsonb_build_object('step', i) "
                 "FROM generate_series(1, 400) AS i")
    store_generated(conn, generate_episodes(seed=31, n_sessions=450, end_date="2026-06-30"))
    _consolidate(conn, tmp_path, DAY1)
    first = learn_edges(conn, DAY1)
    k = conn.execute("SELECT count(*) FROM memory.skills").fetchone()[0]
    assert first.batch_processed and first.pairs_evaluated == len(first.edges)
    assert first.pairs_evaluated + first.pairs_skipped == k * k  # every ordered pair of skills was looked at
    assert first.episode_pairs > 1000  # AgentDB scans its first 1,000 pairs, forever
    assert first.covariates == ["agent_level"]
    truth = first.ground_truth
    assert truth["planted_coverage"] >= 2 / 3 and truth["null_rejection_rate"] <= 0.12
    (confounded,) = truth["confounded"]
    assert confounded["aipw_verdict"] != "causal" and confounded["naive"] > 0.05 and confounded["naive_p"] < 0.05
    edges_before = conn.execute(EDGES).fetchall()
    watermark = conn.execute("SELECT watermark FROM memory.learner_state WHERE name = 'causal_edges'").fetchone()[0]
    assert watermark == conn.execute("SELECT max(id) FROM memory.episodes").fetchone()[0]

    # nothing new: the rerun evaluates nothing and changes no row
    again = learn_edges(conn, DAY1)
    assert not again.batch_processed and (again.edges_created, again.edges_updated) == (0, 0)
    assert conn.execute(EDGES).fetchall() == edges_before

    # wide intervals get experiments; they start at the current watermark
    created = run_experiments(conn, DAY1, ExperimentParams(max_ci_width=0.0, min_uplift=0.0, budget=3))
    assert created["created"] == 3 and created["completed"] == 0

    # a second batch, whose simulated agents honour the experiments' assignments, and late episodes
    # into 3 sessions the first batch counted
    n_before = {r[0]: r[1] for r in conn.execute("SELECT id, sample_size FROM memory.causal_edges")}
    cells_before = conn.execute(CELLS).fetchall()
    # (an experiment between two skills of one generated family cannot be honoured by the simulator)
    interventions = honoured_interventions(conn)
    assert len(interventions) >= 2
    store_generated(conn, generate_episodes(seed=32, n_sessions=300, end_date="2026-07-20", session_offset=10**5,
                                            interventions=interventions))
    assert conn.execute(LATE).rowcount == 3
    _consolidate(conn, tmp_path, DAY2)
    second = learn_edges(conn, DAY2)
    assert second.batch_processed and second.watermark_before == watermark
    assert (second.batches_reopened, second.late_episodes, second.batches_computed) == (1, 3, 2)
    first_batch = [c for c in conn.execute(CELLS).fetchall() if c[0] == watermark]
    assert first_batch != [c for c in cells_before if c[0] == watermark]  # the late episodes changed batch 1
    if not second.batches_remapped:  # (a consolidation that moved a task recomputes the whole batch)
        assert any(c in cells_before for c in first_batch)  # pairs they do not touch were not recomputed
    # the incremental result is what a full recompute from source gives; a rerun changes nothing
    incremental, cells = conn.execute(EDGE_VALUES).fetchall(), conn.execute(CELLS).fetchall()
    full = learn_edges(conn, DAY2, full_recompute=True)
    assert full.batches_computed == 2 and full.cells_written == 0
    assert conn.execute(EDGE_VALUES).fetchall() == incremental and conn.execute(CELLS).fetchall() == cells
    rerun = learn_edges(conn, DAY2)
    assert not rerun.batch_processed and (rerun.edges_created, rerun.edges_updated) == (0, 0)
    rows = conn.execute("SELECT id, sample_size, metadata -> 'aipw' ->> 'batches', last_validated_at "
                        "FROM memory.causal_edges").fetchall()
    assert len(rows) == len({(r[0]) for r in rows}) >= len(first.edges)  # one edge per pair, new pairs added
    pooled = [r for r in rows if r[0] in n_before and r[2] == "2"]
    assert len(pooled) >= 0.8 * len(n_before)
    for edge_id, n, _, validated in pooled:
        assert n > n_before[edge_id] and validated == DAY2  # evidence grew, the edge was re-validated
    assert second.ground_truth["planted_coverage"] >= 2 / 3

    # the experiments observe the new sessions (one observation each) and, with their pre-registered n
    # per arm reached, complete once with Welch's test, written back to the edge
    done = run_experiments(conn, DAY2, ExperimentParams(max_ci_width=0.0, min_uplift=0.0, budget=3))
    assert done["observations"] > 0 and done["completed"] == 3
    honoured = {i[0] for i in interventions}
    for r in done["results"]:
        assert r["n_treated"] == r["n_control"] == r["n_per_arm"] >= 30
        if r["experiment_id"] in honoured:
            assert r["compliance"] == 1.0 and r["conclusion"] in ("effect", "no_effect")
        else:  # arms the agents ignored: flagged, not reported as "no effect"
            assert r["compliance"] < 0.9 and r["conclusion"] == "not_honoured"
    status = dict(conn.execute("SELECT status, count(*) FROM memory.causal_experiments GROUP BY 1").fetchall())
    # completing frees budget, and new candidates take it in the same run
    assert status.get("completed") == done["completed"] == done["created"] and status["running"] == 3
    for exp_id, p, lo, hi, edge in conn.execute(
            "SELECT id, p_value, confidence_interval_low, confidence_interval_high, (metadata ->> 'edge_id')::bigint "
            "FROM memory.causal_experiments WHERE status = 'completed' ORDER BY id").fetchall():
        assert 0 <= p <= 1 and lo < hi
        ids, result = conn.execute("SELECT experiment_ids, metadata -> 'experiment' FROM memory.causal_edges "
                                   "WHERE id = %s", (edge,)).fetchone()
        assert ids == [str(exp_id)] and result["p_value"] == pytest.approx(p)
    assert run_experiments(conn, DAY2, ExperimentParams(max_ci_width=0.0, min_uplift=0.0, budget=3))["created"] == 0
    # past its deadline, an experiment without enough evidence fails, saying why
    late = run_experiments(conn, DAY2 + timedelta(days=31), ExperimentParams(max_ci_width=0.0, min_uplift=0.0,
                                                                             budget=0, min_per_arm=10**6))
    assert late["failed"] == 3
    reasons = [r for (r,) in conn.execute("SELECT metadata ->> 'reason' FROM memory.causal_experiments "
                                          "WHERE status = 'failed'")]
    assert reasons and all("by the deadline" in r for r in reasons)

    # thirty days without evidence: confidence halves (half-life 30 d), nothing is deleted
    conf = dict(conn.execute("SELECT id, confidence FROM memory.causal_edges").fetchall())
    decayed = learn_edges(conn, DAY2 + timedelta(days=30), LearnerParams())
    assert not decayed.batch_processed
    after = dict(conn.execute("SELECT id, confidence FROM memory.causal_edges").fetchall())
    assert after.keys() == conf.keys()
    for edge_id, c in conf.items():
        assert after[edge_id] == pytest.approx(c * 0.5, abs=1e-5)


def test_jsonl_files_load_once_with_quarantine_and_counts_that_add_up(conn, tmp_path):
    gen = generate_episodes(seed=33, n_sessions=20, end_date="2026-06-30")
    path = write_jsonl(gen.episodes, tmp_path / "landing" / "day1.jsonl")
    good = path.read_text().splitlines()
    path.write_text("\n".join(good + ["{broken", '{"session_id": "s", "task": "t", "reward": 2, "ts": 1}',
                                      good[0]]) + "\n")
    first = load_jsonl(conn, path)
    assert (first.lines_read, first.loaded, first.quarantined, first.duplicates) == (len(good) + 3, len(good), 2, 1)
    assert first.lines_read == first.loaded + first.quarantined + first.duplicates
    rejects = conn.execute("SELECT line_no, reason FROM memory.episode_rejects ORDER BY line_no").fetchall()
    assert [r[0] for r in rejects] == [len(good) + 1, len(good) + 2] and "outside [0, 1]" in rejects[1][1]
    assert load_jsonl(conn, path).already_loaded  # the same file again: nothing read
    overlap = tmp_path / "landing" / "day2.jsonl"
    overlap.write_text("\n".join(good[:5]) + "\n")
    second = load_jsonl(conn, overlap)
    assert (second.loaded, second.duplicates) == (0, 5)
    assert conn.execute("SELECT count(*) FROM memory.episodes").fetchone()[0] == len(good)
    assert conn.execute("SELECT sum(lines_read) = sum(loaded + quarantined + duplicates) FROM memory.episode_files"
                        ).fetchone()[0]
