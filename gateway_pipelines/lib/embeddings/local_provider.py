"""Offline plot embeddings: TF-IDF + truncated SVD (latent semantic analysis).

Fitted on the catalogue's own texts, persisted with joblib, downloads nothing.

* TF-IDF: word 1-2 grams, sublinear tf, English stop words, accents stripped.
* SVD: ``n_components = min(512, n_docs - 1, n_features - 1)``; the output is
  padded with zeros to 512 dims when the SVD has fewer components, and rows are
  L2-normalised (a text made only of unknown words embeds to a zero row).
* ``version`` is a short sha256 of the fitted state (parameters, vocabulary, idf
  weights and the SVD components), so a refit on a different catalogue gets a
  different ``model_id`` and stored vectors can be recomputed.

Persistence: ``save(dir)`` writes ``dir/tfidf-lsa-<version>.joblib`` and then
atomically points ``dir/LATEST`` at it; ``load(dir)`` follows the pointer,
``load(file)`` loads that file; ``load_or_fit(dir, corpus)`` is what a pipeline uses: the saved
model when there is one, else a fit on the catalogue that is then saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .base import PLOT_DIM, l2_normalize_rows, model_id_of, texts_of
from .coverage import Freshness, assess_freshness, corpus_stats

__all__ = ["LocalLSAProvider", "LATEST_POINTER", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

LATEST_POINTER = "LATEST"
FORMAT_VERSION = 1
SVD_POWER_ITERATIONS = 2
_FILE_PREFIX = "tfidf-lsa-"


def _make_vectorizer(min_df: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        lowercase=True,
        strip_accents="unicode",
        stop_words="english",
        ngram_range=(1, 2),
        sublinear_tf=True,
        min_df=min_df,
        max_features=300_000,
        dtype=np.float32,
    )


def _fingerprint(vectorizer: Any, svd: Any, params: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True).encode())
    vocab = sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])
    h.update("\n".join(term for term, _ in vocab).encode("utf-8"))
    h.update(np.round(np.asarray(vectorizer.idf_, dtype=np.float64), 5).astype("<f4").tobytes())
    # rounded so last-bit BLAS noise does not change the version of an identical fit
    h.update(np.round(np.asarray(svd.components_, dtype=np.float64), 5).astype("<f4").tobytes())
    return h.hexdigest()[:12]


class LocalLSAProvider:
    kind = "local"
    model = "tfidf-lsa"

    def __init__(self, vectorizer: Any, svd: Any, *, version: str, dim: int = PLOT_DIM,
                 meta: dict | None = None) -> None:
        self.vectorizer = vectorizer
        self.svd = svd
        self.version = version
        self.dim = int(dim)
        self.meta = dict(meta or {})
        self.calls = 0
        self.path: Path | None = None

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, texts: Iterable[str], *, seed: int = 0, min_df: int | None = None,
            dim: int = PLOT_DIM, catalogue_titles: int | None = None) -> "LocalLSAProvider":
        """Fit TF-IDF + SVD on ``texts`` (the catalogue, or a sample of it). ``min_df`` defaults to 1 for
        fewer than 1,000 documents, else 2 (drops one-off bigrams in big catalogues).

        The corpus statistics go with the model (``meta["corpus"]``: documents, vocabulary, token
        mass and its coverage), and ``catalogue_titles`` (default: the documents) is the catalogue
        size growth is measured against; neither is part of the version."""
        from sklearn.decomposition import TruncatedSVD

        docs = [t for t in texts if isinstance(t, str) and t.strip()]
        if len(docs) < 2:
            raise ValueError(f"the local embedding model needs at least 2 non-empty documents, got {len(docs)}")
        if min_df is None:
            min_df = 1 if len(docs) < 1000 else 2
        t0 = time.perf_counter()
        vectorizer = _make_vectorizer(min_df)
        try:
            x = vectorizer.fit_transform(docs)
        except ValueError as e:  # empty vocabulary (only stop words / punctuation)
            raise ValueError(f"cannot fit the local embedding model: {e}") from e
        if hasattr(vectorizer, "stop_words_"):  # terms pruned by min_df/max_features: only bloats the pickle
            del vectorizer.stop_words_
        n_docs, n_features = x.shape
        k = min(dim, n_docs - 1, n_features - 1)
        if k < 1:
            raise ValueError(
                f"corpus too small for the local embedding model ({n_docs} docs, {n_features} terms)"
            )
        # two power iterations: 6 s instead of 13.5 s for 20,000 titles x 512 components, for 0.561
        # instead of 0.568 of the variance explained (the 512 leading directions barely move)
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=SVD_POWER_ITERATIONS, random_state=seed)
        svd.fit(x)
        # float32 halves the persisted size; done before fingerprinting so fit and load embed identically
        svd.components_ = np.ascontiguousarray(svd.components_, dtype=np.float32)
        params = {"format": FORMAT_VERSION, "dim": dim, "min_df": min_df, "seed": seed, "k": k,
                  "n_iter": SVD_POWER_ITERATIONS}
        version = _fingerprint(vectorizer, svd, params)
        meta = {
            "format": FORMAT_VERSION,
            "params": params,
            "n_docs": n_docs,
            "n_features": n_features,
            "n_components": k,
            "explained_variance": float(np.sum(svd.explained_variance_ratio_)),
            "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fit_seconds": round(time.perf_counter() - t0, 3),
            "catalogue_titles": int(catalogue_titles) if catalogue_titles else n_docs,
            "corpus": {**corpus_stats(docs, vectorizer).as_dict(), "vocabulary": n_features},
        }
        log.info("fitted tfidf-lsa %s: %d docs, %d terms, %d components", version, n_docs, n_features, k)
        return cls(vectorizer, svd, version=version, dim=dim, meta=meta)

    @property
    def titles_at_fit(self) -> int:
        """Catalogue size when the model was fitted (models saved before it was kept: their documents)."""
        return int(self.meta.get("catalogue_titles") or self.meta.get("n_docs") or 0)

    @property
    def coverage_at_fit(self) -> float | None:
        corpus = self.meta.get("corpus") or {}
        return corpus.get("coverage")

    def freshness(self, sample_texts: Iterable[str], *, catalogue_titles: int, min_coverage: float,
                  max_growth: float) -> Freshness:
        """Vocabulary coverage of a catalogue sample and growth since the fit (see :mod:`.coverage`)."""
        return assess_freshness(sample_texts, self.vectorizer, catalogue_titles=catalogue_titles,
                                titles_at_fit=self.titles_at_fit, coverage_at_fit=self.coverage_at_fit,
                                min_coverage=min_coverage, max_growth=max_growth)

    @property
    def n_components(self) -> int:
        return int(self.svd.components_.shape[0])

    @property
    def model_id(self) -> str:
        return model_id_of(self.kind, self.model, self.version)

    def __repr__(self) -> str:
        return f"LocalLSAProvider(model_id={self.model_id!r}, components={self.n_components}, calls={self.calls})"

    # ------------------------------------------------------------------ embedding
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = texts_of(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.calls += 1
        z = self.svd.transform(self.vectorizer.transform(texts)).astype(np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, : z.shape[1]] = z[:, : self.dim]
        return l2_normalize_rows(out)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model into ``directory`` and point ``directory/LATEST`` at it."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        import joblib

        path = d / f"{_FILE_PREFIX}{self.version}.joblib"
        payload = {"format": FORMAT_VERSION, "kind": self.kind, "model": self.model, "version": self.version,
                   "dim": self.dim, "meta": self.meta, "vectorizer": self.vectorizer, "svd": self.svd}
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".joblib")
        os.close(fd)
        try:
            joblib.dump(payload, tmp, compress=1)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _atomic_write_text(d / LATEST_POINTER, path.name + "\n")
        self.path = path
        return path

    @staticmethod
    def exists(directory: str | os.PathLike) -> bool:
        d = Path(directory)
        p = d / LATEST_POINTER
        if not p.is_file():
            return False
        return (d / p.read_text().strip()).is_file()

    @classmethod
    def load_or_fit(cls, models_dir: str | os.PathLike, corpus: Callable[[], Iterable[str]] | None = None, *,
                    refit: bool = False, **fit_kw: Any) -> "LocalLSAProvider":
        """The model saved in ``models_dir``; fitted on ``corpus()`` and saved there when none exists or
        ``refit`` is set.  ``fit_kw`` (``seed``, ``min_df``) go to :meth:`fit`."""
        d = Path(models_dir)
        if not refit and cls.exists(d):
            prov = cls.load(d)
            log.info("loaded local embedding model %s from %s", prov.model_id, d)
            return prov
        if corpus is None:
            why = "refit requested" if refit else f"no fitted local model in {d}"
            raise FileNotFoundError(
                f"cannot build the local embedding model: {why} and no corpus was given. "
                "Pass corpus=<callable returning the catalogue's texts>, or give an OpenAI API key to use OpenAI."
            )
        # the corpus is a callable so that a loaded model never pays for reading the catalogue
        texts = [t for t in corpus() if isinstance(t, str) and t.strip()]
        if not texts:
            raise ValueError("cannot fit the local embedding model: the corpus is empty")
        prov = cls.fit(texts, **fit_kw)
        path = prov.save(d)
        log.info("fitted local embedding model %s on %d texts -> %s", prov.model_id, len(texts), path)
        return prov

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LocalLSAProvider":
        """Load a saved model: a ``.joblib`` file, or a directory holding a ``LATEST`` pointer."""
        import joblib

        p = Path(path)
        if p.is_dir():
            pointer = p / LATEST_POINTER
            if not pointer.is_file():
                raise FileNotFoundError(f"no local embedding model in {p} (missing {LATEST_POINTER} pointer)")
            p = p / pointer.read_text().strip()
        if not p.is_file():
            raise FileNotFoundError(f"local embedding model file not found: {p}")
        payload = joblib.load(p)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"{p} is not a tfidf-lsa model of format {FORMAT_VERSION}")
        prov = cls(payload["vectorizer"], payload["svd"], version=payload["version"], dim=payload["dim"],
                   meta=payload.get("meta"))
        check = _fingerprint(prov.vectorizer, prov.svd, prov.meta.get("params", {}))
        if check != prov.version:
            raise ValueError(f"{p}: stored version {prov.version} does not match its content ({check})")
        prov.path = p
        return prov


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
