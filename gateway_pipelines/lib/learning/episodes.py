"""Episodes in: generated sets (with their ground truth) and AgentDB-shaped JSONL files.

Every episode has a natural key, ``memory.episodes.source_key``: ``gen:<set>:<session>:<position>``
for generated ones, ``jsonl:<sha256 of the canonical record>`` for file lines. Loads insert with
``ON CONFLICT (source_key) DO NOTHING``, so reloading a file or regenerating a set changes nothing
(the rows count as duplicates). A JSONL line that cannot be an episode is quarantined in
``memory.episode_rejects`` with its line number and reason; per file,
``lines_read = loaded + quarantined + duplicates`` (a CHECK on ``memory.episode_files``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from gateway_pipelines.lib.learning.generator import GeneratedSet

__all__ = ["FileLoad", "insert_episodes", "load_jsonl", "parse_jsonl", "scan_episode_landing", "store_generated"]

COLUMNS = ("source_key", "session_id", "task", "input", "output", "critique", "reward", "success", "latency_ms",
           "tokens_used", "tags", "metadata", "ts")
MAX_RAW = 2000
INT4_MAX = 2**31 - 1  # memory.episodes.tokens_used is an integer column
MAX_DEPTH = 64  # metadata nested deeper is refused; no AgentDB record nests past a few levels


def insert_episodes(conn: psycopg.Connection, frame: pd.DataFrame) -> tuple[int, int]:
    """Insert rows (COLUMNS) not yet present by source_key; returns (inserted, duplicates). No commit."""
    if frame.empty:
        return 0, 0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS episodes_stage (source_key text, session_id text, task text, "
                 "input text, output text, critique text, reward double precision, success boolean, "
                 "latency_ms double precision, tokens_used integer, tags text[], metadata jsonb, ts timestamptz) "
                 "ON COMMIT DROP")
    conn.execute("TRUNCATE episodes_stage")
    with conn.cursor() as cur:
        with cur.copy("COPY episodes_stage (source_key, session_id, task, input, output, critique, reward, success, "
                      "latency_ms, tokens_used, tags, metadata, ts) FROM STDIN") as copy:
            for row in frame.loc[:, list(COLUMNS)].itertuples(index=False):
                r = list(row)
                # a column with a missing value is float in pandas: 900 would reach the integer column
                # as "900.0", and a missing latency as NaN instead of NULL
                r[8] = None if pd.isna(r[8]) else float(r[8])
                r[9] = None if pd.isna(r[9]) else int(r[9])
                r[11] = json.dumps(r[11], sort_keys=True)
                copy.write_row(r)
    inserted = conn.execute(
        "INSERT INTO memory.episodes (source_key, session_id, task, input, output, critique, reward, success, "
        "latency_ms, tokens_used, tags, metadata, ts, created_at) "
        "SELECT DISTINCT ON (source_key) source_key, session_id, task, input, output, critique, reward, success, "
        "latency_ms, tokens_used, tags, metadata, ts, now() FROM episodes_stage ORDER BY source_key, ts "
        "ON CONFLICT (source_key) DO NOTHING"
    ).rowcount
    return inserted, len(frame) - inserted


def store_generated(conn: psycopg.Connection, generated: GeneratedSet) -> dict:
    """The set's episodes and its truth; idempotent. Commits."""
    conn.execute(
        "INSERT INTO memory.generated_sets (set_id, seed, params, truth, n_episodes) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (set_id) DO NOTHING",
        (generated.set_id, generated.params.seed, Jsonb(generated.params.to_json()), Jsonb(generated.truth),
         len(generated.episodes)),
    )
    inserted, dupes = insert_episodes(conn, generated.episodes)
    conn.commit()
    return {"set_id": generated.set_id, "read": len(generated.episodes), "inserted": inserted, "duplicates": dupes}


# ------------------------------------------------------------------------------------------ JSONL


def _reject(line_no: int, reason: str, raw: str) -> tuple[int, str, str]:
    return line_no, _evidence(reason), _evidence(raw[:MAX_RAW])


def _evidence(text: str) -> str:
    """Text the quarantine table can always store: NUL and lone surrogates as visible escapes."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _unstorable(value, depth: int = 0) -> str | None:
    """Why Postgres cannot store `value` (a NUL, a lone surrogate, a non-finite number in jsonb,
    nesting past MAX_DEPTH), or None."""
    if depth > MAX_DEPTH:
        return f"nests deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        if "\x00" in value:
            return "holds a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "holds a lone surrogate (text that is not valid Unicode)"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"holds {value!r}, which JSON cannot represent"
    if isinstance(value, dict):
        return next((why for k, v in value.items()
                     if (why := _unstorable(k, depth + 1) or _unstorable(v, depth + 1))), None)
    if isinstance(value, list):
        return next((why for v in value if (why := _unstorable(v, depth + 1))), None)
    return None


def _ts(value) -> datetime:
    if isinstance(value, bool):
        raise ValueError("ts must be epoch seconds or an ISO-8601 string, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("ts is not finite")
        if value > 1e11:  # epoch milliseconds (AgentDB mixes units)
            value = value / 1000
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str) and value.strip():
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    raise ValueError("ts is missing (epoch seconds or an ISO-8601 string)")


def _record(obj) -> dict:
    if not isinstance(obj, dict):
        raise ValueError(f"a line must be a JSON object, got {type(obj).__name__}")
    for key in ("session_id", "task"):
        v = obj.get(key)
        if v is None or (isinstance(v, str) and not v.strip()) or isinstance(v, (dict, list)):
            raise ValueError(f"{key} is missing or empty")
    reward = obj.get("reward", 0.0)
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
        raise ValueError(f"reward must be a number, got {reward!r}")
    if not 0.0 <= float(reward) <= 1.0:
        raise ValueError(f"reward {reward} is outside [0, 1]")
    success = obj.get("success", False)
    if success in (0, 1) and not isinstance(success, float):
        success = bool(success)
    if not isinstance(success, bool):
        raise ValueError(f"success must be a boolean or 0/1, got {success!r}")
    latency = obj.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))
                                or not math.isfinite(latency) or latency < 0):
        raise ValueError(f"latency_ms must be a non-negative number, got {latency!r}")
    tokens = obj.get("tokens_used")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
        raise ValueError(f"tokens_used must be a non-negative integer, got {tokens!r}")
    if tokens is not None and tokens > INT4_MAX:
        raise ValueError(f"tokens_used {tokens} is past the largest storable count ({INT4_MAX})")
    tags = obj.get("tags") or []
    if isinstance(tags, str):  # AgentDB stores tags as a JSON array in a TEXT column
        tags = json.loads(tags) if tags.strip().startswith("[") else [tags]
    if not isinstance(tags, list):
        raise ValueError("tags must be a list")
    metadata = obj.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    rec = {
        "session_id": str(obj["session_id"]), "task": str(obj["task"]),
        "input": None if obj.get("input") is None else str(obj["input"]),
        "output": None if obj.get("output") is None else str(obj["output"]),
        "critique": None if obj.get("critique") is None else str(obj["critique"]),
        "reward": float(reward), "success": success,
        "latency_ms": None if latency is None else float(latency), "tokens_used": tokens,
        "tags": [str(t) for t in tags], "metadata": metadata, "ts": _ts(obj.get("ts", obj.get("created_at"))),
    }
    for key in ("session_id", "task", "input", "output", "critique", "tags", "metadata"):
        why = _unstorable(rec[key])
        if why:
            raise ValueError(f"{key} {why}, which Postgres cannot store; fix it in the source")
    canon = json.dumps({**rec, "ts": rec["ts"].isoformat()}, sort_keys=True, default=str)
    rec["source_key"] = "jsonl:" + hashlib.sha256(canon.encode()).hexdigest()[:32]
    return rec


def parse_jsonl(path: Path) -> tuple[pd.DataFrame, list[tuple[int, str, str]], int]:
    """(valid records, rejects as (line, reason, raw), lines read). Blank lines are not counted."""
    records, rejects, read = [], [], 0
    with Path(path).open("rb") as fh:
        for line_no, raw_bytes in enumerate(fh, start=1):
            if not raw_bytes.strip():
                continue
            read += 1
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as e:
                rejects.append(_reject(line_no, f"not UTF-8: {e.reason} at byte {e.start}",
                                       raw_bytes.decode("utf-8", "replace")))
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                rejects.append(_reject(line_no, f"invalid JSON: {e.msg} at column {e.colno}", raw.rstrip("\n")))
                continue
            except RecursionError:
                rejects.append(_reject(line_no, "invalid JSON: nested deeper than the parser follows",
                                       raw.rstrip("\n")))
                continue
            try:
                records.append(_record(obj))
            # OverflowError/OSError: a timestamp past datetime's range; RecursionError: deep tags/metadata
            except (ValueError, TypeError, OverflowError, OSError, RecursionError) as e:
                rejects.append(_reject(line_no, str(e), raw.rstrip("\n")))
    frame = pd.DataFrame(records, columns=list(COLUMNS)) if records else pd.DataFrame(columns=list(COLUMNS))
    return frame, rejects, read


@dataclass
class FileLoad:
    file_name: str
    sha256: str
    lines_read: int
    loaded: int
    quarantined: int
    duplicates: int
    already_loaded: bool
    rejects: list[tuple[int, str, str]]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_jsonl(conn: psycopg.Connection, path: Path) -> FileLoad:
    """Load one file once (by checksum); commits."""
    path = Path(path)
    sha = file_sha256(path)
    done = conn.execute("SELECT lines_read, loaded, quarantined, duplicates FROM memory.episode_files "
                        "WHERE file_sha256 = %s", (sha,)).fetchone()
    if done:
        return FileLoad(path.name, sha, *done, already_loaded=True, rejects=[])
    frame, rejects, read = parse_jsonl(path)
    inserted, dupes = insert_episodes(conn, frame)
    for line_no, reason, raw in rejects:
        conn.execute("INSERT INTO memory.episode_rejects (file_sha256, line_no, file_name, reason, raw_line) "
                     "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", (sha, line_no, path.name, reason, raw))
    conn.execute("INSERT INTO memory.episode_files (file_sha256, file_name, path, lines_read, loaded, quarantined, "
                 "duplicates) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (sha, path.name, str(path.resolve()), read, inserted, len(rejects), dupes))
    conn.commit()
    return FileLoad(path.name, sha, read, inserted, len(rejects), dupes, False, rejects)


def scan_episode_landing(folder: Path) -> list[tuple[Path, str]]:
    """(path, sha256) of the *.jsonl files ready in the folder, oldest first (dotfiles, *.part ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)):
        if path.is_file() and not path.name.startswith(".") and path.suffix == ".jsonl":
            found.append((path.resolve(), file_sha256(path)))
    return found


def write_jsonl(frame: pd.DataFrame, path: Path) -> Path:
    """Generated episodes as an AgentDB-shaped JSONL file (ts in epoch seconds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in frame.itertuples(index=False):
            rec = {c: getattr(row, c) for c in COLUMNS if c != "source_key"}
            rec["ts"] = pd.Timestamp(rec["ts"]).timestamp()
            fh.write(json.dumps(rec, default=str) + "\n")
    return path
