"""Stream a legacy source into `migration_staging`, with its source-side manifest, in one pass.

Two connections, two binary COPYs open side by side: the staged rows (`records`: the vector as
pgvector, document, metadata) and the manifest (`manifest`: ids, dimensions and checksums computed
by the reader from the source's own values). The parity checks compare the two; nothing here
touches a target table. While streaming, each collection's vectors are spilled to a temporary file
(float32, as the source returned them), so that the exact k-NN of sampled source vectors is
computed afterwards from the source side with flat memory.

The ledger row in `meta.legacy_imports` is created first (status 'staging') and completed at the
end ('staged', or 'unchanged' when the source's fingerprint equals that of its last promoted
import, in which case nothing is staged at all).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import Jsonb

from gateway_pipelines.lib.migration.knn import CHUNK, exact_top_k_blocks, sample_positions
from gateway_pipelines.lib.migration.records import LegacySourceError
from gateway_pipelines.lib.migration.sources import CollectionInfo, LegacyReader, source_key

STAGING_TABLES = ("records", "manifest", "collections", "knn_queries", "row_parity", "vector_parity")


@dataclass
class CollectionReport:
    name: str
    target: str
    dim: int | None
    space: str | None
    source_count: int
    staged: int = 0
    with_vector: int = 0
    insert: int = 0
    update: int = 0
    unchanged: int = 0
    knn_queries: int = 0
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class StagingReport:
    import_id: int
    kind: str
    path: str
    source_key: str
    fingerprint: str
    status: str  # 'staged' | 'unchanged'
    unchanged_since: int | None = None
    collections: list[CollectionReport] = field(default_factory=list)
    rejects: int = 0
    read_seconds: float = 0.0
    seconds: float = 0.0
    source_state: dict[str, Any] = field(default_factory=dict)

    @property
    def staged(self) -> int:
        return sum(c.staged for c in self.collections)

    def counts(self) -> dict[str, dict[str, Any]]:
        return {c.name: {"target": c.target, "source_count": c.source_count, "staged": c.staged, "insert": c.insert,
                         "update": c.update, "unchanged": c.unchanged, "dim": c.dim, "space": c.space}
                for c in self.collections}

    def markdown(self) -> str:
        lines = ["| collection / table | target | dim | space | source says | staged | new | changed | unchanged | "
                 "source state |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in self.collections:
            note = c.state.get("note") or ", ".join(f"{k}={v}" for k, v in c.state.items() if k in ("rows",))
            lines.append(f"| {c.name} | {c.target} | {c.dim or '-'} | {c.space or '-'} | {c.source_count} | {c.staged} | "
                         f"{c.insert} | {c.update} | {c.unchanged} | {note} |")
        return "\n".join(lines)


# --------------------------------------------------------------------------- ledger


def start_import(conn: psycopg.Connection, *, kind: str, path: str, fingerprint: str, run_id: str,
                 dry_run: bool) -> tuple[int, int | None]:
    """Open a ledger row; return (import_id, the last promoted import with the same fingerprint)."""
    key = source_key(kind, path)
    with conn.transaction():
        same = conn.execute(
            "SELECT import_id FROM meta.legacy_imports WHERE source_key = %s AND fingerprint = %s "
            "AND status IN ('promoted', 'unchanged') AND NOT dry_run ORDER BY import_id DESC LIMIT 1",
            (key, fingerprint),
        ).fetchone()
        # staging of earlier, unpromoted imports of this source is superseded
        old = [r[0] for r in conn.execute(
            "SELECT import_id FROM meta.legacy_imports WHERE source_key = %s AND status IN ('staging', 'staged')",
            (key,),
        ).fetchall()]
        if old:
            drop_staging(conn, old)
            # a dry run stays 'staged' (it was never meant to promote); a real one that did not promote was blocked
            conn.execute("UPDATE meta.legacy_imports SET status = CASE WHEN dry_run THEN status ELSE 'blocked' END, "
                         "finished_at = coalesce(finished_at, now()) WHERE import_id = ANY(%s)", (old,))
        import_id = conn.execute(
            "INSERT INTO meta.legacy_imports (source_kind, source_path, source_key, fingerprint, run_id, dry_run) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING import_id",
            (kind, str(Path(path).expanduser().resolve()), key, fingerprint, run_id, dry_run),
        ).fetchone()[0]
    return int(import_id), (int(same[0]) if same else None)


def drop_staging(conn: psycopg.Connection, import_ids: list[int]) -> None:
    for table in STAGING_TABLES:
        conn.execute(
            psycopg.sql.SQL("DELETE FROM {} WHERE import_id = ANY(%s)").format(
                psycopg.sql.Identifier("migration_staging", table)),
            (import_ids,),
        )


def fail_import(conn: psycopg.Connection, import_id: int, message: str) -> None:
    with conn.transaction():
        drop_staging(conn, [import_id])
        conn.execute(
            "UPDATE meta.legacy_imports SET status = 'failed', finished_at = now(), "
            "checks = checks || jsonb_build_object('error', %s::text) WHERE import_id = %s",
            (message, import_id),
        )


def import_for_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT import_id, source_kind, source_path, source_key, fingerprint, status, dry_run, counts, rows_rejected "
        "FROM meta.legacy_imports WHERE run_id = %s ORDER BY import_id DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    keys = ("import_id", "kind", "path", "source_key", "fingerprint", "status", "dry_run", "counts", "rows_rejected")
    return dict(zip(keys, row))


def record_check(conn: psycopg.Connection, import_id: int, name: str, passed: bool, description: str) -> None:
    conn.execute(
        "UPDATE meta.legacy_imports SET checks = checks || jsonb_build_object(%s::text, "
        "jsonb_build_object('passed', %s::boolean, 'description', %s::text)) WHERE import_id = %s",
        (name, passed, description, import_id),
    )


# --------------------------------------------------------------------------- COPY


def _vector_dumper(conn: psycopg.Connection) -> type[Dumper]:
    info = psycopg.types.TypeInfo.fetch(conn, "vector")
    if info is None:
        raise RuntimeError("the pgvector extension is not installed in the warehouse: run `gateway db migrate`")

    class VectorDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: np.ndarray) -> bytes:
            return struct.pack(">HH", obj.shape[0], 0) + obj.astype(">f4", copy=False).tobytes()

    VectorDumper.oid = info.oid
    return VectorDumper


_VEC_HEADER = struct.Struct(">HH")  # pgvector's binary form: dimension, unused, then big-endian float4s

RECORD_COPY = (
    "COPY migration_staging.records (import_id, collection, source_id, target, document, metadata, vec) "
    "FROM STDIN (FORMAT BINARY)"
)
MANIFEST_COPY = (
    "COPY migration_staging.manifest (import_id, collection, source_id, dim, vec_md5, doc_md5, meta_text, "
    "fingerprint) FROM STDIN (FORMAT BINARY)"
)


def stage_source(
    url_connect,
    reader: LegacyReader,
    *,
    import_id: int,
    knn_queries: int = 100,
    k: int = 10,
    spill_dir: str | Path | None = None,
    seed: int = 0,
    on_collection=None,
) -> StagingReport:
    """Stream every collection of `reader` into staging for `import_id`. `url_connect()` opens a
    new warehouse connection (two are used side by side). Raises LegacySourceError on a damaged
    source; the caller marks the import failed (staging rows are then dropped)."""
    started = time.perf_counter()
    report = StagingReport(import_id, reader.kind, str(reader.path), source_key(reader.kind, reader.path),
                           reader.fingerprint(), "staged")
    read_s = 0.0
    spill_root = Path(spill_dir) if spill_dir else None
    if spill_root:
        spill_root.mkdir(parents=True, exist_ok=True)
    with url_connect() as rec_conn, url_connect() as man_conn:
        dumper = _vector_dumper(rec_conn)
        t0 = time.perf_counter()
        infos = reader.collections()
        read_s += time.perf_counter() - t0
        for info in infos:
            col = CollectionReport(info.name, info.target, info.dim, info.space, info.source_count)
            fd, spill_name = tempfile.mkstemp(prefix="legacy-", suffix=".f32", dir=spill_root)
            ids_name = spill_name[:-4] + ".ids"  # one JSON string a line, in the order of the vectors
            try:
                with os.fdopen(fd, "wb") as spill, open(ids_name, "wb") as id_spill, \
                        rec_conn.cursor() as rcur, man_conn.cursor() as mcur:
                    with rcur.copy(RECORD_COPY) as rcopy, mcur.copy(MANIFEST_COPY) as mcopy:
                        # metadata and vector go as their binary wire forms, built from what the reader
                        # already serialised (the canonical JSON, the big-endian float32s): COPY's binary
                        # format carries no types, and 'bytea' passes the bytes through as they are
                        rcopy.set_types(["int8", "text", "text", "text", "text", "bytea", "bytea"])
                        mcopy.set_types(["int8", "text", "text", "int4", "text", "text", "text", "text"])
                        batches = reader.batches(info)
                        while True:
                            t0 = time.perf_counter()
                            batch = next(batches, None)
                            read_s += time.perf_counter() - t0
                            if batch is None:
                                break
                            for r in batch:
                                d = r.digests
                                meta = d["meta_text"]
                                vec = None
                                if r.vec_be is not None:
                                    vec = _VEC_HEADER.pack(d["dim"], 0) + r.vec_be
                                    if col.dim is None:
                                        col.dim = d["dim"]
                                    spill.write(np.ascontiguousarray(r.vector, dtype=np.float32).tobytes())
                                    id_spill.write(json.dumps(r.source_id).encode() + b"\n")
                                    col.with_vector += 1
                                rcopy.write_row((import_id, r.collection, r.source_id, r.target, r.document,
                                                 None if meta is None else b"\x01" + meta.encode(), vec))
                                mcopy.write_row((import_id, r.collection, r.source_id, d["dim"], d["vec_md5"],
                                                 d["doc_md5"], meta, d["fingerprint"]))
                            col.staged += len(batch)
                man_conn.commit()
                rec_conn.commit()
                # the reader may learn the dimension and count only at its end (an export)
                col.dim = info.dim or col.dim
                col.source_count = info.source_count
                col.state = info.state
                if col.with_vector and col.space:
                    col.knn_queries = _stage_knn(rec_conn, import_id, info.name, col.space, spill_name, ids_name,
                                                 col.with_vector, col.dim, n=knn_queries, k=k, seed=seed,
                                                 vector_dumper=dumper)
                rec_conn.execute(
                    "INSERT INTO migration_staging.collections (import_id, collection, target, dim, space, "
                    "source_count, state) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (import_id, info.name, info.target, col.dim, col.space, col.source_count, Jsonb(col.state)),
                )
                rec_conn.commit()
            finally:
                os.unlink(spill_name)
                if os.path.exists(ids_name):
                    os.unlink(ids_name)
            report.collections.append(col)
            if on_collection:
                on_collection(col)
        report.rejects = len(reader.rejects)
        if reader.rejects:
            with rec_conn.cursor() as cur, cur.copy(
                "COPY meta.legacy_rejects (import_id, line_number, reason, raw) FROM STDIN"
            ) as copy:
                for rej in reader.rejects:
                    copy.write_row((import_id, rej.line_number, rej.reason, rej.raw))
            rec_conn.commit()
        if report.staged > 1000:  # the checks join manifest and records: give the planner their sizes
            rec_conn.execute("ANALYZE migration_staging.records")
            rec_conn.execute("ANALYZE migration_staging.manifest")
            rec_conn.commit()
        _classify(rec_conn, import_id, report)
        report.source_state = reader.state()
        report.read_seconds = read_s
        report.seconds = time.perf_counter() - started
        rec_conn.execute(
            "UPDATE meta.legacy_imports SET status = 'staged', rows_read = %s, rows_rejected = %s, counts = %s, "
            "source_state = %s WHERE import_id = %s",
            (report.staged, report.rejects, Jsonb(report.counts()), Jsonb(_jsonable(report.source_state)), import_id),
        )
        rec_conn.commit()
    return report


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _stage_knn(conn, import_id: int, collection: str, space: str, spill_name: str, ids_name: str, n_vectors: int,
               dim: int, *, n: int, k: int, seed: int, vector_dumper) -> int:
    """Sample the queries, compute their exact top-k over the spilled source vectors block by block (memory
    flat in the source's size), and stage them with the source ids of their neighbours."""
    positions = sample_positions(n_vectors, n, seed=seed, salt=collection)
    row_bytes = 4 * dim
    with open(spill_name, "rb") as f:
        queries = np.empty((len(positions), dim), dtype=np.float32)
        for qi, pos in enumerate(positions):
            f.seek(pos * row_bytes)
            queries[qi] = np.frombuffer(f.read(row_bytes), dtype=np.float32)
        f.seek(0)
        chunks = iter(lambda: f.read(CHUNK * row_bytes), b"")
        blocks = (np.frombuffer(c, dtype=np.float32).reshape(-1, dim) for c in chunks)
        neighbours, kth = exact_top_k_blocks(blocks, queries, k=min(k, n_vectors), space=space)
    wanted = set(positions) | set(int(j) for j in neighbours.ravel())
    id_of: dict[int, str] = {}
    with open(ids_name, "rb") as f:
        for pos, line in enumerate(f):
            if pos in wanted:
                id_of[pos] = json.loads(line)
    with conn.cursor() as cur:
        cur.adapters.register_dumper(np.ndarray, vector_dumper)
        with cur.copy(
            "COPY migration_staging.knn_queries (import_id, collection, query_id, vec, expected, kth_distance) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "text", vector_dumper.oid, "text[]", "float8"])
            for qi, pos in enumerate(positions):
                copy.write_row((import_id, collection, id_of[pos], queries[qi], [id_of[int(j)] for j in neighbours[qi]],
                                float(kth[qi])))
    return len(positions)


def _classify(conn: psycopg.Connection, import_id: int, report: StagingReport) -> None:
    """insert / update / unchanged for every staged record, against what this source last wrote."""
    # every row starts as 'insert'; those this source wrote before are 'unchanged' or 'update'
    conn.execute(
        "UPDATE migration_staging.manifest m SET action = CASE WHEN x.fingerprint = m.fingerprint "
        "THEN 'unchanged' ELSE 'update' END FROM meta.legacy_id_map x "
        "WHERE m.import_id = %s AND x.source_key = %s AND x.collection = m.collection AND x.source_id = m.source_id",
        (import_id, report.source_key),
    )
    rows = conn.execute(
        "SELECT collection, action, count(*) FROM migration_staging.manifest WHERE import_id = %s "
        "GROUP BY collection, action",
        (import_id,),
    ).fetchall()
    conn.commit()
    by_name = {c.name: c for c in report.collections}
    for name, action, n in rows:
        setattr(by_name[name], action, int(n))


def unchanged_report(import_id: int, kind: str, path: str, fingerprint: str, since: int) -> StagingReport:
    return StagingReport(import_id, kind, path, source_key(kind, path), fingerprint, "unchanged", unchanged_since=since)


def mark_unchanged(conn: psycopg.Connection, import_id: int, since: int) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE meta.legacy_imports SET status = 'unchanged', finished_at = now(), counts = "
            "(SELECT counts FROM meta.legacy_imports WHERE import_id = %s) WHERE import_id = %s",
            (since, import_id),
        )


__all__ = ["LegacySourceError", "CollectionInfo", "StagingReport", "stage_source", "start_import"]
