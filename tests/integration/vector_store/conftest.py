"""A 3,000-title catalogue shared by the read-only search tests (one database per module)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.integration.vector_store.data import create_dim_content, embedding_rows, insert_dim_content, skewed_catalogue

_counter = itertools.count()


@pytest.fixture(scope="module")
def catalogue(server_url: str) -> Iterator[dict]:
    """A migrated database holding `skewed_catalogue(3000)`, synced into content_vectors (index built)."""
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.vector_store import copy_merge_embeddings, sync_content_vectors
    from gateway_pipelines.lib.warehouse import connect, with_database
    from gateway_pipelines.settings import SQL_DIR

    name = f"vs_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    keys, vectors, dims = skewed_catalogue(3000)
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
    with connect(url) as conn:
        create_dim_content(conn)
        insert_dim_content(conn, dims)
        conn.commit()
        copy_merge_embeddings(conn, embedding_rows(keys, vectors))
        report = sync_content_vectors(conn)
        assert report.inserted == 3000 and report.index_rebuilt
    yield {"url": url, "keys": keys, "vectors": vectors, "dims": {r["content_key"]: r for r in dims}}
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def cat_conn(catalogue: dict) -> Iterator[psycopg.Connection]:
    from gateway_pipelines.lib.warehouse import connect

    conn = connect(catalogue["url"])
    yield conn
    conn.close()
