"""What every plot-text provider is: the contract the hybrid builder relies on.

The providers (:mod:`.openai_provider`, :mod:`.local_provider`) and the builder (:mod:`.hybrid`)
import this module and nothing of each other, so it imports none of them.

Vectors from different providers live in different spaces: ``model_id``
(``"{kind}:{model}@{version}"``) is what callers store next to a vector to know whether it is
comparable or must be recomputed.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "PLOT_DIM",
    "EmbeddingDimensionError",
    "EmbeddingProvider",
    "l2_normalize_rows",
    "model_id_of",
]

PLOT_DIM = 512


class EmbeddingDimensionError(ValueError):
    """A provider returned vectors of the wrong size."""

    def __init__(self, model: str, expected: int | None = None, got: int | None = None, detail: str = "") -> None:
        self.model = model
        self.expected = expected
        self.got = got
        if expected is None or got is None:  # EmbeddingDimensionError("free-form message")
            super().__init__(model)
            return
        msg = (
            f"embedding model {model!r} returned vectors of length {got}, expected {expected}. "
            f"Fix: use a model that supports the `dimensions` parameter (e.g. text-embedding-3-small / "
            f"text-embedding-3-large) and set dimensions={expected}"
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


@runtime_checkable
class EmbeddingProvider(Protocol):
    kind: str  # 'openai' | 'local'
    model: str  # e.g. 'text-embedding-3-small' or 'tfidf-lsa'
    version: str  # e.g. 'dim512' or the local model's sha
    dim: int  # 512
    calls: int  # requests/batches sent to the model so far

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised; n == 0 -> shape (0, dim) and no call."""
        ...

    @property
    def model_id(self) -> str:
        """f"{kind}:{model}@{version}"."""
        ...


def model_id_of(kind: str, model: str, version: str) -> str:
    return f"{kind}:{model}@{version}"


def texts_of(texts: Sequence[str]) -> list[str]:
    """``embed()``'s input as a list, refused unless it is a sequence of strings (a single string
    would otherwise be embedded one character at a time)."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of strings, not a single string")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"embed() input {i} is {type(t).__name__}, expected str")
    return texts


def l2_normalize_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        n = float(np.linalg.norm(x))
        return x / n if n > 0 else x.copy()
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out = np.zeros_like(x)
    nz = norms[:, 0] > 0
    out[nz] = x[nz] / norms[nz]
    return out
