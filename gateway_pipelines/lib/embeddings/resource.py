"""Embedding settings for Dagster: which provider, which block weights, where models live."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dagster as dg

from gateway_pipelines.lib.embeddings.base import EmbeddingProvider
from gateway_pipelines.lib.embeddings.factory import make_provider, resolve_provider_kind
from gateway_pipelines.lib.embeddings.hybrid import BlockWeights
from gateway_pipelines.lib.embeddings.openai_provider import DEFAULT_MODEL


class EmbeddingResource(dg.ConfigurableResource):
    """`provider`: auto (OpenAI when `openai_api_key` is set, else local), openai or local.

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

    def weights(self) -> BlockWeights:
        return BlockWeights(
            plot=self.plot_weight, genre=self.genre_weight, mood=self.mood_weight, metadata=self.metadata_weight
        )

    def open(self, corpus: Callable[[], Iterable[str]] | None = None, *, refit: bool = False) -> EmbeddingProvider:
        """The provider; the local model is fitted on `corpus()` the first time (or on refit)."""
        return make_provider(
            self.provider,
            models_dir=self.models_dir,
            corpus=corpus,
            openai_api_key=self.openai_api_key,
            openai_base_url=self.openai_base_url,
            openai_model=self.openai_model,
            refit=refit,
        )

    def describe(self) -> dict:
        """Which provider `open()` would build, and its settings; no network call, no model load.

        The key itself is left out: this is meant for logs and the UI."""
        return {
            "provider": resolve_provider_kind(self.provider, self.openai_api_key),
            "openai_model": self.openai_model,
            "models_dir": self.models_dir,
        }
