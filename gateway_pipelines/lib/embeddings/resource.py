"""Embedding settings for Dagster: which provider, which block weights, where models live."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dagster as dg

from gateway_pipelines.lib.embeddings.hybrid import BlockWeights
from gateway_pipelines.lib.embeddings.providers import EmbeddingProvider, make_provider
from gateway_pipelines.lib.state import state_paths


class EmbeddingResource(dg.ConfigurableResource):
    """`provider`: auto (OpenAI when OPENAI_API_KEY is set, else local), openai or local.

    Block weights are part of every vector's hash, so changing one re-embeds the catalogue.
    """

    provider: str = "auto"
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
        options = {"refit": True} if refit else {}
        return make_provider(self.provider, state_dir=state_paths().home, corpus=corpus, **options)
