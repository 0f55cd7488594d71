"""HNSW overlap on the targets, reported (not gated): the sampled source queries against the
target's approximate index, next to the exact figures the gate judged.

Only vector_store columns with an HNSW index in the collection's space have one (384 and 768 use
vector_cosine_ops; 1536 has no index). Runs inside the promotion's transaction, before its commit,
so it sees the rows just written.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

INDEXED = {384: "embedding", 768: "embedding_768"}  # vector_store columns with a cosine HNSW index


def hnsw_overlap(conn: psycopg.Connection, import_id: int, *, ef_search: int = 100) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT c.collection, c.target, c.dim, c.space FROM migration_staging.collections c WHERE c.import_id = %s "
        "ORDER BY 1", (import_id,),
    ).fetchall()
    out: list[dict[str, Any]] = []
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(int(ef_search))))
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        for collection, target, dim, space in rows:
            column = INDEXED.get(dim) if target == "vectors.vector_store" else None
            if column is None or space != "cosine":
                reason = ("no HNSW index for this dimension" if target == "vectors.vector_store"
                          else "not measured for memory tables")
                if column and space != "cosine":
                    reason = f"the index is cosine, the collection's space is {space}"
                out.append({"collection": collection, "hnsw_overlap": None, "note": reason})
                continue
            queries = conn.execute(
                "SELECT vec, expected FROM migration_staging.knn_queries WHERE import_id = %s AND collection = %s",
                (import_id, collection),
            ).fetchall()
            stmt = sql.SQL(
                "SELECT document_id FROM vectors.vector_store WHERE collection = %s ORDER BY {col} <=> %s::vector({dim}) "
                "LIMIT %s"
            ).format(col=sql.Identifier(column), dim=sql.Literal(int(dim)))
            overlaps = []
            for vec, expected in queries:
                got = {r[0] for r in conn.execute(stmt, (collection, vec, len(expected))).fetchall()}
                overlaps.append(len(got & set(expected)) / len(expected))
            mean = sum(overlaps) / len(overlaps) if overlaps else None
            out.append({"collection": collection, "hnsw_overlap": mean, "note": f"{len(overlaps)} queries, "
                        f"ef_search={ef_search}"})
        # SET LOCAL outlives the savepoint: give the rest of the promotion's transaction its planner back
        conn.execute("SET LOCAL enable_seqscan = on")
        conn.execute("SET LOCAL enable_bitmapscan = on")
    lines = ["| collection | HNSW top-10 overlap | note |", "|---|---|---|"]
    for r in out:
        figure = "" if r["hnsw_overlap"] is None else f"{r['hnsw_overlap']:.3f}"
        lines.append(f"| {r['collection']} | {figure} | {r['note']} |")
    return {"rows": out, "markdown": "\n".join(lines)}
