"""The warehouse side of personalization: load events, write simulations, vectors, served lists, evaluations.

Every statement is a constant or composed with `psycopg.sql`; values are always parameters.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from .catalogue import Catalogue, as_array
from .events import ParsedFile
from .preference import UPDATE_TYPES, Preferences
from .recommender import Recommendation, UserState, mean_rating
from .simulator import IMPRESSION_COLUMNS, Simulation

FCT = sql.Identifier("analytics", "fct_watch_events")
RAW_COLUMNS = ("event_id", "source", "user_id", "content_key", "event_type", "completion", "rating", "duration_s",
               "total_duration_s", "is_rewatch", "device", "ts", "event_date", "impression_id", "file_name",
               "file_sha256", "line_no")


@dataclass
class LoadReport:
    file_name: str
    source: str
    format: str
    sha256: str
    lines_read: int
    loaded: int
    duplicates: int  # within the file, plus events already in the warehouse
    quarantined: int
    not_in_catalogue: int
    blank_lines: int
    reasons: dict[str, int]
    min_ts: datetime | None
    max_ts: datetime | None
    already_ingested: bool
    loaded_dates: list[date] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def adds_up(self) -> bool:
        return self.lines_read == self.loaded + self.quarantined + self.duplicates

    def as_metadata(self) -> dict:
        return {"lines_read": self.lines_read, "rows_inserted": self.loaded, "duplicates": self.duplicates,
                "rows_rejected": self.quarantined, "not_in_catalogue": self.not_in_catalogue,
                "blank_lines": self.blank_lines, "already_ingested": self.already_ingested,
                "counts_add_up": self.adds_up}


def load_events(conn: psycopg.Connection, parsed: ParsedFile) -> LoadReport:
    """One transaction: events (ON CONFLICT DO NOTHING), rejects, and the file's ledger row."""
    started = time.perf_counter()
    name = parsed.path.name
    with conn.transaction():
        already = conn.execute("SELECT 1 FROM raw.event_files WHERE file_sha256 = %s",
                               (parsed.sha256,)).fetchone() is not None
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _watch_events_in (LIKE raw.watch_events INCLUDING DEFAULTS) "
                     "ON COMMIT DROP")
        columns = sql.SQL(", ").join(map(sql.Identifier, RAW_COLUMNS))
        with conn.cursor().copy(sql.SQL("COPY _watch_events_in ({}) FROM STDIN").format(columns)) as copy:
            for e in parsed.events:
                copy.write_row((e.event_id, e.source, e.user_id, e.content_key, e.event_type, e.completion, e.rating,
                                e.duration_s, e.total_duration_s, e.is_rewatch, e.device, e.ts, e.event_date,
                                e.impression_id, name, parsed.sha256, e.line_no))
        inserted = conn.execute(sql.SQL(
            "WITH ins AS (INSERT INTO raw.watch_events ({cols}) SELECT {cols} FROM _watch_events_in "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_date) "
            "SELECT event_date, count(*) FROM ins GROUP BY event_date ORDER BY event_date").format(cols=columns)
        ).fetchall()
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _rejects_in (LIKE raw.watch_event_rejects INCLUDING DEFAULTS) "
                     "ON COMMIT DROP")
        with conn.cursor().copy("COPY _rejects_in (file_sha256, line_no, file_name, source, reason, raw_line) "
                                "FROM STDIN") as copy:
            for r in parsed.rejects:
                copy.write_row((parsed.sha256, r.line_no, name, parsed.source, r.reason, r.raw_line))
        conn.execute("INSERT INTO raw.watch_event_rejects SELECT * FROM _rejects_in ON CONFLICT DO NOTHING")
        loaded = sum(n for _, n in inserted)
        report = LoadReport(
            name, parsed.source, parsed.format, parsed.sha256, parsed.lines_read, loaded,
            parsed.duplicates_in_file + (len(parsed.events) - loaded), len(parsed.rejects), parsed.not_in_catalogue,
            parsed.blank_lines, parsed.reasons(), *(parsed.time_range() or (None, None)), already,
            [d for d, _ in inserted],
        )
        conn.execute(
            "INSERT INTO raw.event_files (file_sha256, file_name, path, format, source, lines_read, loaded, "
            "quarantined, duplicates, not_in_catalogue, min_ts, max_ts) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (file_sha256) DO UPDATE SET file_name = EXCLUDED.file_name, path = EXCLUDED.path, "
            "lines_read = EXCLUDED.lines_read, loaded = EXCLUDED.loaded, quarantined = EXCLUDED.quarantined, "
            "duplicates = EXCLUDED.duplicates, not_in_catalogue = EXCLUDED.not_in_catalogue, "
            "ingest_count = raw.event_files.ingest_count + 1, last_ingested_at = now()",
            (parsed.sha256, name, str(parsed.path), parsed.format, parsed.source, report.lines_read, report.loaded,
             report.quarantined, report.duplicates, report.not_in_catalogue, report.min_ts, report.max_ts),
        )
    report.seconds = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------- simulations


def write_simulation(conn: psycopg.Connection, sim: Simulation) -> bool:
    """Store the run's impressions, outcomes and truth; False (nothing written) when the same run with the
    same data is already there, so a rerun writes nothing."""
    digest = sim.data_hash
    with conn.transaction():
        row = conn.execute("SELECT data_hash FROM learning.simulation_runs WHERE run_id = %s",
                           (sim.run_id,)).fetchone()
        if row and row[0] == digest:
            return False
        conn.execute("DELETE FROM learning.impressions WHERE run_id = %s", (sim.run_id,))
        conn.execute("DELETE FROM learning.simulation_runs WHERE run_id = %s", (sim.run_id,))
        p = sim.params
        conn.execute(
            "INSERT INTO learning.simulation_runs (run_id, seed, n_users, n_days, end_date, n_impressions, n_events, "
            "data_hash, params) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (sim.run_id, p.seed, p.n_users, p.n_days, p.end_date, len(sim.impressions), len(sim.events), digest,
             json.dumps({**sim.stats, "end_date": p.end_date.isoformat()})),
        )
        cols = sql.SQL(", ").join(map(sql.Identifier, IMPRESSION_COLUMNS))
        with conn.cursor().copy(sql.SQL("COPY learning.impressions ({}) FROM STDIN").format(cols)) as copy:
            for row in sim.impressions.itertuples(index=False):
                copy.write_row(row)
        with conn.cursor().copy("COPY learning.outcomes (impression_id, clicked, watch_completion, rating, "
                                "observed_at) FROM STDIN") as copy:
            for row in sim.outcomes.itertuples(index=False):
                copy.write_row(tuple(None if (isinstance(v, float) and np.isnan(v)) else v for v in row))
        with conn.cursor().copy("COPY learning.simulation_truth (run_id, feature, segment, true_effect, description) "
                                "FROM STDIN") as copy:
            for feature, segment, value, text in sim.truth:
                copy.write_row((sim.run_id, feature, segment, value, text))
    return True


def write_simulation_file(sim: Simulation, folder: Path) -> Path:
    """The run's events as JSONL in the landing folder (atomically: written as .part, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"simulator-{sim.run_id}.jsonl"
    data = sim.jsonl()
    if path.exists() and path.read_bytes() == data:
        return path
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- events as modelled


def fct_exists(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('analytics.fct_watch_events')").fetchone()[0] is not None


def read_events(conn: psycopg.Connection, users: list[str] | None = None, source: str | None = None) -> pd.DataFrame:
    query = sql.SQL(
        "SELECT event_id, source, user_id, content_key, event_type, completion, rating, duration_s, "
        "total_duration_s, is_rewatch, extract(epoch FROM ts)::float8 AS ts, ingested_at FROM {} WHERE true"
    ).format(FCT)
    params: list = []
    if users is not None:
        query += sql.SQL(" AND user_id = ANY(%s)")
        params.append(users)
    if source is not None:
        query += sql.SQL(" AND source = %s")
        params.append(source)
    cur = conn.execute(query, params)
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def event_sources(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(sql.SQL("SELECT DISTINCT source FROM {} ORDER BY 1").format(FCT))]


def changed_users(conn: psycopg.Connection, rule: str) -> tuple[list[str], dict[str, tuple[int, datetime]]]:
    """Users with at least one watch event whose events differ from what their stored vector was built on
    (count or latest ingest time), or whose vector was built by another rule; with (count, watermark)."""
    rows = conn.execute(sql.SQL(
        "WITH ev AS (SELECT user_id, count(*) AS n, max(ingested_at) AS w, "
        "bool_or(event_type = ANY(%s)) AS watched FROM {} GROUP BY user_id) "
        "SELECT ev.user_id, ev.n, ev.w FROM ev LEFT JOIN vectors.user_preference_vectors p USING (user_id) "
        "WHERE ev.watched AND (p.user_id IS NULL OR p.event_count <> ev.n "
        "OR p.events_watermark IS DISTINCT FROM ev.w OR p.rule <> %s) ORDER BY ev.user_id").format(FCT),
        (list(UPDATE_TYPES), rule),
    ).fetchall()
    return [r[0] for r in rows], {r[0]: (int(r[1]), r[2]) for r in rows}


def upsert_preferences(conn: psycopg.Connection, prefs: Preferences, watermarks: dict[str, tuple[int, datetime]],
                       rule: str) -> int:
    rows = []
    for i, user in enumerate(prefs.users):
        if not prefs.has_vector[i] or user not in watermarks:
            continue
        count, mark = watermarks[user]
        last = datetime.fromtimestamp(float(prefs.last_event_at[i]), tz=timezone.utc)
        rows.append((user, prefs.vectors[i].astype(np.float32), float(prefs.confidence[i]),
                     json.dumps(prefs.genre_affinities(i), sort_keys=True), count, mark, last, rule))
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO vectors.user_preference_vectors (user_id, vector, confidence, genre_affinities, "
                "event_count, events_watermark, last_event_at, rule, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT (user_id) DO UPDATE SET "
                "vector = EXCLUDED.vector, confidence = EXCLUDED.confidence, "
                "genre_affinities = EXCLUDED.genre_affinities, event_count = EXCLUDED.event_count, "
                "events_watermark = EXCLUDED.events_watermark, last_event_at = EXCLUDED.last_event_at, "
                "rule = EXCLUDED.rule, updated_at = now()",
                rows,
            )
    return len(rows)


def finished_pairs(conn: psycopg.Connection, catalogue: Catalogue) -> list[tuple[str, int]]:
    index = catalogue.index
    rows = conn.execute(sql.SQL("SELECT DISTINCT user_id, content_key FROM {} WHERE is_finished").format(FCT))
    return [(u, index[c]) for u, c in rows if c in index]


def user_state(conn: psycopg.Connection, user_id: str, catalogue: Catalogue) -> UserState:
    row = conn.execute("SELECT vector, genre_affinities FROM vectors.user_preference_vectors WHERE user_id = %s",
                       (user_id,)).fetchone()
    index = catalogue.index
    finished, ratings = set(), []
    if fct_exists(conn):
        for key, done, rating in conn.execute(
            sql.SQL("SELECT content_key, is_finished, rating FROM {} WHERE user_id = %s").format(FCT), (user_id,)
        ):
            if done and key in index:
                finished.add(index[key])
            if rating is not None:
                ratings.append(float(rating))
    vector = as_array(row[0]) if row else None
    affinities = {int(g): float(a) for g, a in (row[1] or {}).items()} if row else {}
    return UserState(user_id, vector, frozenset(finished), affinities, mean_rating(ratings))


def latest_causal_weights(conn: psycopg.Connection) -> tuple[dict[str, tuple[float, float, float]], str | None]:
    """The DML effects of segment 'all' from the newest causal run (latest serve date, then latest
    computed) as {feature: (effect, ci_low, ci_high)}; ({}, None) when there is none. Cells that were
    not estimable are left out; the recommender leaves out intervals that cross 0 (docs/causal.md)."""
    row = conn.execute(
        "SELECT run_id FROM learning.causal_weights WHERE segment = 'all' AND status = 'ok' "
        "AND method IN ('dml_plr', 'dml_irm') ORDER BY serve_date DESC NULLS LAST, computed_at DESC LIMIT 1").fetchone()
    if row is None:
        return {}, None
    rows = conn.execute("SELECT feature, effect, ci_low, ci_high FROM learning.causal_weights WHERE run_id = %s "
                        "AND segment = 'all' AND status = 'ok' AND method IN ('dml_plr', 'dml_irm') ORDER BY feature",
                        row).fetchall()
    return {f: (float(e), float(lo), float(hi)) for f, e, lo, hi in rows}, f"DML run {row[0]}"


def latest_simulation_truth(conn: psycopg.Connection) -> dict[str, float]:
    """The planted effects (segment 'all') of the newest simulation run; {} when nothing was simulated."""
    rows = conn.execute(
        "SELECT feature, true_effect FROM learning.simulation_truth WHERE segment = 'all' AND run_id = "
        "(SELECT run_id FROM learning.simulation_runs ORDER BY created_at DESC, run_id DESC LIMIT 1)").fetchall()
    return {f: float(v) for f, v in rows}


def log_impressions(conn: psycopg.Connection, rec: Recommendation, *, served_at: datetime | None = None,
                    run_id: str | None = None, source: str = "recommend", device: str | None = None) -> list[str]:
    """Every served pick as a row of learning.impressions, with its serve-time features."""
    served_at = served_at or datetime.now(timezone.utc)
    base = hashlib.sha256(f"{rec.user_id}\x1f{served_at.isoformat()}\x1f{run_id}".encode()).hexdigest()[:20]
    picks = rec.picks
    ids = [f"rec-{base}-{p.rank}" for p in picks]
    if not picks:
        return ids
    feature = [[p.features.get(name) for p in picks]
               for name in ("genre_match_score", "release_recency_score", "rating_alignment", "content_duration")]
    # the per-pick jsonb as one JSON array: a text[] of JSON would be escaped element by element in Python
    extras = json.dumps([{"score": round(p.score, 6), "fused": round(p.fused, 6), "causal": round(p.causal, 6),
                          "sources": list(p.sources), "explanation": p.explanation} for p in picks])
    # One statement of one array per column: short enough for psycopg's query cache and a prepared plan, where
    # a VALUES list of 20 × 21 placeholders was re-parsed in Python on every call (~2 ms of a 15 ms serve).
    # A single statement is atomic, so no transaction block (two more round trips) is needed around it.
    conn.execute(_IMPRESSIONS_INSERT, {
        "ids": ids, "content": [p.key for p in picks], "rank": [p.rank for p in picks],
        "genre": feature[0], "recency": feature[1], "alignment": feature[2], "duration": feature[3],
        "extras": extras, "popularity": [p.popularity for p in picks], "similarity": [p.similarity for p in picks],
        "user_id": rec.user_id, "served_at": served_at, "time_of_day": (served_at.hour + served_at.minute / 60) / 24,
        "device": device, "run_id": run_id, "source": source, "strategy": rec.strategy})
    return ids


# Per-pick values come as arrays (%b: binary, so psycopg does not quote them element by element); what is
# the same for the whole list comes once.
_IMPRESSIONS_INSERT = """
INSERT INTO learning.impressions (impression_id, user_id, content_id, rank, served_at, genre_match_score,
    platform_availability, release_recency_score, rating_alignment, time_of_day, device_type, recommendation_rank,
    content_duration, user_session_length, features, run_id, source, strategy, popularity, similarity, session_id)
SELECT p.impression_id, %(user_id)s, p.content_id, p.rank, %(served_at)s, p.genre, NULL, p.recency, p.alignment,
       %(time_of_day)s, %(device)s, p.rank, p.duration, NULL, %(extras)s::jsonb -> (p.ord::integer - 1),
       %(run_id)s, %(source)s, %(strategy)s, p.popularity, p.similarity, NULL
FROM unnest(%(ids)b::text[], %(content)b::text[], %(rank)b::integer[], %(genre)b::double precision[],
            %(recency)b::double precision[], %(alignment)b::double precision[], %(duration)b::double precision[],
            %(popularity)b::double precision[], %(similarity)b::double precision[]) WITH ORDINALITY
     AS p(impression_id, content_id, rank, genre, recency, alignment, duration, popularity, similarity, ord)
ON CONFLICT (impression_id) DO NOTHING
"""


def write_evaluations(conn: psycopg.Connection, run_id: str, rows) -> int:
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO learning.offline_evaluations (run_id, source, method, metric, k, value, n_users) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, source, method, metric, k) DO UPDATE "
                "SET value = EXCLUDED.value, n_users = EXCLUDED.n_users, computed_at = now()",
                [(run_id, r.source, r.method, r.metric, r.k, r.value, r.n_users) for r in rows],
            )
    return len(rows)
