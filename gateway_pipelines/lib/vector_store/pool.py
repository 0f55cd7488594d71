"""Search at the speed of the index: a connection pool configured for search, and batched logging.

:class:`SearchPool` keeps a few connections (psycopg_pool) that were set up once, when opened:

* autocommit, so a search is no ``BEGIN``/``COMMIT`` round trips;
* ``prepare_threshold = 0``: every statement is a server-side prepared statement from its first
  run (parse and plan once per connection, not per search);
* the session settings a search needs (``enable_sort = off`` so the planner takes the ordered HNSW
  scan, ``jit = off`` so a brute-force scan never pays for compiling, ``synchronous_commit = off``
  for the log rows), set once; ``hnsw.ef_search`` and ``hnsw.iterative_scan`` are changed only
  when a search asks for other values than the connection has (:meth:`SearchSession.want`);
* what the table serves (index kind, model, size) cached for ``SERVING_TTL_S``, and read again at
  once when a search finds rows of another model than cached (a swap).

So an unfiltered search is one round trip: the prepared index query. Its log row goes to a
:class:`SearchLogWriter`, which writes rows in batches with one binary ``COPY`` from a thread of
its own, so searches never wait for a log insert. A failed batch is kept and retried; rows are only
dropped, and counted, when more than ``max_pending`` wait (the database has been unreachable long).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import psycopg

from .index import ensure_vector_types

__all__ = ["ESTIMATE_TTL_S", "SERVING_TTL_S", "SearchLogWriter", "SearchPool", "SearchSession", "session_of"]

log = logging.getLogger(__name__)

SERVING_TTL_S = 1.0
ESTIMATE_TTL_S = 60.0
_SESSION_SETTINGS = {"enable_sort": "off", "jit": "off", "synchronous_commit": "off"}
_SESSIONS: "weakref.WeakKeyDictionary[psycopg.Connection, SearchSession]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Serving:
    rows: int
    index_kind: str
    embedding_model: str | None
    generation: int
    partial_genres: tuple[int, ...] = ()  # genres with a partial HNSW index of their own


class SearchSession:
    """Per-connection state of a pooled search connection: the session settings it has, and what
    the served table was when last read."""

    def __init__(self) -> None:
        self.settings: dict[str, str] = {}
        self._serving: Serving | None = None
        self._read_at = 0.0
        self._estimates: dict[tuple, tuple[float, int | None, float]] = {}

    def want(self, conn: psycopg.Connection, settings: dict[str, str]) -> None:
        changed = {n: v for n, v in settings.items() if self.settings.get(n) != v}
        if changed:
            _set_session(conn, changed)
            self.settings.update(changed)

    def serving(self, conn: psycopg.Connection) -> Serving:
        now = time.monotonic()
        if self._serving is None or now - self._read_at > SERVING_TTL_S:
            from .search import SERVING_SQL

            rows, kind, model, generation, partial = conn.execute(SERVING_SQL).fetchone()
            if self._serving is None or self._serving.rows != rows:
                # the iterative scan may visit up to the whole table before giving up
                self.want(conn, {"hnsw.max_scan_tuples": str(max(20_000, int(rows)))})
            self._serving = Serving(int(rows), kind, model, int(generation), tuple(partial))
            self._read_at = now
        return self._serving

    def forget_serving(self) -> None:
        self._serving = None

    def estimate(self, conn: psycopg.Connection, where: str, named: dict[str, Any]) -> float:
        """The planner's row estimate for a filter, kept per filter for ``ESTIMATE_TTL_S`` and while the
        same table generation is served: popular filters repeat, and the estimate is a round trip that
        only decides between two plans (a stale one costs speed, never results)."""
        from .search import estimated_rows

        key = (where, tuple(sorted((n, tuple(v) if isinstance(v, list) else v) for n, v in named.items())))
        generation = self._serving.generation if self._serving is not None else None
        now = time.monotonic()
        hit = self._estimates.get(key)
        if hit is not None and hit[1] == generation and now - hit[2] < ESTIMATE_TTL_S:
            return hit[0]
        value = estimated_rows(conn, where, named)
        if len(self._estimates) >= 512:
            self._estimates.clear()
        self._estimates[key] = (value, generation, now)
        return value


def _set_session(conn: psycopg.Connection, settings: dict[str, str]) -> None:
    names = list(settings)
    conn.execute(
        "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in names),
        [v for n in names for v in (n, settings[n])],
    )


def session_of(conn: psycopg.Connection) -> SearchSession | None:
    """The search session of a :class:`SearchPool` connection, None for any other connection."""
    return _SESSIONS.get(conn)


def configure_search_connection(conn: psycopg.Connection) -> None:
    """What :class:`SearchPool` does to each new connection (also usable on a dedicated one)."""
    conn.autocommit = True
    conn.prepare_threshold = 0
    # the vector literal loads pgvector, which defines the hnsw.* settings set below
    conn.execute("SELECT '[1]'::vector")
    ensure_vector_types(conn)
    session = SearchSession()
    session.want(conn, dict(_SESSION_SETTINGS))
    _SESSIONS[conn] = session


class SearchLogWriter:
    """Writes search log rows to `vectors.vector_search_logs` in batches, from a thread of its own.

    ``connection`` is a context manager factory giving a connection (a pool's ``connection``).
    Rows are flushed when ``flush_rows`` are waiting or ``flush_s`` has passed, whichever is first.
    """

    COLUMNS = ("query_vector", "query_text", "filters", "result_ids", "user_id", "search_type", "latency_ms",
               "timestamp")

    def __init__(self, connection, *, flush_rows: int = 256, flush_s: float = 0.2, max_pending: int = 100_000):
        self._connection = connection
        self.flush_rows = int(flush_rows)
        self.flush_s = float(flush_s)
        self.max_pending = int(max_pending)
        self._pending: deque[tuple] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self.written = 0
        self.dropped = 0
        self.failed_flushes = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="search-log-writer", daemon=True)
        self._thread.start()

    def add(self, row: tuple) -> None:
        """Queue one row (as search builds it); stamped now, so batching does not move its time."""
        with self._cond:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append((*row, datetime.now(timezone.utc)))
            if len(self._pending) >= self.flush_rows:
                self._cond.notify()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._stop and len(self._pending) < self.flush_rows:
                    self._cond.wait(self.flush_s)
                if self._stop and not self._pending:
                    return
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), 10 * self.flush_rows))]
                self._busy = bool(batch)
            if batch:
                self._write(batch)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                if self._stop and self.failed_flushes and self.last_error and self._pending:
                    return  # closing and the database refuses: do not spin

    def _write(self, batch: list[tuple]) -> None:
        try:
            with self._connection() as conn:
                from .loader import _vector_dumper

                with conn.cursor() as cur:
                    cur.adapters.register_dumper(np.ndarray, _vector_dumper(conn))
                    with cur.copy(
                        "COPY vectors.vector_search_logs (query_vector, query_text, filters, result_ids, user_id, "
                        "search_type, latency_ms, \"timestamp\") FROM STDIN (FORMAT BINARY)"
                    ) as copy:
                        copy.set_types(["vector", "text", "jsonb", "text[]", "text", "text", "float8", "timestamptz"])
                        for row in batch:
                            copy.write_row(row)
                if not conn.autocommit:
                    conn.commit()
            self.written += len(batch)
        except Exception as exc:  # noqa: BLE001 - telemetry must never break search: keep and retry
            self.failed_flushes += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("search log batch of %d rows not written (kept for retry): %s", len(batch), self.last_error)
            with self._cond:
                room = self.max_pending - len(self._pending)
                keep = batch[-room:] if room > 0 else []
                self.dropped += len(batch) - len(keep)
                self._pending.extendleft(reversed(keep))
            time.sleep(min(self.flush_s, 0.5))

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued so far; True when nothing is left waiting."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
            while (self._pending or self._busy) and time.monotonic() < deadline:
                self._cond.notify()
                self._cond.wait(0.05)
            return not self._pending and not self._busy

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)


class SearchPool:
    """Pooled, pre-configured search connections and a batched log writer (module docstring).

    ``search``/``search_text``/``similar`` take the same arguments as the functions in :mod:`.search`.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4, log: bool = True,
                 flush_rows: int = 256, flush_s: float = 0.2, timeout: float = 10.0):
        from psycopg_pool import ConnectionPool

        from gateway_pipelines.lib.warehouse import plain_url

        self.pool = ConnectionPool(plain_url(url), min_size=min_size, max_size=max_size,
                                   configure=configure_search_connection, timeout=timeout, open=True,
                                   name="search")
        self.logs = SearchLogWriter(self.pool.connection, flush_rows=flush_rows, flush_s=flush_s) if log else None

    def search(self, vector: Any, **kw: Any):
        from .search import search_by_vector

        wanted = kw.pop("log", True)
        log = self.logs is not None and wanted
        with self.pool.connection() as conn:
            return search_by_vector(conn, vector, log_sink=self.logs, log=log, **kw)

    def search_text(self, text: str, provider: Any, **kw: Any):
        from .search import search_by_text

        wanted = kw.pop("log", True)
        log = self.logs is not None and wanted
        with self.pool.connection() as conn:
            return search_by_text(conn, text, provider, log_sink=self.logs, log=log, **kw)

    def similar(self, content_key: str, **kw: Any):
        from .search import similar

        wanted = kw.pop("log", True)
        log = self.logs is not None and wanted
        with self.pool.connection() as conn:
            return similar(conn, content_key, log_sink=self.logs, log=log, **kw)

    def close(self) -> None:
        if self.logs is not None:
            self.logs.close()
        self.pool.close()

    def __enter__(self) -> "SearchPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
