"""How good is the HNSW index: recall@k against exact search, and latency, per ``hnsw.ef_search``.

:func:`measure_recall` queries the index itself (the same SQL as :mod:`.search`, but without the
exact fallbacks and without logging), so a badly built index shows up as low recall instead of
being rescued by the search's brute-force fallback. Exact results come from the same table with
the index unusable (see :func:`.search.exact_query`), or from ``exact_ids`` when the caller already
knows them (the benchmark computes them in numpy).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import psycopg

from .index import ensure_vector_types
from .search import SearchFilters, exact_query, hnsw_query

__all__ = ["RecallPoint", "exact_neighbours", "measure_recall", "recall_plot_png", "sample_queries"]


@dataclass(frozen=True)
class RecallPoint:
    ef_search: int
    recall: float  # mean over queries of |index top-k ∩ exact top-k| / |exact top-k|
    p50_ms: float
    p99_ms: float
    qps: float  # one client, queries back to back
    min_rows: int = 0  # fewest rows any query returned
    queries: int = 0


def _set(conn: psycopg.Connection, **settings: object) -> None:
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name.replace("__", "."), str(value)))


def exact_neighbours(
    conn: psycopg.Connection, query_vectors: np.ndarray, *, k: int = 10, filters: SearchFilters | None = None
) -> list[list[str]]:
    """Exact top-``k`` ids per query (brute force, index scans off)."""
    where, named = (filters or SearchFilters()).where()
    out: list[list[str]] = []
    with conn.transaction():
        ensure_vector_types(conn)
        _set(conn, enable_indexscan="off")
        for q in np.asarray(query_vectors, dtype=np.float32):
            out.append([r[0] for r in conn.execute(exact_query(where, k), {"q": q, **named}).fetchall()])
    return out


def measure_recall(
    conn: psycopg.Connection,
    query_vectors: np.ndarray,
    *,
    k: int = 10,
    ef_search_values: Sequence[int] = (20, 40, 100, 200),
    filters: SearchFilters | None = None,
    exact_ids: Sequence[Sequence[str]] | None = None,
    warmup: int = 5,
) -> list[RecallPoint]:
    """Recall@k and latency of the HNSW index at each ``ef_search``.

    With ``filters`` the index is scanned with ``hnsw.iterative_scan = relaxed_order`` and the rows
    re-sorted, exactly as a filtered search does. Latency is client-observed (one round trip per
    query over the connection); the first ``warmup`` queries of each setting are run but not timed.
    """
    queries = np.asarray(query_vectors, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[0] == 0:
        raise ValueError(f"query_vectors must be a non-empty (n, dim) array, got shape {queries.shape}")
    if exact_ids is None:
        exact_ids = exact_neighbours(conn, queries, k=k, filters=filters)
    if len(exact_ids) != len(queries):
        raise ValueError(f"{len(exact_ids)} exact result lists for {len(queries)} queries")
    filters = filters or SearchFilters()
    where, named = filters.where()
    relaxed = not filters.empty
    points: list[RecallPoint] = []
    for ef in ef_search_values:
        query = hnsw_query(where, k, relaxed=relaxed, candidates=ef)  # as search_by_vector runs it
        with conn.transaction():
            ensure_vector_types(conn)
            table_rows = conn.execute(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'vectors.content_vectors'::regclass"
            ).fetchone()[0]
            _set(
                conn,
                hnsw__ef_search=max(int(ef), k),
                hnsw__iterative_scan="relaxed_order" if relaxed else "off",
                hnsw__max_scan_tuples=max(20_000, int(table_rows)),
                enable_sort="off",
            )
            for q in queries[: min(warmup, len(queries))]:
                conn.execute(query, {"q": q, **named}).fetchall()
            latencies = np.empty(len(queries))
            recalls = np.empty(len(queries))
            min_rows = k
            t_all = time.perf_counter()
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                rows = conn.execute(query, {"q": q, **named}).fetchall()
                latencies[i] = time.perf_counter() - t0
                got = {r[0] for r in rows}
                truth = set(exact_ids[i][:k])
                recalls[i] = len(got & truth) / len(truth) if truth else 1.0
                min_rows = min(min_rows, len(rows))
            total = time.perf_counter() - t_all
        points.append(
            RecallPoint(
                ef_search=int(ef),
                recall=float(recalls.mean()),
                p50_ms=float(np.percentile(latencies, 50) * 1000),
                p99_ms=float(np.percentile(latencies, 99) * 1000),
                qps=float(len(queries) / total),
                min_rows=int(min_rows),
                queries=len(queries),
            )
        )
    return points


def sample_queries(conn: psycopg.Connection, n: int = 100, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    """(n, dim) query vectors: stored vectors of random rows plus Gaussian noise of norm ~``noise``,
    renormalised, so they are near real content but not exact duplicates of it."""
    rng = np.random.default_rng(seed)
    with conn.transaction():
        ids = [r[0] for r in conn.execute("SELECT id FROM vectors.content_vectors ORDER BY id").fetchall()]
        if not ids:
            raise ValueError("vectors.content_vectors is empty: nothing to sample queries from")
        chosen = [ids[i] for i in rng.choice(len(ids), size=n, replace=len(ids) < n)]
        rows = dict(
            conn.execute("SELECT id, vector FROM vectors.content_vectors WHERE id = ANY(%s)", (list(set(chosen)),))
        )
    base = np.stack([np.asarray(rows[c].to_numpy() if hasattr(rows[c], "to_numpy") else rows[c]) for c in chosen])
    base = base.astype(np.float32)
    dim = base.shape[1]
    out = base + rng.standard_normal(base.shape).astype(np.float32) * np.float32(noise / np.sqrt(dim))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def recall_plot_png(points: Sequence[RecallPoint], *, title: str = "HNSW recall@k and latency") -> bytes:
    """A PNG: recall (left axis) and p50 latency (right axis) against ef_search."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    pts = sorted(points, key=lambda p: p.ef_search)
    ef = [p.ef_search for p in pts]
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(ef, [p.recall for p in pts], "o-", color="tab:blue", label="recall")
    ax.set_xlabel("hnsw.ef_search")
    ax.set_ylabel("recall", color="tab:blue")
    ax.set_ylim(0, 1.02)
    ax.set_xscale("log")
    ax.set_xticks(ef, [str(e) for e in ef])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(ef, [p.p50_ms for p in pts], "s--", color="tab:orange", label="p50 latency")
    ax2.set_ylabel("p50 latency (ms)", color="tab:orange")
    ax2.set_ylim(bottom=0)
    ax.set_title(title)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
