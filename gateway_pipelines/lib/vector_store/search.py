"""Nearest-neighbour search over `vectors.content_vectors` (cosine distance, HNSW).

Strategies (the one that produced the rows is reported in ``SearchResult.strategy``):

``hnsw``
    No WHERE clause: ``ORDER BY vector <=> q LIMIT k`` on the HNSW index with ``hnsw.ef_search``
    (raised to ``k`` if smaller, since HNSW returns at most ef_search rows).
``hnsw_iterative``
    Filters (or excluded ids) that many rows pass: the same ordered index scan with
    ``hnsw.iterative_scan = relaxed_order``, so the scan keeps going until ``k`` rows pass the
    filter (up to ``hnsw.max_scan_tuples``, set to the table size). Relaxed order means the rows come
    back only roughly sorted, so the scan is materialised in a CTE and re-sorted by distance.
    ``enable_sort = off`` (local) makes the planner take the ordered HNSW scan rather than a
    filter-index scan plus sort.
``exact``
    A brute-force scan of the matching rows, sorted by true distance (the ``ORDER BY`` sits behind an
    ``OFFSET 0`` fence, so the HNSW index cannot serve it; filter indexes still can). Used when
    the filter is selective (a capped count finds fewer matching rows than the threshold, where
    brute force is both exact and cheap) and as the fallback whenever an index scan returns fewer
    than ``k`` rows. So a search never returns fewer than ``min(k, rows that match)`` rows.

Each search is one transaction (``SET LOCAL`` needs one) that also writes one row to
`vectors.vector_search_logs` (query vector, text, filters as jsonb plus ``_search`` = k /
ef_search / strategy, result ids, type, latency). On an idle connection it commits on return, with
``synchronous_commit = off`` for that transaction only: a search log row is telemetry and must not
cost a WAL flush per search. Inside a caller's transaction it is a savepoint, the caller commits,
and its commit settings are left alone.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import psycopg
from psycopg import sql

from .index import ensure_vector_types

__all__ = [
    "SearchFilters",
    "SearchHit",
    "SearchResult",
    "auto_exact_threshold",
    "search_by_text",
    "search_by_vector",
    "similar",
]

TABLE = sql.Identifier("vectors", "content_vectors")
# what a search changes with SET LOCAL
_SETTINGS = ("hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples", "enable_sort", "synchronous_commit")
_COLUMNS = sql.SQL("id, title, media_type, year, vote_average, genre_ids")
MEDIA_TYPES = ("movie", "tv")


@dataclass(frozen=True)
class SearchFilters:
    media_type: str | None = None
    genre_ids: tuple[int, ...] = ()  # a title matches if it has ANY of them
    year_min: int | None = None
    year_max: int | None = None
    min_rating: float | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        if self.media_type is not None and self.media_type not in MEDIA_TYPES:
            raise ValueError(f"media_type={self.media_type!r}: must be one of {MEDIA_TYPES}")
        object.__setattr__(self, "genre_ids", tuple(int(g) for g in self.genre_ids))
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError(f"year_min={self.year_min} is after year_max={self.year_max}")
        if self.min_rating is not None and not math.isfinite(float(self.min_rating)):
            raise ValueError(f"min_rating={self.min_rating!r} must be a finite number")

    @property
    def empty(self) -> bool:
        return self == SearchFilters()

    def as_json(self) -> dict[str, Any]:
        """The filters that are set (what the search log stores)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None or value == ():
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def where(self, exclude_ids: Sequence[str] = ()) -> tuple[sql.Composable, dict[str, Any]]:
        """The WHERE clause, composed from fixed fragments, and its named parameters (``%(f_...)s``)."""
        parts: list[sql.Composable] = []
        params: dict[str, Any] = {}

        def add(fragment: str, name: str, value: Any) -> None:
            parts.append(sql.SQL(fragment).format(sql.Placeholder(name)))
            params[name] = value

        if self.media_type is not None:
            add("media_type = {}", "f_media_type", self.media_type)
        if self.genre_ids:
            add("genre_ids && {}::integer[]", "f_genre_ids", list(self.genre_ids))
        if self.year_min is not None:
            add("year >= {}", "f_year_min", int(self.year_min))
        if self.year_max is not None:
            add("year <= {}", "f_year_max", int(self.year_max))
        if self.min_rating is not None:
            add("vote_average >= {}", "f_min_rating", float(self.min_rating))
        if self.language is not None:
            add("original_language = {}", "f_language", self.language)
        if exclude_ids:
            add("NOT (id = ANY({}::text[]))", "f_exclude_ids", list(exclude_ids))
        if not parts:
            return sql.SQL(""), {}
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params


@dataclass(frozen=True)
class SearchHit:
    id: str
    title: str
    media_type: str
    year: int | None
    vote_average: float | None
    genre_ids: list[int]
    distance: float
    similarity: float  # 1 - cosine distance


@dataclass
class SearchResult:
    hits: list[SearchHit]
    strategy: str  # 'hnsw' | 'hnsw_iterative' | 'exact'
    latency_ms: float
    ef_search: int

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]


# --------------------------------------------------------------------------- SQL


def auto_exact_threshold(k: int, table_rows: float) -> int:
    """Matching-row count below which brute force beats a filtered HNSW scan.

    A filtered HNSW scan visits about k / selectivity tuples; brute force computes one distance per
    matching row (selectivity x N). They cost the same near selectivity = sqrt(k / N), i.e. at
    sqrt(k N) matching rows; the factor 2 leans towards exact (which also has perfect recall).
    3,000 rows, k=10: 346. 100,000 rows, k=10: 2,000.
    """
    return max(10 * k, int(2 * math.sqrt(k * max(table_rows, 0.0))))


# k is a validated int spliced in as a literal, not a parameter: psycopg prepares a query after 5
# runs, and a generic plan with an unknown LIMIT prefers a full scan + sort over the index.


def hnsw_query(where: sql.Composable, k: int, *, relaxed: bool, candidates: int | None = None) -> sql.Composed:
    """With `relaxed`, the index scan collects `candidates` rows that pass the filter (ef_search by
    default), and the k nearest of those are returned: stopping at the first k passing rows of a
    roughly-ordered scan costs recall (0.88 at 5% selectivity on 100k in bench/vector)."""
    fetch = max(int(k), int(candidates or k)) if relaxed else int(k)
    inner = sql.SQL(
        "SELECT {cols}, vector <=> %(q)s AS distance FROM {table}{where} ORDER BY distance LIMIT {fetch}"
    ).format(cols=_COLUMNS, table=TABLE, where=where, fetch=sql.Literal(fetch))
    if not relaxed:
        return inner
    # relaxed_order returns rows only roughly sorted: materialise, then really sort ("+ 0" so the
    # planner cannot reuse the CTE's presumed order, which it would since Postgres 17)
    return sql.SQL(
        "WITH scan AS MATERIALIZED ({inner}) SELECT * FROM scan ORDER BY distance + 0, id LIMIT {k}"
    ).format(inner=inner, k=sql.Literal(int(k)))


def exact_query(where: sql.Composable, k: int) -> sql.Composed:
    # OFFSET 0 keeps the subquery from being flattened, so ORDER BY cannot be served by the HNSW index
    return sql.SQL(
        "SELECT * FROM (SELECT {cols}, vector <=> %(q)s AS distance FROM {table}{where} OFFSET 0) s "
        "ORDER BY distance, id LIMIT {k}"
    ).format(cols=_COLUMNS, table=TABLE, where=where, k=sql.Literal(int(k)))


def _set_local(conn: psycopg.Connection, **settings: Any) -> None:
    names = list(settings)
    conn.execute(
        sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(sql.SQL("set_config(%s, %s, true)") for _ in names)
        ),
        [v for name in names for v in (name.replace("__", "."), str(settings[name]))],
    )


def _run(conn: psycopg.Connection, query: sql.Composable, params: dict[str, Any]) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def _hits(rows: list[tuple]) -> list[SearchHit]:
    return [
        SearchHit(
            id=r[0],
            title=r[1],
            media_type=r[2],
            year=r[3],
            vote_average=r[4],
            genre_ids=list(r[5] or []),
            distance=float(r[6]),
            similarity=1.0 - float(r[6]),
        )
        for r in rows
    ]


def _vector(vector: Any) -> np.ndarray:
    v = vector.to_numpy() if hasattr(vector, "to_numpy") else np.asarray(vector, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if v.ndim != 1 or v.shape[0] != 768:
        raise ValueError(f"query vector must have shape (768,), got {v.shape}")
    if not np.all(np.isfinite(v)) or not np.any(v):
        raise ValueError("query vector must be finite and non-zero (cosine distance is undefined for zero)")
    return v


def search_by_vector(
    conn: psycopg.Connection,
    vector: Any,
    *,
    k: int = 10,
    filters: SearchFilters = SearchFilters(),
    ef_search: int = 100,
    exclude_ids: Sequence[str] = (),
    log: bool = True,
    search_type: str = "vector",
    query_text: str | None = None,
    user_id: str | None = None,
    exact_threshold: int | None = None,
) -> SearchResult:
    """The ``k`` nearest titles to ``vector`` that pass ``filters`` (see the module docstring).

    ``exact_threshold``: matching-row count under which the search is brute force
    (default :func:`auto_exact_threshold`).
    """
    if not 1 <= int(k) <= 1000:
        raise ValueError(f"k={k}: must be 1..1000")
    if not 1 <= int(ef_search) <= 1000:
        raise ValueError(f"ef_search={ef_search}: pgvector accepts 1..1000")
    q = _vector(vector)
    k = int(k)
    ef = max(int(ef_search), k)
    where, named = filters.where(tuple(exclude_ids))
    args: dict[str, Any] = {"q": q, **named}

    relaxed = not filters.empty or bool(exclude_ids)
    # the search log is telemetry: when the search owns its transaction, its commit need not wait
    # for a WAL flush (never changed inside a caller's transaction, whose commit it would affect)
    owns_transaction = conn.autocommit or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    started = time.perf_counter()
    with conn.transaction():
        ensure_vector_types(conn)
        previous = None
        if not owns_transaction:  # SET LOCAL outlives a savepoint: put the caller's values back at the end
            # the vector literal is parsed first, which loads pgvector and so defines its hnsw.* settings
            previous = dict(zip(_SETTINGS, conn.execute(
                sql.SQL("SELECT {}, '[0]'::vector").format(sql.SQL(", ").join(
                    sql.SQL("current_setting({}, true)").format(sql.Literal(n)) for n in _SETTINGS
                ))
            ).fetchone()))
        # one round trip for the table size and every setting the index strategies need
        table_rows = conn.execute(
            "SELECT greatest(reltuples, 0)::bigint, set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.iterative_scan', %s, true), "
            "set_config('hnsw.max_scan_tuples', greatest(20000, reltuples)::bigint::text, true), "
            "set_config('enable_sort', 'off', true), "
            "set_config('synchronous_commit', CASE WHEN %s THEN 'off' ELSE current_setting('synchronous_commit') END, "
            "true) FROM pg_class WHERE oid = 'vectors.content_vectors'::regclass",
            (str(ef), "relaxed_order" if relaxed else "off", owns_transaction),
        ).fetchone()[0]
        strategy = "hnsw_iterative" if relaxed else "hnsw"
        rows: list[tuple] | None = None
        if not filters.empty:
            threshold = exact_threshold if exact_threshold is not None else auto_exact_threshold(k, table_rows)
            matching = conn.execute(
                sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {table}{where} LIMIT {limit}) s").format(
                    table=TABLE, where=where, limit=sql.Literal(int(threshold))
                ),
                named,
            ).fetchone()[0]
            if matching < threshold:
                strategy = "exact"
        if strategy != "exact":
            rows = _run(conn, hnsw_query(where, k, relaxed=relaxed, candidates=ef), args)
            if len(rows) < k:
                rows = None  # the index scan came up short: the exact scan below says how many really match
                strategy = "exact"
        if rows is None:
            _set_local(conn, enable_sort="on")
            rows = _run(conn, exact_query(where, k), args)
        latency_ms = (time.perf_counter() - started) * 1000.0
        hits = _hits(rows)
        if log:
            logged_filters = filters.as_json()
            if exclude_ids:
                logged_filters["exclude_ids"] = list(exclude_ids)
            logged_filters["_search"] = {"k": k, "ef_search": ef, "strategy": strategy}
            conn.execute(
                "INSERT INTO vectors.vector_search_logs (query_vector, query_text, filters, result_ids, user_id, "
                "search_type, latency_ms) VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s)",
                (q, query_text, json.dumps(logged_filters), [h.id for h in hits], user_id, search_type, latency_ms),
            )
        if previous:
            known = {n: v for n, v in previous.items() if v is not None}  # None: pgvector was not loaded yet
            conn.execute(
                sql.SQL("SELECT {}").format(sql.SQL(", ").join(
                    sql.SQL("set_config({}, %s, true)").format(sql.Literal(n)) for n in known
                )),
                list(known.values()),
            )
    return SearchResult(hits=hits, strategy=strategy, latency_ms=latency_ms, ef_search=ef)


def search_by_text(
    conn: psycopg.Connection,
    text: str,
    provider: Any,
    *,
    k: int = 10,
    filters: SearchFilters = SearchFilters(),
    weights: Any = None,
    ef_search: int = 100,
    mood: dict[str, float] | None = None,
    **kw: Any,
) -> SearchResult:
    """Embed ``text`` (plus the filters as intent: genres, year, rating, media type, language) with the
    hybrid query builder and search with it. ``kw`` goes to :func:`search_by_vector`."""
    from gateway_pipelines.lib.embeddings.hybrid import BlockWeights, QueryIntent, build_query_vector

    year = None
    if filters.year_min is not None and filters.year_max is not None:
        year = (filters.year_min + filters.year_max) // 2
    elif filters.year_min is not None or filters.year_max is not None:
        year = filters.year_min if filters.year_min is not None else filters.year_max
    intent = QueryIntent(
        text=text,
        genre_ids=filters.genre_ids,
        mood=mood,
        year=year,
        min_rating=filters.min_rating,
        media_type=filters.media_type,
        language=filters.language,
    )
    vector = build_query_vector(intent, provider, weights if weights is not None else BlockWeights())
    kw.setdefault("search_type", "text")
    kw.setdefault("query_text", text)
    return search_by_vector(conn, vector, k=k, filters=filters, ef_search=ef_search, **kw)


def similar(
    conn: psycopg.Connection,
    content_key: str,
    *,
    k: int = 10,
    filters: SearchFilters = SearchFilters(),
    ef_search: int = 100,
    **kw: Any,
) -> SearchResult:
    """Titles nearest to ``content_key`` ('movie-603'), never the title itself."""
    with conn.transaction():
        row = conn.execute("SELECT vector FROM vectors.content_vectors WHERE id = %s", (content_key,)).fetchone()
    if row is None:
        raise KeyError(
            f"no content vector for {content_key!r} in vectors.content_vectors: keys look like 'movie-603' or "
            "'tv-1399', and a title is there only after its embedding was synced"
        )
    kw.setdefault("search_type", "similar")
    kw.setdefault("query_text", content_key)
    return search_by_vector(
        conn, row[0], k=k, filters=filters, ef_search=ef_search, exclude_ids=(content_key,), **kw
    )
