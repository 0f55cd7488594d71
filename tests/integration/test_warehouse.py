"""The warehouse resource, the embedded server and the failure messages a person sees."""

import socket
import threading

import pytest

from gateway_pipelines.lib import warehouse as wh


def test_embedded_server_reuses_the_running_server(platform, gateway_home):
    paths, urls = platform
    assert urls.embedded
    assert str(gateway_home) in urls.warehouse
    again = wh.resolve_urls(None, home=gateway_home)
    assert again.warehouse == urls.warehouse
    with wh.connect(urls.warehouse) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    assert version.startswith("0.8")


def test_warehouse_and_dagster_storage_are_separate_databases(platform):
    _, urls = platform
    assert urls.warehouse.split("?")[0].endswith("/gateway")
    assert urls.dagster.split("?")[0].endswith("/dagster")
    with wh.connect(urls.dagster, vector=False) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "dagster"


def test_resource_connection_has_pgvector_registered(fresh_db):
    from pgvector import Vector

    resource = wh.WarehouseResource(database_url=fresh_db)
    with resource.connection() as conn:
        value = conn.execute("SELECT '[1,2,3]'::vector").fetchone()[0]
    assert isinstance(value, Vector) and value.to_list() == [1.0, 2.0, 3.0]


def test_resource_rolls_back_on_error(fresh_db):
    resource = wh.WarehouseResource(database_url=fresh_db)
    with pytest.raises(ZeroDivisionError):
        with resource.connection() as conn:
            conn.execute("INSERT INTO raw.tmdb_genres VALUES ('movie', 1, 'x')")
            raise ZeroDivisionError
    with resource.connection() as conn:
        assert conn.execute("SELECT count(*) FROM raw.tmdb_genres").fetchone()[0] == 0


def test_unreachable_database_names_host_and_hides_password():
    # a loopback port with nothing listening: refused at once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/gateway"
    with pytest.raises(wh.WarehouseError) as info:
        wh.connect(url)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cret-pw" not in message and "***" in message
    assert "DATABASE_URL" in message


def test_silent_server_times_out_with_a_clear_error(monkeypatch):
    """A server that accepts and never answers must not hang the platform."""
    monkeypatch.setattr(wh, "CONNECT_TIMEOUT_S", 2)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        with pytest.raises(wh.WarehouseError) as info:
            wh.connect(f"postgresql://bob:hunter2@127.0.0.1:{port}/gateway")
        assert f"127.0.0.1:{port}" in str(info.value) and "hunter2" not in str(info.value)
    finally:
        listener.close()


def test_server_without_pgvector_explains_how_to_install(fresh_db, monkeypatch):
    """Simulate a server that lacks the extension by asking for its catalog row under a wrong name."""
    with wh.connect(fresh_db) as conn:
        # The real check queries pg_available_extensions; a server without pgvector returns no row.
        original = conn.execute
        def execute(query, *args, **kwargs):
            if "pg_available_extensions" in str(query):
                query = str(query).replace("'vector'", "'vector_not_installed'")
            return original(query, *args, **kwargs)
        monkeypatch.setattr(conn, "execute", execute)
        with pytest.raises(wh.WarehouseError) as info:
            wh.ensure_pgvector(conn)
    assert "pgvector" in str(info.value) and "pgvector/pgvector" in str(info.value)


def test_url_helpers_round_trip():
    url = "postgresql://u:p@db.example:6543/gateway?sslmode=require"
    assert wh.redact_url(url) == "postgresql://u:***@db.example:6543/gateway?sslmode=require"
    assert wh.with_driver(url, "psycopg2").startswith("postgresql+psycopg2://")
    assert wh.plain_url(wh.with_driver(url, "psycopg")) == url
    assert wh.with_database(url, "dagster").split("?")[0].endswith("/dagster")
    env = wh.dbt_env(url)
    assert env["GATEWAY_PG_HOST"] == "db.example" and env["GATEWAY_PG_PORT"] == "6543"
    socket_env = wh.dbt_env("postgresql://postgres:@/gateway?host=/tmp/x/pg")
    assert socket_env["GATEWAY_PG_HOST"] == "/tmp/x/pg" and socket_env["GATEWAY_PG_DATABASE"] == "gateway"


def test_embedded_server_that_cannot_start_says_why_and_how_to_fix(tmp_path):
    from gateway_pipelines.runtime.paths import StatePaths

    paths = StatePaths(tmp_path / "home")
    paths.home.mkdir(parents=True)
    paths.pgdata.write_text("not a directory")  # the data folder is occupied by a file
    with pytest.raises(wh.WarehouseError) as info:
        wh.start_embedded(paths.home)
    message = str(info.value)
    assert str(paths.pgdata) in message
    assert "DATABASE_URL" in message and "Fixes:" in message
