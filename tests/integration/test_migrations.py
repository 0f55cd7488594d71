"""sql/ migrations: order, ledger, edited files refused, concurrency serialised, failures rolled back."""

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from gateway_pipelines.lib.migrations import MigrationError, apply_migrations, discover
from gateway_pipelines.lib.warehouse import connect
from gateway_pipelines.settings import SQL_DIR

EXPECTED_SCHEMAS = {"raw", "analytics", "vectors", "memory", "learning", "meta"}


def test_migrations_create_every_schema_and_record_a_ledger(empty_db):
    with connect(empty_db) as conn:
        report = apply_migrations(conn, SQL_DIR)
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
        ledger = conn.execute("SELECT version, name, checksum FROM meta.schema_migrations ORDER BY version").fetchall()
    files = discover(SQL_DIR)
    assert report.applied == [m.path.name for m in files]
    assert EXPECTED_SCHEMAS <= schemas
    assert [(v, n) for v, n, _ in ledger] == [(m.version, m.name) for m in files]
    assert all(len(c) == 64 for _, _, c in ledger)


def test_second_apply_is_a_no_op(fresh_db):
    with connect(fresh_db) as conn:
        before = conn.execute("SELECT version, applied_at FROM meta.schema_migrations ORDER BY 1").fetchall()
        report = apply_migrations(conn, SQL_DIR)
        after = conn.execute("SELECT version, applied_at FROM meta.schema_migrations ORDER BY 1").fetchall()
    assert report.applied == [] and len(report.already_applied) == len(before)
    assert before == after


def test_an_edited_applied_migration_is_refused_naming_the_file(fresh_db, tmp_path):
    edited = tmp_path / "sql"
    shutil.copytree(SQL_DIR, edited)
    target = edited / "002_raw.sql"
    target.write_text(target.read_text() + "\n-- an innocent-looking edit\n")
    with connect(fresh_db) as conn:
        with pytest.raises(MigrationError, match="002_raw.sql"):
            apply_migrations(conn, edited)


def test_a_failing_migration_rolls_back_and_is_not_recorded(fresh_db, tmp_path):
    folder = tmp_path / "sql"
    shutil.copytree(SQL_DIR, folder)
    (folder / "900_broken.sql").write_text(
        "CREATE TABLE raw.half_done (id int);\nSELECT * FROM raw.table_that_does_not_exist;\n"
    )
    with connect(fresh_db) as conn:
        with pytest.raises(MigrationError, match="900_broken.sql"):
            apply_migrations(conn, folder)
        assert conn.execute("SELECT to_regclass('raw.half_done')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM meta.schema_migrations WHERE version = 900").fetchone()[0] == 0


def test_misnamed_files_are_rejected(tmp_path):
    (tmp_path / "7_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_lowercase_name"):
        discover(tmp_path)


def test_concurrent_migrators_are_serialised(empty_db):
    """Two processes migrating at once: both succeed, each file is applied exactly once."""
    results, errors = [], []

    def migrate():
        try:
            with connect(empty_db) as conn:
                results.append(apply_migrations(conn, SQL_DIR))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = sorted(name for r in results for name in r.applied)
    assert applied == sorted(m.path.name for m in discover(SQL_DIR))
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM meta.schema_migrations").fetchone()[0] == len(discover(SQL_DIR))


def test_contract_lists_every_table_the_migrations_create(fresh_db):
    """A migration that adds a table without declaring it in the contract fails here."""
    from gateway_pipelines.lib.quality.schema_contract import SchemaContract

    contract = SchemaContract.load()
    with connect(fresh_db) as conn:
        tables = {
            f"{s}.{t}"
            for s, t in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE'",
                (list(contract.schemas),),
            )
        }
    assert tables == set(contract.tables)
    assert Path(SQL_DIR / "schema_contract.yml").exists()
