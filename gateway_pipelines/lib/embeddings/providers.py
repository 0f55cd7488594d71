"""Text-embedding providers for the 512-d plot block.

Two implementations satisfy :class:`EmbeddingProvider`:

* ``openai`` -- :class:`~gateway_pipelines.lib.embeddings.openai_provider.OpenAIProvider`
  (``text-embedding-3-small`` with ``dimensions=512``), used when ``OPENAI_API_KEY``
  is set;
* ``local`` -- :class:`~gateway_pipelines.lib.embeddings.local_provider.LocalLSAProvider`
  (TF-IDF + truncated SVD fitted on the catalogue, persisted under
  ``state_dir/models``), fully offline.

:func:`make_provider` picks one.  Vectors from different providers live in
different spaces: ``model_id`` (``"{kind}:{model}@{version}"``) is what callers
store next to a vector to know whether it is comparable / must be recomputed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "PLOT_DIM",
    "EmbeddingDimensionError",
    "EmbeddingProvider",
    "l2_normalize_rows",
    "make_provider",
    "model_id_of",
]

log = logging.getLogger(__name__)

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


_OPENAI_KW = frozenset({"api_key", "base_url", "model", "dimensions", "max_inputs", "max_tokens_per_request",
                        "max_retries", "timeout", "client"})
_LOCAL_KW = frozenset({"refit", "seed", "min_df"})


def _has_key(env: Mapping[str, str]) -> bool:
    return bool((env.get("OPENAI_API_KEY") or "").strip())


def make_provider(
    kind: str = "auto",
    *,
    state_dir: Path,
    corpus: Callable[[], Iterable[str]] | None = None,
    env: Mapping[str, str] | None = None,
    **kw: object,
) -> EmbeddingProvider:
    """Build the plot-text provider.

    ``kind``:
      * ``"auto"`` -- ``"openai"`` when ``OPENAI_API_KEY`` is set (non-empty) in ``env``
        (default ``os.environ``), else ``"local"``;
      * ``"openai"`` -- :meth:`OpenAIProvider.from_env` with ``env``; extra ``kw`` (model,
        dimensions, max_inputs, max_tokens_per_request, max_retries, timeout, client,
        base_url, api_key) are passed through;
      * ``"local"`` -- loads the persisted model from ``state_dir/"models"`` (the
        ``LATEST`` pointer file), fitting it on ``corpus()`` and saving it when none
        exists or when ``refit=True``.  ``seed`` and ``min_df`` kw are passed to
        :meth:`LocalLSAProvider.fit`.

    Options meant for the other kind are ignored (so one set of options can be passed
    with ``"auto"``); options neither kind knows raise ``TypeError``.
    """
    env = os.environ if env is None else env
    kw = dict(kw)
    unknown = set(kw) - _OPENAI_KW - _LOCAL_KW
    if unknown:
        raise TypeError(f"make_provider() got unexpected arguments: {sorted(unknown)}")
    kind = (kind or "auto").strip().lower()
    if kind == "auto":
        kind = "openai" if _has_key(env) else "local"
        log.info("embedding provider auto-selected: %s", kind)
    if kind == "openai":
        from .openai_provider import OpenAIProvider

        if not _has_key(env) and not kw.get("api_key") and kw.get("client") is None:
            raise ValueError("embedding provider 'openai' needs OPENAI_API_KEY (or use kind='local')")
        # local-only options (refit, seed, min_df) are ignored so callers can pass one set of options to 'auto'
        return OpenAIProvider.from_env(env, **{k: v for k, v in kw.items() if k in _OPENAI_KW})  # type: ignore[arg-type]
    if kind == "local":
        from .local_provider import LocalLSAProvider

        refit = bool(kw.pop("refit", False))
        fit_kw = {k: kw.pop(k) for k in ("seed", "min_df") if k in kw}
        # anything left is an OpenAI-only option (model, dimensions, ...): irrelevant offline
        models_dir = Path(state_dir) / "models"
        if not refit and LocalLSAProvider.exists(models_dir):
            prov = LocalLSAProvider.load(models_dir)
            log.info("loaded local embedding model %s from %s", prov.model_id, models_dir)
            return prov
        if corpus is None:
            why = "refit requested" if refit else f"no fitted local model in {models_dir}"
            raise FileNotFoundError(
                f"cannot build the local embedding model: {why} and no corpus was given. "
                "Pass corpus=<callable returning the catalogue's texts>, or set OPENAI_API_KEY to use OpenAI."
            )
        texts = [t for t in corpus() if isinstance(t, str) and t.strip()]
        if not texts:
            raise ValueError("cannot fit the local embedding model: the corpus is empty")
        prov = LocalLSAProvider.fit(texts, **fit_kw)  # type: ignore[arg-type]
        path = prov.save(models_dir)
        log.info("fitted local embedding model %s on %d texts -> %s", prov.model_id, len(texts), path)
        return prov
    raise ValueError(f"unknown embedding provider kind {kind!r}: expected 'auto', 'openai' or 'local'")
