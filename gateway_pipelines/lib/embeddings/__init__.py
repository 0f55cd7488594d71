"""Hybrid content embeddings: plot text (OpenAI or local LSA) + genre + mood + metadata blocks.

Layout, from the bottom up (each module imports only those above it):

* ``base`` -- the provider contract (:class:`EmbeddingProvider`, ``PLOT_DIM``, helpers);
* ``openai_provider``, ``local_provider`` -- the two plot-text providers (``coverage``: whether the
  local model still knows the catalogue's vocabulary);
* ``factory`` -- :func:`make_provider`: which provider, from explicit settings;
* ``genre_features``, ``mood_vocabulary`` -> ``mood_features``, ``metadata_features`` -- the
  hand-built blocks (genre slots come from :mod:`gateway_pipelines.lib.tmdb.genres`);
* ``hybrid`` -- the 768-d vector: blocks composed and weighted; ``hashing`` -- when to recompute;
* ``plan`` (warehouse reads) and ``resource`` (Dagster settings) -- imported by the pipeline only.

Typical use::

    provider = make_provider("auto", models_dir=models_dir, corpus=lambda: texts, openai_api_key=key)
    vectors = build_content_vectors(rows, provider, BlockWeights())
    hashes = [embedding_hash(r, provider.model_id, BlockWeights()) for r in rows]
    q = build_query_vector(QueryIntent(text="heist in space", genre_ids=[878]), provider)
"""

from .base import PLOT_DIM, EmbeddingDimensionError, EmbeddingProvider, l2_normalize_rows, model_id_of
from .factory import PROVIDER_KINDS, make_provider, resolve_provider_kind
from .genre_features import (
    GENRE_ALIAS_WEIGHT,
    GENRE_ALIASES,
    GENRE_BLOCK_DIM,
    GENRE_IDS,
    GENRE_NAMES,
    GENRE_SLOTS,
    as_genre_ids,
    expand_genres,
    genre_block,
)
from .hashing import HASH_VERSION, embedding_hash, hash_payload
from .hybrid import (
    BLOCKS,
    DIM,
    BlockWeights,
    QueryIntent,
    build_content_vectors,
    build_query_vector,
    compose,
    embedding_text,
    mood_text,
    split_blocks,
)
from .local_provider import LocalLSAProvider
from .metadata_features import (
    LANGUAGES,
    METADATA_BLOCK_DIM,
    METADATA_FIELDS,
    METADATA_GROUP_WEIGHTS,
    METADATA_LAYOUT,
    metadata_block,
    query_metadata_block,
    row_year,
)
from .mood_features import MOOD_BLOCK_DIM, explain_mood, mood_block, mood_slot
from .mood_vocabulary import MOOD_BAND_WIDTH, MOOD_BANDS, MOOD_FEATURES, MOOD_GENRES, MOOD_LEVEL_GENRES, MOOD_WORDS
from .openai_provider import MAX_INPUT_TOKENS, OpenAIProvider, estimate_tokens

__all__ = [
    "BLOCKS", "DIM", "PLOT_DIM", "HASH_VERSION", "MAX_INPUT_TOKENS",
    "BlockWeights", "QueryIntent", "EmbeddingProvider", "EmbeddingDimensionError",
    "OpenAIProvider", "LocalLSAProvider",
    "PROVIDER_KINDS", "make_provider", "resolve_provider_kind", "model_id_of", "l2_normalize_rows", "estimate_tokens",
    "build_content_vectors", "build_query_vector", "compose", "embedding_text", "mood_text", "split_blocks",
    "embedding_hash", "hash_payload",
    "GENRE_ALIAS_WEIGHT", "GENRE_ALIASES", "GENRE_BLOCK_DIM", "GENRE_IDS", "GENRE_NAMES", "GENRE_SLOTS",
    "LANGUAGES", "METADATA_BLOCK_DIM", "METADATA_FIELDS", "METADATA_GROUP_WEIGHTS", "METADATA_LAYOUT",
    "MOOD_BAND_WIDTH", "MOOD_BANDS", "MOOD_BLOCK_DIM", "MOOD_FEATURES", "MOOD_GENRES", "MOOD_LEVEL_GENRES",
    "MOOD_WORDS",
    "as_genre_ids", "expand_genres", "explain_mood", "genre_block", "metadata_block", "mood_block", "mood_slot",
    "query_metadata_block", "row_year",
]
