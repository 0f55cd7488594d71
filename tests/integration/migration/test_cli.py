"""`gateway migrate` through Dagster: a dry run says what would move and swaps nothing; the real run
moves it; the rerun moves nothing; a damaged file and a missing client are explained."""

from __future__ import annotations

import sys

from gateway_pipelines.cli import main
from gateway_pipelines.lib.warehouse import connect
from tests.integration.migration.test_parity_and_rollback import target_digest


def test_migrate_dry_run_then_real_then_rerun(fresh_db, legacy_sources, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    monkeypatch.setenv("GATEWAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster_home"))
    before = target_digest(fresh_db)
    path = str(legacy_sources["agentdb"])

    assert main(["migrate", "--from", "agentdb", "--path", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "DRY RUN: nothing was swapped" in out and "(would move: new + changed" in out
    assert "episodes" in out and "✔ legacy_vectors_bit_identical" in out and "✔ legacy_knn_parity" in out
    assert target_digest(fresh_db) == before

    assert main(["migrate", "--from", "agentdb", "--path", path]) == 0
    out = capsys.readouterr().out
    assert "promoted; 353 rows read, 0 rejected, 353 written" in out, out
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM memory.episodes").fetchone()[0] == 300

    assert main(["migrate", "--from", "agentdb", "--path", path]) == 0
    out = capsys.readouterr().out
    assert "unchanged; 0 rows read, 0 rejected, 0 written" in out, out

    assert main(["migrate", "--list"]) == 0
    listing = capsys.readouterr().out
    statuses = [line.split()[4] for line in listing.splitlines()[1:]]
    assert statuses == ["unchanged", "promoted", "staged"] and "staged (dry)" in listing, listing


def test_migrate_explains_a_missing_chroma_client(monkeypatch, tmp_path, capsys, legacy_sources):
    monkeypatch.setitem(sys.modules, "chromadb", None)  # as on an install without the extra
    assert main(["migrate", "--from", "chroma", "--path", str(legacy_sources["chroma"])]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[migration]'" in err and "make install" in err
    assert main(["migrate", "--from", "chroma", "--path", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
