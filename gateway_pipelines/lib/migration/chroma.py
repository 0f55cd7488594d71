"""ChromaDB persistent directories, read through Chroma's own client (1.x), collection by collection.

What real directories look like, and what this reader does about it:

* Most records may still sit in Chroma's write-ahead queue (`embeddings_queue` in chroma.sqlite3)
  rather than in the collection's HNSW segment folder; the client's `get()` reads both, so we read
  through it and never parse Chroma's files ourselves.
* The HNSW segment folder may be missing. Chroma's `get()` still works for records in the queue;
  its `query()` may not. We report Chroma's own state per collection (queue rows, whether the
  segment folder was there before the client opened the directory, whether `query()` worked), and
  the k-NN parity check computes its source side from the vectors themselves, so it does not
  depend on Chroma's index.
* Documents may hold broken encodings: they are migrated exactly as the client returns them. Text
  Postgres cannot store (NUL, undecodable bytes) is refused with the record named, never repaired.
* 384-d collections go to `vector_store.embedding`, 768-d to `embedding_768`, 1536-d to
  `embedding_1536`; any other dimension is refused with the collection named.

The state is read from chroma.sqlite3 opened read-only *before* the client opens the directory
(the client recreates a missing segment folder on open). The fingerprint is logical (collections,
dimensions, the newest sequence number in the queue and per segment), so opening a directory with
the client, which touches its files, does not change it, while any add, update or delete does.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gateway_pipelines.lib.migration.records import (
    VECTOR_COLUMNS,
    LegacyRecord,
    LegacySourceError,
    as_float32,
    canonical_json,
    json_safe,
    storable_text,
)
from gateway_pipelines.lib.migration.sources import DEFAULT_BATCH, CollectionInfo, Reject

TARGET = "vectors.vector_store"
INSTALL_HINT = (
    "the `chromadb` client is not installed, and reading a Chroma directory needs it. Install the "
    "migration extra: `.venv/bin/pip install -e '.[migration]'` (or `pip install 'gateway-pipelines[migration]'`; "
    "`make install` includes it)"
)


def chromadb_module():
    try:
        import chromadb
    except ImportError:
        raise LegacySourceError(INSTALL_HINT) from None
    return chromadb


def client_for(path: Path):
    chromadb = chromadb_module()
    settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=False)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _sqlite_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def directory_state(path: Path) -> dict[str, dict[str, Any]]:
    """Chroma's own bookkeeping per collection, from chroma.sqlite3 (read-only): dimension, rows
    waiting in the write-ahead queue, and whether the HNSW segment folder exists."""
    db = path / "chroma.sqlite3"
    try:
        con = _sqlite_ro(db)
        try:
            cols = con.execute("SELECT id, name, dimension FROM collections ORDER BY name").fetchall()
            segments = con.execute("SELECT id, type, scope, collection FROM segments").fetchall()
            queue = dict(con.execute("SELECT topic, count(*) FROM embeddings_queue GROUP BY topic").fetchall())
            queue_max = dict(con.execute("SELECT topic, max(seq_id) FROM embeddings_queue GROUP BY topic").fetchall())
            try:
                seen = {str(k): v for k, v in con.execute("SELECT segment_id, seq_id FROM max_seq_id").fetchall()}
            except sqlite3.Error:
                seen = {}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise LegacySourceError(
            f"Chroma directory {path}: chroma.sqlite3 cannot be read ({exc}); the directory is damaged or not a "
            "Chroma 0.5+/1.x directory. Nothing was written."
        ) from None
    out: dict[str, dict[str, Any]] = {}
    for cid, name, dimension in cols:
        topic = next((t for t in queue if str(t).endswith(str(cid))), None)
        vector_segments = [s for s in segments if s[3] == cid and s[2] == "VECTOR"]
        folder = vector_segments[0][0] if vector_segments else None
        out[name] = {
            "collection_id": str(cid),
            "dimension": dimension,
            "queue_rows": int(queue.get(topic, 0)) if topic else 0,
            "queue_max_seq": queue_max.get(topic) if topic else None,
            "segment_seq": {str(s[0]): _seq(seen.get(str(s[0]))) for s in segments if s[3] == cid},
            "hnsw_segment_present": bool(folder and (path / str(folder)).is_dir()),
        }
    return out


def _seq(value: Any) -> Any:
    if isinstance(value, bytes):  # older Chroma stored seq ids as big-endian bytes
        return int.from_bytes(value, "big")
    return value


class ChromaReader:
    kind = "chroma"

    def __init__(self, path: Path, *, batch_size: int = DEFAULT_BATCH):
        if not path.is_dir() or not (path / "chroma.sqlite3").is_file():
            raise LegacySourceError(
                f"{path} is not a Chroma persistent directory (no chroma.sqlite3 in it); pass the folder "
                "given to chromadb.PersistentClient(path=...)"
            )
        self.path = path
        self.batch_size = batch_size
        self._state = directory_state(path)  # before the client touches the folder
        try:
            self._client = client_for(path)
            self._collections = {c.name: c for c in self._client.list_collections()}
        except LegacySourceError:
            raise
        except Exception as exc:
            raise LegacySourceError(
                f"Chroma's client could not open {path} ({type(exc).__name__}: {exc}). The directory may be "
                "damaged or written by an incompatible Chroma version. Nothing was written."
            ) from None

    @property
    def rejects(self) -> list[Reject]:
        return []

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(canonical_json({
            name: {k: s[k] for k in ("collection_id", "dimension", "queue_rows", "queue_max_seq", "segment_seq")}
            for name, s in sorted(self._state.items())
        }).encode())
        return "chroma:" + h.hexdigest()

    def state(self) -> dict[str, Any]:
        return self._state

    def close(self) -> None:
        self._client = None

    def collections(self) -> list[CollectionInfo]:
        out = []
        for name in sorted(self._collections):
            col = self._collections[name]
            state = dict(self._state.get(name, {}))
            try:
                count = col.count()
                first = col.get(limit=1, include=["embeddings"])
            except Exception as exc:
                raise LegacySourceError(self._unreadable(name, exc)) from None
            dim = state.get("dimension")
            if first["ids"]:
                dim = int(np.asarray(first["embeddings"][0]).shape[0])
            if count and dim not in VECTOR_COLUMNS:
                raise LegacySourceError(
                    f"Chroma collection {name!r} in {self.path} has dimension {dim}: only "
                    f"{', '.join(map(str, VECTOR_COLUMNS))} can be migrated (vector_store columns "
                    f"{', '.join(VECTOR_COLUMNS.values())}). Nothing was written."
                )
            state["query_ok"], state["query_error"] = self._probe_query(col, first)
            state["note"] = self._note(state)
            out.append(CollectionInfo(name=name, target=TARGET, dim=dim, space=_space(col), source_count=int(count),
                                      state=state))
        return out

    def _probe_query(self, col, first) -> tuple[bool | None, str | None]:
        if not first["ids"]:
            return None, None
        try:
            col.query(query_embeddings=[np.asarray(first["embeddings"][0], dtype=np.float32)], n_results=1,
                      include=[])
            return True, None
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"[:300]

    @staticmethod
    def _note(state: dict[str, Any]) -> str:
        parts = []
        if not state.get("hnsw_segment_present", True):
            parts.append("HNSW segment missing")
        if state.get("query_ok") is False:
            parts.append("Chroma itself could not query this collection")
        if state.get("queue_rows"):
            parts.append(f"{state['queue_rows']} records still in the write-ahead queue")
        return "; ".join(parts) or "healthy"

    def _unreadable(self, name: str, exc: Exception) -> str:
        state = self._state.get(name, {})
        why = ""
        if not state.get("hnsw_segment_present", True):
            why = (" Its HNSW segment folder is missing, and the records already flushed from the write-ahead "
                   "queue into it are gone with it, so Chroma's own client cannot return them.")
        return (f"Chroma's client could not read collection {name!r} in {self.path} "
                f"({type(exc).__name__}: {exc}).{why} Nothing was written.")

    def batches(self, info: CollectionInfo) -> Iterator[list[LegacyRecord]]:
        col = self._collections[info.name]
        offset = 0
        while True:
            try:
                got = col.get(limit=self.batch_size, offset=offset, include=["embeddings", "documents", "metadatas"])
            except Exception as exc:
                raise LegacySourceError(self._unreadable(info.name, exc)) from None
            ids = got["ids"]
            if not ids:
                return
            embeddings = got["embeddings"]
            documents = got.get("documents") or [None] * len(ids)
            metadatas = got.get("metadatas") or [None] * len(ids)
            vectors, big_endian = _batch_vectors(embeddings, info.dim)
            batch = []
            for i, rid in enumerate(ids):
                where = f"Chroma collection {info.name!r} id {rid!r}"
                if vectors is not None:
                    vec, vec_be = vectors[i], big_endian[i].tobytes()
                else:  # a batch that is not one clean (n, dim) block: record by record, naming the bad one
                    vec, vec_be = as_float32(embeddings[i], where=where), None
                    if vec.shape[0] != info.dim:
                        raise LegacySourceError(f"{where}: dimension {vec.shape[0]}, the collection's is {info.dim}")
                doc = documents[i]
                if doc is not None:
                    doc = storable_text(doc, where=f"{where} document")
                meta = metadatas[i]
                meta = json_safe(dict(meta), where=f"{where} metadata") if meta is not None else None
                batch.append(LegacyRecord(info.name, storable_text(rid, where=where), TARGET, vec, doc, meta,
                                          vec_be=vec_be).compute())
            yield batch
            offset += len(ids)
            if len(ids) < self.batch_size:
                return


def _batch_vectors(embeddings, dim: int | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A batch's vectors as one float32 (n, dim) array and its big-endian copy, converted and checked
    at once; (None, None) when they are not that (the caller then goes record by record)."""
    try:
        arr = np.asarray(embeddings)
    except ValueError:  # ragged
        return None, None
    if arr.ndim != 2 or arr.shape[1] != dim or not np.issubdtype(arr.dtype, np.number):
        return None, None
    out = arr.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        return None, None
    return out, out.astype(">f4")


def _space(col) -> str:
    config = getattr(col, "configuration", None) or {}
    hnsw = config.get("hnsw") if isinstance(config, dict) else None
    space = (hnsw or {}).get("space") if isinstance(hnsw, dict) else None
    space = space or (col.metadata or {}).get("hnsw:space") or "l2"
    return str(getattr(space, "value", space))
