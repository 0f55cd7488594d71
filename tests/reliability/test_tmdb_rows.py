"""One bad row never stops a file: every line of a hostile TMDB 5000 CSV is loaded or explained.

The rows planted in `hostile_csv` are the ones that used to abort a whole 1,200-row ingest (an id
past int4, a budget of 1e30, NUL bytes, lone surrogates, a 1 MB cell, deep JSON, bytes that are not
UTF-8) or to mangle rows silently (an unclosed quote, a cut-off last line, a duplicate id).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_pipelines.lib.tmdb import contract
from gateway_pipelines.lib.tmdb.csv_dump import read_tmdb5000_csv
from gateway_pipelines.lib.tmdb.raw_store import ingest
from gateway_pipelines.lib.tmdb.records import SourceRecord
from gateway_pipelines.lib.tmdb.validation import Reject, ValidTitle, validate_record
from gateway_pipelines.settings import DBT_DIR
from tests.reliability.hostile_csv import write_hostile_csv

DAY = date(2026, 4, 1)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, list[int], list]:
    path = tmp_path_factory.mktemp("hostile") / "tmdb_5000_movies.csv"
    good, planted = write_hostile_csv(path)
    return path, good, planted


def _line(ref: str) -> int:
    return int(ref.rsplit("line", 1)[1].split("-")[0].strip().lstrip("s").strip())


def test_every_planted_line_is_rejected_with_its_reason_and_every_good_row_loads(hostile):
    path, good_ids, planted = hostile
    results = [(rec, validate_record(rec, source="csv_dump", partition="2026-04-01"))
               for rec in read_tmdb5000_csv(path)]
    rejects = {_line(rec.ref): result for rec, result in results if isinstance(result, Reject)}
    valid_ids = {result.tmdb_id for _, result in results if isinstance(result, ValidTitle)}
    for bad in (p for p in planted if p.line > 0):
        assert bad.line in rejects, f"{bad.kind}: line {bad.line} was not rejected"
        reject = rejects[bad.line]
        assert reject.field == bad.field, (bad.kind, reject.reason)
        assert bad.reason in reject.reason, (bad.kind, reject.reason)
        assert f"line {bad.line}" in reject.reason  # a person can find it in the file
    assert set(good_ids) <= valid_ids  # the row after the unclosed quote included
    assert len(rejects) == sum(p.line > 0 for p in planted)  # nothing else was rejected


def test_the_hostile_file_loads_into_postgres_and_its_counts_add_up(hostile, conn, fresh_db):
    path, good_ids, planted = hostile
    report = ingest(conn, read_tmdb5000_csv(path), source="csv_dump", partition=DAY, accept_rejects=True,
                    file_name=path.name)
    conn.commit()
    counts = report.counts()
    duplicates = sum(p.kind == "duplicate id" for p in planted)
    assert counts.quarantined == sum(p.line > 0 for p in planted)
    assert counts.duplicates == duplicates
    assert counts.read == counts.loaded + counts.quarantined + counts.duplicates + counts.skipped
    stored = {row[0] for row in conn.execute("SELECT id FROM raw.tmdb_titles")}
    assert stored == set(good_ids)
    kinds = dict(conn.execute("SELECT kind, count(*) FROM raw.tmdb_rejects GROUP BY kind").fetchall())
    assert kinds == {"invalid": counts.quarantined, "duplicate": duplicates}
    superseded = conn.execute("SELECT reason FROM raw.tmdb_rejects WHERE kind = 'duplicate'").fetchone()[0]
    assert "appears again at tmdb_5000_movies.csv:line" in superseded
    # the contract's promise: whatever validation let into raw, the staging model can type
    from tests.integration.vector_store.data import dbt_build

    dbt_build(fresh_db, "build", "--select", "stg_tmdb__titles")
    typed = conn.execute("SELECT count(*), max(length(overview)) FROM analytics.stg_tmdb__titles").fetchone()
    assert typed == (len(good_ids), 4000)
    rerun = ingest(conn, read_tmdb5000_csv(path), source="csv_dump", partition=DAY, accept_rejects=True,
                   file_name=path.name)
    conn.commit()
    assert (rerun.inserted, rerun.updated, rerun.rejects_new) == (0, 0, 0)  # re-ingesting changes nothing


def test_the_contract_is_the_staging_models_declared_types():
    types = contract.staging_types()
    sql = (DBT_DIR / "models" / "staging" / "stg_tmdb__titles.sql").read_text()
    for column, fields in contract.STAGING_SOURCES.items():
        assert column in types, column
        for field in fields:
            assert f"'{field.split('[]')[0].split('.')[0]}'" in sql, (column, field)
            if contract._element_type(types[column]) == "integer":
                assert contract.bounds_for(field) == contract.INT4, field


INT_FIELDS = st.sampled_from(["runtime", "vote_count", "id", "genre"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=INT_FIELDS, value=st.one_of(st.integers(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False)))
def test_any_integer_validation_accepts_is_one_postgres_can_type(conn, field, value):
    record = {"id": 7, "title": "T", "genres": [{"id": 18, "name": "Drama"}]}
    if field == "genre":
        record["genres"] = [{"id": value, "name": "G"}]
    else:
        record[field] = value
    result = validate_record(SourceRecord("movie", record, "prop:1"), source="csv_dump", partition="2026-04-01")
    if isinstance(result, Reject):
        assert result.field in {field, "genres"}
        return
    # the casts stg_tmdb__titles.sql applies
    conn.execute(
        "SELECT (p->>'id')::int, (p->>'runtime')::int, (p->>'vote_count')::int, "
        "array(SELECT (g->>'id')::int FROM jsonb_array_elements(p->'genres') AS g) "
        "FROM (SELECT %s::jsonb AS p) AS t", (result.payload_json,),
    ).fetchone()
