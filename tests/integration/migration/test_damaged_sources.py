"""Damaged sources are refused with a message that names what is wrong and where, and nothing
reaches the targets; a Chroma directory whose HNSW segment folder is gone still migrates what
Chroma's client can read, and says so."""

from __future__ import annotations

import json
import shutil
import sqlite3

from gateway_pipelines.lib.migration.agentdb import corrupt_embedding
from gateway_pipelines.lib.migration.chroma import directory_state
from gateway_pipelines.lib.migration.samples import write_chroma_dir, write_ruvector_jsonl
from gateway_pipelines.lib.warehouse import connect
from tests.integration.migration.test_end_to_end import _checks, _meta
from tests.integration.migration.test_parity_and_rollback import target_digest


def _failure(result) -> str:
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                out.append(data.user_failure_data.description)
            elif data.error:
                out.append(data.error.message)
    return "\n".join(out)


def test_truncated_agentdb_file_is_refused(migrate, fresh_db, copy_source):
    before = target_digest(fresh_db)
    path = copy_source("agentdb")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    result = migrate("agentdb", path)
    assert not result.success
    message = _failure(result)
    assert str(path) in message and ("not a readable SQLite database" in message or "is damaged" in message), message
    assert "Traceback" not in message
    assert target_digest(fresh_db) == before


def test_embedding_blob_of_the_wrong_length_is_refused(migrate, fresh_db, copy_source):
    before = target_digest(fresh_db)
    path = copy_source("agentdb")
    corrupt_embedding(path, episode_id=42, n_bytes=1532)
    result = migrate("agentdb", path)
    assert not result.success
    message = _failure(result)
    assert "table episodes row id 42 embedding: 1532 bytes, expected 1536 (384 float32 values)" in message, message
    assert target_digest(fresh_db) == before
    with connect(fresh_db) as conn:
        status, staged = conn.execute(
            "SELECT status, (SELECT count(*) FROM migration_staging.records) FROM meta.legacy_imports").fetchone()
    assert (status, staged) == ("failed", 0)  # the failed import's staging is dropped too


def test_jsonl_with_bad_lines_is_held_then_moves_with_accept_rejects(migrate, fresh_db, tmp_path):
    bad = ["{not json", json.dumps({"id": "x1", "vector": [0.1, 0.2]}), json.dumps({"vector": [0.0] * 768}),
           json.dumps({"id": "movie-100000", "vector": [0.0] * 768})]  # a repeated id, after the first
    path = write_ruvector_jsonl(tmp_path / "export.jsonl", n=40, bad_lines=bad)
    before = target_digest(fresh_db)
    held = migrate("ruvector", path)
    assert not held.success and _checks(held)["legacy_rejects_within_limit"] is False
    ev = next(e for e in held.get_asset_check_evaluations() if e.check_name == "legacy_rejects_within_limit")
    lines = ev.metadata["differing_ids"].value
    assert lines[0].startswith("line 2: not JSON")
    assert lines[1] == "line 3: dimension 2: only 384, 768, 1536 can be stored"
    assert lines[2].startswith("line 4: missing or invalid 'id'")
    assert lines[3].startswith("line 5: id 'movie-100000' appears again")
    assert target_digest(fresh_db) == before

    moved = migrate("ruvector", path, accept_rejects=True)
    assert moved.success
    assert _meta(moved, "legacy_promotion")["rows_written"].value == 40
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM vectors.vector_store WHERE embedding_768 IS NOT NULL").fetchone()[0] == 40
        assert conn.execute("SELECT count(*) FROM meta.legacy_rejects").fetchone()[0] == 8  # 4 per import


def test_chroma_directory_the_client_cannot_open_is_refused(migrate, fresh_db, tmp_path):
    path = tmp_path / "broken"
    path.mkdir()
    (path / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    result = migrate("chroma", path)
    assert not result.success
    message = _failure(result)
    assert f"Chroma directory {path}: chroma.sqlite3 cannot be read" in message, message
    not_chroma = tmp_path / "empty"
    not_chroma.mkdir()
    message = _failure(migrate("chroma", not_chroma))
    assert "is not a Chroma persistent directory (no chroma.sqlite3 in it)" in message
    assert not (not_chroma / "chroma.sqlite3").exists()  # the client never created one there


def test_missing_hnsw_segment(migrate, fresh_db, tmp_path):
    # journal: every record still in the write-ahead queue; mirage: 1,200 records, flushed into HNSW
    path = write_chroma_dir(tmp_path / "chroma", n=150, collections={"journal": (384, "cosine")},
                            sync_threshold=100_000)
    state = directory_state(path)
    con = sqlite3.connect(path / "chroma.sqlite3")
    folders = [r[0] for r in con.execute("SELECT id FROM segments WHERE scope = 'VECTOR'")]
    con.close()
    for folder in folders:
        shutil.rmtree(path / folder, ignore_errors=True)
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # as a new process would open it
    assert directory_state(path)["journal"]["hnsw_segment_present"] is False
    result = migrate("chroma", path)
    assert result.success, _failure(result)
    staged = _meta(result, "legacy_staging")
    assert "HNSW segment missing" in staged["collections"].value
    assert _meta(result, "legacy_promotion")["rows_written"].value == 150
    assert state["journal"]["queue_rows"] == 150

    flushed = write_chroma_dir(tmp_path / "flushed", n=1200, collections={"mirage": (384, "l2")})
    con = sqlite3.connect(flushed / "chroma.sqlite3")
    folders = [r[0] for r in con.execute("SELECT id FROM segments WHERE scope = 'VECTOR'")]
    con.close()
    for folder in folders:
        shutil.rmtree(flushed / folder, ignore_errors=True)
    # as a new process would: Chroma caches one open system per path, HNSW index in memory included
    SharedSystemClient.clear_system_cache()
    before = target_digest(fresh_db)
    refused = migrate("chroma", flushed)
    assert not refused.success
    message = _failure(refused)
    assert "Chroma's client could not read collection 'mirage'" in message and "HNSW segment folder is missing" in message
    assert target_digest(fresh_db) == before


def test_unsupported_dimension_names_the_collection(migrate, fresh_db, tmp_path):
    path = write_chroma_dir(tmp_path / "chroma", n=20, collections={"odd": (512, "cosine")})
    message = _failure(migrate("chroma", path))
    assert "Chroma collection 'odd'" in message and "dimension 512" in message
