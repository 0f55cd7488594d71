"""Embedding settings for Dagster: which provider, which block weights, where models live."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dagster as dg

from gateway_pipelines.lib.embeddings.base import EmbeddingProvider
from gateway_pipelines.lib.embeddings.coverage import DEFAULT_MAX_GROWTH, DEFAULT_MIN_COVERAGE
from gateway_pipelines.lib.embeddings.factory import make_provider, resolve_provider_kind
from gateway_pipelines.lib.embeddings.hybrid import BlockWeights
from gateway_pipelines.lib.embeddings.openai_provider import DEFAULT_MODEL


class EmbeddingResource(dg.ConfigurableResource):
    """`provider`: auto (OpenAI when `openai_api_key` is set, else local), openai, local or wordllama
    (the 256-d token model shipped in the wordllama wheel, `pip install -e '.[wordllama]'`: nothing
    fitted, nothing downloaded; `models_dir` and `refit` do not apply to it). auto never picks wordllama.

    Every setting is a field, so the run's configuration is all that decides the provider. The
    local model is persisted in `models_dir` (the platform uses `<GATEWAY_HOME>/models`). Block
    weights are part of every vector's hash, so changing one re-embeds the catalogue.
    """

    provider: str = "auto"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = DEFAULT_MODEL
    models_dir: str
    plot_weight: float = BlockWeights.plot
    genre_weight: float = BlockWeights.genre
    mood_weight: float = BlockWeights.mood
    metadata_weight: float = BlockWeights.metadata
    # the local model's freshness (lib/embeddings/coverage.py): refit below this vocabulary coverage of
    # the catalogue's token mass, or once the catalogue has grown this many times since the fit
    min_coverage: float = DEFAULT_MIN_COVERAGE
    max_growth: float = DEFAULT_MAX_GROWTH
    auto_refit: bool = True
    coverage_sample: int = 4000  # titles whose tokens coverage is measured on: a bounded cost per run
    fit_max_docs: int = 20000  # the fit corpus: the catalogue up to this size, else a sample of this many

    def weights(self) -> BlockWeights:
        return BlockWeights(
            plot=self.plot_weight, genre=self.genre_weight, mood=self.mood_weight, metadata=self.metadata_weight
        )

    def open(self, corpus: Callable[[], Iterable[str]] | None = None, *, refit: bool = False,
             catalogue_titles: int | None = None) -> EmbeddingProvider:
        """The provider; the local model is fitted on `corpus()` the first time (or on refit), and
        `catalogue_titles` is the catalogue size its growth is later measured against."""
        extra = {"catalogue_titles": catalogue_titles} if catalogue_titles else {}
        return make_provider(
            self.provider,
            models_dir=self.models_dir,
            corpus=corpus,
            openai_api_key=self.openai_api_key,
            openai_base_url=self.openai_base_url,
            openai_model=self.openai_model,
            refit=refit,
            **extra,
        )

    def describe(self) -> dict:
        """Which provider `open()` would build, and its settings; no network call, no model load.

        The key itself is left out: this is meant for logs and the UI."""
        return {
            "provider": resolve_provider_kind(self.provider, self.openai_api_key),
            "openai_model": self.openai_model,
            "models_dir": self.models_dir,
            "min_coverage": self.min_coverage,
            "max_growth": self.max_growth,
            "auto_refit": self.auto_refit,
        }
