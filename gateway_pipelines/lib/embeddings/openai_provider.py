"""OpenAI embeddings (``text-embedding-3-small``, ``dimensions=512``) for the plot block.

Requests are packed by both API limits (at most ``max_inputs`` inputs and about
``max_tokens_per_request`` tokens each); tokens are estimated as
``ceil(len(text)/4) + 1`` because tiktoken is not a dependency.  Inputs longer than
8,191 estimated tokens are truncated with a warning.  Retries (429 / 5xx /
timeouts, honouring ``retry-after`` / ``retry-after-ms``) are done by the official
client (``max_retries``); this class does not retry on its own.

The key and the API root are arguments, never looked up: the official client falls back to
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` when given ``None``, so a missing key is an error here and
a missing root becomes :data:`DEFAULT_BASE_URL`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Sequence

import numpy as np

from .base import EmbeddingDimensionError, l2_normalize_rows, model_id_of

__all__ = ["OpenAIProvider", "estimate_tokens", "MAX_INPUT_TOKENS", "DEFAULT_BASE_URL", "DEFAULT_MODEL"]

log = logging.getLogger(__name__)

MAX_INPUT_TOKENS = 8191
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "text-embedding-3-small"


def estimate_tokens(text: str) -> int:
    """Rough token count: ``ceil(len(text)/4) + 1`` (tiktoken is not available)."""
    return math.ceil(len(text) / 4) + 1


def _truncate(text: str, max_tokens: int = MAX_INPUT_TOKENS) -> str:
    # largest length whose estimate is <= max_tokens: ceil(L/4) + 1 <= max_tokens  <=>  L <= 4*(max_tokens-1)
    return text[: 4 * (max_tokens - 1)]


class OpenAIProvider:
    kind = "openai"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        dimensions: int = 512,
        max_inputs: int = 2048,
        max_tokens_per_request: int = 300_000,
        max_retries: int = 6,
        timeout: float = 60.0,
        client: Any | None = None,
    ) -> None:
        if int(dimensions) < 1:
            raise ValueError("dimensions must be positive")
        if not 1 <= int(max_inputs) <= 2048:
            raise ValueError("max_inputs must be within 1..2048 (the API limit)")
        if int(max_tokens_per_request) < 2:
            raise ValueError("max_tokens_per_request must be >= 2")
        self.model = model
        self.dimensions = int(dimensions)
        self.dim = self.dimensions
        self.version = f"dim{self.dimensions}"
        self.max_inputs = int(max_inputs)
        self.max_tokens_per_request = int(max_tokens_per_request)
        self.calls = 0
        self.prompt_tokens = 0  # as reported by the API's `usage`
        self.truncated = 0  # inputs cut to the per-input token limit
        if client is None:
            import openai

            api_key = (api_key or "").strip()
            if not api_key:
                raise ValueError("OpenAIProvider needs an api_key (or a ready client)")
            client = openai.OpenAI(api_key=api_key, base_url=(base_url or "").strip() or DEFAULT_BASE_URL,
                                   max_retries=int(max_retries), timeout=float(timeout))
        self.client = client

    @property
    def model_id(self) -> str:
        return model_id_of(self.kind, self.model, self.version)

    def __repr__(self) -> str:
        return f"OpenAIProvider(model_id={self.model_id!r}, calls={self.calls})"

    # ------------------------------------------------------------------ batching
    def _batches(self, texts: Sequence[str]) -> Iterator[list[int]]:
        """Yield lists of positions, each within both the input-count and token budgets."""
        batch: list[int] = []
        tokens = 0
        for i, t in enumerate(texts):
            n = estimate_tokens(t)
            if batch and (len(batch) >= self.max_inputs or tokens + n > self.max_tokens_per_request):
                yield batch
                batch, tokens = [], 0
            batch.append(i)
            tokens += n
        if batch:
            yield batch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: (n, dim) float32, unit rows, in input order.

        Blank strings (which the API rejects) are not sent; their rows are zero.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a single string")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        prepared: list[str] = []
        positions: list[int] = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"embed() input {i} is {type(t).__name__}, expected str")
            if not t.strip():
                continue
            if estimate_tokens(t) > MAX_INPUT_TOKENS:
                log.warning("embedding input %d is ~%d tokens (> %d): truncating to %d characters",
                            i, estimate_tokens(t), MAX_INPUT_TOKENS, 4 * (MAX_INPUT_TOKENS - 1))
                t = _truncate(t)
                self.truncated += 1
            prepared.append(t)
            positions.append(i)
        for batch in self._batches(prepared):
            vecs = self._request([prepared[j] for j in batch])
            out[[positions[j] for j in batch]] = vecs
        return out

    def _request(self, inputs: list[str]) -> np.ndarray:
        self.calls += 1
        resp = self.client.embeddings.create(
            model=self.model, input=inputs, dimensions=self.dimensions, encoding_format="float"
        )
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(inputs) or [d.index for d in data] != list(range(len(inputs))):
            raise RuntimeError(
                f"OpenAI embeddings response has {len(data)} items (indices {[d.index for d in data][:10]}...) "
                f"for {len(inputs)} inputs"
            )
        rows = []
        for d in data:
            emb = d.embedding
            if isinstance(emb, str):  # base64, should not happen with encoding_format="float"
                import base64

                emb = np.frombuffer(base64.b64decode(emb), dtype="<f4")
            v = np.asarray(emb, dtype=np.float32)
            if v.ndim != 1 or v.shape[0] != self.dimensions:
                raise EmbeddingDimensionError(
                    getattr(resp, "model", None) or self.model, self.dimensions, int(v.shape[-1]) if v.ndim else 0,
                    detail=f"requested dimensions={self.dimensions}",
                )
            rows.append(v)
        usage = getattr(resp, "usage", None)
        if usage is not None:
            self.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        return l2_normalize_rows(np.vstack(rows))
