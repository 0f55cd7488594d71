"""What serving a recommendation keeps in process between calls, and when it reads it again.

Reading the model (the catalogue with its 768-d vectors, the co-finish counts, popularity, causal
weights) costs seconds at 100k titles; recommending from it costs milliseconds. So a process that
serves more than one list keeps the model, one per database, and before every call checks with a
query of catalog lookups only (no table scan; it also reads the user's state, so it is the same
round trip) that the warehouse still holds what the model was built from. The model is rebuilt when
any part of this *version* differs:

* `vectors.content_vectors`: its relation (a shadow build swaps in a new one), the serving
  generation, and the table's write counters (`pg_stat_get_tuples_inserted/updated/deleted`: an
  incremental sync rewrites rows in place). Postgres publishes a session's counters when its
  transaction has ended, at most once a second, so an in-place sync is seen within about a second;
* `analytics.fct_watch_events`: its relation (dbt rebuilds the table, a new relation, on every run),
  which is what the co-finish counts are read from;
* the newest causal-weights run id.

The user's own state (preference vector, finished titles, ratings) is read on every call: it is
what changes most, and reading it is one index lookup.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .catalogue import Catalogue, as_array, load_catalogue
from .recommender import RecommenderConfig, RecommenderModel, UserState, mean_rating

FCT = sql.Identifier("analytics", "fct_watch_events")
# every part of the version is a catalog lookup or a LIMIT 1 on the small causal-weights table; the
# statistics snapshot is cleared first, else a caller's open transaction would keep reading old counters
# (the volatile call also keeps that subquery from being flattened, so it runs before the counters)
_VERSION = (
    "(SELECT to_regclass('vectors.content_vectors')::oid), "
    "(SELECT pg_stat_get_tuples_inserted(c) + pg_stat_get_tuples_updated(c) + pg_stat_get_tuples_deleted(c) "
    " FROM (SELECT to_regclass('vectors.content_vectors')::oid AS c, pg_stat_clear_snapshot()) t), "
    "(SELECT generation FROM meta.vector_serving WHERE table_name = 'vectors.content_vectors'), "
    "(SELECT to_regclass('analytics.fct_watch_events')::oid), "
    "(SELECT run_id FROM learning.causal_weights WHERE segment = 'all' AND status = 'ok' "
    " AND method IN ('dml_plr', 'dml_irm') ORDER BY serve_date DESC NULLS LAST, computed_at DESC LIMIT 1)"
)
# the version and the user's state in one statement (typed columns: joins, not row values)
STATE_SQL = ("SELECT " + _VERSION + ", p.vector, p.genre_affinities FROM (SELECT 1) one "
             "LEFT JOIN vectors.user_preference_vectors p ON p.user_id = %(u)s")
_USER_FACTS = sql.SQL(
    "SELECT array_agg(content_key) FILTER (WHERE is_finished), array_agg(rating) FILTER (WHERE rating IS NOT NULL) "
    "FROM {} WHERE user_id = %(u)s").format(FCT).as_string(None)
STATE_WITH_EVENTS_SQL = ("SELECT " + _VERSION + ", p.vector, p.genre_affinities, f.* FROM (SELECT 1) one "
                         "LEFT JOIN vectors.user_preference_vectors p ON p.user_id = %(u)s "
                         "LEFT JOIN LATERAL (" + _USER_FACTS + ") f ON true")
MAX_MODELS = 2  # databases whose model one process keeps (tests open many; a server has one)


@dataclass
class Served:
    version: tuple
    catalogue: Catalogue
    model: RecommenderModel
    weights: dict
    build_s: float
    built_at: float


class ModelCache:
    """The served model per database, rebuilt when the warehouse's version of it changes."""

    def __init__(self, max_models: int = MAX_MODELS):
        self.max_models = max_models
        self._models: OrderedDict[tuple, Served] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0

    @staticmethod
    def _key(conn: psycopg.Connection) -> tuple:
        info = conn.info
        return info.host, info.port, info.dbname

    def forget(self) -> None:
        with self._lock:
            self._models.clear()

    def serve(self, conn: psycopg.Connection, user_id: str, config: RecommenderConfig
              ) -> tuple[Served, UserState, bool]:
        """(the model for ``config``, the user's state, whether the model was (re)built by this call)."""
        key = self._key(conn)
        with self._lock:
            served = self._models.get(key)
        events = served is not None and served.version[3] is not None
        # binary: the 768 floats of the vector are read as bytes, not parsed from text (~0.3 ms a call)
        row = conn.execute(STATE_WITH_EVENTS_SQL if events else STATE_SQL, {"u": user_id}, binary=True).fetchone()
        version = tuple(row[:5])
        prefs = (row[5], row[6]) if row[5] is not None else None
        facts = (row[7], row[8]) if events else None
        built = False
        if served is None or served.version != version:
            served = self._build(conn, version)
            with self._lock:
                self._models[key] = served
                self._models.move_to_end(key)
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            built = True
            if version[3] is not None and not events:  # the events table appeared: read the user's facts
                facts = conn.execute(_USER_FACTS, {"u": user_id}).fetchone()
        state = _user_state(user_id, served.catalogue, prefs, facts if version[3] is not None else None)
        model = served.model if served.model.config == config else served.model.with_config(config)
        return Served(served.version, served.catalogue, model, served.weights, served.build_s, served.built_at), \
            state, built

    def _build(self, conn: psycopg.Connection, version: tuple) -> Served:
        from .store import finished_pairs, latest_causal_weights

        started = time.perf_counter()
        catalogue = load_catalogue(conn, binary=True)
        if not len(catalogue):
            raise LookupError("the catalogue is empty: run `gateway run` first")
        pairs = finished_pairs(conn, catalogue) if version[3] is not None else []
        weights, _ = latest_causal_weights(conn)
        model = RecommenderModel(catalogue, pairs, causal_weights=weights)
        self.builds += 1
        return Served(version, catalogue, model, weights, time.perf_counter() - started, time.time())


def _user_state(user_id: str, catalogue: Catalogue, prefs, facts) -> UserState:
    """The user's state from the row parts STATE_SQL reads (as `store.user_state` builds it)."""
    vector, affinities = (as_array(prefs[0]), prefs[1] or {}) if prefs is not None else (None, {})
    finished, ratings = set(), []
    if facts is not None:
        index = catalogue.index
        finished = {index[key] for key in (facts[0] or ()) if key in index}
        ratings = [float(r) for r in (facts[1] or ()) if r is not None]
    return UserState(user_id, vector, frozenset(finished), {int(g): float(a) for g, a in affinities.items()},
                     mean_rating(ratings))


MODELS = ModelCache()
