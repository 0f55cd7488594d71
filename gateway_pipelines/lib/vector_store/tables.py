"""The vector tables as Dagster describes them: name and column schema (asset definition metadata).

Column types are spelled as Postgres's ``format_type()`` prints them (as in `sql/schema_contract.yml`),
so a test can hold these schemas against the migrated catalog (sql/003_vectors.sql and
sql/006_content_embeddings.sql) and fail when a migration and this file disagree.
"""

from __future__ import annotations

import dagster as dg

__all__ = [
    "CONTENT_EMBEDDINGS_SCHEMA",
    "CONTENT_EMBEDDINGS_TABLE",
    "CONTENT_VECTORS_SCHEMA",
    "CONTENT_VECTORS_TABLE",
    "table_metadata",
]

CONTENT_VECTORS_TABLE = "vectors.content_vectors"
CONTENT_EMBEDDINGS_TABLE = "vectors.content_embeddings"

_PK = dg.TableColumnConstraints(nullable=False, unique=True, other=["primary key"])
_REQUIRED = dg.TableColumnConstraints(nullable=False)


def _col(name: str, type_: str, description: str, constraints: dg.TableColumnConstraints | None = None,
         ) -> dg.TableColumn:
    return dg.TableColumn(name=name, type=type_, description=description, constraints=constraints)


CONTENT_VECTORS_SCHEMA = dg.TableSchema(
    columns=[
        _col("id", "text", "Content key, '<media_type>-<tmdb_id>' ('movie-603', 'tv-1399'); "
             "dim_content.content_key.", _PK),
        _col("vector", "vector(768)", "Hybrid unit vector: plot 0-512, genre 512-576, mood 576-640, metadata "
             "640-768. HNSW index (vector_cosine_ops) content_vectors_vector_hnsw.", _REQUIRED),
        _col("content_id", "integer", "TMDB id (dim_content.tmdb_id).", _REQUIRED),
        _col("media_type", "text", "'movie' or 'tv'.",
             dg.TableColumnConstraints(nullable=False, other=["CHECK (media_type IN ('movie', 'tv'))"])),
        _col("title", "text", "Display title.", _REQUIRED),
        _col("genre_ids", "integer[]", "TMDB genre ids; a genre filter matches any of them (GIN index).",
             dg.TableColumnConstraints(nullable=False, other=["DEFAULT '{}'"])),
        _col("year", "integer", "Release year (first air year for TV); year filters."),
        _col("vote_average", "double precision", "TMDB rating 0-10; the min_rating filter."),
        _col("original_language", "text", "ISO 639-1 code; the language filter."),
        _col("metadata", "jsonb", "Served extras: genre_names, keywords, release_date, runtime, vote_count, "
             "popularity, poster_path, overview (first 300 characters); nulls stripped.",
             dg.TableColumnConstraints(nullable=False, other=["DEFAULT '{}'"])),
        _col("embedding_model", "text", "Model id of the plot block (content_embeddings.embedding_model).",
             _REQUIRED),
        _col("content_hash", "text", "content_embeddings.embedding_hash of the vector served; a sync rewrites "
             "the row when it or a served column changes.", _REQUIRED),
        _col("created_at", "timestamp with time zone", "First synced.",
             dg.TableColumnConstraints(nullable=False, other=["DEFAULT now()"])),
        _col("updated_at", "timestamp with time zone", "Last rewritten by a sync; index drift counts rows "
             "updated after the last build.", dg.TableColumnConstraints(nullable=False, other=["DEFAULT now()"])),
    ]
)

CONTENT_EMBEDDINGS_SCHEMA = dg.TableSchema(
    columns=[
        _col("content_key", "text", "Content key, '<media_type>-<tmdb_id>'; dim_content.content_key.", _PK),
        _col("vector", "vector(768)", "Hybrid unit vector: plot 0-512, genre 512-576, mood 576-640, metadata "
             "640-768.", _REQUIRED),
        _col("embedding_model", "text", "Model id of the plot block, '<kind>:<model>@<version>' (OpenAI or the "
             "local TF-IDF/SVD model).", _REQUIRED),
        _col("embedding_hash", "text", "Hash of everything the vector depends on (input text, block features, "
             "model, block weights): a row is re-embedded only when it changes.", _REQUIRED),
        _col("embedded_at", "timestamp with time zone", "When this vector was (re)computed.",
             dg.TableColumnConstraints(nullable=False, other=["DEFAULT now()"])),
    ]
)


def table_metadata(table: str, schema: dg.TableSchema) -> dict[str, object]:
    """Definition metadata that names the table and its columns in the Dagster UI.

    The name is schema.table: the database is chosen at run time (DATABASE_URL or the embedded
    server), so it cannot be part of a definition.
    """
    return {"dagster/table_name": table, "dagster/column_schema": schema}
