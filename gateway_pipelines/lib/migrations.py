"""Apply the numbered SQL files in `sql/` in order, with a ledger and an advisory lock.

Each file runs in its own transaction together with its ledger row, so a failing file leaves
neither half a schema nor a ledger entry. An applied file that has since been edited is refused:
write a new migration instead, because the edited one would never run on existing warehouses.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from gateway_pipelines.lib.warehouse import ensure_pgvector

MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every process that migrates this database.
ADVISORY_LOCK_KEY = 0x6761_7465_7761_79  # "gateway"

LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS meta;
CREATE TABLE IF NOT EXISTS meta.schema_migrations (
    version     integer PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms double precision
);
"""


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    pgvector_version: str = ""
    duration_s: float = 0.0

    @property
    def total(self) -> int:
        return len(self.applied) + len(self.already_applied)


def discover(directory: Path) -> list[Migration]:
    """The migrations in `directory`, ordered by version; misnamed or duplicate versions are errors."""
    if not directory.is_dir():
        raise MigrationError(f"No migrations folder at {directory}: set GATEWAY_SQL_DIR or run from the repo.")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(
                f"{path.name}: migration files are named NNN_lowercase_name.sql (e.g. 006_add_ratings.sql)."
            )
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path.name}: version {version:03d} is already used by {migrations[version].path.name}.")
        migrations[version] = Migration(version, match.group(2), path)
    return [migrations[v] for v in sorted(migrations)]


def apply_migrations(conn: psycopg.Connection, directory: Path) -> MigrationReport:
    """Bring the database up to date. Safe to call from several processes at once."""
    started = time.perf_counter()
    report = MigrationReport()
    migrations = discover(directory)
    if conn.autocommit:
        raise MigrationError("apply_migrations needs a connection with autocommit off.")
    # A session-level lock, held across the per-file transactions, serialises concurrent migrators.
    conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    conn.commit()
    try:
        report.pgvector_version = ensure_pgvector(conn)
        conn.execute(LEDGER_DDL)
        conn.commit()
        applied = {
            row[0]: (row[1], row[2])
            for row in conn.execute("SELECT version, name, checksum FROM meta.schema_migrations")
        }
        conn.commit()
        for migration in migrations:
            if migration.version in applied:
                _, checksum = applied[migration.version]
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"{migration.path.name} was applied with checksum {checksum[:12]} but the file now has "
                        f"{migration.checksum[:12]}: applied migrations must not be edited. Restore the file and "
                        "put the change in a new migration with the next number."
                    )
                report.already_applied.append(migration.path.name)
                continue
            t0 = time.perf_counter()
            try:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO meta.schema_migrations (version, name, checksum, duration_ms) "
                        "VALUES (%s, %s, %s, %s)",
                        (migration.version, migration.name, migration.checksum, (time.perf_counter() - t0) * 1000),
                    )
            except psycopg.Error as exc:
                raise MigrationError(f"{migration.path.name} failed and was rolled back: {exc}") from exc
            report.applied.append(migration.path.name)
    finally:
        if not conn.closed:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
            conn.commit()
    report.duration_s = time.perf_counter() - started
    return report
