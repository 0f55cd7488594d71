"""Synthetic content for the vector-store tests: clustered unit vectors and `analytics.dim_content` rows."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from typing import Any

import numpy as np
import psycopg
import psycopg.sql

DIM = 768

def dbt_build(url: str, command: str = "build", *args: str) -> None:
    """The real dbt project against the database at `url`, through the platform's dbt resource."""
    from gateway_pipelines.defs.resources import dbt_executable
    from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource
    from gateway_pipelines.lib.warehouse import WarehouseResource
    from gateway_pipelines.settings import DBT_DIR, gateway_home

    # the session's state folder holds the parse cache, as in a real run
    warehouse = WarehouseResource(database_url=url, gateway_home=str(gateway_home()))
    try:
        dbt = DbtWarehouseResource(project_dir=str(DBT_DIR), dbt_executable=dbt_executable(), warehouse=warehouse)
        dbt.run([command, *args])
    finally:
        warehouse.close()


def staged_sample_catalogue(server_url: str, name: str, *, n_movies: int, n_tv: int, day) -> str:
    """A new database `name` holding the sample catalogue through the real path: migrations, the genre
    lists, the raw ingest of one day, then the dbt models. Returns its URL; the caller drops it."""
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.tmdb.genres import MOVIE_GENRES, TV_GENRES
    from gateway_pipelines.lib.tmdb.raw_store import ingest, upsert_genres
    from gateway_pipelines.lib.tmdb.sources import SampleSource
    from gateway_pipelines.lib.warehouse import connect, with_database
    from gateway_pipelines.settings import SQL_DIR

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = with_database(server_url, name)
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
        upsert_genres(conn, "movie", [{"id": k, "name": v} for k, v in MOVIE_GENRES.items()])
        upsert_genres(conn, "tv", [{"id": k, "name": v} for k, v in TV_GENRES.items()])
        ingest(conn, SampleSource(n_movies=n_movies, n_tv=n_tv).records(day), source="sample", partition=day)
        conn.commit()
    dbt_build(url)
    return url


def materialize_embeddings(db: str, embeddings, **config) -> tuple[dict, dict]:
    """content_embeddings once on `db` with these embedding settings and run config: its metadata (plain
    values) and its check evaluations by name."""
    import dagster as dg

    from gateway_pipelines.defs.embeddings.assets import content_embeddings
    from gateway_pipelines.lib.warehouse import WarehouseResource

    result = dg.materialize(
        [content_embeddings], resources={"warehouse": WarehouseResource(database_url=db), "embeddings": embeddings},
        run_config={"ops": {"content_embeddings": {"config": config}}} if config else None,
    )
    assert result.success
    [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}, checks


@cache
def _dim_content_columns(server: str) -> tuple[tuple[str, str], ...]:
    """dim_content's columns as the real dbt models build them, read back from the catalog once per
    server: fixtures then create that exact table, so a model change cannot go unnoticed here."""
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect, with_database
    from gateway_pipelines.settings import SQL_DIR

    name = f"dbt_shape_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = with_database(server, name)
    try:
        with connect(url) as conn:
            apply_migrations(conn, SQL_DIR)
        dbt_build(url, "run")  # the models only: an empty catalogue has nothing to test
        with connect(url) as conn:
            columns = conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = 'analytics.dim_content'::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum"
            ).fetchall()
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
    return tuple((column, type_) for column, type_ in columns)


def create_dim_content(conn: psycopg.Connection) -> None:
    """analytics.dim_content with exactly the columns the dbt model produces (no constraints, like dbt)."""
    from urllib.parse import urlencode

    info = conn.info
    server = f"postgresql://{info.user}@/postgres?{urlencode({'host': info.host, 'port': info.port})}"
    # column names as identifiers; types are format_type() output from the catalog, not input
    columns = psycopg.sql.SQL(", ").join(
        psycopg.sql.SQL("{} {}").format(psycopg.sql.Identifier(column), psycopg.sql.SQL(type_))
        for column, type_ in _dim_content_columns(server)
    )
    conn.execute(psycopg.sql.SQL("CREATE TABLE IF NOT EXISTS analytics.dim_content ({})").format(columns))


def clustered_vectors(n: int, *, clusters: int = 30, spread: float = 0.6, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """(n, dim) float32 unit vectors around ``clusters`` random centres (noise of norm ~``spread``).

    Real embeddings are clustered; uniform noise in 768 dimensions has no near neighbours at all
    and is a pathological case for any ANN index.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, clusters, size=n)
    x = centres[labels] + rng.standard_normal((n, dim)).astype(np.float32) * np.float32(spread / np.sqrt(dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def vector_hash(v: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(v, dtype=np.float32).tobytes()).hexdigest()[:16]


def embedding_rows(keys: list[str], vectors: np.ndarray, model: str = "test-model") -> list[tuple]:
    return [(k, v, model, vector_hash(v)) for k, v in zip(keys, vectors)]


def dim_row(key: str, **overrides: Any) -> dict[str, Any]:
    media_type, tmdb_id = key.split("-", 1)
    row = {
        "content_key": key, "tmdb_id": int(tmdb_id), "media_type": media_type, "title": f"Title {key}",
        "original_title": f"Title {key}", "overview": f"Overview of {key}. " * 40, "tagline": None,
        "genre_ids": [28], "genre_names": ["Action"], "keywords": ["kw"], "release_date": None, "year": 2000,
        "runtime": 100, "vote_average": 6.5, "vote_count": 100, "popularity": 1.5, "original_language": "en",
        "poster_path": None, "status": "Released", "source_hash": "x", "partition_date": None, "fetched_at": None,
    }
    row.update(overrides)
    return row


def insert_dim_content(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    with conn.cursor() as cur:
        with cur.copy(f"COPY analytics.dim_content ({', '.join(cols)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([r[c] for c in cols])


def skewed_catalogue(n: int = 3000, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """n titles with metadata skewed so that exact filter selectivities are known:

    * ``language='ko'``: 0.5 % of titles; ``media_type='tv'``: 5 %; genre 18 (drama): 30 %
    * years 1950..2024, ratings 1..9.9, everyone else English movies with genres 28/35.
    """
    rng = np.random.default_rng(seed)
    vectors = clustered_vectors(n, clusters=max(10, n // 100), seed=seed)
    perm = rng.permutation(n)
    ko = set(perm[: n // 200].tolist())
    tv = set(perm[n // 200 : n // 200 + n // 20].tolist())
    drama = set(rng.permutation(n)[: int(n * 0.3)].tolist())
    keys, rows = [], []
    for i in range(n):
        media = "tv" if i in tv else "movie"
        key = f"{media}-{i + 1}"
        genres = [18] if i in drama else [int(rng.choice([28, 35]))]
        keys.append(key)
        rows.append(
            dim_row(
                key,
                genre_ids=genres,
                genre_names=["Drama"] if i in drama else ["Other"],
                year=int(rng.integers(1950, 2025)),
                vote_average=round(float(rng.uniform(1, 9.9)), 1),
                original_language="ko" if i in ko else "en",
                title=f"Synthetic title {i}",
            )
        )
    return keys, vectors, rows
