"""Hybrid content embeddings: plot text (OpenAI or local LSA) + genre + mood + metadata blocks.

Typical use::

    provider = make_provider("auto", state_dir=state_dir, corpus=lambda: texts)
    vectors = build_content_vectors(rows, provider, BlockWeights())
    hashes = [embedding_hash(r, provider.model_id, BlockWeights()) for r in rows]
    q = build_query_vector(QueryIntent(text="heist in space", genre_ids=[878]), provider)
"""

from .features import (
    GENRE_ALIAS_WEIGHT,
    GENRE_ALIASES,
    GENRE_BLOCK_DIM,
    GENRE_IDS,
    GENRE_NAMES,
    GENRE_SLOTS,
    LANGUAGES,
    METADATA_BLOCK_DIM,
    METADATA_FIELDS,
    METADATA_GROUP_WEIGHTS,
    METADATA_LAYOUT,
    MOOD_BAND_WIDTH,
    MOOD_BANDS,
    MOOD_BLOCK_DIM,
    MOOD_FEATURES,
    MOOD_GENRES,
    MOOD_LEVEL_GENRES,
    MOOD_WORDS,
    as_genre_ids,
    expand_genres,
    explain_mood,
    genre_block,
    metadata_block,
    mood_block,
    mood_slot,
    query_metadata_block,
    row_year,
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
from .openai_provider import MAX_INPUT_TOKENS, OpenAIProvider, estimate_tokens
from .providers import (
    PLOT_DIM,
    EmbeddingDimensionError,
    EmbeddingProvider,
    l2_normalize_rows,
    make_provider,
    model_id_of,
)

__all__ = [
    "BLOCKS", "DIM", "PLOT_DIM", "HASH_VERSION", "MAX_INPUT_TOKENS",
    "BlockWeights", "QueryIntent", "EmbeddingProvider", "EmbeddingDimensionError",
    "OpenAIProvider", "LocalLSAProvider",
    "make_provider", "model_id_of", "l2_normalize_rows", "estimate_tokens",
    "build_content_vectors", "build_query_vector", "compose", "embedding_text", "mood_text", "split_blocks",
    "embedding_hash", "hash_payload",
    "GENRE_ALIAS_WEIGHT", "GENRE_ALIASES", "GENRE_BLOCK_DIM", "GENRE_IDS", "GENRE_NAMES", "GENRE_SLOTS",
    "LANGUAGES", "METADATA_BLOCK_DIM", "METADATA_FIELDS", "METADATA_GROUP_WEIGHTS", "METADATA_LAYOUT",
    "MOOD_BAND_WIDTH", "MOOD_BANDS", "MOOD_BLOCK_DIM", "MOOD_FEATURES", "MOOD_GENRES", "MOOD_LEVEL_GENRES",
    "MOOD_WORDS",
    "as_genre_ids", "expand_genres", "explain_mood", "genre_block", "metadata_block", "mood_block", "mood_slot",
    "query_metadata_block", "row_year",
]
