"""Skill consolidation on a real warehouse: idempotent, stable ids, failures counted, archive not delete."""

from datetime import datetime, timezone

import pytest

from gateway_pipelines.lib.learning.consolidation import ConsolidationParams, consolidate
from gateway_pipelines.lib.learning.embedding import TaskEmbedder
from gateway_pipelines.lib.learning.episodes import store_generated
from gateway_pipelines.lib.learning.generator import generate_episodes

AS_OF = datetime(2026, 7, 1, tzinfo=timezone.utc)
SKILL_ROWS = "SELECT * FROM memory.skills ORDER BY id"


def _factory(tmp_path):
    return lambda tasks: TaskEmbedder.load_or_fit(tmp_path / "models", tasks)


def _family_of_skill(conn):
    rows = conn.execute(
        "SELECT s.id, mode() WITHIN GROUP (ORDER BY e.metadata -> 'generator' ->> 'family') FROM memory.skills s, "
        "unnest(s.created_from_episodes) AS ep(id) JOIN memory.episodes e ON e.id = ep.id "
        "WHERE s.archived_at IS NULL GROUP BY s.id").fetchall()
    return {fam: sid for sid, fam in rows}


def test_rerun_is_identical_and_skill_ids_survive_new_episodes(conn, tmp_path):
    first_set = generate_episodes(seed=21, n_sessions=250, end_date="2026-06-30")
    store_generated(conn, first_set)
    first = consolidate(conn, _factory(tmp_path), AS_OF, "run-1")
    assert first.created == len(first.skills) >= 8 and first.updated == 0
    assert first.ground_truth["ari"] >= 0.9 > 0.1 > first.ground_truth["ari_exact_string"]
    snapshot = conn.execute(SKILL_ROWS).fetchall()
    links = conn.execute("SELECT * FROM memory.skill_links ORDER BY 1, 2, 3").fetchall()
    tasks = conn.execute("SELECT * FROM memory.skill_tasks ORDER BY 1").fetchall()

    again = consolidate(conn, _factory(tmp_path), AS_OF, "run-2")
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(first.skills))
    assert conn.execute(SKILL_ROWS).fetchall() == snapshot  # updated_at included: no row was touched
    assert conn.execute("SELECT * FROM memory.skill_links ORDER BY 1, 2, 3").fetchall() == links
    assert conn.execute("SELECT * FROM memory.skill_tasks ORDER BY 1").fetchall() == tasks

    families_before = _family_of_skill(conn)
    later = generate_episodes(seed=22, n_sessions=250, end_date="2026-07-10", session_offset=100_000)
    store_generated(conn, later)
    third = consolidate(conn, _factory(tmp_path), datetime(2026, 7, 11, tzinfo=timezone.utc), "run-3")
    assert third.created == 0 and third.updated == len(first.skills)
    assert _family_of_skill(conn) == families_before  # every family kept its skill id

    runs = conn.execute("SELECT run_id, episodes_scanned, skills_created, skills_updated, duration_ms "
                        "FROM memory.consolidation_runs ORDER BY id").fetchall()
    assert [r[0] for r in runs] == ["run-1", "run-2", "run-3"]
    assert runs[0][1] == len(first_set.episodes) and runs[2][1] == len(first_set.episodes) + len(later.episodes)
    assert runs[1][2:4] == (0, 0) and all(r[4] > 0 for r in runs)


def test_success_rates_count_failures_and_match_the_generator(conn, tmp_path):
    gen = generate_episodes(seed=23, n_sessions=400, end_date="2026-06-30")
    store_generated(conn, gen)
    result = consolidate(conn, _factory(tmp_path), AS_OF, "run")
    rows = conn.execute("SELECT id, uses, success_rate, created_from_episodes, metadata FROM memory.skills").fetchall()
    for sid, uses, rate, episodes, meta in rows:
        successes, total = conn.execute("SELECT count(*) FILTER (WHERE success), count(*) FROM memory.episodes "
                                        "WHERE id = ANY(%s)", (episodes,)).fetchone()
        assert total == uses and rate == pytest.approx(successes / total)  # failures included
        assert meta["n_failures"] == total - successes > 0
        assert meta["pitfalls"] and meta["keywords"]
    for err in result.ground_truth["success_rate_errors"]:
        assert abs(err["z"]) < 3.5, err  # within sampling error of the planted success probability
    # AgentDB's row filter (reward >= 0.7) would see only a sliver of each task, failures mostly gone
    agentdb = conn.execute("SELECT avg(success::int) FROM memory.episodes WHERE reward >= 0.7").fetchone()[0]
    overall = conn.execute("SELECT avg(success::int) FROM memory.episodes").fetchone()[0]
    assert agentdb > overall


def test_prune_archives_instead_of_deleting(conn, tmp_path):
    store_generated(conn, generate_episodes(seed=24, n_sessions=120, end_date="2026-06-30"))
    conn.execute("INSERT INTO memory.skills (name, success_rate, uses, created_at) VALUES "
                 "('legacy rarely used skill', 0.2, 1, '2026-01-01'), ('legacy good skill', 0.9, 1, '2026-01-01')")
    conn.commit()
    result = consolidate(conn, _factory(tmp_path), AS_OF, "run", ConsolidationParams())
    assert result.archived == 1
    rows = dict(conn.execute("SELECT name, archived_at FROM memory.skills WHERE name LIKE 'legacy%'").fetchall())
    assert rows["legacy rarely used skill"] == AS_OF and rows["legacy good skill"] is None
    assert consolidate(conn, _factory(tmp_path), AS_OF, "again").archived == 0  # archived once, kept
