"""Secrets never reach disk: planted passwords and API keys, in every form a setting can carry them,
appear nowhere the platform writes.

The platform runs through its CLI (real processes, as an operator runs it) against the embedded
server reached as an external database, with a role whose password is planted: in the URL's
user-info (DATABASE_URL), in a `?password=` query (DAGSTER_PG_URL), in a key=value DSN and an
unreachable URL (the error paths), plus TMDB and OpenAI keys. It migrates the warehouse, runs a
job through Dagster (a RuVector migration, whose parity checks run Great Expectations), and asks for
config, status and the URL; the broken URLs go through status, `db url` and `db migrate`. Then every byte it wrote is searched for
every planted secret: the state folder (Dagster home, logs, artifacts), the Dagster run and event
storage (materialisation metadata included), the warehouse's own tables, and stdout/stderr.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql

from gateway_pipelines.lib.warehouse import with_database

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _plant() -> dict[str, str]:
    return {name: f"{name.lower()}{secrets.token_hex(8)}" for name in (
        "URL_PASSWORD", "QUERY_PASSWORD", "DSN_PASSWORD", "UNREACHABLE_PASSWORD", "TMDB_KEY", "TMDB_TOKEN",
        "OPENAI_KEY")}


def run_with_planted_secrets(server_url: str, work: Path) -> dict:
    """Run the platform's CLI with every planted secret set; returns what to scan (see `find_leaks`).
    The caller removes `home` and, with `drop_planted`, the role and databases."""
    from gateway_pipelines.lib.migration.samples import write_ruvector_jsonl

    planted = _plant()
    suffix = os.getpid()
    role, warehouse_db, dagster_db = f"gw_scan_{suffix}", f"gw_scan_wh_{suffix}", f"gw_scan_dg_{suffix}"
    socket_dir = parse_qs(urlsplit(server_url).query)["host"][0]
    with psycopg.connect(server_url, autocommit=True) as admin:
        for db in (warehouse_db, dagster_db):
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        # superuser: the migrations create extensions
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(planted["URL_PASSWORD"])))
        for db in (warehouse_db, dagster_db):
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(role)))
    home = Path(tempfile.mkdtemp(prefix="gw-scan-"))
    export = write_ruvector_jsonl(work / "scan_vectors.jsonl", n=60, dim=384, seed=5)
    base = {k: v for k, v in os.environ.items()
            if k not in ("DAGSTER_HOME", "GATEWAY_DAGSTER_STORAGE_URL", "DATABASE_URL", "DAGSTER_PG_URL")}
    base.update({
        "GATEWAY_HOME": str(home), "TMDB_API_KEY": planted["TMDB_KEY"], "TMDB_READ_TOKEN": planted["TMDB_TOKEN"],
        "OPENAI_API_KEY": f"sk-{planted['OPENAI_KEY']}",
        # nothing leaves the machine: should anything call out, it fails at once on a closed port
        "TMDB_BASE_URL": "http://127.0.0.1:9/3", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    })
    working = {
        **base,
        "DATABASE_URL": f"postgresql://{role}:{planted['URL_PASSWORD']}@/{warehouse_db}?host={socket_dir}",
        "DAGSTER_PG_URL": f"postgresql://{role}@/{dagster_db}?host={socket_dir}&password={planted['QUERY_PASSWORD']}",
    }
    broken = [
        {**base, "DATABASE_URL": f"host={socket_dir} dbname=gw_scan_missing_{suffix} user={role} "
                                 f"password={planted['DSN_PASSWORD']}"},
        {**base, "DATABASE_URL": f"postgresql://{role}:{planted['UNREACHABLE_PASSWORD']}@127.0.0.1:1/gw"},
    ]
    commands = [
        (working, ["db", "migrate"]),
        (working, ["config"]),
        (working, ["db", "url"]),
        # a Dagster run: run config, event log and materialisation metadata, and GX's parity checks
        (working, ["migrate", "--from", "ruvector", "--path", str(export), "--accept-rejects"]),
        (working, ["status"]),
        (broken[0], ["status"]), (broken[0], ["db", "url"]),
        (broken[1], ["status"]), (broken[1], ["db", "migrate"]),
    ]
    outputs, seconds = [], {}
    for env, argv in commands:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "gateway_pipelines.cli", *argv], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=600)
        outputs.append((argv, env is working, done))
        key = f"{'' if env is working else 'broken URL: '}{' '.join(argv[:2])}"
        seconds[key] = round(seconds.get(key, 0.0) + time.perf_counter() - started, 1)
    return {"planted": planted, "home": home, "outputs": outputs, "role": role, "seconds": seconds,
            "databases": [with_database(server_url, warehouse_db), with_database(server_url, dagster_db)]}


def _name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")  # not rsplit("/"): the socket folder in the query has slashes


def drop_planted(server_url: str, scan: dict) -> None:
    shutil.rmtree(scan["home"], ignore_errors=True)
    with psycopg.connect(server_url, autocommit=True) as admin:
        for url in scan["databases"]:
            name = _name(url)
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(scan["role"])))


def output_leaks(scan: dict) -> dict[str, list[str]]:
    leaks = {" ".join(argv): _hits(done.stdout + done.stderr, scan["planted"]) for argv, _, done in scan["outputs"]}
    return {k: v for k, v in leaks.items() if v}


def file_leaks(scan: dict) -> dict[str, list[str]]:
    home: Path = scan["home"]
    return {str(p.relative_to(home)): hits for p in home.rglob("*")
            if p.is_file() and (hits := _hits(p.read_bytes().decode("utf-8", "replace"), scan["planted"]))}


def database_leaks(scan: dict) -> dict[str, int]:
    """{database:schema.table: rows holding a planted secret}, over every table of both databases."""
    patterns = [f"%{value}%" for value in scan["planted"].values()]
    leaks = {}
    for url in scan["databases"]:
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT schemaname, tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchall()
            for schema, table in tables:
                found = conn.execute(sql.SQL("SELECT count(*) FROM {} t WHERE t::text LIKE ANY(%s)").format(
                    sql.Identifier(schema, table)), (patterns,)).fetchone()[0]
                if found:
                    leaks[f"{_name(url)}:{schema}.{table}"] = found
    return leaks


@pytest.fixture(scope="module")
def scan(server_url: str, tmp_path_factory) -> Iterator[dict]:
    result = run_with_planted_secrets(server_url, tmp_path_factory.mktemp("scan"))
    try:
        for argv, must_succeed, done in result["outputs"]:
            assert done.returncode == 0 or not must_succeed, (
                f"gateway {' '.join(argv)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        yield result
    finally:
        drop_planted(server_url, result)


def _hits(text: str, planted: dict[str, str]) -> list[str]:
    return [name for name, value in planted.items() if value in text]


def test_no_planted_secret_is_printed(scan):
    assert not output_leaks(scan)
    for argv, _, done in scan["outputs"]:
        assert "Traceback" not in done.stderr, f"gateway {' '.join(argv)}:\n{done.stderr[-2000:]}"
    broken = [(argv, done) for argv, working, done in scan["outputs"] if not working]
    # what needs the database fails and says why; `db url` just prints it; either way the password is ***
    assert [done.returncode != 0 for _, done in broken] == [argv != ["db", "url"] for argv, _ in broken]
    assert all("***" in done.stdout + done.stderr for _, done in broken), [d.stderr[-300:] for _, d in broken]


def test_no_planted_secret_is_in_any_file_the_platform_wrote(scan):
    home: Path = scan["home"]
    assert (home / "dagster_home" / "dagster.yaml").is_file()
    assert not file_leaks(scan)
    instance_yaml = home / "dagster_home" / "dagster.yaml"
    assert (instance_yaml.stat().st_mode & 0o777) == 0o600
    assert "GATEWAY_DAGSTER_STORAGE_URL" in instance_yaml.read_text()  # the URL is referenced, not written


def test_no_planted_secret_is_in_dagster_storage_or_the_warehouse(scan):
    with psycopg.connect(scan["databases"][1]) as conn:  # the scan is not vacuous: the job left metadata
        runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone()[0]
        materialised = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'").fetchone()[0]
    assert runs >= 1 and materialised >= 2
    assert not database_leaks(scan)
