"""Which titles need a new vector: the incremental core of `content_embeddings`.

A row needs embedding when the hash of everything its vector depends on (input text, block
features, provider model id, block weights) differs from the stored one. Nothing changed means
nothing to embed, so the provider is never called.

At scale the plan streams: :class:`CatalogPlan` reads ``dim_content`` through a server-side cursor
in batches (memory flat in catalogue size), and a title is only read into Python when SQL cannot
prove it unchanged. That proof is ``vectors.content_embedding_inputs`` (sql/016): per title, a
digest of the dim_content columns the vector reads, computed in SQL, with the hash Python gave them
under one :func:`hash_context`. When the digest, the context and the stored vector's hash all still
match, the title is unchanged; a rerun over an unchanged catalogue is one join, with no row hashed.
The memo only ever skips work, so a missing or stale entry just means the title is hashed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from gateway_pipelines.lib.embeddings.hashing import HASH_VERSION, embedding_hash
from gateway_pipelines.lib.embeddings.hybrid import BlockWeights, embedding_text

__all__ = [
    "CATALOG_SQL", "CatalogPlan", "EmbeddingPlan", "PlanCounts", "catalogue_size", "fit_corpus", "hash_context",
    "plan_embeddings", "read_catalog", "sample_texts", "stored_hashes",
]

CATALOG_COLUMNS = ("content_key", "tmdb_id", "media_type", "title", "original_title", "overview", "tagline",
                   "genre_ids", "keywords", "release_date", "year", "runtime", "vote_average", "vote_count",
                   "popularity", "original_language")
_COLS = ", ".join(f"d.{c}" for c in CATALOG_COLUMNS)

CATALOG_SQL = f"SELECT {_COLS} FROM analytics.dim_content d ORDER BY d.content_key"  # noqa: S608 (constants)

STORED_HASHES_SQL = "SELECT content_key, embedding_hash FROM vectors.content_embeddings"

# Every column embedding_hash reads (hashing.hash_payload), as SQL renders them. Bump DIGEST_VERSION
# when this changes, so no old digest can match.
DIGEST_VERSION = 1
INPUT_DIGEST = ("md5(row(d.title, d.original_title, d.overview, d.tagline, d.genre_ids, d.keywords, d.release_date, "
                "d.year, d.runtime, d.vote_average, d.vote_count, d.popularity, d.media_type, "
                "d.original_language)::text)::uuid")
_FROM = """FROM analytics.dim_content d
LEFT JOIN vectors.content_embeddings e ON e.content_key = d.content_key
LEFT JOIN vectors.content_embedding_inputs m ON m.content_key = d.content_key"""
_MEMO_HIT = (f"(e.embedding_hash IS NOT NULL AND m.embedding_hash = e.embedding_hash "
             f"AND m.hash_context = %(context)s AND m.input_digest = {INPUT_DIGEST})")
COUNTS_SQL = f"SELECT count(*), count(*) FILTER (WHERE {_MEMO_HIT}) {_FROM}"
CANDIDATES_SQL = (f"SELECT {_COLS}, {INPUT_DIGEST} AS input_digest, e.embedding_hash AS stored_hash {_FROM} "
                  f"WHERE NOT {_MEMO_HIT} ORDER BY d.content_key")
TO_DELETE_SQL = """SELECT e.content_key FROM vectors.content_embeddings e
WHERE NOT EXISTS (SELECT 1 FROM analytics.dim_content d WHERE d.content_key = e.content_key)
ORDER BY e.content_key"""
# a deterministic sample: the same titles every run while the catalogue is the same
SAMPLE_SQL = f"SELECT {_COLS} FROM analytics.dim_content d ORDER BY md5(d.content_key) LIMIT %s"  # noqa: S608
MEMO_STAGE = "_stage_embedding_inputs"
MEMO_UPSERT = """INSERT INTO vectors.content_embedding_inputs AS m (content_key, input_digest, hash_context, embedding_hash)
SELECT content_key, input_digest, hash_context, embedding_hash FROM pg_temp._stage_embedding_inputs
ON CONFLICT (content_key) DO UPDATE SET input_digest = EXCLUDED.input_digest, hash_context = EXCLUDED.hash_context,
    embedding_hash = EXCLUDED.embedding_hash, hashed_at = now()
WHERE (m.input_digest, m.hash_context, m.embedding_hash)
    IS DISTINCT FROM (EXCLUDED.input_digest, EXCLUDED.hash_context, EXCLUDED.embedding_hash)"""
MEMO_PRUNE = """DELETE FROM vectors.content_embedding_inputs m
WHERE NOT EXISTS (SELECT 1 FROM analytics.dim_content d WHERE d.content_key = m.content_key)"""


def hash_context(model_id: str, weights: BlockWeights) -> str:
    """Everything besides a title's own columns that its embedding hash depends on."""
    return f"h{HASH_VERSION}.d{DIGEST_VERSION}|{model_id}|{weights.fingerprint()}"


# ------------------------------------------------------------------ whole-catalogue helpers (small catalogues, tests)
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


# ------------------------------------------------------------------ streaming plan
def catalogue_size(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM analytics.dim_content").fetchone()[0])


def sample_texts(conn: psycopg.Connection, limit: int) -> list[str]:
    """Plot-embedding texts of a deterministic sample of at most ``limit`` titles."""
    with conn.cursor(row_factory=dict_row) as cur:
        return [t for t in (embedding_text(r) for r in cur.execute(SAMPLE_SQL, (int(limit),))) if t]


def fit_corpus(conn: psycopg.Connection, limit: int) -> Iterator[str]:
    """The texts the local model is fitted on: the whole catalogue up to ``limit`` titles, else a
    deterministic sample of that many, so fitting costs the same at any catalogue size."""
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(SAMPLE_SQL, (int(limit),)):
            text = embedding_text(row)
            if text:
                yield text


@dataclass
class PlanCounts:
    catalogue: int = 0  # dim_content rows
    memo_unchanged: int = 0  # proven unchanged in SQL, never read into Python
    hashed: int = 0  # read and hashed
    hash_unchanged: int = 0  # hashed, and equal to the stored hash
    to_embed: int = 0
    to_delete: list[str] = field(default_factory=list)
    memo_written: int = 0

    @property
    def unchanged(self) -> int:
        return self.memo_unchanged + self.hash_unchanged

    @property
    def total(self) -> int:
        return self.unchanged + self.to_embed


class CatalogPlan:
    """One consistent read of the catalogue: counts, keys to delete, and the titles to embed in batches.

    ``read`` is held in one REPEATABLE READ transaction for the plan's life (a snapshot, so the
    counts and the stream agree); memo rows are written on ``memo`` (its own transactions: the memo
    is only ever a shortcut, so it needs no atomicity with the load).
    """

    def __init__(self, read: psycopg.Connection, memo: psycopg.Connection | None, model_id: str,
                 weights: BlockWeights, *, memo_flush_rows: int = 20_000) -> None:
        self.read, self.memo = read, memo
        self.model_id, self.weights = model_id, weights
        self.context = hash_context(model_id, weights)
        self.counts = PlanCounts()
        self._memo_rows: list[tuple[str, uuid.UUID, str, str]] = []
        self._memo_flush_rows = memo_flush_rows
        self._isolation: psycopg.IsolationLevel | None = None

    def __enter__(self) -> "CatalogPlan":
        if self.read.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.read.commit()
        self._isolation = self.read.isolation_level
        self.read.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        total, memo_hits = self.read.execute(COUNTS_SQL, {"context": self.context}).fetchone()
        self.counts.catalogue, self.counts.memo_unchanged = int(total), int(memo_hits)
        self.counts.to_delete = [k for (k,) in self.read.execute(TO_DELETE_SQL)]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._flush_memo()
        finally:
            self.read.rollback()  # read-only snapshot: nothing to keep
            self.read.isolation_level = self._isolation  # a pooled connection goes back as it came

    def batches(self, batch_size: int) -> Iterator[list[tuple[dict[str, Any], str]]]:
        """Lists of (row, new hash) to embed, at most ``batch_size`` each, in content_key order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        pending: list[tuple[dict[str, Any], str]] = []
        with self.read.cursor("content_embeddings_plan", row_factory=dict_row) as cur:
            cur.itersize = batch_size
            cur.execute(CANDIDATES_SQL, {"context": self.context})
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    break
                for row in rows:
                    digest, stored = row.pop("input_digest"), row.pop("stored_hash")
                    new_hash = embedding_hash(row, self.model_id, self.weights)
                    self.counts.hashed += 1
                    self._memo_rows.append((row["content_key"], digest, self.context, new_hash))
                    if stored == new_hash:
                        self.counts.hash_unchanged += 1
                    else:
                        pending.append((row, new_hash))
                if len(self._memo_rows) >= self._memo_flush_rows:
                    self._flush_memo()
                while len(pending) >= batch_size:
                    out, pending = pending[:batch_size], pending[batch_size:]
                    self.counts.to_embed += len(out)
                    yield out
        if pending:
            self.counts.to_embed += len(pending)
            yield pending

    def _flush_memo(self) -> None:
        rows, self._memo_rows = self._memo_rows, []
        if not rows or self.memo is None:
            return
        conn = self.memo
        with conn.transaction():
            conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (content_key text, input_digest uuid, "
                                 "hash_context text, embedding_hash text) ON COMMIT DELETE ROWS")
                         .format(sql.Identifier(MEMO_STAGE)))
            with conn.cursor().copy(
                sql.SQL("COPY pg_temp.{} (content_key, input_digest, hash_context, embedding_hash) FROM STDIN")
                .format(sql.Identifier(MEMO_STAGE))
            ) as copy:
                for r in rows:
                    copy.write_row(r)
            conn.execute(MEMO_UPSERT)
        self.counts.memo_written += len(rows)

    def prune_memo(self) -> int:
        """Drop memo rows of titles no longer in dim_content (after the load deleted their vectors)."""
        if self.memo is None:
            return 0
        with self.memo.transaction():
            return self.memo.execute(MEMO_PRUNE).rowcount
