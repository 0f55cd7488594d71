"""`gateway ingest` of a bad dump holds the batch; `gateway tmdb batches` shows why; `gateway tmdb
release` loads it through Dagster, and the released titles reach search in that same run."""

from __future__ import annotations

import re

from gateway_pipelines.cli import main
from gateway_pipelines.lib.tmdb.dump_writer import write_tmdb5000_csv
from gateway_pipelines.lib.warehouse import connect
from tests.integration.dagster.test_automation import NEW_TITLE


def test_held_batch_is_listed_with_its_reason_and_released_to_search(fresh_db, monkeypatch, tmp_path, capsys):
    # the CLI wires resources from the environment, as a user's shell does; a state folder of its own
    # keeps the local model it fits on this tiny catalogue away from the other tests
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    monkeypatch.setenv("GATEWAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster_home"))  # bootstrap exports it; restore it after
    dump = tmp_path / "tmdb_5000_movies.csv"
    out_of_range = [{**NEW_TITLE, "id": 880_000 + i, "title": f"Broken {i}", "vote_average": 11} for i in range(10)]
    write_tmdb5000_csv(dump, 10, id_offset=700_000, extra=[NEW_TITLE, *out_of_range])

    assert main(["ingest", "--source", "csv_dump", "--path", str(dump)]) == 1  # the gate failed
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM raw.tmdb_titles").fetchone()[0] == 0
        # the failed gate stopped dbt in that run: the catalogue was never built from the batch
        assert conn.execute("SELECT to_regclass('analytics.dim_content')").fetchone()[0] is None
    capsys.readouterr()

    assert main(["tmdb", "batches", "--status", "held"]) == 0
    listing = capsys.readouterr().out
    assert "held" in listing and "tmdb_5000_movies.csv" in listing and "vote_average" in listing, listing
    batch_id = int(re.search(r"^\s*(\d+)\s+\d{4}-\d{2}-\d{2}", listing, re.M).group(1))

    assert main(["tmdb", "release", str(batch_id)]) == 0
    with connect(fresh_db) as conn:
        raw = conn.execute("SELECT count(*) FROM raw.tmdb_titles").fetchone()[0]
        status = conn.execute("SELECT status FROM raw.tmdb_batches WHERE batch_id = %s", (batch_id,)).fetchone()[0]
        searchable = conn.execute("SELECT count(*) FROM vectors.content_vectors WHERE title = %s",
                                  (NEW_TITLE["title"],)).fetchone()[0]
        quarantined = conn.execute("SELECT count(*) FROM raw.tmdb_rejects").fetchone()[0]
    assert (raw, status, searchable) == (11, "released", 1)
    assert quarantined == 10  # the bad rows stay quarantined, with their reasons

    assert main(["tmdb", "release", str(batch_id)]) == 2  # released already: nothing to do, said clearly
    assert "not held" in capsys.readouterr().err
