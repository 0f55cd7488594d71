"""Each kind of source migrates with every parity gate green, lands bit-identical in its targets,
and a second run writes 0 rows."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from gateway_pipelines.lib.migration.agentdb import AgentDBReader
from gateway_pipelines.lib.migration.chroma import client_for
from gateway_pipelines.lib.warehouse import connect


def _meta(result, asset):
    mats = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()
            if e.step_materialization_data.materialization.asset_key.to_user_string() == asset]
    return mats[-1].metadata if mats else None


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


ALL_CHECKS = {"legacy_rows_match_source", "legacy_vectors_bit_identical", "legacy_knn_parity",
              "legacy_rejects_within_limit"}


@pytest.mark.parametrize("kind", ["chroma", "ruvector", "agentdb"])
def test_source_migrates_green_and_reruns_write_nothing(kind, legacy_sources, migrate, fresh_db):
    result = migrate(kind, legacy_sources[kind])
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert _checks(result) == {c: True for c in ALL_CHECKS}
    written = _meta(result, "legacy_promotion")["rows_written"].value
    assert written > 0
    VERIFY[kind](legacy_sources, fresh_db)  # what landed is what the source held, read back from the targets
    again = migrate(kind, legacy_sources[kind])
    assert again.success
    assert _checks(again) == {c: True for c in ALL_CHECKS}
    assert _meta(again, "legacy_promotion")["rows_written"].value == 0


def as_np(vector) -> np.ndarray:
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def verify_chroma(legacy_sources, fresh_db):
    client = client_for(legacy_sources["chroma"])
    with connect(fresh_db) as conn:
        for name in ("journal", "visor"):
            got = client.get_collection(name).get(include=["embeddings", "documents", "metadatas"])
            column = "embedding_1536" if name == "visor" else "embedding"
            rows = {r[0]: r[1:] for r in conn.execute(
                f"SELECT document_id, {column}, content, metadata FROM vectors.vector_store "
                "WHERE collection = %s", (name,)).fetchall()}
            assert set(rows) == set(got["ids"])
            for i, rid in enumerate(got["ids"]):
                vec, content, metadata = rows[rid]
                assert as_np(vec).tobytes() == np.asarray(got["embeddings"][i], np.float32).tobytes()
                assert content == got["documents"][i]  # mojibake included, never repaired
                assert metadata == (got["metadatas"][i] or {})
        mojibake = conn.execute("SELECT count(*) FROM vectors.vector_store WHERE content LIKE %s",
                                ("%caf\u00c3\u00a9%",)).fetchone()[0]
        assert mojibake > 0
        users = conn.execute("SELECT count(DISTINCT user_id) FROM vectors.vector_store").fetchone()[0]
        assert users == 9


def verify_agentdb(legacy_sources, fresh_db):
    reader = AgentDBReader(legacy_sources["agentdb"])
    info = next(i for i in reader.collections() if i.name == "episodes")
    source = {r.source_id: r for batch in reader.batches(info) for r in batch}
    with connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT m.source_id, e.embedding, e.ts, e.tags, e.metadata, e.success, e.reward FROM memory.episodes e "
            "JOIN meta.legacy_id_map m ON m.target_table = 'memory.episodes' AND m.target_id = e.id::text").fetchall()
        assert len(rows) == len(source)
        for sid, emb, ts, tags, metadata, success, reward in rows:
            src = source[sid]
            if src.vector is None:
                assert emb is None
            else:
                assert as_np(emb).tobytes() == src.vector.tobytes()
            assert ts == datetime.fromisoformat(src.metadata["ts"])
            assert tags == src.metadata["tags"] and metadata == src.metadata["metadata"]
            assert success == src.metadata["success"] and reward == src.metadata["reward"]
        # links between tables follow the id map
        dangling = conn.execute(
            "SELECT count(*) FROM memory.skill_links l LEFT JOIN memory.skills s ON s.id = l.parent_skill_id "
            "WHERE s.id IS NULL").fetchone()[0]
        links = conn.execute("SELECT count(*) FROM memory.skill_links").fetchone()[0]
        assert (links, dangling) == (11, 0)
        # experiment start_time was epoch milliseconds: the milliseconds survive
        start = conn.execute("SELECT start_time FROM memory.causal_experiments").fetchone()[0]
        assert start.timestamp() == 1_760_000_000.123
        edge_from = conn.execute("SELECT from_memory_id FROM memory.causal_edges ORDER BY id LIMIT 1").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM memory.episodes WHERE id = %s::bigint", (edge_from,)).fetchone()[0] == 1
    reader.close()



def verify_ruvector(legacy_sources, fresh_db):
    with open(legacy_sources["ruvector"]) as f:
        source = {r["id"]: r for r in map(json.loads, f)}
    with connect(fresh_db) as conn:
        rows = conn.execute("SELECT document_id, embedding_768, metadata, collection FROM vectors.vector_store").fetchall()
    assert len(rows) == len(source)
    for rid, vec, metadata, collection in rows:
        assert as_np(vec).tobytes() == np.asarray(source[rid]["vector"], dtype=np.float32).tobytes()
        assert metadata == source[rid]["metadata"] and collection == "export"


VERIFY = {"chroma": verify_chroma, "agentdb": verify_agentdb, "ruvector": verify_ruvector}
