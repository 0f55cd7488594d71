"""Small, deterministic legacy sources for the demo (`make run`), the tests and the benchmark.

* `write_chroma_dir`: a real Chroma persistent directory written with the `chromadb` client, in the
  four collections of the journaling product (journal, mirage, visor, convergence), with 384-d and
  1536-d vectors, documents (one with mojibake, kept as is) and metadata.
* `write_ruvector_jsonl`: a RuVector-style export, `{id, vector, metadata}` a line.
* `write_agentdb` (in agentdb.py): an AgentDB-shaped SQLite file with every migrated table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway_pipelines.lib.migration.agentdb import write_agentdb

__all__ = ["write_agentdb", "write_chroma_dir", "write_ruvector_jsonl", "write_samples"]

# name -> (dimension, distance space)
CHROMA_COLLECTIONS: dict[str, tuple[int, str]] = {
    "journal": (384, "cosine"),
    "mirage": (384, "l2"),
    "visor": (1536, "cosine"),
    "convergence": (384, "ip"),
}


def _vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    # clustered, like real embeddings, so k-NN has structure
    centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
    picks = rng.integers(0, len(centres), n)
    return (centres[picks] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def write_chroma_dir(
    path: str | Path,
    *,
    n: int = 300,
    collections: dict[str, tuple[int, str]] | None = None,
    seed: int = 0,
    start: int = 0,
    sync_threshold: int | None = None,
    batch: int = 5000,
) -> Path:
    """Write (or extend, with `start` > 0) a Chroma directory with `n` records per collection.

    `sync_threshold`, when given, is set on new collections: records stay in Chroma's write-ahead
    queue until that many have arrived (Chroma's default is 1000).
    """
    from gateway_pipelines.lib.migration.chroma import client_for

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    client = client_for(path)
    rng = np.random.default_rng(seed + start)
    for name, (dim, space) in (collections or CHROMA_COLLECTIONS).items():
        config: dict = {"hnsw": {"space": space}}
        if sync_threshold:
            config["hnsw"].update({"sync_threshold": sync_threshold, "batch_size": min(sync_threshold, 10000)})
        col = client.get_or_create_collection(name, configuration=config, embedding_function=None)
        vecs = _vectors(rng, n, dim)
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            ids = [f"{name}-{i}" for i in range(start + lo, start + hi)]
            docs = [f"{name} entry {i}: a note about a film night" if i % 17 else f"entry {i}: caf\u00c3\u00a9 r\u00c3\u00a9sum\u00c3\u00a9"
                    for i in range(start + lo, start + hi)]
            metas = [{"user_id": f"user-{i % 9}", "i": i, "score": round(float(i) / 7, 6), "pinned": i % 5 == 0}
                     if i % 11 else None for i in range(start + lo, start + hi)]
            col.add(ids=ids, embeddings=vecs[lo:hi], documents=docs, metadatas=metas)
    return path


def write_ruvector_jsonl(path: str | Path, *, n: int = 300, dim: int = 768, seed: int = 0, start: int = 0,
                         bad_lines: Sequence[str] = (), append: bool = False) -> Path:
    """A RuVector-style export: `{id, vector, metadata}` a line; `bad_lines` are written after the
    first good line (each one line), for the quarantine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + start)
    vecs = _vectors(rng, n, dim)
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for i in range(n):
            rid = start + i
            record = {"id": f"movie-{100000 + rid}", "vector": [float(x) for x in vecs[i]],
                      "metadata": {"title": f"Title {rid}", "media_type": "movie", "genre_ids": [18, 878][: 1 + rid % 2]}}
            f.write(json.dumps(record) + "\n")
            if i == 0:
                for bad in bad_lines:
                    f.write(bad.rstrip("\n") + "\n")
    return path


def sample_source(kind: str, folder: str | Path, *, n: int = 300) -> Path:
    """The shipped demo source of `kind` under `folder`, written on first use and then left as it is
    (so a second `make run` migrates nothing)."""
    return write_samples(folder, n=n, kinds=(kind,))[kind]


def write_samples(folder: str | Path, *, n: int = 300, kinds: Sequence[str] = ("chroma", "ruvector", "agentdb"),
                  ) -> dict[str, Path]:
    """The three demo sources of `make run`, written once (an existing source is left as it is, so a
    second `make run` migrates nothing)."""
    folder = Path(folder)
    out = {"chroma": folder / "chroma", "ruvector": folder / "ruvector_export.jsonl",
           "agentdb": folder / "agentdb.sqlite"}
    if "chroma" in kinds and not (out["chroma"] / "chroma.sqlite3").exists():
        write_chroma_dir(out["chroma"], n=n, sync_threshold=100_000)
    if "ruvector" in kinds and not out["ruvector"].exists():
        write_ruvector_jsonl(out["ruvector"], n=n)
    if "agentdb" in kinds and not out["agentdb"].exists():
        write_agentdb(out["agentdb"], episodes=n)
    return {k: v for k, v in out.items() if k in kinds}
