"""Personalization settings for Dagster: the events landing folder and the recommender's knobs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .recommender import RecommenderConfig


class PersonalizationResource(dg.ConfigurableResource):
    """`landing_dir` is the folder the watch-events sensor watches ($GATEWAY_HOME/landing/events);
    the rest are the recommender's score weights (docs/personalization.md) and the preference rule's
    optional time decay."""

    landing_dir: str | None = None
    k: int = 20
    # 100, not 200: the HNSW candidate query is the largest stage of a call (bench/recommend, quiet,
    # 100k titles, 1,000 calls: p95 33.0 ms at 200 candidates and ef_search 200, 23.1 ms at 100/100), for
    # a simulator hit-rate@10 of 0.410 instead of 0.429 (popularity 0.171) and the same 0.553 on the
    # MovieLens-format set
    n_candidates: int = 100
    w_content: float = 0.5
    w_cooc: float = 0.5
    w_fused: float = 1.0
    w_sim: float = 0.5
    w_pop: float = 0.3
    causal_scale: float = 1.0
    mmr_lambda: float = 0.85
    max_genre_share: float = 0.6
    half_life_days: float | None = None  # time decay of the preference rule; None: off
    ef_search: int = 100  # HNSW ef_search of the candidate query (at least n_candidates)

    def landing_path(self) -> Path:
        if not self.landing_dir:
            raise ValueError("PersonalizationResource.landing_dir is not set: the events sensor has no folder")
        return Path(self.landing_dir)

    def recommender_config(self) -> RecommenderConfig:
        return RecommenderConfig(
            n_candidates=self.n_candidates, w_content=self.w_content, w_cooc=self.w_cooc, w_fused=self.w_fused,
            w_sim=self.w_sim, w_pop=self.w_pop, causal_scale=self.causal_scale, mmr_lambda=self.mmr_lambda,
            max_genre_share=self.max_genre_share,
        )

    def rule(self) -> str:
        """The preference rule's name as stored with each vector: a change recomputes every user."""
        return "ema" if self.half_life_days is None else f"ema+decay{self.half_life_days:g}d"
