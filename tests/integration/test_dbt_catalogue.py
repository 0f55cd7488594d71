"""The dbt catalogue tells the truth about the tables dbt builds, and test severities act as declared.

On the embedded Postgres: raw titles loaded the way the ingestion asset loads them, then a real
`dbt build` (its artifacts in a temporary target path, never `dbt/target`). The documented columns
and data types of each model and source must be exactly the columns and types of the real table;
warn-severity tests must flag bad data without stopping the build, and error-severity tests must
stop it, both as dbt reports them and as Dagster records them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource, dbt_assets

from gateway_pipelines.lib.tmdb.genres import MOVIE_GENRES, TV_GENRES
from gateway_pipelines.lib.tmdb.raw_store import ingest, upsert_genres
from gateway_pipelines.lib.tmdb.records import SourceRecord
from gateway_pipelines.lib.tmdb.sources import SampleSource
from gateway_pipelines.lib.warehouse import connect, dbt_env

ROOT = Path(__file__).resolve().parents[2]
DBT_DIR = ROOT / "dbt"
DBT = str(Path(sys.executable).with_name("dbt"))
DAY = date(2026, 3, 1)
N_MOVIES, N_TV = 90, 30
# The personalization models (over raw.watch_events) build in the same `dbt build`, independently of the catalogue.
PERSONALIZATION_MODELS = {"stg_watch_events", "fct_watch_events"}
WARN_TESTS = {
    "stg_tmdb__titles_rated_titles_have_votes",
    "dim_content_overview_present_for_most_titles",
    "dim_content_every_genre_id_has_a_name",
}


def _dbt(command: str, target: Path, url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **(dbt_env(url) if url else {})}
    return subprocess.run(
        [DBT, command, "--profiles-dir", ".", "--target-path", str(target), "--log-path", str(target / "logs")],
        cwd=DBT_DIR, capture_output=True, text=True, timeout=600, env=env,
    )


def _load(url: str, records: list[SourceRecord]) -> None:
    with connect(url) as conn:
        upsert_genres(conn, "movie", [{"id": k, "name": v} for k, v in MOVIE_GENRES.items()])
        upsert_genres(conn, "tv", [{"id": k, "name": v} for k, v in TV_GENRES.items()])
        report = ingest(conn, records, source="sample", partition=DAY)
        conn.commit()
    assert report.rejected == 0 and report.inserted == len(records)


def _sample() -> list[SourceRecord]:
    return list(SampleSource(n_movies=N_MOVIES, n_tv=N_TV).records(DAY))


def _built_columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """Column name -> Postgres's own name of its type (integer[], timestamp with time zone, ...)."""
    rows = conn.execute(
        "SELECT column_name, format('%%I.%%I', udt_schema, udt_name)::regtype::text "
        "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    ).fetchall()
    return dict(rows)


def _documented_columns(conn: psycopg.Connection, node: dict) -> dict[str, str]:
    """The YAML's columns, their data_type spelled the way Postgres spells it (timestamptz -> ...)."""
    return {
        name: conn.execute("SELECT %s::regtype::text", (info["data_type"],)).fetchone()[0]
        for name, info in node["columns"].items()
    }


def test_documented_columns_and_types_are_the_built_ones(fresh_db):
    _load(fresh_db, _sample())
    with tempfile.TemporaryDirectory(prefix="dbt-catalogue-") as tmp:
        target = Path(tmp)
        result = _dbt("build", target, fresh_db)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        manifest = json.loads((target / "manifest.json").read_text())
        results = json.loads((target / "run_results.json").read_text())["results"]
        statuses = {r["unique_id"]: r["status"] for r in results}

    # clean sample data: every model built and every test passed, warn ones included
    assert statuses and set(statuses.values()) <= {"success", "pass"}, statuses
    nodes = {
        ("analytics", "stg_tmdb__titles"): manifest["nodes"]["model.gateway.stg_tmdb__titles"],
        ("analytics", "dim_content"): manifest["nodes"]["model.gateway.dim_content"],
        ("raw", "tmdb_titles"): manifest["sources"]["source.gateway.raw.tmdb_titles"],
        ("raw", "tmdb_genres"): manifest["sources"]["source.gateway.raw.tmdb_genres"],
    }
    problems = []
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM analytics.dim_content").fetchone()[0] == N_MOVIES + N_TV
        for (schema, table), node in nodes.items():
            built = _built_columns(conn, schema, table)
            documented = _documented_columns(conn, node)
            assert built, f"{schema}.{table} was not built"
            if undocumented := sorted(set(built) - set(documented)):
                problems.append(f"{schema}.{table}: columns missing from the YAML: {undocumented}")
            if absent := sorted(set(documented) - set(built)):
                problems.append(f"{schema}.{table}: documented columns the table lacks: {absent}")
            both = built.keys() & documented.keys()
            if wrong := {c: (documented[c], built[c]) for c in sorted(both) if documented[c] != built[c]}:
                problems.append(f"{schema}.{table}: (documented, built) types differ: {wrong}")
    assert problems == []


def _dirty_sample() -> tuple[list[SourceRecord], int]:
    """The sample with what the warn tests look for; returns the records and the overview-less count."""
    records = []
    no_overview = 0
    for i, rec in enumerate(_sample()):
        payload = dict(rec.record)
        if rec.media_type == "movie":
            if i == 0:  # a score without votes
                payload.update(vote_average=7.5, vote_count=0)
            if i == 1:  # a genre tmdb_genres does not know
                payload["genres"] = [*payload["genres"], {"id": 10999, "name": "Unlisted"}]
            if i % 6 == 2:  # ~17% without an overview: over the 10% warn line, under GX's 20% stop
                payload["overview"] = None
                no_overview += 1
        records.append(SourceRecord(rec.media_type, payload, rec.ref))
    return records, no_overview


def _materialize(assets_def: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [assets_def],
        resources={"dbt": DbtCliResource(project_dir=str(DBT_DIR), profiles_dir=str(DBT_DIR), dbt_executable=DBT)},
        raise_on_error=False,
    )


def test_warn_tests_flag_without_stopping_the_line_and_error_tests_stop_it(fresh_db, monkeypatch):
    records, no_overview = _dirty_sample()
    assert no_overview / len(records) > 0.1
    _load(fresh_db, records)
    for key, value in {**dbt_env(fresh_db), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}.items():
        monkeypatch.setenv(key, value)

    with tempfile.TemporaryDirectory(prefix="dbt-severity-") as tmp:
        target = Path(tmp)
        parsed = _dbt("parse", target)
        assert parsed.returncode == 0, parsed.stdout[-3000:] + parsed.stderr[-2000:]
        manifest = json.loads((target / "manifest.json").read_text())
        tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
        severities = {n["name"]: n["config"]["severity"].lower() for n in tests}
        assert WARN_TESTS <= {name for name, sev in severities.items() if sev == "warn"}

        @dbt_assets(manifest=manifest)
        def models(context, dbt: DbtCliResource):  # no annotations: this module defers them
            yield from dbt.cli(["build"], context=context, target_path=target / "run").stream()

        # 1. Bad-but-usable data: the warn tests fail as WARN, nothing stops, dim_content is built.
        first = _materialize(models)
        assert first.success
        checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
        assert set(checks) == set(severities)  # every dbt test ran and reported
        for name in WARN_TESTS:
            assert not checks[name].passed and checks[name].severity == dg.AssetCheckSeverity.WARN, name
            assert checks[name].metadata["dagster_dbt/failed_row_count"].value >= 1
        for name, severity in severities.items():
            if severity == "error":
                assert checks[name].passed and checks[name].severity == dg.AssetCheckSeverity.ERROR, name
        materialized = {m.asset_key.to_user_string() for m in first.asset_materializations_for_node("models")}
        assert materialized - PERSONALIZATION_MODELS == {"stg_tmdb__titles", "dim_content"}
        with connect(fresh_db) as conn:
            assert conn.execute("SELECT count(*) FROM analytics.dim_content").fetchone()[0] == len(records)

        # 2. Broken data (a score outside 0-10 slipped past validation): an error test fails, dbt
        #    skips dim_content, the run fails, and dim_content keeps its last good rows.
        with connect(fresh_db) as conn:
            conn.execute(
                "UPDATE raw.tmdb_titles SET payload = jsonb_set(payload, '{vote_average}', '11') "
                "WHERE media_type = 'tv' AND id = (SELECT min(id) FROM raw.tmdb_titles WHERE media_type = 'tv')"
            )
            conn.commit()
        second = _materialize(models)
        assert not second.success
        checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
        failed = {name: e.severity for name, e in checks.items() if not e.passed}
        range_test = next(n for n in severities if n.startswith("value_between_stg_tmdb__titles_vote_average"))
        assert failed == {range_test: dg.AssetCheckSeverity.ERROR, "stg_tmdb__titles_rated_titles_have_votes":
                          dg.AssetCheckSeverity.WARN}
        assert not any(name.startswith("dim_content_") or "_dim_content_" in name for name in checks)  # skipped
        materialized = {m.asset_key.to_user_string() for m in second.asset_materializations_for_node("models")}
        assert materialized - PERSONALIZATION_MODELS == {"stg_tmdb__titles"}
        with connect(fresh_db) as conn:
            assert conn.execute("SELECT max(vote_average) FROM analytics.dim_content").fetchone()[0] <= 10
            assert conn.execute("SELECT count(*) FROM analytics.dim_content").fetchone()[0] == len(records)
