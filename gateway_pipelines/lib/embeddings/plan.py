"""Which titles need a new vector: the incremental core of `content_embeddings`.

A row needs embedding when the hash of everything its vector depends on (input text, block
features, provider model id, block weights) differs from the stored one. Nothing changed means
nothing to embed, so the provider is never called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gateway_pipelines.lib.embeddings.hashing import embedding_hash
from gateway_pipelines.lib.embeddings.hybrid import BlockWeights

CATALOG_SQL = """
SELECT content_key, tmdb_id, media_type, title, original_title, overview, tagline, genre_ids, keywords,
       release_date, year, runtime, vote_average, vote_count, popularity, original_language
FROM analytics.dim_content
ORDER BY content_key
"""

STORED_HASHES_SQL = "SELECT content_key, embedding_hash FROM vectors.content_embeddings"


@dataclass
class EmbeddingPlan:
    to_embed: list[tuple[Mapping[str, Any], str]]  # (row, new hash)
    unchanged: int
    to_delete: list[str]

    @property
    def total(self) -> int:
        return len(self.to_embed) + self.unchanged


def read_catalog(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(CATALOG_SQL).fetchall()


def stored_hashes(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute(STORED_HASHES_SQL).fetchall())


def plan_embeddings(
    rows: Sequence[Mapping[str, Any]], stored: Mapping[str, str], model_id: str, weights: BlockWeights
) -> EmbeddingPlan:
    to_embed, unchanged = [], 0
    for row in rows:
        new_hash = embedding_hash(row, model_id, weights)
        if stored.get(row["content_key"]) == new_hash:
            unchanged += 1
        else:
            to_embed.append((row, new_hash))
    current = {row["content_key"] for row in rows}
    return EmbeddingPlan(to_embed, unchanged, sorted(set(stored) - current))
