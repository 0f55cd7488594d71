"""The whole platform through Dagster, twice: one run of platform_job builds everything, the second changes nothing."""

import os

import dagster as dg
import pytest

from gateway_pipelines.lib.warehouse import connect
from gateway_pipelines.runtime.runner import MAIN_SEQUENCE, format_summary, run_jobs


def _metadata(summary_list, asset):
    for s in summary_list:
        for a in s.assets:
            if a.asset == asset:
                return a
    raise AssertionError(f"{asset} was not materialised")


def _mat_metadata(instance, asset, run_id):
    # limit: a partitioned asset records one materialisation per partition of a run's range
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=500).records
    for record in records:
        if record.run_id == run_id:
            return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}
    raise AssertionError(f"no materialisation of {asset} in run {run_id}")


@pytest.fixture(scope="module")
def two_runs(platform):
    from gateway_pipelines.definitions import defs

    definitions = defs()
    with dg.DagsterInstance.ephemeral() as instance:
        first = run_jobs(definitions, instance, MAIN_SEQUENCE)
        with connect(platform[1].warehouse) as conn:
            snapshot = conn.execute(
                "SELECT count(*), max(fetched_at) FROM raw.tmdb_titles"
            ).fetchone(), conn.execute(
                "SELECT count(*), max(updated_at) FROM vectors.content_vectors"
            ).fetchone()
        second = run_jobs(definitions, instance, MAIN_SEQUENCE)
        meta = {
            run: {
                asset: _mat_metadata(instance, asset, summary.run_id)
                for summary in summaries
                for asset in [a.asset for a in summary.assets]
            }
            for run, summaries in (("first", first), ("second", second))
        }
    return first, second, snapshot, meta


def test_first_run_builds_everything_with_all_checks_green(two_runs):
    first, _, _, meta = two_runs
    print(format_summary(first, 0))
    assert first[0].job == "platform_job" and len(first) == len(MAIN_SEQUENCE)  # the catalogue is one run
    assert [s.success for s in first] == [True] * len(MAIN_SEQUENCE), [(s.job, s.error) for s in first if not s.success]
    assert {a.asset for a in first[0].assets} >= {
        "warehouse_schema", "tmdb_genres", "tmdb_titles", "stg_tmdb__titles", "dim_content",
        "content_embeddings", "content_vectors",
    }
    failed = [(c.asset, c.check) for s in first for c in s.checks if not c.passed]
    assert failed == []
    assert meta["first"]["tmdb_titles"]["rows_inserted"] == 2500
    assert meta["first"]["content_embeddings"]["rows_embedded"] == 2500
    assert meta["first"]["content_vectors"]["dagster/row_count"] == 2500
    assert meta["first"]["content_vectors"]["index_valid"] is True
    # personalization: simulated users whose recommendations beat popularity in the evaluation
    evaluation = meta["first"]["offline_evaluation"]
    assert evaluation["simulator/recommender/hit_rate@10"] > evaluation["simulator/popularity/hit_rate@10"]
    assert meta["first"]["user_preference_vectors"]["rows_updated"] > 0
    # nightly learning over the generated episodes: skills made, the learner read its batch
    assert meta["first"]["agent_episodes"]["rows_inserted"] > 0
    assert meta["first"]["skills"]["rows_inserted"] > 0 and meta["first"]["skills"]["clusters"] > 1
    assert meta["first"]["causal_edges"]["batch_processed"] is True


def test_second_run_changes_nothing_and_calls_no_provider(two_runs, platform):
    from gateway_pipelines.runtime.runner import succeeded

    _, second, snapshot, meta = two_runs
    assert all(s.success for s in second), [(s.job, s.error) for s in second if not s.success]
    # the rerun re-sent only unchanged titles: the WARN check says so, and the command still succeeds
    not_passed = [(c.check, c.severity) for s in second for c in s.checks if not c.passed]
    assert not_passed == [("batch_brought_new_or_changed_rows", "WARN")], not_passed
    assert succeeded(second)
    assert "1 warnings" in format_summary(second, 0) and "OK:" in format_summary(second, 0)
    titles, embeddings, vectors = (meta["second"][a] for a in ("tmdb_titles", "content_embeddings", "content_vectors"))
    assert (titles["rows_inserted"], titles["rows_updated"], titles["rows_unchanged"]) == (0, 0, 2500)
    assert embeddings["rows_embedded"] == 0 and embeddings["provider_calls"] == 0
    assert (vectors["rows_inserted"], vectors["rows_updated"], vectors["rows_deleted"]) == (0, 0, 0)
    assert vectors["index_rebuilt"] is False
    # personalization writes nothing new either: same simulation, every event a duplicate, no user changed
    assert meta["second"]["watch_event_simulation"]["written"] is False
    assert meta["second"]["watch_events"]["rows_inserted"] == 0
    assert meta["second"]["user_preference_vectors"]["rows_updated"] == 0
    # legacy sources unchanged: nothing promoted; learning recomputes the same skills, the learner has no new batch
    assert meta["second"]["legacy_promotion"]["rows_written"] == 0
    assert meta["second"]["agent_episodes"]["rows_inserted"] == 0
    skills = meta["second"]["skills"]
    assert (skills["rows_inserted"], skills["rows_updated"]) == (0, 0) and skills["rows_unchanged"] > 0
    assert meta["second"]["causal_edges"]["batch_processed"] is False
    assert meta["second"]["causal_edges"]["rows_inserted"] == 0
    with connect(platform[1].warehouse) as conn:
        after = conn.execute("SELECT count(*), max(fetched_at) FROM raw.tmdb_titles").fetchone(), conn.execute(
            "SELECT count(*), max(updated_at) FROM vectors.content_vectors"
        ).fetchone()
    assert after == snapshot


def test_search_finds_the_space_heist(two_runs, platform):
    from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
    from gateway_pipelines.lib.vector_store.search import SearchFilters, search_by_text

    embeddings = EmbeddingResource(models_dir=os.path.join(os.environ["GATEWAY_HOME"], "models"))
    with connect(platform[1].warehouse) as conn:
        result = search_by_text(conn, "space heist with a rogue AI", embeddings.open(), k=10,
                                filters=SearchFilters(genre_ids=(878,)), weights=embeddings.weights())
        conn.commit()
        logged = conn.execute("SELECT count(*) FROM vectors.vector_search_logs").fetchone()[0]
    titles = [h.title for h in result.hits]
    assert len(result.hits) == 10
    assert "Vault of Stars" in titles[:3], titles
    assert all(878 in h.genre_ids for h in result.hits)
    assert logged >= 1


def test_cli_search_and_similar_print_tables(two_runs, capsys):
    from gateway_pipelines.cli import main

    assert main(["search", "space heist with a rogue AI", "--genre", "878", "--year", "1950-2030", "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "Vault of Stars" in out and "(5 results" in out
    assert main(["similar", "movie-100001", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "(3 results" in out and "movie-100001 " not in out  # the title itself is excluded
    assert main(["similar", "movie-999999999"]) == 2
    assert "movie-999999999" in capsys.readouterr().err
    # a query whose words the model has never seen, and no filter: said plainly, not a traceback
    assert main(["search", "zzxqv qqwvk"]) == 2
    err = capsys.readouterr().err
    assert "no word of 'zzxqv qqwvk' is known" in err and "Traceback" not in err
