"""Vocabulary coverage against planted drift: a catalogue whose texts carry a known share of words
the model never saw must measure that share, over several seeds; the thresholds decide a refit."""

from __future__ import annotations

import numpy as np
import pytest

from gateway_pipelines.lib.embeddings import LocalLSAProvider
from gateway_pipelines.lib.embeddings.coverage import assess_freshness, corpus_stats

OLD = [f"old{i}word" for i in range(300)]
NEW = [f"new{i}word" for i in range(300)]


def _docs(rng: np.random.Generator, n: int, new_share: float, length: int = 40) -> list[str]:
    """Texts whose tokens are NEW words with probability ``new_share`` (the planted ground truth)."""
    out = []
    for _ in range(n):
        is_new = rng.random(length) < new_share
        words = [NEW[rng.integers(len(NEW))] if x else OLD[rng.integers(len(OLD))] for x in is_new]
        out.append(" ".join(words))
    return out


@pytest.fixture(scope="module")
def model() -> LocalLSAProvider:
    # 150 docs x 40 tokens over 300 words: every OLD word is seen (min_df=1 under 1,000 docs)
    return LocalLSAProvider.fit(_docs(np.random.default_rng(0), 150, 0.0), seed=0)


def test_the_fit_records_its_corpus_statistics(model):
    corpus = model.meta["corpus"]
    assert corpus["n_docs"] == 150 and corpus["token_mass"] == 150 * 40
    assert corpus["vocabulary"] == model.meta["n_features"] and corpus["coverage"] == 1.0
    assert model.meta["catalogue_titles"] == 150 and model.titles_at_fit == 150 and model.coverage_at_fit == 1.0
    assert model.meta["fitted_at"].endswith("Z")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("new_share", [0.0, 0.05, 0.25, 0.6])
def test_coverage_measures_the_planted_share_of_unknown_words(model, seed, new_share):
    texts = _docs(np.random.default_rng(seed), 300, new_share)
    stats = corpus_stats(texts, model.vectorizer)
    assert stats.n_docs == 300 and stats.token_mass == 300 * 40
    # binomial over 12,000 tokens: the standard error is <= 0.0046
    assert stats.coverage == pytest.approx(1 - new_share, abs=0.02)
    assert all(t.startswith("new") for t, _ in stats.unknown_top)


def test_stop_words_and_case_count_as_the_model_reads_them(model):
    stats = corpus_stats(["The OLD1WORD and the new5word", "", None], model.vectorizer)
    # 'the'/'and' are stop words: 2 tokens of mass, one known
    assert (stats.n_docs, stats.token_mass, stats.known_mass) == (1, 2, 1)


def test_freshness_thresholds_and_when_a_refit_is_due(model):
    drifted = _docs(np.random.default_rng(9), 200, 0.25)
    f = model.freshness(drifted, catalogue_titles=200, min_coverage=0.9, max_growth=2.0)
    assert f.stale and f.refit_due and "coverage" in f.reasons[0] and f.growth == pytest.approx(200 / 150)
    fresh = model.freshness(_docs(np.random.default_rng(9), 200, 0.02), catalogue_titles=200, min_coverage=0.9,
                            max_growth=2.0)
    assert not fresh.stale and not fresh.refit_due and fresh.as_metadata()["model_stale"] is False
    grown = model.freshness(_docs(np.random.default_rng(9), 200, 0.0), catalogue_titles=300, min_coverage=0.9,
                            max_growth=2.0)
    assert grown.stale and grown.refit_due and "grew 2.00x" in grown.reasons[0]
    # fitted on this very catalogue and still below: warn, but a refit would only give the same model
    same = model.freshness(drifted, catalogue_titles=150, min_coverage=0.9, max_growth=2.0)
    assert same.stale and not same.refit_due
    assert "stale" in same.describe() and "sample of 200 titles" in same.describe()
    with pytest.raises(ValueError, match="min_coverage"):
        assess_freshness([], model.vectorizer, catalogue_titles=1, titles_at_fit=1, min_coverage=0)
    with pytest.raises(ValueError, match="max_growth"):
        assess_freshness([], model.vectorizer, catalogue_titles=1, titles_at_fit=1, max_growth=1.0)


def test_a_refit_on_the_drifted_catalogue_knows_it_again(model, tmp_path):
    drifted = _docs(np.random.default_rng(4), 150, 0.3)
    assert corpus_stats(drifted, model.vectorizer).coverage < 0.75
    refit = LocalLSAProvider.load_or_fit(tmp_path, lambda: drifted, refit=True, catalogue_titles=800)
    assert refit.model_id != model.model_id and refit.titles_at_fit == 800
    assert corpus_stats(drifted, refit.vectorizer).coverage == 1.0
    assert LocalLSAProvider.load(tmp_path).meta["corpus"]["coverage"] == 1.0  # the statistics persist
