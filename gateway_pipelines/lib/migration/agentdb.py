"""AgentDB SQLite files (AgentDB 1.6.x layout), read with the stdlib `sqlite3`, opened read-only.

Tables and where they go:

| AgentDB                                  | target                     | notes                              |
|------------------------------------------|----------------------------|------------------------------------|
| episodes + episode_embeddings            | memory.episodes            | 384-d float32 BLOB                 |
| skills + skill_embeddings                | memory.skills              | created_from_episode -> ids mapped |
| skill_links                              | memory.skill_links         | parent/child skill ids mapped      |
| reasoning_patterns + pattern_embeddings  | memory.reasoning_patterns  |                                    |
| causal_experiments                       | memory.causal_experiments  | start/end time in epoch **ms**     |
| causal_observations                      | memory.causal_observations | experiment/episode ids mapped      |
| causal_edges                             | memory.causal_edges        | episode/skill endpoints mapped     |

Conversions: `ts`, `created_at`, `updated_at`, `last_used_at`, `observed_at`, `last_validated_at`
are epoch seconds, experiment `start_time`/`end_time` epoch milliseconds; both become ISO
timestamps (timestamptz). JSON text becomes JSON (jsonb); tag and id arrays stored as JSON text
become lists (text[]). A JSON column that does not parse, or an embedding BLOB whose length is not
4 x 384 bytes, refuses the file, naming the table, the row and the fix. A table that is missing or
empty is reported in the state, not an error.

Each row becomes a `LegacyRecord` whose metadata is the converted row and whose vector is the
embedding; its source id is the AgentDB id, and `meta.legacy_id_map` maps it to the target id.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gateway_pipelines.lib.migration.records import (
    LegacyRecord,
    LegacySourceError,
    epoch_to_iso,
    json_safe,
    storable_text,
)
from gateway_pipelines.lib.migration.sources import DEFAULT_BATCH, CollectionInfo, Reject, file_digest

EMBEDDING_DIM = 384


# Per table: target, the embedding table and its key, and how each column converts.
# kinds: text, real, int, bool, json, list (JSON array -> list of str), s (epoch s), ms (epoch ms), ref
TABLES: dict[str, dict[str, Any]] = {
    "episodes": {
        "target": "memory.episodes",
        "embeddings": ("episode_embeddings", "episode_id"),
        "columns": {
            "ts": "s", "session_id": "text", "task": "text", "input": "text", "output": "text", "critique": "text",
            "reward": "real", "success": "bool", "latency_ms": "real", "tokens_used": "int", "tags": "list",
            "metadata": "json", "created_at": "s",
        },
    },
    "skills": {
        "target": "memory.skills",
        "embeddings": ("skill_embeddings", "skill_id"),
        "columns": {
            "name": "text", "description": "text", "signature": "json", "code": "text", "success_rate": "real",
            "uses": "int", "avg_reward": "real", "avg_latency_ms": "real", "created_from_episode": "ref",
            "created_at": "s", "updated_at": "s", "last_used_at": "s", "metadata": "json",
        },
    },
    "skill_links": {
        "target": "memory.skill_links",
        "columns": {"parent_skill_id": "ref", "child_skill_id": "ref", "relationship": "text", "weight": "real",
                    "metadata": "json"},
    },
    "reasoning_patterns": {
        "target": "memory.reasoning_patterns",
        "embeddings": ("pattern_embeddings", "pattern_id"),
        "columns": {"ts": "s", "task_type": "text", "approach": "text", "success_rate": "real", "uses": "int",
                    "avg_reward": "real", "tags": "list", "metadata": "json"},
    },
    "causal_experiments": {
        "target": "memory.causal_experiments",
        "columns": {
            "name": "text", "hypothesis": "text", "treatment_id": "ref", "treatment_type": "text", "control_id": "ref",
            "start_time": "ms", "end_time": "ms", "sample_size": "int", "treatment_mean": "real",
            "control_mean": "real", "uplift": "real", "p_value": "real", "confidence_interval_low": "real",
            "confidence_interval_high": "real", "status": "text", "metadata": "json", "created_at": "s",
        },
    },
    "causal_observations": {
        "target": "memory.causal_observations",
        "columns": {"experiment_id": "ref", "episode_id": "ref", "is_treatment": "bool", "outcome_value": "real",
                    "outcome_type": "text", "context": "json", "observed_at": "s"},
    },
    "causal_edges": {
        "target": "memory.causal_edges",
        "columns": {
            "from_memory_id": "ref", "from_memory_type": "text", "to_memory_id": "ref", "to_memory_type": "text",
            "similarity": "real", "uplift": "real", "confidence": "real", "sample_size": "int",
            "evidence_ids": "list", "experiment_ids": "list", "confounder_score": "real", "mechanism": "text",
            "created_at": "s", "updated_at": "s", "last_validated_at": "s", "metadata": "json",
        },
    },
}
# the order tables are promoted in: a table's references come before it
ORDER = tuple(TABLES)


class AgentDBReader:
    kind = "agentdb"

    def __init__(self, path: Path, *, batch_size: int = DEFAULT_BATCH):
        if path.is_dir():
            raise LegacySourceError(f"AgentDB source {path} is a folder: pass the SQLite file")
        self.path = path
        self.batch_size = batch_size
        self._state: dict[str, Any] = {}
        try:
            self._con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self._con.row_factory = sqlite3.Row
            names = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            problems = [r[0] for r in self._con.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            raise LegacySourceError(
                f"AgentDB file {path} is not a readable SQLite database ({exc}): it is truncated, corrupt or not "
                "an AgentDB file. Restore it from a backup or re-export it; nothing was written."
            ) from None
        if problems != ["ok"]:
            raise LegacySourceError(
                f"AgentDB file {path} is damaged: SQLite's integrity check says {'; '.join(problems)} (a truncated "
                "or partly written file). Restore it from a backup or re-export it; nothing was written."
            )
        self._names = names

    @property
    def rejects(self) -> list[Reject]:
        return []

    def fingerprint(self) -> str:
        return "sha256:" + file_digest(self.path)

    def state(self) -> dict[str, Any]:
        return self._state

    def close(self) -> None:
        self._con.close()

    def collections(self) -> list[CollectionInfo]:
        out = []
        for table in ORDER:
            spec = TABLES[table]
            if table not in self._names:
                self._state[table] = "missing"
                continue
            count = self._con.execute(f"SELECT count(*) FROM {_ident(table)}").fetchone()[0]
            self._state[table] = f"{count} rows" if count else "empty"
            if not count:
                continue
            emb = spec.get("embeddings")
            dim = EMBEDDING_DIM if emb and emb[0] in self._names else None
            if emb and emb[0] not in self._names:
                self._state[emb[0]] = "missing"
            out.append(CollectionInfo(name=table, target=spec["target"], dim=dim, space="cosine" if dim else None,
                                      source_count=int(count), state={"rows": int(count)}))
        return out

    def batches(self, info: CollectionInfo) -> Iterator[list[LegacyRecord]]:
        table = info.name
        spec = TABLES[table]
        available = _columns(self._con, table)
        emb = spec.get("embeddings") if info.dim else None
        # the SQL is built from our fixed table/column names only (TABLES), never from the file's content
        cols = [c for c in spec["columns"] if c in available]
        select = ["s.id AS __id" if "id" in available else "s.rowid AS __id", *(f"s.{_ident(c)}" for c in cols)]
        source = f"{_ident(table)} AS s"
        if emb:
            select.append("e.embedding AS __embedding")
            if "embedding_model" in _columns(self._con, emb[0]):
                select.append("e.embedding_model AS __embedding_model")
            source += f" LEFT JOIN {_ident(emb[0])} AS e ON e.{_ident(emb[1])} = s.id"
        query = f"SELECT {', '.join(select)} FROM {source} ORDER BY 1"
        cursor = self._con.execute(query)
        while True:
            try:
                rows = cursor.fetchmany(self.batch_size)
            except sqlite3.DatabaseError as exc:
                raise LegacySourceError(
                    f"AgentDB file {self.path}: reading table {table} failed ({exc}); the file is damaged. "
                    "Nothing was written."
                ) from None
            if not rows:
                return
            yield [self._record(info, spec, cols, row) for row in rows]

    def _record(self, info: CollectionInfo, spec: dict, cols: list[str], row: sqlite3.Row) -> LegacyRecord:
        sid = str(row["__id"])
        where = f"AgentDB {self.path.name} table {info.name} row id {sid}"
        payload: dict[str, Any] = {}
        for col in cols:
            payload[col] = convert(row[col], spec["columns"][col], where=f"{where} column {col}")
        keys = row.keys()
        if "__embedding_model" in keys:
            payload["embedding_model"] = row["__embedding_model"]
        vec = None
        if "__embedding" in keys and row["__embedding"] is not None:
            vec = blob_to_vector(row["__embedding"], where=f"{where} embedding", dim=info.dim or EMBEDDING_DIM)
        return LegacyRecord(info.name, sid, info.target, vec, None, payload).compute()


def blob_to_vector(blob: bytes, *, where: str, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """A Float32Array stored as a BLOB (little-endian), exactly `dim` values long."""
    if not isinstance(blob, (bytes, memoryview)):
        raise LegacySourceError(f"{where}: is {type(blob).__name__}, not a BLOB of float32 values")
    if len(blob) != 4 * dim:
        raise LegacySourceError(
            f"{where}: {len(blob)} bytes, expected {4 * dim} ({dim} float32 values); the embedding is truncated or "
            "of another model. Re-embed or delete this row in the source; nothing was written."
        )
    vec = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)
    if not np.isfinite(vec).all():
        raise LegacySourceError(f"{where}: holds NaN or infinite values")
    return vec


def convert(value: Any, kind: str, *, where: str) -> Any:
    if value is None:
        return None
    if kind == "text":
        return storable_text(value if isinstance(value, str) else str(value), where=where)
    if kind == "real":
        if isinstance(value, (int, float)):
            return json_safe(float(value), where=where)
        raise LegacySourceError(f"{where}: {value!r} is not a number")
    if kind == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise LegacySourceError(f"{where}: {value!r} is not an integer")
    if kind == "bool":
        if value in (0, 1, True, False):
            return bool(value)
        raise LegacySourceError(f"{where}: {value!r} is not a boolean (0 or 1)")
    if kind == "ref":
        return str(value)
    if kind in ("s", "ms"):
        return epoch_to_iso(value, kind, where=where)
    if kind in ("json", "list"):
        parsed = value
        if isinstance(value, (bytes, str)):
            try:
                parsed = json.loads(value)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if kind == "list" and isinstance(value, str) and not value.lstrip().startswith("["):
                    raise LegacySourceError(f"{where}: {value[:80]!r} is not a JSON array") from None
                raise LegacySourceError(
                    f"{where}: holds text that is not valid JSON ({exc}); fix the row in the source"
                ) from None
        if kind == "list":
            if not isinstance(parsed, list):
                raise LegacySourceError(f"{where}: {value!r} is not a JSON array")
            return [p if isinstance(p, str) else json.dumps(p) for p in parsed]
        return json_safe(parsed, where=where)
    raise ValueError(kind)


# --------------------------------------------------------------------------- an AgentDB-shaped file

# The tables above as AgentDB 1.6.x creates them (its schema.sql, plus the two tables its
# ReasoningBank controller creates at run time), written for this project's samples and tests.
AGENTDB_DDL = """
CREATE TABLE episodes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL DEFAULT (strftime('%s','now')),
  session_id TEXT NOT NULL, task TEXT NOT NULL,
  input TEXT, output TEXT, critique TEXT,
  reward REAL DEFAULT 0.0, success BOOLEAN DEFAULT 0,
  latency_ms INTEGER, tokens_used INTEGER,
  tags TEXT, metadata JSON,
  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')));
CREATE INDEX idx_episodes_ts ON episodes(ts DESC);
CREATE TABLE episode_embeddings (
  episode_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL,
  embedding_model TEXT DEFAULT 'all-MiniLM-L6-v2',
  FOREIGN KEY(episode_id) REFERENCES episodes(id) ON DELETE CASCADE);
CREATE TABLE skills (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, description TEXT,
  signature JSON NOT NULL, code TEXT,
  success_rate REAL DEFAULT 0.0, uses INTEGER DEFAULT 0, avg_reward REAL DEFAULT 0.0, avg_latency_ms INTEGER DEFAULT 0,
  created_from_episode INTEGER,
  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
  updated_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
  last_used_at INTEGER, metadata JSON,
  FOREIGN KEY(created_from_episode) REFERENCES episodes(id));
CREATE TABLE skill_links (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  parent_skill_id INTEGER NOT NULL, child_skill_id INTEGER NOT NULL,
  relationship TEXT NOT NULL, weight REAL DEFAULT 1.0, metadata JSON,
  FOREIGN KEY(parent_skill_id) REFERENCES skills(id) ON DELETE CASCADE,
  FOREIGN KEY(child_skill_id) REFERENCES skills(id) ON DELETE CASCADE,
  UNIQUE(parent_skill_id, child_skill_id, relationship));
CREATE TABLE skill_embeddings (
  skill_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL, embedding_model TEXT DEFAULT 'all-MiniLM-L6-v2',
  FOREIGN KEY(skill_id) REFERENCES skills(id) ON DELETE CASCADE);
CREATE TABLE reasoning_patterns (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER DEFAULT (strftime('%s','now')),
  task_type TEXT NOT NULL, approach TEXT NOT NULL,
  success_rate REAL NOT NULL DEFAULT 0.0, uses INTEGER DEFAULT 0, avg_reward REAL DEFAULT 0.0,
  tags TEXT, metadata TEXT);
CREATE TABLE pattern_embeddings (
  pattern_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL,
  FOREIGN KEY (pattern_id) REFERENCES reasoning_patterns(id) ON DELETE CASCADE);
CREATE TABLE causal_edges (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  from_memory_id INTEGER NOT NULL, from_memory_type TEXT NOT NULL,
  to_memory_id INTEGER NOT NULL, to_memory_type TEXT NOT NULL,
  similarity REAL NOT NULL DEFAULT 0.0, uplift REAL, confidence REAL DEFAULT 0.5, sample_size INTEGER,
  evidence_ids TEXT, experiment_ids TEXT, confounder_score REAL, mechanism TEXT,
  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
  updated_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
  last_validated_at INTEGER, metadata JSON);
CREATE TABLE causal_experiments (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, hypothesis TEXT NOT NULL,
  treatment_id INTEGER NOT NULL, treatment_type TEXT NOT NULL, control_id INTEGER,
  start_time INTEGER NOT NULL, end_time INTEGER, sample_size INTEGER DEFAULT 0,
  treatment_mean REAL, control_mean REAL, uplift REAL, p_value REAL,
  confidence_interval_low REAL, confidence_interval_high REAL,
  status TEXT DEFAULT 'running', metadata JSON,
  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')));
CREATE TABLE causal_observations (
  id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id INTEGER NOT NULL, episode_id INTEGER NOT NULL,
  is_treatment BOOLEAN NOT NULL, outcome_value REAL NOT NULL, outcome_type TEXT, context JSON,
  observed_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
  FOREIGN KEY(experiment_id) REFERENCES causal_experiments(id) ON DELETE CASCADE,
  FOREIGN KEY(episode_id) REFERENCES episodes(id) ON DELETE CASCADE);
"""


def vector_blob(vec: np.ndarray) -> bytes:
    """A vector as AgentDB stores it: `Buffer.from(new Float32Array(v).buffer)`, little-endian."""
    return np.asarray(vec, dtype="<f4").tobytes()


def write_agentdb(path: str | Path, *, episodes: int = 200, skills: int = 12, patterns: int = 20, seed: int = 0,
                  start_id: int = 1) -> Path:
    """Write (or extend) an AgentDB-shaped SQLite file with deterministic rows in every migrated table.

    `start_id` > 1 appends rows after the ones already there (a source that grew).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    rng = np.random.default_rng(seed + start_id)
    con = sqlite3.connect(path)
    try:
        if fresh:
            con.executescript(AGENTDB_DDL)
        base_ts = 1_760_000_000
        tasks = ["summarise the plot", "find similar titles", "rank by mood", "explain a recommendation"]
        ep_ids = []
        for i in range(start_id, start_id + episodes):
            con.execute(
                "INSERT INTO episodes (id, ts, session_id, task, input, output, critique, reward, success, latency_ms, "
                "tokens_used, tags, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (i, base_ts + i * 37, f"session-{i % 7}", tasks[i % len(tasks)], f"input {i}", f"output {i} — ok",
                 f"critique {i}" if i % 3 else None, float(rng.random()), int(rng.random() > 0.4),
                 int(rng.integers(5, 900)), int(rng.integers(10, 4000)),
                 json.dumps(["demo", f"t{i % 5}"]), json.dumps({"agent": "planner", "step": i}), base_ts + i * 37 + 1),
            )
            if i % 10 != 0:  # some episodes were never embedded
                con.execute("INSERT INTO episode_embeddings (episode_id, embedding) VALUES (?, ?)",
                            (i, vector_blob(rng.standard_normal(EMBEDDING_DIM))))
            ep_ids.append(i)
        if start_id == 1:
            for s in range(1, skills + 1):
                con.execute(
                    "INSERT INTO skills (id, name, description, signature, code, success_rate, uses, avg_reward, "
                    "avg_latency_ms, created_from_episode, created_at, updated_at, last_used_at, metadata) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (s, f"skill {s}: {tasks[s % len(tasks)]}", f"learned from episodes ({s})",
                     json.dumps({"inputs": {"task": "string"}, "outputs": {"result": "any"}}), None,
                     float(rng.random()), int(rng.integers(0, 50)), float(rng.random()), int(rng.integers(1, 500)),
                     ep_ids[s % len(ep_ids)], base_ts + s, base_ts + s * 2, base_ts + s * 3 if s % 2 else None,
                     json.dumps({"autoGenerated": True, "consolidatedAt": (base_ts + s) * 1000})),
                )
                con.execute("INSERT INTO skill_embeddings (skill_id, embedding) VALUES (?, ?)",
                            (s, vector_blob(rng.standard_normal(EMBEDDING_DIM))))
            for s in range(1, skills):
                con.execute("INSERT INTO skill_links (parent_skill_id, child_skill_id, relationship, weight, metadata) "
                            "VALUES (?,?,?,?,?)", (s, s + 1, "prerequisite", 0.5 + s / 100, None))
            for p in range(1, patterns + 1):
                con.execute(
                    "INSERT INTO reasoning_patterns (id, ts, task_type, approach, success_rate, uses, avg_reward, tags, "
                    "metadata) VALUES (?,?,?,?,?,?,?,?,?)",
                    (p, base_ts + p * 11, tasks[p % len(tasks)], f"approach {p}", float(rng.random()),
                     int(rng.integers(0, 30)), float(rng.random()), json.dumps(["pattern"]), json.dumps({"p": p})),
                )
                con.execute("INSERT INTO pattern_embeddings (pattern_id, embedding) VALUES (?, ?)",
                            (p, vector_blob(rng.standard_normal(EMBEDDING_DIM))))
            con.execute(
                "INSERT INTO causal_experiments (id, name, hypothesis, treatment_id, treatment_type, control_id, "
                "start_time, end_time, sample_size, treatment_mean, control_mean, uplift, status, metadata, created_at) "
                "VALUES (1, 'mood ranking', 'mood-aware ranking lifts reward', 3, 'skill', NULL, ?, ?, 4, 0.7, 0.5, "
                "0.2, 'completed', '{}', ?)",
                (base_ts * 1000 + 123, base_ts * 1000 + 86_400_456, base_ts),
            )
            for o in range(1, 5):
                con.execute(
                    "INSERT INTO causal_observations (experiment_id, episode_id, is_treatment, outcome_value, "
                    "outcome_type, context, observed_at) VALUES (1, ?, ?, ?, 'reward', ?, ?)",
                    (ep_ids[o], o % 2, 0.25 * o, json.dumps({"o": o}), base_ts + o),
                )
            for e in range(1, 6):
                con.execute(
                    "INSERT INTO causal_edges (from_memory_id, from_memory_type, to_memory_id, to_memory_type, "
                    "similarity, uplift, confidence, sample_size, evidence_ids, mechanism, created_at, updated_at) "
                    "VALUES (?, 'episode', ?, 'skill', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ep_ids[e], e, 0.1 * e, 0.05 * e, 0.6, 10 + e, json.dumps([f"ev{e}"]), "shared context",
                     base_ts + e, base_ts + e),
                )
        con.commit()
    finally:
        con.close()
    return path


def corrupt_embedding(path: str | Path, episode_id: int, n_bytes: int) -> None:
    """Test and demo helper: cut one episode's embedding BLOB to `n_bytes`."""
    con = sqlite3.connect(path)
    try:
        blob = con.execute("SELECT embedding FROM episode_embeddings WHERE episode_id = ?", (episode_id,)).fetchone()[0]
        con.execute("UPDATE episode_embeddings SET embedding = ? WHERE episode_id = ?", (blob[:n_bytes], episode_id))
        con.commit()
    finally:
        con.close()


def _ident(name: str) -> str:
    """A SQLite identifier, quoted. Only the names declared in TABLES reach here (SQLite cannot bind
    identifiers as parameters), and the quoting makes even an odd name inert."""
    return '"' + name.replace('"', '""') + '"'


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [row[0] for row in con.execute("SELECT name FROM pragma_table_info(?)", (table,))]
