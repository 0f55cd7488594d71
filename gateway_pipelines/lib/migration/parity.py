"""The parity checks between a source (its manifest, computed by the reader) and its staged rows.

Each check runs a Great Expectations suite on a query that puts the two sides next to each other,
row by row, and reports per collection the figures a person wants to see, plus at most 20 ids that
differ. The queries are composed with psycopg.sql; the import id is the only value in them.

* rows: equal row counts (the source's own count, minus quarantined lines) and equal id sets;
  every document (md5 of its UTF-8 bytes) and every metadata object (as jsonb) equal.
* vectors: every vector bit-identical (md5 of the float32 values on both sides: the reader's from
  what the source client returned, Postgres's from the staged pgvector value) and its dimension
  equal to the source's and to the collection's.
* k-NN: for the sampled source vectors, the exact top-k computed on the source side against an
  exact pgvector query on the staged rows (mean overlap >= min_overlap, ties at the k-th place count).

The rows and vectors checks first write their comparison, one row of booleans per record, into
`migration_staging.row_parity` / `vector_parity` (recomputed by every run of the check, so it always
judges the staging as it is now), and GX validates that table: GX issues several queries per
expectation, and over the comparison query itself each one recomputed 100k checksums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from gateway_pipelines.lib.migration.knn import OPERATORS, tie_tolerance
from gateway_pipelines.lib.quality.gx_runner import SuiteOutcome, run_query_suite

MAX_IDS = 20


@dataclass
class ParityOutcome:
    name: str
    passed: bool
    description: str
    per_collection: list[dict[str, Any]] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)  # "collection/id: what differs", at most 20
    gx: SuiteOutcome | None = None

    def markdown(self) -> str:
        if not self.per_collection:
            return "(nothing staged)"
        cols = list(self.per_collection[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.per_collection:
            lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, bool):
        return "✅" if v else "❌"
    return str(v)


def _query(conn: psycopg.Connection, template: str, import_id: int) -> str:
    return sql.SQL(template).format(import_id=sql.Literal(import_id)).as_string(conn)


ROWS_SQL = """
SELECT coalesce(m.collection, r.collection) AS collection,
       coalesce(m.source_id, r.source_id)   AS source_id,
       m.source_id IS NOT NULL              AS in_source,
       r.source_id IS NOT NULL              AS in_staging,
       m.doc_md5 IS NOT DISTINCT FROM md5(r.document)        AS document_equal,
       m.meta_text::jsonb IS NOT DISTINCT FROM r.metadata    AS metadata_equal
  FROM (SELECT * FROM migration_staging.manifest WHERE import_id = {import_id}) m
  FULL JOIN (SELECT * FROM migration_staging.records WHERE import_id = {import_id}) r
    ON r.collection = m.collection AND r.source_id = m.source_id
"""

VECTORS_SQL = """
SELECT r.collection, r.source_id,
       m.vec_md5 IS NOT NULL                                                    AS has_vector,
       m.vec_md5 IS NOT DISTINCT FROM md5(substring(vector_send(r.vec) from 5)) AS vector_equal,
       m.dim IS NOT DISTINCT FROM vector_dims(r.vec)                           AS dim_equal,
       (r.vec IS NULL OR vector_dims(r.vec) IS NOT DISTINCT FROM c.dim)        AS dim_of_collection
  FROM migration_staging.records r
  JOIN migration_staging.manifest m USING (import_id, collection, source_id)
  JOIN migration_staging.collections c USING (import_id, collection)
 WHERE r.import_id = {import_id}
"""

ROW_PARITY_SQL = """
SELECT collection, source_id, in_source, in_staging, document_equal, metadata_equal
  FROM migration_staging.row_parity WHERE import_id = {import_id}
"""

VECTOR_PARITY_SQL = """
SELECT collection, source_id, has_vector, vector_equal, dim_equal, dim_of_collection
  FROM migration_staging.vector_parity WHERE import_id = {import_id}
"""

KNN_SQL = """
SELECT collection, count(*) AS queries, avg(exact_overlap) AS mean_overlap
  FROM migration_staging.knn_queries WHERE import_id = {import_id} GROUP BY collection
"""


def _expected_rows(conn: psycopg.Connection, import_id: int) -> tuple[int, int]:
    total, rejects = conn.execute(
        "SELECT (SELECT coalesce(sum(source_count), 0) FROM migration_staging.collections WHERE import_id = %s), "
        "(SELECT count(*) FROM meta.legacy_rejects WHERE import_id = %s)",
        (import_id, import_id),
    ).fetchone()
    return int(total), int(rejects)


def _compare(conn: psycopg.Connection, table: str, columns: str, template: str, import_id: int) -> None:
    """Write the comparison of manifest and staging for `import_id` into `table`, replacing any earlier one,
    and commit (GX reads it on a connection of its own)."""
    target = sql.Identifier("migration_staging", table)
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {} WHERE import_id = %s").format(target), (import_id,))
        conn.execute(sql.SQL("INSERT INTO {} (import_id, " + columns + ") SELECT {id}, x.* FROM ({q}) x").format(
            target, id=sql.Literal(import_id), q=sql.SQL(template).format(import_id=sql.Literal(import_id))))
    conn.commit()


def check_rows(conn: psycopg.Connection, url: str, import_id: int) -> ParityOutcome:
    import great_expectations as gx

    total, rejects = _expected_rows(conn, import_id)
    expected = total - rejects
    _compare(conn, "row_parity", "collection, source_id, in_source, in_staging, document_equal, metadata_equal",
             ROWS_SQL, import_id)
    rows = conn.execute(
        "SELECT x.collection, coalesce(c.source_count, 0), count(*) FILTER (WHERE in_staging), "
        "count(*) FILTER (WHERE NOT in_staging), count(*) FILTER (WHERE NOT in_source), "
        "count(*) FILTER (WHERE NOT document_equal), count(*) FILTER (WHERE NOT metadata_equal) "
        "FROM migration_staging.row_parity x LEFT JOIN migration_staging.collections c ON c.import_id = x.import_id "
        "AND c.collection = x.collection WHERE x.import_id = %s GROUP BY x.collection, c.source_count ORDER BY 1",
        (import_id,),
    ).fetchall()
    # quarantined lines belong to the one collection of an export
    per = [
        {"collection": r[0], "source_count": int(r[1]) - (rejects if len(rows) == 1 else 0), "staged": int(r[2]),
         "ids_missing": int(r[3]), "ids_extra": int(r[4]), "documents_differ": int(r[5]), "metadata_differ": int(r[6])}
        for r in rows
    ]
    differing = [
        f"{c}/{i}: {why}"
        for c, i, why in conn.execute(
            "SELECT collection, source_id, concat_ws(', ', "
            "CASE WHEN NOT in_staging THEN 'missing from staging' END, "
            "CASE WHEN NOT in_source THEN 'not in the source' END, "
            "CASE WHEN in_source AND in_staging AND NOT document_equal THEN 'document differs' END, "
            "CASE WHEN in_source AND in_staging AND NOT metadata_equal THEN 'metadata differs' END) "
            "FROM migration_staging.row_parity WHERE import_id = %s "
            "AND NOT (in_source AND in_staging AND document_equal AND metadata_equal) ORDER BY 1, 2 LIMIT %s",
            (import_id, MAX_IDS),
        ).fetchall()
    ]
    count_ok = all(p["staged"] == p["source_count"] for p in per) if per else expected == 0
    outcome = run_query_suite(url, f"legacy_rows_{import_id}", _query(conn, ROW_PARITY_SQL, import_id), [
        gx.expectations.ExpectTableRowCountToEqual(value=expected),
        gx.expectations.ExpectColumnValuesToBeInSet(column="in_source", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="in_staging", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="document_equal", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="metadata_equal", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeUnique(column="source_id") if len(per) <= 1 else
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["collection", "source_id"]),
    ])
    passed = outcome.success and count_ok
    staged = sum(p["staged"] for p in per)
    if passed:
        desc = f"{staged} rows in {len(per)} collections/tables: counts, ids, documents and metadata equal"
    else:
        desc = (f"rows differ: {staged} staged of {expected} in the source; "
                f"{len(differing)} differing ids shown (at most {MAX_IDS}): " + "; ".join(differing[:5]))
    return ParityOutcome("rows", passed, desc, per, differing, outcome)


def check_vectors(conn: psycopg.Connection, url: str, import_id: int) -> ParityOutcome:
    import great_expectations as gx

    _compare(conn, "vector_parity", "collection, source_id, has_vector, vector_equal, dim_equal, dim_of_collection",
             VECTORS_SQL, import_id)
    per = [
        {"collection": r[0], "dim": r[1], "vectors": int(r[2]), "bit_identical": int(r[3]), "differ": int(r[4]),
         "wrong_dim": int(r[5])}
        for r in conn.execute(
            "SELECT x.collection, c.dim, count(*) FILTER (WHERE has_vector), "
            "count(*) FILTER (WHERE vector_equal AND has_vector), count(*) FILTER (WHERE NOT vector_equal), "
            "count(*) FILTER (WHERE NOT (dim_equal AND dim_of_collection)) FROM migration_staging.vector_parity x "
            "JOIN migration_staging.collections c ON c.import_id = x.import_id AND c.collection = x.collection "
            "WHERE x.import_id = %s GROUP BY x.collection, c.dim ORDER BY 1",
            (import_id,),
        ).fetchall()
    ]
    differing = [
        f"{c}/{i}: {why}"
        for c, i, why in conn.execute(
            "SELECT collection, source_id, concat_ws(', ', "
            "CASE WHEN NOT vector_equal THEN 'vector differs (checksum)' END, "
            "CASE WHEN NOT dim_equal THEN 'dimension differs' END, "
            "CASE WHEN NOT dim_of_collection THEN 'dimension is not the collection''s' END) "
            "FROM migration_staging.vector_parity WHERE import_id = %s "
            "AND NOT (vector_equal AND dim_equal AND dim_of_collection) ORDER BY 1, 2 LIMIT %s",
            (import_id, MAX_IDS),
        ).fetchall()
    ]
    outcome = run_query_suite(url, f"legacy_vectors_{import_id}", _query(conn, VECTOR_PARITY_SQL, import_id), [
        gx.expectations.ExpectColumnValuesToBeInSet(column="vector_equal", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="dim_equal", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="dim_of_collection", value_set=[True]),
    ])
    n = sum(p["vectors"] for p in per)
    if outcome.success:
        desc = f"{n} vectors bit-identical (float32 checksums) with the source's dimensions"
    else:
        desc = f"{sum(p['differ'] + p['wrong_dim'] for p in per)} vectors differ: " + "; ".join(differing[:5])
    return ParityOutcome("vectors", outcome.success, desc, per, differing, outcome)


def measure_knn(conn: psycopg.Connection, import_id: int) -> None:
    """Run each sampled query as an exact pgvector query on the staged rows; store its overlap with
    the source-side top-k (a neighbour tied with the source's k-th distance counts as found)."""
    spaces = dict(conn.execute(
        "SELECT collection, space FROM migration_staging.collections WHERE import_id = %s", (import_id,)
    ).fetchall())
    queries = conn.execute(
        "SELECT collection, query_id, vec, expected, kth_distance FROM migration_staging.knn_queries "
        "WHERE import_id = %s ORDER BY collection, query_id",
        (import_id,),
    ).fetchall()
    with conn.transaction():
        for collection, query_id, vec, expected, kth in queries:
            op = sql.SQL(OPERATORS[spaces[collection]])  # a fixed operator per space
            got = conn.execute(
                sql.SQL(
                    "SELECT source_id, vec {op} %(q)s FROM migration_staging.records WHERE import_id = %(id)s "
                    "AND collection = %(c)s AND vec IS NOT NULL ORDER BY vec {op} %(q)s LIMIT %(k)s"
                ).format(op=op),
                {"q": vec, "id": import_id, "c": collection, "k": len(expected)},
            ).fetchall()
            want = set(expected)
            tol = tie_tolerance(kth)
            hits = sum(1 for sid, d in got if sid in want or (d is not None and d <= kth + tol))
            conn.execute(
                "UPDATE migration_staging.knn_queries SET exact_overlap = %s WHERE import_id = %s AND collection = %s "
                "AND query_id = %s",
                (min(hits, len(expected)) / len(expected), import_id, collection, query_id),
            )


def check_knn(conn: psycopg.Connection, url: str, import_id: int, *, min_overlap: float) -> ParityOutcome:
    import great_expectations as gx

    measure_knn(conn, import_id)
    conn.commit()  # GX reads the overlaps on a connection of its own
    per = [
        {"collection": r[0], "space": r[1], "queries": int(r[2]), "mean_overlap": float(r[3]),
         "min_overlap": float(r[4])}
        for r in conn.execute(
            "SELECT q.collection, c.space, count(*), avg(q.exact_overlap), min(q.exact_overlap) "
            "FROM migration_staging.knn_queries q JOIN migration_staging.collections c USING (import_id, collection) "
            "WHERE q.import_id = %s GROUP BY q.collection, c.space ORDER BY 1",
            (import_id,),
        ).fetchall()
    ]
    differing = [
        f"{c}/{q}: overlap {o:.2f}"
        for c, q, o in conn.execute(
            "SELECT collection, query_id, exact_overlap FROM migration_staging.knn_queries WHERE import_id = %s "
            "AND exact_overlap < 1 ORDER BY exact_overlap, collection, query_id LIMIT %s",
            (import_id, MAX_IDS),
        ).fetchall()
    ]
    outcome = run_query_suite(url, f"legacy_knn_{import_id}", _query(conn, KNN_SQL, import_id), [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="mean_overlap"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="mean_overlap", min_value=min_overlap),
    ])
    if outcome.success:
        desc = ("exact top-10 of " + ", ".join(f"{p['collection']} {p['mean_overlap']:.3f}" for p in per)
                + f" (mean overlap with the source's exact search, goal >= {min_overlap})") if per else \
            "no vectors staged: nothing to compare"
    else:
        desc = f"k-NN overlap under {min_overlap}: " + ", ".join(
            f"{p['collection']} {p['mean_overlap']:.3f}" for p in per) + "; worst queries: " + "; ".join(differing[:5])
    return ParityOutcome("knn", outcome.success, desc, per, differing, outcome)


def check_rejects(conn: psycopg.Connection, import_id: int, *, accept: bool) -> ParityOutcome:
    rows = conn.execute(
        "SELECT line_number, reason FROM meta.legacy_rejects WHERE import_id = %s ORDER BY line_number",
        (import_id,),
    ).fetchall()
    shown = [f"line {n}: {why}" for n, why in rows[:MAX_IDS]]
    if not rows:
        return ParityOutcome("rejects", True, "every line of the source was read", [], [])
    if accept:
        return ParityOutcome("rejects", True, f"{len(rows)} lines quarantined in meta.legacy_rejects and accepted "
                                              "(accept_rejects): the rest may move", [], shown)
    return ParityOutcome("rejects", False, f"{len(rows)} lines could not be read (quarantined in meta.legacy_rejects); "
                                           "fix them, or migrate the rest with accept_rejects / --accept-rejects: "
                         + "; ".join(shown[:5]), [], shown)
