"""What the UI says about the vector tables: column schemas that match the migrated catalog, table
names that resolve, and row counts that add up."""

from __future__ import annotations

import dagster as dg
import pytest

from gateway_pipelines.defs.embeddings.assets import content_embeddings
from gateway_pipelines.defs.vector_store.assets import content_vectors
from gateway_pipelines.lib.vector_store import RowAccounting, copy_merge_embeddings
from tests.integration.vector_store.data import clustered_vectors, embedding_rows

CATALOG_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
                AND i.indnatts = 1 AND i.indkey[0] = a.attnum)
  FROM pg_attribute a
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""


def _spec(assets_def: dg.AssetsDefinition):
    [spec] = assets_def.specs
    return spec.metadata["dagster/table_name"], spec.metadata["dagster/column_schema"]


@pytest.mark.parametrize("assets_def", [content_vectors, content_embeddings], ids=lambda a: a.key.to_user_string())
def test_column_schema_matches_the_migrated_table(conn, assets_def):
    table, schema = _spec(assets_def)
    schema = getattr(schema, "schema", schema)  # a TableSchema, or the metadata value wrapping one
    catalog = conn.execute(CATALOG_SQL, (table,)).fetchall()
    declared = [(c.name, c.type, c.constraints.nullable, c.constraints.unique) for c in schema.columns]
    assert declared == [tuple(r) for r in catalog]
    assert all(c.description for c in schema.columns)


def test_table_names_are_the_tables_the_assets_write():
    assert _spec(content_vectors)[0] == "vectors.content_vectors"
    assert _spec(content_embeddings)[0] == "vectors.content_embeddings"


def test_embedding_load_counts_add_up(conn):
    keys = [f"movie-{i}" for i in range(1, 101)]
    x = clustered_vectors(105, seed=7)
    first = copy_merge_embeddings(conn, embedding_rows(keys, x[:100]))
    assert (first.rows_before, first.rows_after) == (0, 100)

    changed = x[:100].copy()
    changed[:10] = x[100:105].repeat(2, axis=0)  # 10 titles get new vectors (and so new hashes)
    rows = embedding_rows(keys[3:] + ["movie-101", "movie-102"], list(changed[3:]) + [x[0], x[1]])
    second = copy_merge_embeddings(conn, rows, delete_missing_keys=keys[:3])
    accounting = RowAccounting(rows_in=second.staged, inserted=second.inserted, updated=second.updated,
                               unchanged=second.unchanged, deleted=second.deleted,
                               rows_before=second.rows_before, rows_after=second.rows_after)
    assert (second.inserted, second.updated, second.unchanged, second.deleted) == (2, 7, 90, 3)
    assert (second.rows_before, second.rows_after) == (100, 99)
    assert accounting.adds_up, accounting.problems()
    assert accounting.summary().startswith("99 in = 2 inserted + 7 updated + 90 unchanged")


def test_accounting_names_what_does_not_add_up():
    broken = RowAccounting(rows_in=10, inserted=5, updated=1, unchanged=3, deleted=0, rows_before=4, rows_after=8)
    problems = broken.problems()
    assert len(problems) == 3 and not broken.adds_up
    assert problems[0].startswith("rows_in 10 != inserted 5 + updated 1 + unchanged 3")
    meta = broken.as_metadata()
    assert meta["counts_add_up"] is False and "MISMATCH" in meta["row_accounting"]
