"""Nearest-neighbour search over `vectors.content_vectors` (cosine distance, HNSW).

Strategies (the one that produced the rows is reported in ``SearchResult.strategy``):

``hnsw``
    No WHERE clause: ``ORDER BY vector <=> q LIMIT k`` on the HNSW index with ``hnsw.ef_search``
    (raised to ``k`` if smaller, since HNSW returns at most ef_search rows).
``hnsw_iterative``
    Filters (or excluded ids) that many rows pass: the same ordered index scan (on a genre's partial
    HNSW index when the filter is that one genre and it has one, see :mod:`.shadow`) with
    ``hnsw.iterative_scan = relaxed_order``, so the scan keeps going until ``k`` rows pass the
    filter (up to ``hnsw.max_scan_tuples``, set to the table size). Relaxed order means the rows come
    back only roughly sorted, so the scan is materialised in a CTE and re-sorted by distance.
    ``enable_sort = off`` (local) makes the planner take the ordered HNSW scan rather than a
    filter-index scan plus sort.
``exact``
    A brute-force scan of the matching rows, sorted by true distance (the ``ORDER BY`` sits behind an
    ``OFFSET 0`` fence, so the HNSW index cannot serve it; filter indexes still can). Used when
    the filter is selective (the planner's estimate of the matching rows, :func:`estimated_rows`, is
    under the threshold, where brute force is both exact and cheap) and as the fallback whenever an index scan returns fewer
    than ``k`` rows. So a search never returns fewer than ``min(k, rows that match)`` rows.

Index kinds (`meta.vector_serving.index_kind`, see :mod:`.index`): the ordered scan runs on the
expression the served index was built on (``vector``, ``vector::halfvec(768)`` or
``binary_quantize(vector)::bit(768)``); halfvec and bit candidates are re-ranked by the exact
distance, bit ones from ``ef_search`` candidates.

Model versions: every hit carries the ``embedding_model`` of its row, and the served table holds one
model (`loader.sync_content_vectors`). With ``model=`` a search raises :class:`ModelMismatchError`
when the rows it found are of another model (a swap happened since the query was embedded):
:func:`search_by_text` then embeds the query again with the served model and retries, so a query
and the vectors it is compared with are always of one model.

Two ways to run: on any connection (below), or on a connection of a :class:`.pool.SearchPool`,
which is configured once (session settings, prepared statements, pgvector types): a search there is
one round trip for an unfiltered query, and its log row goes to a background writer in batches.

On any other connection each search is one transaction (``SET LOCAL`` needs one) that also writes one row to
`vectors.vector_search_logs` (query vector, text, filters as jsonb plus ``_search`` = k /
ef_search / strategy, result ids, type, latency). On an idle connection it commits on return, with
``synchronous_commit = off`` for that transaction only: a search log row is telemetry and must not
cost a WAL flush per search. Inside a caller's transaction it is a savepoint, the caller commits,
and its commit settings are left alone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import psycopg
from psycopg import sql

from .index import INDEX_KINDS, ensure_vector_types

__all__ = [
    "ModelMismatchError",
    "SearchFilters",
    "SearchHit",
    "SearchResult",
    "auto_exact_threshold",
    "nearest_ids",
    "search_by_text",
    "search_by_vector",
    "served_model",
    "similar",
]

TABLE = sql.Identifier("vectors", "content_vectors")
# what a search changes with SET LOCAL
_SETTINGS = ("hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples", "enable_sort", "synchronous_commit",
             "jit")
_COLUMNS = sql.SQL("id, title, media_type, year, vote_average, genre_ids, embedding_model")
# the ordered scan per index kind: the same expression as the index (index.index_expression)
_ORDER_BY = {
    "vector": sql.SQL("distance"),
    "halfvec": sql.SQL("vector::halfvec(768) <=> %(q)s::halfvec(768)"),
    "bit": sql.SQL("binary_quantize(vector)::bit(768) <~> binary_quantize(%(q)s::vector)"),
}
SERVING_SQL = (
    "SELECT greatest(c.reltuples, 0)::bigint, coalesce(s.index_kind, 'vector'), s.embedding_model, "
    "coalesce(s.generation, 0), coalesce(s.partial_genres, '{}') FROM pg_class c LEFT JOIN meta.vector_serving s "
    "ON s.table_name = 'vectors.content_vectors' WHERE c.oid = 'vectors.content_vectors'::regclass"
)


class ModelMismatchError(RuntimeError):
    """The served vectors are of another embedding model than the query's."""

    def __init__(self, query_model: str, served_model: str | None):
        self.query_model = query_model
        self.served_model = served_model
        super().__init__(
            f"the query was embedded with {query_model} but vectors.content_vectors serves {served_model}: "
            "embed the query with the served model"
        )
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
        for key in _FILTER_FIELDS:  # not asdict(): it deep-copies, 10 us of every logged search
            value = getattr(self, key)
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

    def where_text(self, exclude_ids: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
        """:meth:`where` as text (its fragments are fixed; only the parameters carry input), so the
        statements built on it can be cached by their text instead of composed on every search."""
        where, params = self.where(exclude_ids)
        return _where_text(tuple(params)), params


_FILTER_FIELDS = tuple(f.name for f in fields(SearchFilters))


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
    embedding_model: str | None = None  # of the row's vector


@dataclass
class SearchResult:
    hits: list[SearchHit]
    strategy: str  # 'hnsw' | 'hnsw_iterative' | 'exact'
    latency_ms: float
    ef_search: int
    index_kind: str = "vector"
    embedding_model: str | None = None  # of the vectors searched (the query must be of it too)

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]


# --------------------------------------------------------------------------- SQL


@functools.lru_cache(maxsize=64)
def _where_text(names: tuple[str, ...]) -> str:
    fragments = {
        "f_media_type": "media_type = %(f_media_type)s",
        "f_genre_ids": _GENRE_FRAGMENT,
        "f_year_min": "year >= %(f_year_min)s",
        "f_year_max": "year <= %(f_year_max)s",
        "f_min_rating": "vote_average >= %(f_min_rating)s",
        "f_language": "original_language = %(f_language)s",
        "f_exclude_ids": "NOT (id = ANY(%(f_exclude_ids)s::text[]))",
    }
    return (" WHERE " + " AND ".join(fragments[n] for n in names)) if names else ""


@functools.lru_cache(maxsize=512)
def _statement(shape: str, where: str, k: int, n: int, kind: str, relaxed: bool) -> str:
    """The text of a search statement, composed once per shape: composing costs more than the query
    itself on a small index, and the same text lets psycopg reuse its prepared statement."""
    where_sql = sql.SQL(where)
    if shape == "hnsw":
        return hnsw_query(where_sql, k, relaxed=relaxed, candidates=n, kind=kind).as_string(None)
    if shape == "exact":
        return exact_query(where_sql, k).as_string(None)
    return sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {table}{where}").format(
        table=TABLE, where=where_sql).as_string(None)


_GENRE_FRAGMENT = "genre_ids && %(f_genre_ids)s::integer[]"


def _partial_where(where: str, genre: int) -> str:
    """The filter on one genre with the genre as a literal, the form the partial index's predicate has:
    a parameter would hide it from a generic (prepared) plan, which could then not use that index."""
    return where.replace(_GENRE_FRAGMENT, "genre_ids && '{%d}'::integer[]" % int(genre))


def estimated_rows(conn: psycopg.Connection, where: str, named: dict[str, Any]) -> float:
    """How many rows pass the filter, by the planner's statistics (EXPLAIN, nothing executed).

    Postgres keeps per-element frequencies for array columns (``genre_ids``) and histograms for the
    rest, so its estimate is within a few percent for the filters search builds, in 0.4 ms; counting
    the matching rows (even capped at the threshold) reads their heap pages: 5 ms at 5% of 100k titles
    and 12 ms at 20%, on every filtered search. A wrong estimate costs speed, never results: an index
    scan that comes back short falls back to the exact scan."""
    plan = conn.execute(_statement("estimate", where, 0, 0, "vector", False), named).fetchone()[0]
    return float(plan[0]["Plan"]["Plan Rows"])


def relaxed_candidates(k: int, ef: int, *, estimated: float | None, table_rows: float, partial: bool) -> int:
    """Rows a relaxed-order filtered scan collects before the k nearest are taken.

    The scan yields the next ef_search nearest titles at each step, in roughly sorted order, and the
    filter drops those that fail. Where most of a step passes (a partial index of the filter's genre,
    where every row passes, or a filter that keeps a tenth of the titles or more), 2k rows re-sorted
    hold the true k: bench/vector at 100k, 20% selectivity, ef_search 40: recall 1.0, p50 3.6 ms,
    against 14.7 ms collecting 100. A rarer filter needs ef_search rows for its recall (0.92 with 2k at
    5%, 0.997 with 100)."""
    if partial or (estimated is not None and table_rows and estimated >= 0.1 * table_rows):
        return max(int(k), min(int(ef), 2 * int(k)))
    return int(ef)


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


def hnsw_query(where: sql.Composable, k: int, *, relaxed: bool, candidates: int | None = None,
               kind: str = "vector") -> sql.Composed:
    """With `relaxed`, the index scan collects `candidates` rows that pass the filter (ef_search by
    default), and the k nearest of those are returned: stopping at the first k passing rows of a
    roughly-ordered scan costs recall (0.88 at 5% selectivity on 100k in bench/vector). A ``bit``
    index always collects `candidates` (its Hamming order is coarse) and re-ranks them by the exact
    distance; ``halfvec`` re-ranks its k."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind {kind!r}: must be one of {INDEX_KINDS}")
    fetch = max(int(k), int(candidates or k)) if (relaxed or kind == "bit") else int(k)
    inner = sql.SQL(
        "SELECT {cols}, vector <=> %(q)s AS distance FROM {table}{where} ORDER BY {order} LIMIT {fetch}"
    ).format(cols=_COLUMNS, table=TABLE, where=where, order=_ORDER_BY[kind], fetch=sql.Literal(fetch))
    if not relaxed and kind == "vector":
        return inner
    # relaxed_order returns rows only roughly sorted, and quantised orders are approximate:
    # materialise, then sort by the exact distance ("+ 0" so the planner cannot reuse the CTE's
    # presumed order, which it would since Postgres 17)
    return sql.SQL(
        "WITH scan AS MATERIALIZED ({inner}) SELECT * FROM scan ORDER BY distance + 0, id LIMIT {k}"
    ).format(inner=inner, k=sql.Literal(int(k)))


def exact_query(where: sql.Composable, k: int) -> sql.Composed:
    # OFFSET 0 keeps the subquery from being flattened, so ORDER BY cannot be served by the HNSW index
    return sql.SQL(
        "SELECT * FROM (SELECT {cols}, vector <=> %(q)s AS distance FROM {table}{where} OFFSET 0) s "
        "ORDER BY distance, id LIMIT {k}"
    ).format(cols=_COLUMNS, table=TABLE, where=where, k=sql.Literal(int(k)))


def _callers_settings(conn: psycopg.Connection) -> dict[str, str | None]:
    """The caller's values of what a search sets with SET LOCAL, which outlives a savepoint; the vector
    literal is parsed first, which loads pgvector and so defines its hnsw.* settings."""
    return dict(zip(_SETTINGS, conn.execute(
        sql.SQL("SELECT {}, '[0]'::vector").format(sql.SQL(", ").join(
            sql.SQL("current_setting({}, true)").format(sql.Literal(n)) for n in _SETTINGS))).fetchone()))


def _restore_settings(conn: psycopg.Connection, previous: dict[str, str | None]) -> None:
    known = {n: v for n, v in previous.items() if v is not None}  # None: pgvector was not loaded yet
    if known:
        conn.execute(sql.SQL("SELECT {}").format(sql.SQL(", ").join(
            sql.SQL("set_config({}, %s, true)").format(sql.Literal(n)) for n in known)), list(known.values()))


@contextlib.contextmanager
def _local_search(conn: psycopg.Connection, *, ef: int, relaxed: bool):
    """A search in its own transaction, or in a savepoint of the caller's: every setting the strategies
    need is set locally in one round trip that also reads the table's size and what it serves (yielded:
    rows, index kind, embedding model, genres with a partial index), and a caller's own values are put back at the end, since SET LOCAL
    outlives a savepoint. The search log is telemetry: when the search owns its transaction, its commit
    need not wait for a WAL flush (never changed inside a caller's transaction, whose commit it would
    affect)."""
    owns_transaction = conn.autocommit or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        ensure_vector_types(conn)
        previous = None if owns_transaction else _callers_settings(conn)
        yield conn.execute(
            "SELECT greatest(c.reltuples, 0)::bigint, coalesce(s.index_kind, 'vector'), s.embedding_model, "
            "coalesce(s.partial_genres, '{}'), "
            "set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.iterative_scan', %s, true), "
            "set_config('hnsw.max_scan_tuples', greatest(20000, c.reltuples)::bigint::text, true), "
            "set_config('enable_sort', 'off', true), set_config('jit', 'off', true), "
            "set_config('synchronous_commit', CASE WHEN %s THEN 'off' ELSE current_setting('synchronous_commit') END, "
            "true) FROM pg_class c LEFT JOIN meta.vector_serving s ON s.table_name = 'vectors.content_vectors' "
            "WHERE c.oid = 'vectors.content_vectors'::regclass",
            (str(ef), "relaxed_order" if relaxed else "off", owns_transaction),
        ).fetchone()[:4]
        if previous:
            _restore_settings(conn, previous)


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
            distance=float(r[7]),
            similarity=1.0 - float(r[7]),
            embedding_model=r[6],
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


def _check_model(hits: list[SearchHit], model: str | None, served: str | None) -> str | None:
    """The model of the rows found (all of one model); raises when it is not the query's."""
    found = {h.embedding_model for h in hits}
    if len(found) > 1:  # the sync never serves two models; if it ever did, no answer is right
        raise ModelMismatchError(model or "?", ", ".join(sorted(str(f) for f in found)))
    got = next(iter(found)) if found else served
    if model is not None and got is not None and got != model:
        raise ModelMismatchError(model, got)
    return got


def _log_row(q: np.ndarray, query_text, filters: SearchFilters, exclude_ids, k: int, ef: int, strategy: str,
             hits: list[SearchHit], user_id, search_type: str, latency_ms: float) -> tuple:
    logged_filters = filters.as_json()
    if exclude_ids:
        logged_filters["exclude_ids"] = list(exclude_ids)
    logged_filters["_search"] = {"k": k, "ef_search": ef, "strategy": strategy}
    return (q, query_text, logged_filters, [h.id for h in hits], user_id, search_type, latency_ms)


_LOG_INSERT = (
    "INSERT INTO vectors.vector_search_logs (query_vector, query_text, filters, result_ids, user_id, "
    "search_type, latency_ms) VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s)"
)


def _validate(k: int, ef_search: int, vector: Any) -> tuple[int, int, np.ndarray]:
    if not 1 <= int(k) <= 1000:
        raise ValueError(f"k={k}: must be 1..1000")
    if not 1 <= int(ef_search) <= 1000:
        raise ValueError(f"ef_search={ef_search}: pgvector accepts 1..1000")
    return int(k), max(int(ef_search), int(k)), _vector(vector)


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
    model: str | None = None,
    log_sink: Any = None,
) -> SearchResult:
    """The ``k`` nearest titles to ``vector`` that pass ``filters`` (see the module docstring).

    ``exact_threshold``: matching-row count under which the search is brute force
    (default :func:`auto_exact_threshold`). ``model``: the embedding model ``vector`` was made with;
    when given, rows of another model raise :class:`ModelMismatchError` instead of being returned.
    ``log_sink``: something with ``add(row)`` (a :class:`.pool.SearchLogWriter`) that writes the log
    row later, in a batch; without it the row is written in the search's transaction.
    """
    from .pool import session_of

    k, ef, q = _validate(k, ef_search, vector)
    where, named = filters.where_text(tuple(exclude_ids))
    args: dict[str, Any] = {"q": q, **named}
    relaxed = not filters.empty or bool(exclude_ids)
    session = session_of(conn)
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if session is not None and idle and conn.autocommit:
        return _search_tuned(conn, session, q, k=k, ef=ef, filters=filters, where=where, named=named, args=args,
                             relaxed=relaxed, exclude_ids=exclude_ids, log=log, log_sink=log_sink,
                             search_type=search_type, query_text=query_text, user_id=user_id,
                             exact_threshold=exact_threshold, model=model)
    started = time.perf_counter()
    with _local_search(conn, ef=ef, relaxed=relaxed) as (table_rows, kind, served_model, partial_genres):
        strategy, rows = _strategies(conn, k=k, ef=ef, filters=filters, where=where, named=named, args=args,
                                     relaxed=relaxed, kind=kind, table_rows=table_rows,
                                     exact_threshold=exact_threshold, set_sort=True, partial_genres=partial_genres)
        latency_ms = (time.perf_counter() - started) * 1000.0
        hits = _hits(rows)
        found_model = _check_model(hits, model, served_model)
        if log:
            row = _log_row(q, query_text, filters, exclude_ids, k, ef, strategy, hits, user_id, search_type, latency_ms)
            if log_sink is not None:
                log_sink.add(row)
            else:
                conn.execute(_LOG_INSERT, (*row[:2], json.dumps(row[2]), *row[3:]))
    return SearchResult(hits=hits, strategy=strategy, latency_ms=latency_ms, ef_search=ef, index_kind=kind,
                        embedding_model=found_model)


def _strategies(conn: psycopg.Connection, *, k: int, ef: int, filters: SearchFilters, where: str,
                named: dict[str, Any], args: dict[str, Any], relaxed: bool, kind: str, table_rows: float,
                exact_threshold: int | None, set_sort: bool, partial_genres: Sequence[int] = (),
                session: Any = None) -> tuple[str, list[tuple]]:
    strategy = "hnsw_iterative" if relaxed else "hnsw"
    rows: list[tuple] | None = None
    candidates = ef
    if not filters.empty:
        threshold = exact_threshold if exact_threshold is not None else auto_exact_threshold(k, table_rows)
        estimated = session.estimate(conn, where, named) if session is not None else estimated_rows(conn, where, named)
        if estimated < threshold:
            strategy = "exact"
        # a genre with a partial HNSW index of its own (built with the table, see .shadow): the planner
        # scans that graph, where every row passes
        partial = (len(filters.genre_ids) == 1 and filters.genre_ids[0] in partial_genres
                   and filters == SearchFilters(genre_ids=filters.genre_ids))
        candidates = relaxed_candidates(k, ef, estimated=estimated, table_rows=table_rows, partial=partial)
        if partial:
            where = _partial_where(where, filters.genre_ids[0])
            # every row of that graph passes, so its first ef_search rows hold the k nearest: no
            # iterative continuation (p99 5.1 ms against 7.4-11.8 with it, at 5% of 100k titles)
            if session is not None:
                session.want(conn, {"hnsw.iterative_scan": "off"})
            else:
                _set_local(conn, hnsw__iterative_scan="off")
    if strategy != "exact":
        rows = conn.execute(_statement("hnsw", where, k, candidates, kind, relaxed), args).fetchall()
        if len(rows) < k:
            rows = None  # the index scan came up short: the exact scan below says how many really match
            strategy = "exact"
    if rows is None:
        if set_sort:
            _set_local(conn, enable_sort="on")
        rows = conn.execute(_statement("exact", where, k, 0, kind, relaxed), args).fetchall()
    return strategy, rows


def _search_tuned(conn: psycopg.Connection, session: Any, q: np.ndarray, *, k: int, ef: int, filters: SearchFilters,
                  where: str, named: dict[str, Any], args: dict[str, Any], relaxed: bool,
                  exclude_ids: Sequence[str], log: bool, log_sink: Any, search_type: str, query_text: str | None,
                  user_id: str | None, exact_threshold: int | None, model: str | None) -> SearchResult:
    """A search on a :class:`.pool.SearchPool` connection: autocommit, session settings already
    in place (changed only when this search needs other values), statements prepared on first use,
    what the table serves cached for a second. An unfiltered search is one round trip."""
    started = time.perf_counter()
    serving = session.serving(conn)
    session.want(conn, {"hnsw.ef_search": str(ef), "hnsw.iterative_scan": "relaxed_order" if relaxed else "off"})
    strategy, rows = _strategies(conn, k=k, ef=ef, filters=filters, where=where, named=named, args=args,
                                 relaxed=relaxed, kind=serving.index_kind, table_rows=serving.rows,
                                 exact_threshold=exact_threshold, set_sort=False, partial_genres=serving.partial_genres,
                                 session=session)
    latency_ms = (time.perf_counter() - started) * 1000.0
    hits = _hits(rows)
    try:
        found_model = _check_model(hits, model, serving.embedding_model)
    except ModelMismatchError:
        session.forget_serving()  # a swap: read what is served now before the next search
        raise
    if found_model != serving.embedding_model:
        session.forget_serving()
    if log:
        row = _log_row(q, query_text, filters, exclude_ids, k, ef, strategy, hits, user_id, search_type, latency_ms)
        if log_sink is not None:
            log_sink.add(row)
        else:
            conn.execute(_LOG_INSERT, (*row[:2], json.dumps(row[2]), *row[3:]))
    return SearchResult(hits=hits, strategy=strategy, latency_ms=latency_ms, ef_search=ef,
                        index_kind=serving.index_kind, embedding_model=found_model)


def nearest_ids(conn: psycopg.Connection, vector: Any, *, k: int, ef_search: int = 100,
                exclude_ids: Sequence[str] = ()) -> list[str]:
    """The ids of about the ``k`` nearest titles to ``vector`` by the served HNSW index, in the index's
    (approximate) order, without the rows: for a caller that holds the vectors and ranks the candidates
    exactly itself (the recommender). No filters other than ``exclude_ids``, no log.

    :func:`search_by_vector` computes each hit's exact distance in the database, which reads the row's
    768 floats out of TOAST: 2 of the 5 ms of a 100-candidate search at 100k titles. A ``bit`` index
    gives ``ef_search`` ids (its Hamming order is coarse), for the caller to re-rank. When the index scan
    comes up short, the exact scan gives the ids, as in :func:`search_by_vector`."""
    from .pool import session_of

    k, ef, q = _validate(k, ef_search, vector)
    where, named = SearchFilters().where_text(tuple(exclude_ids))
    args: dict[str, Any] = {"q": q, **named}
    relaxed = bool(exclude_ids)
    session = session_of(conn)
    if session is not None and conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        serving = session.serving(conn)
        session.want(conn, {"hnsw.ef_search": str(ef), "hnsw.iterative_scan": "relaxed_order" if relaxed else "off"})
        return _nearest_ids(conn, serving.index_kind, where, k, ef, args, set_sort=False)
    with _local_search(conn, ef=ef, relaxed=relaxed) as (_, kind, _, _):
        return _nearest_ids(conn, kind, where, k, ef, args, set_sort=True)


def _nearest_ids(conn: psycopg.Connection, kind: str, where: str, k: int, ef: int, args: dict[str, Any], *,
                 set_sort: bool) -> list[str]:
    fetch = max(k, ef) if kind == "bit" else k
    ids = [r[0] for r in conn.execute(_ids_statement(kind, where, fetch), args)]
    if len(ids) < fetch:  # the iterative scan gave up (or the table is small): the exact scan decides
        if set_sort:
            _set_local(conn, enable_sort="on")
        ids = [r[0] for r in conn.execute(_statement("exact", where, k, 0, kind, False), args)]
    return ids


@functools.lru_cache(maxsize=64)
def _ids_statement(kind: str, where: str, fetch: int) -> str:
    order = sql.SQL("vector <=> %(q)s") if kind == "vector" else _ORDER_BY[kind]
    return sql.SQL("SELECT id FROM {table}{where} ORDER BY {order} LIMIT {fetch}").format(
        table=TABLE, where=sql.SQL(where), order=order, fetch=sql.Literal(int(fetch))).as_string(None)


def served_model(conn: psycopg.Connection) -> str | None:
    """The embedding model of the vectors search serves (`meta.vector_serving`)."""
    with conn.transaction():
        row = conn.execute(SERVING_SQL).fetchone()
    return row[2] if row else None


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
    provider_for: Any = None,
    **kw: Any,
) -> SearchResult:
    """Embed ``text`` (plus the filters as intent: genres, year, rating, media type, language) with the
    hybrid query builder and search with it. ``kw`` goes to :func:`search_by_vector`.

    The query is embedded with the model the table serves: ``provider`` when it is that model, else
    ``provider_for(model_id)`` (e.g. :func:`.models.query_provider`: the local model's earlier
    version, during a model change that is not swapped in yet). Without ``provider_for`` a
    mismatch raises :class:`ModelMismatchError`. If the table is swapped between embedding and
    searching, the query is embedded again with the new model and searched once more.
    """
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
    kw.setdefault("search_type", "text")
    kw.setdefault("query_text", text)
    served = served_model(conn)
    for attempt in range(2):
        chosen = provider
        if served is not None and getattr(provider, "model_id", served) != served:
            if provider_for is None:
                raise ModelMismatchError(provider.model_id, served)
            chosen = provider_for(served)
        vector = build_query_vector(intent, chosen, weights if weights is not None else BlockWeights())
        try:
            return search_by_vector(conn, vector, k=k, filters=filters, ef_search=ef_search,
                                    model=getattr(chosen, "model_id", None), **kw)
        except ModelMismatchError as exc:
            if attempt == 1 or exc.served_model is None:
                raise
            served = exc.served_model  # swapped meanwhile: embed again with what is served now
    raise AssertionError("unreachable")


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
        row = conn.execute("SELECT vector, embedding_model FROM vectors.content_vectors WHERE id = %s",
                           (content_key,)).fetchone()
    if row is None:
        raise KeyError(
            f"no content vector for {content_key!r} in vectors.content_vectors: keys look like 'movie-603' or "
            "'tv-1399', and a title is there only after its embedding was synced"
        )
    kw.setdefault("search_type", "similar")
    kw.setdefault("query_text", content_key)
    kw.setdefault("model", row[1])  # the title's vector is the query: compared only with vectors of its model
    return search_by_vector(
        conn, row[0], k=k, filters=filters, ef_search=ef_search, exclude_ids=(content_key,), **kw
    )
