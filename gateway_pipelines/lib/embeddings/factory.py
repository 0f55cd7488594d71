"""Pick and build the plot-text provider from explicit settings.

* ``openai`` -- :class:`~.openai_provider.OpenAIProvider` (``text-embedding-3-small`` with
  ``dimensions=512``);
* ``local`` -- :class:`~.local_provider.LocalLSAProvider` (TF-IDF + truncated SVD fitted on the
  catalogue, persisted in ``models_dir``), fully offline;
* ``wordllama`` -- :class:`~.wordllama_provider.WordLlamaProvider` (wordllama's ``l2_supercat``
  token table, 256-d zero-padded to 512, shipped in its wheel: the ``[wordllama]`` extra), fully
  offline and nothing fitted;
* ``auto`` -- ``openai`` when an OpenAI API key is given, else ``local``. It never picks
  ``wordllama``: that needs an extra installed, and switching to it re-embeds the catalogue, so it is
  chosen by name only.

Settings arrive as arguments: reading the environment is the caller's job (``settings.py`` and the
Dagster resources), so the same call always builds the same provider.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable

from .base import EmbeddingProvider
from .local_provider import LocalLSAProvider
from .openai_provider import DEFAULT_MODEL, OpenAIProvider
from .wordllama_provider import WordLlamaProvider

__all__ = ["PROVIDER_KINDS", "make_provider", "resolve_provider_kind"]

log = logging.getLogger(__name__)

PROVIDER_KINDS: tuple[str, ...] = ("auto", "openai", "local", "wordllama")

_OPENAI_KW = frozenset({"dimensions", "max_inputs", "max_tokens_per_request", "max_retries", "timeout", "client"})
_LOCAL_KW = frozenset({"refit", "seed", "min_df", "catalogue_titles"})


def _key(openai_api_key: str | None) -> str | None:
    return (openai_api_key.strip() or None) if isinstance(openai_api_key, str) else None


def resolve_provider_kind(kind: str | None, openai_api_key: str | None = None) -> str:
    """``"openai"``, ``"local"`` or ``"wordllama"``: what ``kind`` means given the key (``"auto"``: openai iff a
    non-blank key, else local)."""
    resolved = (kind or "auto").strip().lower()
    if resolved not in PROVIDER_KINDS:
        raise ValueError(f"unknown embedding provider kind {kind!r}: expected 'auto', 'openai', 'local' or "
                         "'wordllama'")
    if resolved == "auto":
        return "openai" if _key(openai_api_key) else "local"
    return resolved


def make_provider(
    kind: str = "auto",
    *,
    models_dir: str | os.PathLike,
    corpus: Callable[[], Iterable[str]] | None = None,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
    openai_model: str = DEFAULT_MODEL,
    **kw: object,
) -> EmbeddingProvider:
    """Build the plot-text provider.

    ``kind``:
      * ``"auto"`` -- ``"openai"`` when ``openai_api_key`` is a non-blank string, else ``"local"``;
      * ``"openai"`` -- :class:`OpenAIProvider` with the key, ``openai_base_url`` (``None``: the
        public API) and ``openai_model``; extra ``kw`` (dimensions, max_inputs,
        max_tokens_per_request, max_retries, timeout, client) are passed through;
      * ``"local"`` -- :meth:`LocalLSAProvider.load_or_fit` on ``models_dir``: the saved model
        (its ``LATEST`` pointer), else one fitted on ``corpus()`` and saved there; ``refit=True``
        always fits.  ``seed``, ``min_df`` and ``catalogue_titles`` kw are passed to
        :meth:`LocalLSAProvider.fit`;
      * ``"wordllama"`` -- :meth:`WordLlamaProvider.load`: the weights installed with the
        ``[wordllama]`` extra (a clear error saying how to install them when they are missing; never a
        download). ``models_dir``, ``corpus`` and every option are unused: there is nothing to fit.

    Options meant for another kind are ignored (so one set of options can be passed
    with ``"auto"``); options neither kind knows raise ``TypeError``.
    """
    kw = dict(kw)
    unknown = set(kw) - _OPENAI_KW - _LOCAL_KW
    if unknown:
        raise TypeError(f"make_provider() got unexpected arguments: {sorted(unknown)}")
    resolved = resolve_provider_kind(kind, openai_api_key)
    if (kind or "auto").strip().lower() == "auto":
        log.info("embedding provider auto-selected: %s", resolved)
    if resolved == "openai":
        key = _key(openai_api_key)
        if key is None and kw.get("client") is None:
            raise ValueError("embedding provider 'openai' needs an OpenAI API key (or use kind='local')")
        return OpenAIProvider(api_key=key, base_url=openai_base_url, model=openai_model,
                              **{k: v for k, v in kw.items() if k in _OPENAI_KW})  # type: ignore[arg-type]
    if resolved == "wordllama":
        return WordLlamaProvider.load()
    refit = bool(kw.pop("refit", False))
    fit_kw = {k: kw[k] for k in ("seed", "min_df", "catalogue_titles") if k in kw}
    return LocalLSAProvider.load_or_fit(models_dir, corpus, refit=refit, **fit_kw)
