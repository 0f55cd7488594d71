"""Does the local model still know the catalogue? Vocabulary coverage and growth since the fit.

The TF-IDF/SVD model only embeds words it saw when it was fitted; a word it never saw adds nothing
to a plot vector. So the share of the catalogue's *token mass* the model knows is what decides
whether its vectors still describe the plots:

* token mass: unigram tokens after the model's own preprocessing, tokenisation and stop-word
  removal (bigrams left out, so that a new word is not counted twice);
* coverage: known tokens / all tokens, over a sample of the current catalogue (the sample bounds
  the cost of a run at any catalogue size; :func:`sample_sql` picks it deterministically);
* growth: catalogue titles now / titles when the model was fitted.

A model is stale below ``min_coverage`` or at ``max_growth`` and above; the pipeline then refits it,
which gives a new model version and re-embeds every title.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CorpusStats", "Freshness", "assess_freshness", "corpus_stats", "unigram_tokenizer"]

DEFAULT_MIN_COVERAGE = 0.90
DEFAULT_MAX_GROWTH = 2.0


def unigram_tokenizer(vectorizer: Any):
    """The fitted vectorizer's own text -> unigram tokens (lowercase, accents, token pattern, stop words)."""
    preprocess = vectorizer.build_preprocessor()
    tokenize = vectorizer.build_tokenizer()
    stop = frozenset(vectorizer.get_stop_words() or ())

    def tokens(text: str) -> list[str]:
        return [t for t in tokenize(preprocess(text)) if t not in stop]

    return tokens


@dataclass(frozen=True)
class CorpusStats:
    """Token mass of a set of texts against a vocabulary."""

    n_docs: int
    token_mass: int  # unigram tokens
    known_mass: int  # of which in the vocabulary
    distinct_tokens: int
    unknown_top: tuple[tuple[str, int], ...] = ()  # the most frequent unknown tokens, for the UI

    @property
    def coverage(self) -> float:
        return self.known_mass / self.token_mass if self.token_mass else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"n_docs": self.n_docs, "token_mass": self.token_mass, "known_mass": self.known_mass,
                "distinct_tokens": self.distinct_tokens, "coverage": round(self.coverage, 6),
                "unknown_top": [list(t) for t in self.unknown_top]}


def corpus_stats(texts: Iterable[str], vectorizer: Any, *, top: int = 10) -> CorpusStats:
    """Token mass of ``texts`` and the share the fitted ``vectorizer``'s vocabulary knows."""
    vocab = vectorizer.vocabulary_
    tokens_of = unigram_tokenizer(vectorizer)
    counts: Counter[str] = Counter()
    n_docs = 0
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            continue
        n_docs += 1
        counts.update(tokens_of(text))
    mass = sum(counts.values())
    unknown = Counter({t: c for t, c in counts.items() if t not in vocab})
    return CorpusStats(n_docs=n_docs, token_mass=mass, known_mass=mass - sum(unknown.values()),
                       distinct_tokens=len(counts), unknown_top=tuple(unknown.most_common(top)))


@dataclass(frozen=True)
class Freshness:
    """How well the fitted model fits today's catalogue, and whether to refit it."""

    coverage: float  # on the sample of the current catalogue
    coverage_at_fit: float | None  # the same measure on the fit corpus (None: a model saved before it was kept)
    catalogue_titles: int
    titles_at_fit: int
    min_coverage: float
    max_growth: float
    sample: CorpusStats
    reasons: tuple[str, ...] = field(default=())

    @property
    def growth(self) -> float:
        return self.catalogue_titles / self.titles_at_fit if self.titles_at_fit else float("inf")

    @property
    def stale(self) -> bool:
        return bool(self.reasons)

    @property
    def refit_due(self) -> bool:
        """Stale, and the catalogue changed since the fit: a model fitted on this very catalogue that is
        still below the threshold (a vocabulary min_df prunes hard) would only refit to itself."""
        return self.stale and self.catalogue_titles != self.titles_at_fit

    def describe(self) -> str:
        at_fit = f" (fit corpus {self.coverage_at_fit:.1%})" if self.coverage_at_fit is not None else ""
        verdict = "stale: " + "; ".join(self.reasons) if self.stale else "fresh"
        return (f"vocabulary coverage {self.coverage:.1%}{at_fit} of the catalogue's token mass "
                f"(sample of {self.sample.n_docs} titles; refit below {self.min_coverage:.0%}), catalogue "
                f"{self.catalogue_titles} titles = {self.growth:.2f}x the {self.titles_at_fit} at fit "
                f"(refit at {self.max_growth:g}x): {verdict}")

    def as_metadata(self) -> dict[str, Any]:
        return {
            "vocabulary_coverage": round(self.coverage, 4),
            "vocabulary_coverage_at_fit": None if self.coverage_at_fit is None else round(self.coverage_at_fit, 4),
            "catalogue_growth_since_fit": round(self.growth, 4),
            "titles_at_fit": self.titles_at_fit,
            "coverage_sample_titles": self.sample.n_docs,
            "coverage_sample_tokens": self.sample.token_mass,
            "unknown_tokens_top": ", ".join(f"{t} ({c})" for t, c in self.sample.unknown_top) or "none",
            "model_stale": self.stale,
            "model_refit_due": self.refit_due,
        }


def assess_freshness(sample_texts: Iterable[str], vectorizer: Any, *, catalogue_titles: int, titles_at_fit: int,
                     coverage_at_fit: float | None = None, min_coverage: float = DEFAULT_MIN_COVERAGE,
                     max_growth: float = DEFAULT_MAX_GROWTH) -> Freshness:
    """Coverage of a catalogue sample and growth since the fit, against the two thresholds."""
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage!r}")
    if not max_growth > 1:
        raise ValueError(f"max_growth must be > 1, got {max_growth!r}")
    stats = corpus_stats(sample_texts, vectorizer)
    reasons = []
    if stats.token_mass and stats.coverage < min_coverage:
        reasons.append(f"coverage {stats.coverage:.1%} < {min_coverage:.0%}")
    growth = catalogue_titles / titles_at_fit if titles_at_fit else float("inf")
    if growth >= max_growth:
        reasons.append(f"catalogue grew {growth:.2f}x since the fit (>= {max_growth:g}x)")
    return Freshness(coverage=stats.coverage, coverage_at_fit=coverage_at_fit, catalogue_titles=catalogue_titles,
                     titles_at_fit=titles_at_fit, min_coverage=min_coverage, max_growth=max_growth, sample=stats,
                     reasons=tuple(reasons))
