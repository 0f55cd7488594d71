"""Recommendations: two candidate sources fused, a documented re-ranking score, MMR diversity, reasons.

1. **Candidates** (finished titles excluded):
   * *content*: the ``n_candidates`` nearest titles to the user's preference vector (HNSW in
     pgvector when served from the warehouse; exact in memory for the offline evaluation);
   * *co-occurrence*: titles finished by the users who finished what this user finished, scored
     ``Σ_{j ∈ finished(u)} C_ij / sqrt(n_i·n_j)`` (C: co-finish counts, n: finish counts).
2. **Fusion**: reciprocal-rank fusion as the media gateway's hybrid engine intends,
   ``f_i = Σ_s w_s / (60 + rank_s(i))`` (content 0.5, co-occurrence 0.5), scaled to [0, 1].
3. **Score**: ``score = w_fused·f + w_sim·cos(v_u, x_i) + c_i + w_pop·pop_i``, i.e. fused rank, then
   similarity, then the causal adjustment ``c_i``, then popularity (log finish count, or the
   catalogue's TMDB popularity before anyone finished anything) as a prior. The causal adjustment
   is the expected change in watch completion against the average candidate, by the DML weights β_f
   of `learning.causal_weights` (segment `all`, newest run; docs/causal.md), bounded:
   ``c_i = clip(causal_scale·Σ_f β_f·(feature_f(u, i) − mean over candidates), ±causal_cap)``. It is
   off (c = 0) when there are no weights; a weight whose 95 % interval crosses 0 is left out.
4. **Diversity**: maximal marginal relevance, ``λ·score' − (1 − λ)·max_{j picked} Jaccard(genres_i,
   genres_j)`` with λ = 0.85 and score' the score scaled to [0, 1]; and a hard cap: no genre is in
   more than ``max_genre_share`` of the picks (relaxed only when the candidates run out, which the
   result says).
5. A **cold-start** user (no watch history) gets the catalogue's most popular titles under the same
   diversity rule, not an error.

Each pick carries an explanation naming what put it there.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from .catalogue import Catalogue

RRF_K = 60
# The serve-time features the re-ranker can compute for (user, title) before serving.
RANKING_FEATURES = ("genre_match_score", "release_recency_score", "rating_alignment", "content_duration")
REFERENCE_YEAR = 2026

AnnSearch = Callable[[np.ndarray, int, frozenset[int]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class RecommenderConfig:
    n_candidates: int = 100  # see PersonalizationResource.n_candidates
    w_content: float = 0.5  # RRF weight of the content (vector) source
    w_cooc: float = 0.5  # RRF weight of the co-occurrence source
    w_fused: float = 1.0
    w_sim: float = 0.5
    w_pop: float = 0.3
    causal_scale: float = 1.0  # multiplies every causal weight in the score
    causal_cap: float = 0.1  # |causal adjustment| at most this (a fifth of w_sim's range)
    mmr_lambda: float = 0.85
    max_genre_share: float = 0.6


@dataclass
class UserState:
    user_id: str
    vector: np.ndarray | None = None
    finished: frozenset[int] = frozenset()  # catalogue rows
    genre_affinities: dict[int, float] = field(default_factory=dict)
    mean_rating: float | None = None  # 0-10

    @property
    def cold(self) -> bool:
        return self.vector is None and not self.finished


@dataclass
class Pick:
    rank: int
    item: int
    key: str
    title: str
    score: float
    similarity: float
    fused: float
    causal: float
    popularity: float
    sources: tuple[str, ...]
    genres: tuple[int, ...]
    features: dict[str, float]
    explanation: str


@dataclass
class Recommendation:
    user_id: str
    picks: list[Pick]
    strategy: str  # 'hybrid' | 'cold_start'
    diversity_relaxed: bool = False


class RecommenderModel:
    """What recommending needs in memory: the catalogue, co-finish counts, popularity, causal weights."""

    def __init__(self, catalogue: Catalogue, finished_pairs: Iterable[tuple[str, int]] = (), *,
                 causal_weights: dict[str, float] | None = None, config: RecommenderConfig = RecommenderConfig()):
        self.catalogue = catalogue
        self.config = config
        self.causal_weights, self.causal_dropped = usable_causal_weights(causal_weights)
        pairs = list(finished_pairs)
        n = len(catalogue)
        if pairs:
            users = {u: i for i, u in enumerate(sorted({u for u, _ in pairs}))}
            rows = np.fromiter((users[u] for u, _ in pairs), dtype=np.int64, count=len(pairs))
            cols = np.fromiter((i for _, i in pairs), dtype=np.int64, count=len(pairs))
            b = sparse.csr_matrix((np.ones(len(pairs), dtype=np.float32), (rows, cols)), shape=(len(users), n))
            b.data[:] = 1.0  # duplicates collapse to 1
            b.sum_duplicates()
            b.data[:] = 1.0
            counts = np.asarray(b.sum(axis=0)).ravel()
            c = (b.T @ b).tocsr()
            c.setdiag(0)
            c.eliminate_zeros()
            inv = 1.0 / np.sqrt(np.maximum(counts, 1))
            self.cooc = sparse.diags(inv) @ c @ sparse.diags(inv)
            self.cooc = self.cooc.tocsr().astype(np.float32)
            self.cooc_counts = c
        else:
            counts = np.zeros(n)
            self.cooc = sparse.csr_matrix((n, n), dtype=np.float32)
            self.cooc_counts = self.cooc
        self.finish_counts = counts
        if counts.sum() > 0:
            lp = np.log1p(counts)
            self.pop_prior = (0.8 * lp / lp.max() + 0.2 * catalogue.popularity_prior).astype(np.float32)
        else:
            self.pop_prior = catalogue.popularity_prior
        self.pop_order = np.argsort(-self.pop_prior, kind="stable")
        self.pop_rank = np.empty(n, dtype=np.int64)
        self.pop_rank[self.pop_order] = np.arange(1, n + 1)
        self.recency = np.exp(-np.maximum(REFERENCE_YEAR - catalogue.years, 0) / 10.0)
        self.recency[catalogue.years <= 0] = 0.0
        self.duration_h = catalogue.runtime / 60.0

    def with_config(self, config: RecommenderConfig) -> "RecommenderModel":
        """The same model (catalogue, co-finish counts, weights: shared, not copied) scoring with ``config``."""
        other = copy.copy(self)
        other.config = config
        return other

    # ------------------------------------------------------------------ pieces

    def exact_ann(self, vector: np.ndarray, n: int, exclude: frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
        sims = self.catalogue.vectors @ vector.astype(np.float32)
        if exclude:
            sims = sims.copy()
            sims[list(exclude)] = -np.inf
        n = min(n, len(sims) - len(exclude))
        if n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        top = np.argpartition(-sims, n - 1)[:n]
        top = top[np.lexsort((top, -sims[top]))]
        return top, sims[top]

    def cooc_candidates(self, finished: frozenset[int], n: int) -> tuple[np.ndarray, np.ndarray]:
        if not finished or self.cooc.nnz == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        _, cols, vals = _csr_rows(self.cooc, np.fromiter(sorted(finished), dtype=np.int64, count=len(finished)))
        scores = np.zeros(self.cooc.shape[1], dtype=self.cooc.dtype)
        np.add.at(scores, cols, vals)  # row by row in float32, as scipy's sum(axis=0) adds: the same ties
        scores[list(finished)] = 0
        nz = np.flatnonzero(scores > 0)
        if len(nz) == 0:
            return nz, np.zeros(0)
        top = nz[np.lexsort((nz, -scores[nz]))][:n]
        return top, scores[top]

    def features(self, state: UserState, items: np.ndarray) -> dict[str, np.ndarray]:
        """Serve-time features of (user, title) as learning.impressions records them."""
        gm = self.catalogue.genre_matrix[items]
        if state.genre_affinities:
            col = {g: j for j, g in enumerate(self.catalogue.genre_ids)}
            aff = np.full(len(col), 0.5, dtype=np.float32)
            for g, a in state.genre_affinities.items():
                if g in col:
                    aff[col[g]] = a
            n_genres = np.maximum(gm.sum(axis=1), 1)
            genre_match = (gm @ aff) / n_genres
        else:
            genre_match = np.full(len(items), 0.5)
        preferred = state.mean_rating if state.mean_rating is not None else 7.0
        rating_alignment = 1 - np.abs(self.catalogue.vote_average[items] - preferred) / 10.0
        return {
            "genre_match_score": np.asarray(genre_match, dtype=np.float64),
            "release_recency_score": self.recency[items],
            "rating_alignment": rating_alignment,
            "content_duration": self.duration_h[items],
        }

    # ------------------------------------------------------------------ recommend

    def recommend(self, state: UserState, k: int = 20, *, ann: AnnSearch | None = None,
                  explain: bool = True) -> Recommendation:
        if k < 1:
            raise ValueError(f"k={k}: must be at least 1")
        with _one_blas_thread():
            return self._recommend(state, k, ann, explain)

    def _recommend(self, state: UserState, k: int, ann: AnnSearch | None, explain: bool) -> Recommendation:
        cfg = self.config
        exclude = state.finished
        excluded = np.fromiter(exclude, dtype=np.int64, count=len(exclude))
        if state.vector is not None:
            cand_a, _ = (ann or self.exact_ann)(state.vector, cfg.n_candidates, exclude)
            cand_a = np.asarray(cand_a, dtype=np.int64)
            cand_a = cand_a[~np.isin(cand_a, excluded)]
        else:
            cand_a = np.zeros(0, dtype=np.int64)
        cand_c, _ = self.cooc_candidates(exclude, cfg.n_candidates)
        if state.cold or (len(cand_a) == 0 and len(cand_c) == 0):
            return self._cold_start(state, k, explain)
        # reciprocal-rank fusion; content terms are added before co-occurrence ones, as sources are listed
        both = np.concatenate([cand_a, np.asarray(cand_c, dtype=np.int64)])
        terms = np.concatenate([cfg.w_content / (RRF_K + np.arange(1, len(cand_a) + 1)),
                                cfg.w_cooc / (RRF_K + np.arange(1, len(cand_c) + 1))])
        items, inverse = np.unique(both, return_inverse=True)
        f = np.zeros(len(items))
        np.add.at(f, inverse, terms)
        in_content = np.zeros(len(items), dtype=bool)
        in_content[inverse[: len(cand_a)]] = True
        in_cooc = np.zeros(len(items), dtype=bool)
        in_cooc[inverse[len(cand_a):]] = True
        f = f / f.max()
        sim = _dot_rows(self.catalogue.vectors[items], state.vector.astype(np.float32)).astype(np.float64) \
            if state.vector is not None else np.zeros(len(items))
        feats = self.features(state, items)
        causal, causal_ref = self.causal_adjustment(feats)
        pop = self.pop_prior[items].astype(np.float64)
        score = cfg.w_fused * f + cfg.w_sim * sim + causal + cfg.w_pop * pop
        chosen, relaxed = self._diversify(items, score, k)
        context = self._explain_context(state, items[chosen]) if explain else None
        picks = []
        names = list(feats)
        columns = [feats[name][chosen].tolist() for name in names]
        for rank, pos in enumerate(chosen, 1):
            i = int(items[pos])
            pick_features = {name: values[rank - 1] for name, values in zip(names, columns)}
            sources = ("content",) * bool(in_content[pos]) + ("co-occurrence",) * bool(in_cooc[pos])
            picks.append(Pick(
                rank, i, self.catalogue.keys[i], self.catalogue.titles[i], float(score[pos]), float(sim[pos]),
                float(f[pos]), float(causal[pos]), float(pop[pos]), sources,
                self.catalogue.genres[i], pick_features,
                self._explain(state, i, sources, pick_features, context, rank - 1, causal_ref) if explain else "",
            ))
        return Recommendation(state.user_id, picks, "hybrid", relaxed)

    def _cold_start(self, state: UserState, k: int, explain: bool) -> Recommendation:
        n = min(len(self.catalogue), max(self.config.n_candidates, 5 * k))
        items = np.array([i for i in self.pop_order[: n + len(state.finished)].tolist()
                          if i not in state.finished][:n], dtype=np.int64)
        pop = self.pop_prior[items].astype(np.float64)
        chosen, relaxed = self._diversify(items, pop, k)
        feats = self.features(state, items)
        picks = []
        for rank, pos in enumerate(chosen, 1):
            i = int(items[pos])
            genres = self._genre_text(i)
            reason = (f"popular: #{int(self.pop_rank[i])} in the catalogue; {genres}; picked for variety "
                      "(no watch history yet)") if explain else ""
            picks.append(Pick(rank, i, self.catalogue.keys[i], self.catalogue.titles[i], float(pop[pos]), 0.0, 0.0,
                              0.0, float(pop[pos]), ("popularity",), self.catalogue.genres[i],
                              {name: float(v[pos]) for name, v in feats.items()}, reason))
        return Recommendation(state.user_id, picks, "cold_start", relaxed)

    def _diversify(self, items: np.ndarray, score: np.ndarray, k: int) -> tuple[list[int], bool]:
        """MMR over genre Jaccard with the genre-share cap; returns positions into ``items``."""
        cfg = self.config
        k = min(k, len(items))
        if k == 0:
            return [], False
        lo, hi = float(score.min()), float(score.max())
        norm = (score - lo) / (hi - lo) if hi > lo else np.ones(len(score))
        # MMR chooses among the best max(20·k, 400) by score (every candidate, usually)
        pool = np.argsort(-norm, kind="stable")[: max(20 * k, 400)]
        cap = max(1, math.floor(cfg.max_genre_share * k))
        base = cfg.mmr_lambda * norm[pool]
        genres = self.catalogue.genre_matrix[items[pool]]  # (pool, G) 0/1
        sizes = genres.sum(axis=1)
        # every pairwise genre Jaccard at once: one small product instead of one per pick
        inter = _dot_rows(genres, genres)
        union = sizes[:, None] + sizes[None, :] - inter
        jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        genre_count = np.zeros(genres.shape[1], dtype=np.int64)
        chosen: list[int] = []
        max_sim = np.zeros(len(pool))
        available = np.ones(len(pool), dtype=bool)
        capped = np.zeros(len(pool), dtype=bool)  # has a genre that is at its cap already
        relaxed = False
        while len(chosen) < k and available.any():
            mmr = base - (1 - cfg.mmr_lambda) * max_sim
            allowed = available & ~capped
            if not allowed.any():
                allowed = available
                relaxed = True
            j = int(np.argmax(np.where(allowed, mmr, -np.inf)))
            chosen.append(int(pool[j]))
            available[j] = False
            mine = genres[j] > 0
            genre_count[mine] += 1
            full = mine & (genre_count >= cap)  # only the pick's genres can have reached the cap
            if full.any():
                capped |= genres[:, full].any(axis=1)
            np.maximum(max_sim, jaccard[j], out=max_sim)
        return chosen, relaxed

    def _genre_text(self, i: int) -> str:
        names = [self.catalogue.genre_label(g) for g in self.catalogue.genres[i][:2]]
        return f"genre {', '.join(names)}" if names else "no genre"

    def _explain_context(self, state: UserState, picked: np.ndarray):
        """For all picks at once: the finished title closest to each (and its similarity), and the
        finished title most co-finished with each (and the count)."""
        finished = sorted(state.finished)
        if not finished:
            return None
        fin = np.asarray(finished, dtype=np.int64)
        sims = _dot_rows(self.catalogue.vectors[fin], self.catalogue.vectors[picked])  # (F, k)
        counts = np.zeros(sims.shape, dtype=self.cooc_counts.dtype)
        if self.cooc_counts.nnz:
            row, cols, vals = _csr_rows(self.cooc_counts, fin)
            column = np.full(self.cooc_counts.shape[1], -1, dtype=np.int64)
            column[picked] = np.arange(len(picked))
            keep = column[cols] >= 0
            counts[row[keep], column[cols[keep]]] = vals[keep]
        return (fin[sims.argmax(axis=0)].tolist(), sims.max(axis=0).tolist(),
                fin[counts.argmax(axis=0)].tolist(), counts.max(axis=0).tolist())

    def causal_adjustment(self, feats: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """c_i of the score (module docstring, step 3) and the candidate means it is relative to."""
        n = len(next(iter(feats.values()))) if feats else 0
        if not self.causal_weights or n == 0:
            return np.zeros(n), {}
        ref = {name: float(np.mean(feats[name])) for name in self.causal_weights}
        scale = self.config.causal_scale
        raw = sum(scale * beta * (feats[name] - ref[name]) for name, beta in self.causal_weights.items())
        return np.clip(raw, -self.config.causal_cap, self.config.causal_cap), ref

    def _explain(self, state: UserState, i: int, sources: Sequence[str], feats: dict[str, float],
                 context=None, col: int = 0, causal_ref: dict[str, float] | None = None) -> str:
        parts = []
        if context is not None:
            closest, similarity, co_title, co_count = context
            parts.append(f"close to {self.catalogue.titles[closest[col]]!r} that you finished "
                         f"(similarity {similarity[col]:.2f})")
            if "co-occurrence" in sources and co_count[col] > 0:
                parts.append(f"finished by {int(co_count[col])} viewers who also finished "
                             f"{self.catalogue.titles[co_title[col]]!r}")
        elif state.vector is not None:
            parts.append(f"close to your taste vector (similarity "
                         f"{float(self.catalogue.vectors[i] @ state.vector):.2f})")
        parts.append(self._genre_text(i))
        if self.causal_weights:
            ref = causal_ref or {}
            contributions = {name: self.config.causal_scale * beta * (feats[name] - ref.get(name, 0.0))
                             for name, beta in self.causal_weights.items()}
            name, value = max(contributions.items(), key=lambda kv: kv[1])
            if value > 0:
                parts.append(f"boosted by the causal weight of {name} (+{value:.3f})")
        top = int(self.pop_rank[i])
        if top <= max(10, len(self.catalogue) // 20):
            parts.append(f"popular (#{top})")
        return "; ".join(parts)


def _csr_rows(m: sparse.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored entries of ``rows`` of a CSR matrix as (position in ``rows``, column, value), read off its
    arrays: scipy's row slicing builds a new matrix per call, which costs more than these few hundred
    entries (a recommend call makes two)."""
    starts, lengths = m.indptr[rows], np.diff(m.indptr)[rows]
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    return np.repeat(np.arange(len(rows)), lengths), m.indices[offsets], m.data[offsets]


_BLAS = None


def _one_blas_thread():
    """BLAS on the calling thread only, for the duration of one recommend call: its products are small,
    and a second BLAS thread only spins (twice the CPU time of the call in bench/recommend, taken from
    the Postgres server on the same two cores) without making them faster."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _dot_rows(rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """rows @ vectors.T (or @ vector). These products are small (tens to hundreds of rows); one-threaded
    BLAS takes 15-50 µs for each, where einsum took 40-650 µs (measured side by side)."""
    return rows @ (vectors if vectors.ndim == 1 else vectors.T)


def usable_causal_weights(weights: dict | None) -> tuple[dict[str, float], dict[str, str]]:
    """The weights the score uses, and why the others are not used. A weight is a number, or
    (effect, ci_low, ci_high) as `store.latest_causal_weights` gives it; one whose interval crosses 0
    (or is not finite) is dropped: no evidence of a direction, so no adjustment."""
    used, dropped = {}, {}
    for name, value in (weights or {}).items():
        if name not in RANKING_FEATURES:
            continue
        effect, low, high = (value, None, None) if not isinstance(value, (tuple, list)) else tuple(value)[:3]
        if effect is None or not math.isfinite(float(effect)):
            dropped[name] = "no finite estimate"
        elif low is not None and high is not None and float(low) <= 0.0 <= float(high):
            dropped[name] = f"95% interval [{float(low):+.4f}, {float(high):+.4f}] crosses 0"
        else:
            used[name] = float(effect)
    return used, dropped


def mean_rating(ratings: Iterable[float]) -> float | None:
    values = [r for r in ratings if r is not None and not (isinstance(r, float) and math.isnan(r))]
    return float(np.mean(values)) if values else None
