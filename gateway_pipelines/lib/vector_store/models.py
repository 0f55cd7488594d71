"""The query provider for the model the table serves, while a model change is not swapped in yet.

During a local model refit, `models_dir` holds the new model (its ``LATEST`` pointer) and still the
earlier one (``tfidf-lsa-<version>.joblib``), which the served vectors were made with; a query must
be embedded with that one. An OpenAI model of another name or dimension cannot be rebuilt locally:
search then says so (`ModelMismatchError`) instead of comparing vectors of two models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .search import ModelMismatchError

__all__ = ["query_provider"]


def query_provider(models_dir: str | Path, current: Any) -> Callable[[str], Any]:
    """``provider_for`` for :func:`.search.search_by_text`: ``current`` when it is the served model,
    else the saved local model of the served version."""

    def provider_for(model_id: str) -> Any:
        if getattr(current, "model_id", None) == model_id:
            return current
        kind, _, rest = model_id.partition(":")
        version = rest.rpartition("@")[2]
        if kind == "local" and version:
            from gateway_pipelines.lib.embeddings.local_provider import LocalLSAProvider

            path = Path(models_dir) / f"tfidf-lsa-{version}.joblib"
            if path.is_file():
                return LocalLSAProvider.load(path)
        if kind == "wordllama":  # its weights ship with the package: the served version, if installed
            from gateway_pipelines.lib.embeddings.wordllama_provider import WordLlamaProvider

            provider = WordLlamaProvider.load()
            if provider.model_id == model_id:
                return provider
        raise ModelMismatchError(getattr(current, "model_id", "?"), model_id)

    return provider_for
