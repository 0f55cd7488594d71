"""What lands is what the source held, bit for bit; a corrupted staging row fails the gates and leaves
the targets byte-for-byte as they were; a grown source migrates only its difference."""

from __future__ import annotations

import numpy as np

from gateway_pipelines.defs.migration import assets as migration_assets
from gateway_pipelines.lib.migration.agentdb import write_agentdb
from gateway_pipelines.lib.migration.samples import write_chroma_dir
from gateway_pipelines.lib.warehouse import connect
from tests.integration.migration.test_end_to_end import _checks, _meta

TARGETS = ("vectors.vector_store", "memory.episodes", "memory.skills", "memory.skill_links",
           "memory.reasoning_patterns", "memory.causal_edges", "memory.causal_experiments",
           "memory.causal_observations", "meta.legacy_id_map")


def as_np(vector) -> np.ndarray:
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def target_digest(url: str) -> dict[str, str]:
    """md5 over every row of every target, in a fixed order: equal digests mean byte-for-byte equal tables."""
    out = {}
    with connect(url) as conn:
        for table in TARGETS:
            schema, name = table.split(".")
            out[table] = conn.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                f"FROM {schema}.{name} t"
            ).fetchone()[0]
    return out


def test_a_corrupted_staging_row_fails_the_gates_and_leaves_targets_untouched(
        legacy_sources, migrate, fresh_db, monkeypatch, copy_source):
    assert migrate("ruvector", legacy_sources["ruvector"]).success  # targets hold something to protect
    before = target_digest(fresh_db)
    real = migration_assets.stage_source

    def corrupting(*args, **kwargs):
        report = real(*args, **kwargs)
        with connect(fresh_db) as conn:
            # one float of one staged vector flipped in its last bit, one document altered
            sid = conn.execute("SELECT source_id FROM migration_staging.records WHERE collection = 'journal' "
                               "ORDER BY source_id LIMIT 1").fetchone()[0]
            vec = as_np(conn.execute("SELECT vec FROM migration_staging.records WHERE collection = 'journal' "
                                     "AND source_id = %s", (sid,)).fetchone()[0]).copy()
            vec[7] = np.nextafter(vec[7], np.float32(np.inf))
            from pgvector import Vector

            conn.execute("UPDATE migration_staging.records SET vec = %s WHERE collection = 'journal' AND source_id = %s",
                         (Vector(vec), sid))
            conn.execute("UPDATE migration_staging.records SET document = document || ' ' WHERE collection = 'mirage' "
                         "AND source_id = 'mirage-3'")
            conn.commit()
        corrupting.sid = sid
        return report

    monkeypatch.setattr(migration_assets, "stage_source", corrupting)
    result = migrate("chroma", legacy_sources["chroma"])
    assert not result.success
    checks = _checks(result)
    assert checks["legacy_vectors_bit_identical"] is False and checks["legacy_rows_match_source"] is False
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    differing = evaluations["legacy_vectors_bit_identical"].metadata["differing_ids"].value
    assert differing == [f"journal/{corrupting.sid}: vector differs (checksum)"]
    assert "mirage/mirage-3: document differs" in evaluations["legacy_rows_match_source"].metadata["differing_ids"].value
    assert _meta(result, "legacy_promotion") is None  # skipped by the blocking gates
    assert target_digest(fresh_db) == before


def test_a_grown_source_migrates_only_the_difference(migrate, fresh_db, copy_source):
    path = copy_source("agentdb")
    first = migrate("agentdb", path)
    assert first.success
    write_agentdb(path, episodes=25, start_id=1001)  # 25 new episodes appended
    grown = migrate("agentdb", path)
    assert grown.success, _checks(grown)
    meta = _meta(grown, "legacy_promotion")
    assert (meta["rows_inserted"].value, meta["rows_updated"].value) == (25, 0)
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM memory.episodes").fetchone()[0] == 300 + 25
        statuses = [r[0] for r in conn.execute("SELECT status FROM meta.legacy_imports ORDER BY import_id")]
    assert statuses == ["promoted", "promoted"]


def test_chroma_collection_that_grew(migrate, fresh_db, tmp_path):
    path = write_chroma_dir(tmp_path / "chroma", n=120, collections={"journal": (384, "cosine")})
    assert migrate("chroma", path).success
    write_chroma_dir(path, n=30, start=120, collections={"journal": (384, "cosine")})
    grown = migrate("chroma", path)
    assert grown.success
    meta = _meta(grown, "legacy_promotion")
    assert (meta["rows_inserted"].value, meta["rows_updated"].value, meta["rows_unchanged"].value) == (30, 0, 120)
