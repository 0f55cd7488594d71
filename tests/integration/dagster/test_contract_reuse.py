"""The schema contract check reuses its last pass only while nothing it judges changed: no migration
applied since, the same catalog of the contract's tables, the same contract. Real warehouse, real GX."""

import shutil

import dagster as dg

from gateway_pipelines.defs.warehouse.assets import warehouse_schema
from gateway_pipelines.defs.warehouse.checks import warehouse_schema_matches_contract
from gateway_pipelines.lib.migrations import apply_migrations
from gateway_pipelines.lib.quality.schema_contract import SchemaContract, contract_watermark
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from gateway_pipelines.settings import SQL_DIR


def _check(db: str) -> tuple[dg.ExecuteInProcessResult, dg.AssetCheckEvaluation]:
    result = dg.materialize([warehouse_schema, warehouse_schema_matches_contract],
                            resources={"warehouse": WarehouseResource(database_url=db)}, raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    return result, evaluation


def _measured(evaluation: dg.AssetCheckEvaluation) -> bool:
    return evaluation.metadata["measured"].value


def test_an_unchanged_schema_reuses_the_last_pass_and_says_when_it_was_measured(fresh_db):
    first, measured = _check(fresh_db)
    assert measured.passed and _measured(measured)
    _, reused = _check(fresh_db)
    assert reused.passed and not _measured(reused)
    assert reused.metadata["measured_in_run"].value == first.run_id
    assert "not measured again: no migration was applied since" in reused.description
    assert reused.metadata["signatures_declared"].value == len(SchemaContract.load().signatures)


def test_a_changed_column_type_is_measured_and_fails(fresh_db):
    assert _check(fresh_db)[1].passed
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE raw.tmdb_genres ALTER COLUMN name TYPE varchar(300)")
    result, evaluation = _check(fresh_db)
    assert not evaluation.passed and _measured(evaluation)
    assert "column:raw.tmdb_genres.name:text" in evaluation.metadata["missing"].value
    assert not result.success  # blocking, ERROR: the run fails on it


def test_a_dropped_index_is_measured_and_fails(fresh_db):
    assert _check(fresh_db)[1].passed
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("DROP INDEX raw.tmdb_batches_status_idx")
    _, evaluation = _check(fresh_db)
    assert not evaluation.passed and _measured(evaluation)
    assert any(m.startswith("index:raw.tmdb_batches.tmdb_batches_status_idx") for m in
               evaluation.metadata["missing"].value)


def test_a_migration_applied_since_is_measured_then_reused(fresh_db, tmp_path):
    assert _check(fresh_db)[1].passed
    folder = tmp_path / "sql"
    shutil.copytree(SQL_DIR, folder)
    # a table outside the contract: the catalog of the contract's tables is the same, the ledger is not
    (folder / "999_extra_for_test.sql").write_text("CREATE TABLE meta.extra_for_test (x integer);\n")
    with connect(fresh_db) as conn:
        before = contract_watermark(conn, SchemaContract.load())
        assert apply_migrations(conn, folder).applied == ["999_extra_for_test.sql"]
        after = contract_watermark(conn, SchemaContract.load())
    assert before["catalog"] == after["catalog"] and before["migrations"] != after["migrations"]
    _, measured = _check(fresh_db)
    assert measured.passed and _measured(measured)
    _, reused = _check(fresh_db)
    assert reused.passed and not _measured(reused)


def test_indexes_the_contract_leaves_to_configuration_do_not_cost_a_measurement(fresh_db):
    """A first pass builds the HNSW index and the partial indexes of hot genres after this check ran;
    its rerun must reuse the pass, since the verdict (declared signatures present) is the same."""
    assert _check(fresh_db)[1].passed
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("DROP INDEX vectors.content_vectors_vector_hnsw")  # of another kind, as configured
        conn.execute("CREATE INDEX content_vectors_vector_hnsw ON vectors.content_vectors "
                     "USING hnsw ((vector::halfvec(768)) halfvec_cosine_ops)")
        conn.execute("CREATE INDEX content_vectors_g99_hnsw ON vectors.content_vectors "
                     "USING hnsw ((vector::halfvec(768)) halfvec_cosine_ops) WHERE genre_ids && '{99}'::integer[]")
    _, reused = _check(fresh_db)
    assert reused.passed and not _measured(reused)
    with connect(fresh_db, autocommit=True) as conn:  # while a declared index going is still seen
        conn.execute("DROP INDEX vectors.content_vectors_genres_gin")
    _, measured = _check(fresh_db)
    assert not measured.passed and _measured(measured)
