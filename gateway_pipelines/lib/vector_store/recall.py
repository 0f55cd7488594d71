"""How good is the HNSW index: recall@k against exact search, and latency, per ``hnsw.ef_search``.

:func:`measure_recall` queries the index itself (the same SQL as :mod:`.search`, but without the
exact fallbacks and without logging), so a badly built index shows up as low recall instead of
being rescued by the search's brute-force fallback. Exact results come from one scan of the same
table scored in numpy (:func:`exact_neighbours`), or from ``exact_ids`` when the caller already
knows them (the benchmark computes them in numpy).

:func:`ef_search_sweep` picks the settings to measure (down to where recall actually drops),
:func:`recall_verdict` turns a measured recall into pass / warn / error against the target and the
hard floor, and :func:`recall_plot_png` draws the sweep and, given :mod:`.history` rows, the trend
across builds.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import psycopg
from psycopg import sql

from .index import ensure_vector_types
from .search import SERVING_SQL, TABLE, SearchFilters, hnsw_query

if TYPE_CHECKING:
    from .history import RecallMeasurement

__all__ = [
    "DEFAULT_SWEEP",
    "RecallPoint",
    "RecallVerdict",
    "ef_search_sweep",
    "exact_neighbours",
    "measure_recall",
    "recall_plot_png",
    "recall_verdict",
    "sample_queries",
    "sweep_table_md",
    "sweep_title",
    "write_plot",
]

# Low enough that recall visibly drops (ef_search 10 is the least that can return k=10 rows), high
# enough to show what the last points of recall cost in latency.
DEFAULT_SWEEP = (10, 20, 40, 80, 100, 200)


# the vector literal loads pgvector first, which defines its hnsw.* settings
_CURRENT_SETTINGS_SQL = (
    "SELECT '[0]'::vector, array_agg(current_setting(n, true) ORDER BY i) "
    "FROM unnest(%s::text[]) WITH ORDINALITY AS t(n, i)"
)
_SET_LOCAL_SQL = "SELECT set_config(%s, %s, true)"


@dataclass(frozen=True)
class RecallPoint:
    ef_search: int
    recall: float  # mean over queries of |index top-k ∩ exact top-k| / |exact top-k|
    p50_ms: float
    p99_ms: float
    qps: float  # one client, queries back to back
    min_rows: int = 0  # fewest rows any query returned
    queries: int = 0


def _set(conn: psycopg.Connection, **settings: object) -> dict[str, str | None]:
    """SET LOCAL each setting; returns the values they replace, for :func:`_restore`.

    Inside a caller's transaction ``conn.transaction()`` is a savepoint, and SET LOCAL outlives its
    release: without the restore, exact search's ``enable_indexscan = off`` would still be in force
    when the index is measured, and every index query would be exact (recall 1.0 on any graph).
    """
    names = [name.replace("__", ".") for name in settings]
    previous = conn.execute(_CURRENT_SETTINGS_SQL, (names,)).fetchone()[1]
    for name, value in zip(names, settings.values()):
        conn.execute(_SET_LOCAL_SQL, (name, str(value)))
    return dict(zip(names, previous))


def _restore(conn: psycopg.Connection, previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is not None:
            conn.execute(_SET_LOCAL_SQL, (name, value))


def exact_neighbours(
    conn: psycopg.Connection, query_vectors: np.ndarray, *, k: int = 10, filters: SearchFilters | None = None,
    chunk_rows: int = 8192,
) -> list[list[str]]:
    """Exact top-``k`` ids (by cosine distance) per query, from one pass over the matching rows.

    A brute-force ``ORDER BY`` per query reads every row once per query: 130 ms a query at 100k
    titles, 26 s for the recall check's 200. Here the rows stream once through a server-side cursor
    in ``chunk_rows`` blocks, and each block is scored against every query in one matrix product,
    keeping a running top-k, so the ground truth of a whole sweep costs about one table scan and
    memory stays at one block, whatever the table's size.
    """
    queries = np.asarray(query_vectors, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[0] == 0:
        raise ValueError(f"query_vectors must be a non-empty (n, dim) array, got shape {queries.shape}")
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    where, named = (filters or SearchFilters()).where()
    best_sim = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.empty((len(queries), 0), dtype=object)
    with conn.transaction():
        ensure_vector_types(conn)
        with conn.cursor("exact_neighbours_scan", binary=True) as cur:
            cur.itersize = chunk_rows
            cur.execute(sql.SQL("SELECT id, vector FROM {}{}").format(TABLE, where), named)
            while rows := cur.fetchmany(chunk_rows):
                ids = np.array([r[0] for r in rows], dtype=object)
                block = np.stack([np.asarray(r[1].to_numpy() if hasattr(r[1], "to_numpy") else r[1],
                                             dtype=np.float32) for r in rows])
                norms = np.linalg.norm(block, axis=1)
                norms[norms == 0] = 1.0  # a zero vector has no direction; it sorts last (similarity 0)
                sims = np.concatenate([best_sim, queries @ (block / norms[:, None]).T], axis=1)
                cand = np.concatenate([np.broadcast_to(best_ids, (len(queries), best_ids.shape[1])),
                                       np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
                keep = min(k, sims.shape[1])
                top = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
                best_sim = np.take_along_axis(sims, top, axis=1)
                best_ids = np.take_along_axis(cand, top, axis=1)
    order = np.argsort(-best_sim, axis=1, kind="stable")
    return [list(row) for row in np.take_along_axis(best_ids, order, axis=1)]


def measure_recall(
    conn: psycopg.Connection,
    query_vectors: np.ndarray,
    *,
    k: int = 10,
    ef_search_values: Sequence[int] = DEFAULT_SWEEP,
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
        with conn.transaction():
            ensure_vector_types(conn)
            table_rows, kind = conn.execute(SERVING_SQL).fetchone()[:2]
            query = hnsw_query(where, k, relaxed=relaxed, candidates=ef, kind=kind)  # as search_by_vector runs it
            previous = _set(
                conn,
                hnsw__ef_search=max(int(ef), k),
                hnsw__iterative_scan="relaxed_order" if relaxed else "off",
                hnsw__max_scan_tuples=max(20_000, int(table_rows)),
                enable_sort="off",
                enable_indexscan="on",  # the index is what is measured, whatever the caller had set
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
            _restore(conn, previous)
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


def ef_search_sweep(serving_ef: int, *, k: int = 10, base: Sequence[int] = DEFAULT_SWEEP) -> tuple[int, ...]:
    """The ef_search values to measure: ``base`` plus the serving value, none below ``k`` (HNSW
    returns at most ef_search rows, so a smaller value would measure a clamped setting twice)."""
    if not 1 <= int(k) <= 1000:
        raise ValueError(f"k={k}: must be 1..1000")
    if not 1 <= int(serving_ef) <= 1000:
        raise ValueError(f"ef_search={serving_ef}: pgvector accepts 1..1000")
    values = {int(e) for e in base if int(k) <= int(e) <= 1000} | {max(int(serving_ef), int(k))}
    return tuple(sorted(values))


@dataclass(frozen=True)
class RecallVerdict:
    level: Literal["pass", "warn", "error"]
    reason: str

    @property
    def passed(self) -> bool:
        return self.level == "pass"


def recall_verdict(
    recall: float | None,
    queries: int,
    *,
    min_recall: float,
    recall_floor: float,
    min_queries: int = 1,
) -> RecallVerdict:
    """Recall at the serving ef_search against the target (``min_recall``) and the hard floor.

    ``warn`` between the two: search still serves mostly the right titles, so it is surfaced, not
    stopped. ``error`` under the floor, or when too few queries were measured to trust the figure.
    """
    if not 0 <= recall_floor <= min_recall <= 1:
        raise ValueError(
            f"recall_floor={recall_floor}, min_recall={min_recall}: need 0 <= recall_floor <= min_recall <= 1"
        )
    if recall is None or queries < max(1, min_queries):
        return RecallVerdict("error", f"measured on {queries} queries (need {max(1, min_queries)}): no figure to trust")
    if recall < recall_floor:
        return RecallVerdict("error", f"recall {recall:.3f} is under the hard floor {recall_floor:.2f}")
    if recall < min_recall:
        return RecallVerdict(
            "warn", f"recall {recall:.3f} is under the target {min_recall:.2f} but above the floor {recall_floor:.2f}"
        )
    return RecallVerdict("pass", f"recall {recall:.3f} meets the target {min_recall:.2f}")


def recall_plot_png(
    points: Sequence[RecallPoint],
    *,
    history: Sequence[RecallMeasurement] = (),
    serving_ef: int | None = None,
    min_recall: float | None = None,
    recall_floor: float | None = None,
    table_rows: int | None = None,
    k: int = 10,
    m: int | None = None,
    ef_construction: int | None = None,
    title: str | None = None,
) -> bytes:
    """A PNG: recall@k, p50 and p99 latency against ef_search (serving value and gates marked) and,
    when ``history`` is given (oldest first), a second panel with recall at the serving ef_search
    and p99 across those measurements, index rebuilds marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if not points and not history:
        raise ValueError("nothing to plot: no recall points and no history")
    panels = (1 if points else 0) + (1 if history else 0)
    fig = Figure(figsize=(7.2, 4.2 * panels), dpi=100)
    row = 1
    if points:
        ax = fig.add_subplot(panels, 1, row)
        row += 1
        _sweep_panel(ax, points, serving_ef=serving_ef, min_recall=min_recall, recall_floor=recall_floor, k=k,
                     title=title or sweep_title(table_rows, k, m, ef_construction))
    if history:
        ax = fig.add_subplot(panels, 1, row)
        _history_panel(ax, history, min_recall=min_recall, recall_floor=recall_floor, k=k)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def sweep_title(table_rows: int | None, k: int = 10, m: int | None = None, ef_construction: int | None = None) -> str:
    """The sweep panel's title: what was measured, at which table size and build parameters."""
    parts = [f"recall@{k} and latency vs ef_search"]
    if table_rows is not None:
        parts.append(f"{table_rows:,} rows")
    if m is not None and ef_construction is not None:
        parts.append(f"m={m}, ef_construction={ef_construction}")
    return " · ".join(parts)


def _recall_limits(values: Sequence[float], *gates: float | None) -> tuple[float, float]:
    # Zoomed to the data and the gates: on a 0..1 axis a drop from 0.99 to 0.93 is invisible.
    lows = [v for v in (*values, *gates) if v is not None]
    low = max(0.0, min(lows) - 0.03) if lows else 0.0
    return (min(low, 0.9), 1.005)


def _gates(ax, min_recall: float | None, recall_floor: float | None) -> None:
    if min_recall is not None:
        ax.axhline(min_recall, color="tab:green", linestyle=":", linewidth=1.2, label=f"target {min_recall:.2f} (warn)")
    if recall_floor is not None:
        ax.axhline(recall_floor, color="tab:red", linestyle="-.", linewidth=1.2, label=f"floor {recall_floor:.2f} (error)")


def _sweep_panel(ax, points, *, serving_ef, min_recall, recall_floor, k, title) -> None:
    from matplotlib.ticker import NullFormatter

    pts = sorted(points, key=lambda p: p.ef_search)
    ef = [p.ef_search for p in pts]
    recall = [p.recall for p in pts]
    ax.plot(ef, recall, "o-", color="tab:blue", label=f"recall@{k}")
    _gates(ax, min_recall, recall_floor)
    ax.set_xlabel("hnsw.ef_search")
    ax.set_ylabel(f"recall@{k}", color="tab:blue")
    ax.set_ylim(*_recall_limits(recall, min_recall, recall_floor))
    ax.set_xscale("log")
    ax.set_xticks(ef, [str(e) for e in ef])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, alpha=0.3)
    if serving_ef is not None:
        ax.axvline(serving_ef, color="0.35", linestyle="--", linewidth=1, label=f"serving ef_search {serving_ef}")
        at = next((p for p in pts if p.ef_search == serving_ef), None)
        if at is not None:
            ax.annotate(f"{at.recall:.3f}", (at.ef_search, at.recall), textcoords="offset points", xytext=(6, -14),
                        color="tab:blue", fontsize=9)
    ax2 = ax.twinx()
    ax2.plot(ef, [p.p50_ms for p in pts], "s--", color="tab:orange", label="p50 latency")
    ax2.plot(ef, [p.p99_ms for p in pts], "^:", color="tab:purple", label="p99 latency")
    ax2.set_ylabel("latency (ms)")
    ax2.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    handles = ax.get_lines() + ax2.get_lines()
    ax.legend(handles, [str(h.get_label()) for h in handles], loc="lower right", fontsize=8)


def _history_panel(ax, history, *, min_recall, recall_floor, k) -> None:
    x = list(range(len(history)))
    recall = [h.recall for h in history]
    ax.plot(x, recall, "o-", color="tab:blue", label=f"recall@{k} at serving ef_search")
    rebuilt = [i for i, h in enumerate(history) if h.index_rebuilt]
    if rebuilt:
        ax.plot(rebuilt, [recall[i] for i in rebuilt], "D", color="black", markerfacecolor="none", markersize=9,
                label="index rebuilt")
    _gates(ax, min_recall, recall_floor)
    ax.set_ylim(*_recall_limits(recall, min_recall, recall_floor))
    ax.set_ylabel(f"recall@{k}", color="tab:blue")
    ax.grid(True, alpha=0.3)
    step = max(1, len(history) // 8)
    ax.set_xticks(x[::step], [_label(h) for h in history[::step]], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(history) - 0.5)
    ax2 = ax.twinx()
    ax2.plot(x, [h.p99_ms for h in history], "^:", color="tab:purple", label="p99 latency")
    ax2.set_ylabel("p99 latency (ms)", color="tab:purple")
    ax2.set_ylim(bottom=0)
    efs = sorted({h.ef_search for h in history})
    ef_text = f"ef_search {efs[0]}" if len(efs) == 1 else "ef_search " + "/".join(map(str, efs))
    ax.set_title(f"last {len(history)} measurements · {ef_text} · {history[-1].table_rows:,} rows now", fontsize=10)
    handles = ax.get_lines() + ax2.get_lines()
    ax.legend(handles, [str(h.get_label()) for h in handles], loc="lower left", fontsize=8)


def sweep_table_md(points: Sequence[RecallPoint], *, k: int = 10, serving_ef: int | None = None) -> str:
    """The sweep as a Markdown table; the serving row is marked."""
    head = f"| ef_search | recall@{k} | p50 ms | p99 ms | QPS | |\n|---|---|---|---|---|---|\n"
    return head + "\n".join(
        f"| {p.ef_search} | {p.recall:.3f} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.qps:.0f} "
        f"| {'serving' if p.ef_search == serving_ef else ''} |"
        for p in sorted(points, key=lambda p: p.ef_search)
    )


def write_plot(directory: str | Path, name: str, png: bytes) -> Path:
    """Write ``png`` to ``directory/name`` via a temporary file and a rename, so a reader (or a
    concurrent run) never sees half an image."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(png)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _label(measurement) -> str:
    when = measurement.measured_at
    return when.strftime("%m-%d %H:%M") if when is not None else "now"
