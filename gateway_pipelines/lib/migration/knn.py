"""Exact k-NN on the source side, from the source vectors themselves (never from the source's index).

`exact_top_k_blocks` streams the vectors in chunks (read from the file the source vectors were spilled
to), so memory is flat in the size of the source: the queries (at most a few hundred) and one chunk of distances.
Distances follow the collection's space the way pgvector's operators do, so that the target side
(`<->`, `<=>`, `<#>`) ranks the same way: l2 = Euclidean distance, cosine = 1 - cos, ip = -dot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

OPERATORS = {"l2": "<->", "cosine": "<=>", "ip": "<#>"}
CHUNK = 4096  # vectors per block: float64 copies of 4096 x 1536 are 50 MB, whatever the source size


def sample_positions(n: int, k: int, *, seed: int = 0, salt: str = "") -> list[int]:
    """`k` distinct positions out of `n`, reproducible for the same (seed, salt)."""
    if n <= 0 or k <= 0:
        return []
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return sorted(int(p) for p in rng.choice(n, size=min(k, n), replace=False))


def distances(block: np.ndarray, queries: np.ndarray, space: str) -> np.ndarray:
    """(queries x block) distances in float64."""
    x = block.astype(np.float64, copy=False)
    q = queries.astype(np.float64, copy=False)
    dots = q @ x.T
    if space == "ip":
        return -dots
    if space == "cosine":
        qn = np.linalg.norm(q, axis=1)[:, None]
        xn = np.linalg.norm(x, axis=1)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - dots / (qn * xn)
    if space == "l2":
        sq = (q * q).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2 * dots
        return np.sqrt(np.maximum(sq, 0.0))
    raise ValueError(f"unknown distance space {space!r}: use one of {', '.join(OPERATORS)}")


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, *, k: int, space: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the k nearest vectors to each query (nearest first) and each query's k-th distance."""
    return exact_top_k_blocks((np.asarray(vectors[s:s + CHUNK]) for s in range(0, len(vectors), CHUNK)), queries,
                              k=k, space=space)


def exact_top_k_blocks(blocks: Iterable[np.ndarray], queries: np.ndarray, *, k: int,
                       space: str) -> tuple[np.ndarray, np.ndarray]:
    """`exact_top_k` over the vectors given as consecutive blocks (positions count across blocks), so
    that a caller reading them from a file holds one block at a time."""
    nq = len(queries)
    best_d = np.full((nq, 0), np.inf)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    start = 0
    for block in blocks:
        d = distances(block, queries, space)
        d = np.where(np.isnan(d), np.inf, d)
        idx = np.broadcast_to(np.arange(start, start + len(block)), d.shape)
        start += len(block)
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, idx], axis=1)
        keep = min(k, all_d.shape[1])
        if keep == 0:
            continue
        part = np.argpartition(all_d, keep - 1, axis=1)[:, :keep]
        best_d = np.take_along_axis(all_d, part, axis=1)
        best_i = np.take_along_axis(all_i, part, axis=1)
    order = np.argsort(best_d, axis=1, kind="stable")
    best_d = np.take_along_axis(best_d, order, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    return best_i, best_d[:, -1] if best_d.shape[1] else np.zeros(nq)


def tie_tolerance(kth: float) -> float:
    """How far past the source's k-th distance a target neighbour still counts as a true one: float32
    arithmetic in pgvector against float64 here, and exact ties at the k-th place."""
    return 1e-4 * (1.0 + abs(kth))
