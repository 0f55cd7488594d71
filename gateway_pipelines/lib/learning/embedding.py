"""Episode task embeddings: the platform's own text provider, fitted on the episodes' task texts.

Why this provider: the catalogue's plot model is fitted on film overviews, a different vocabulary
(agent tasks would embed to near-zero rows), and a source's own vectors (MiniLM from AgentDB, say)
make clustering depend on where an episode came from. So the learning domain builds the platform's
TF-IDF + LSA provider (:class:`~gateway_pipelines.lib.embeddings.local_provider.LocalLSAProvider`: the
same embed / save / load / model-id code) on the *distinct task strings* of the episodes, with an
episode-specific vectorizer: character 3-5-grams within word boundaries (``char_wb``, sublinear tf),
because task paraphrases share word stems ("test", "tests", "testing") more often than whole words,
and 64 LSA components (seed 0), padded to 384 dimensions (AgentDB's size). Measured on the
generator's paraphrases (docs/learning.md): word 1-2-grams at full rank give ARI 0.37-0.8, char
n-grams with 64 components 0.94-1.0 over seeds and family counts. It is saved under
``<models_dir>/episodes``. Later runs load the saved model, so its ``model_id``
(a hash of the fitted state) and every vector stay the same; ``refit`` fits again, which changes the
model id and so re-embeds every task. Vectors are stored once per distinct task and model in
``memory.task_embeddings`` (1M episodes have a few thousand distinct tasks); the episodes' own
``embedding`` column is left to the source that wrote it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from gateway_pipelines.lib.embeddings.local_provider import FORMAT_VERSION, LocalLSAProvider, _fingerprint

__all__ = ["EPISODE_DIM", "TaskEmbedder", "normalize_task", "task_hash"]

EPISODE_DIM = 384
N_COMPONENTS = 64
MODEL_FORMAT = "episode-char-lsa-1"


def fit_provider(tasks: Sequence[str]) -> LocalLSAProvider:
    """The platform's LSA provider with the episode vectorizer, fitted on the distinct tasks."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    distinct = sorted({normalize_task(t) for t in tasks if str(t).strip()})
    if len(distinct) < 2:
        raise ValueError(f"the episode task model needs at least 2 distinct tasks, got {len(distinct)}")
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=True, strip_accents="unicode",
                                 sublinear_tf=True, min_df=1, dtype=np.float32)
    x = vectorizer.fit_transform(distinct)
    k = max(1, min(N_COMPONENTS, x.shape[0] - 1, x.shape[1] - 1))
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=0)
    svd.fit(x)
    svd.components_ = np.ascontiguousarray(svd.components_, dtype=np.float32)
    params = {"format": FORMAT_VERSION, "dim": EPISODE_DIM, "vectorizer": MODEL_FORMAT, "seed": 0, "k": k}
    meta = {"format": FORMAT_VERSION, "params": params, "n_docs": len(distinct), "n_features": int(x.shape[1]),
            "n_components": k, "corpus": "distinct episode tasks"}
    provider = LocalLSAProvider(vectorizer, svd, version=_fingerprint(vectorizer, svd, params), dim=EPISODE_DIM,
                                meta=meta)
    return provider


def normalize_task(task: str) -> str:
    return " ".join(str(task).split()).strip()


def task_hash(task: str) -> str:
    return hashlib.sha256(normalize_task(task).encode("utf-8")).hexdigest()[:32]


class TaskEmbedder:
    """Deterministic task-text embeddings with a stable model id."""

    def __init__(self, provider: LocalLSAProvider):
        self.provider = provider

    @property
    def model_id(self) -> str:
        return self.provider.model_id

    @classmethod
    def load_or_fit(cls, models_dir: str | Path, tasks: Sequence[str] | None = None, *, refit: bool = False,
                    ) -> "TaskEmbedder":
        directory = Path(models_dir) / "episodes"
        corpus = None
        if tasks is not None:
            distinct = sorted({normalize_task(t) for t in tasks if str(t).strip()})
            if len(distinct) < 2 and (refit or not LocalLSAProvider.exists(directory)):
                raise ValueError(
                    f"cannot fit the episode task model on {len(distinct)} distinct task(s): load at least two "
                    "different tasks first (gateway simulate-episodes, or drop a JSONL file into landing/episodes)")

            def corpus():
                return distinct
        if not refit and LocalLSAProvider.exists(directory):
            return cls(LocalLSAProvider.load(directory))
        if corpus is None:
            raise FileNotFoundError(f"no episode task model in {directory} and no tasks to fit one on")
        provider = fit_provider(corpus())
        provider.save(directory)
        return cls(provider)

    @classmethod
    def fit(cls, tasks: Sequence[str]) -> "TaskEmbedder":
        return cls(fit_provider(tasks))

    def embed(self, tasks: Sequence[str], batch: int = 4096) -> np.ndarray:
        tasks = [normalize_task(t) for t in tasks]
        if not tasks:
            return np.zeros((0, EPISODE_DIM), dtype=np.float32)
        return np.vstack([self.provider.embed(tasks[i:i + batch]) for i in range(0, len(tasks), batch)])
