"""Deterministic clustering of distinct task strings by their embeddings.

Method: average-linkage agglomerative clustering (scipy) on cosine distance over the distinct tasks,
cut at ``distance_threshold``. No random state is involved: the input is ordered by task hash and
the linkage is a deterministic function of the distance matrix, so the same tasks always give the
same clusters. Above ``max_points`` distinct tasks the most frequent ``max_points`` (ties by hash)
are clustered and every other task joins the cluster with the nearest centroid (a new cluster when
even the nearest is farther than the threshold), which keeps memory at O(max_points^2).
Clusters are numbered by their first member in hash order, so the numbering is canonical too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClusterResult", "adjusted_rand", "cluster_tasks", "medoid_index"]

DEFAULT_THRESHOLD = 0.85
MAX_POINTS = 4000


@dataclass
class ClusterResult:
    labels: np.ndarray  # per distinct task (input order), 0..k-1
    centroids: np.ndarray  # (k, dim), L2-normalised mean of member vectors (count-weighted)
    n_clusters: int


def _normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return x / n


def cluster_tasks(hashes: list[str], vectors: np.ndarray, counts: np.ndarray,
                  distance_threshold: float = DEFAULT_THRESHOLD, max_points: int = MAX_POINTS) -> ClusterResult:
    """Cluster distinct tasks; ``hashes`` give the canonical order, ``counts`` the episodes per task."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(hashes)
    vectors = _normalize(np.asarray(vectors, dtype=np.float64))
    counts = np.asarray(counts, dtype=np.float64)
    if n == 0:
        return ClusterResult(np.zeros(0, dtype=int), np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0)), 0)
    order = sorted(range(n), key=lambda i: hashes[i])
    if n > max_points:
        core = sorted(order, key=lambda i: (-counts[i], hashes[i]))[:max_points]
        core = sorted(core, key=lambda i: hashes[i])
    else:
        core = order
    x = vectors[core]
    if len(core) == 1:
        core_labels = np.array([1])
    else:
        z = linkage(x, method="average", metric="cosine")
        core_labels = fcluster(z, t=distance_threshold, criterion="distance")
    labels = np.full(n, -1, dtype=int)
    labels[core] = core_labels
    # assign the rest to the nearest centroid (or a new cluster)
    if len(core) < n:
        uniq = np.unique(core_labels)
        cents = np.vstack([(x[core_labels == c] * counts[core][core_labels == c, None]).sum(0) for c in uniq])
        cents = _normalize(cents)
        rest = [i for i in order if labels[i] == -1]
        next_label = int(uniq.max()) + 1
        for start in range(0, len(rest), 8192):
            chunk = rest[start:start + 8192]
            sims = vectors[chunk] @ cents.T
            best = sims.argmax(1)
            for i, b, s in zip(chunk, best, sims[np.arange(len(chunk)), best]):
                if 1 - s <= distance_threshold:
                    labels[i] = uniq[b]
                else:
                    labels[i] = next_label
                    next_label += 1
    # canonical numbering: by first member in hash order
    mapping: dict[int, int] = {}
    for i in order:
        mapping.setdefault(int(labels[i]), len(mapping))
    canon = np.array([mapping[int(v)] for v in labels], dtype=int)
    k = len(mapping)
    cents = np.zeros((k, vectors.shape[1]))
    np.add.at(cents, canon, vectors * counts[:, None])
    return ClusterResult(canon, _normalize(cents), k)


def medoid_index(vectors: np.ndarray, counts: np.ndarray, hashes: list[str]) -> int:
    """The member with the highest count-weighted mean cosine to the others (ties: lowest hash)."""
    v = _normalize(np.asarray(vectors, dtype=np.float64))
    w = np.asarray(counts, dtype=np.float64)
    if len(v) > 2000:  # approximate by the centroid for huge clusters: same argmax for cosine
        scores = v @ (v * w[:, None]).sum(0)
    else:
        scores = (v @ v.T) @ w
    scores = np.round(scores, 9)
    best = max(range(len(v)), key=lambda i: (scores[i], -int(hashes[i][:15], 16)))
    return best


def adjusted_rand(truth, labels) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(list(truth), list(labels)))
