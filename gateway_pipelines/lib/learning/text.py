"""Skill descriptions: distinctive TF-IDF keywords of the successes, pitfalls from the failures."""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["distinctive_keywords", "pitfalls"]


def distinctive_keywords(docs: list[str], top: int = 5) -> list[list[str]]:
    """Per document (one per skill), the terms with the highest TF-IDF weight against the others.

    Terms are words of 3+ letters minus English stop words; ties are broken alphabetically, so the
    result is deterministic. A term present in every document has the lowest idf and rarely wins:
    what is listed is what sets the skill apart, not what every skill says ("done", "used")."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any(d.strip() for d in docs):
        return [[] for _ in docs]
    vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z_-]{2,}\b", sublinear_tf=True)
    try:
        x = vec.fit_transform(docs)
    except ValueError:  # only stop words
        return [[] for _ in docs]
    terms = np.array(vec.get_feature_names_out())
    out = []
    for i in range(x.shape[0]):
        row = x.getrow(i)
        pairs = sorted(zip(row.data.round(9), terms[row.indices]), key=lambda p: (-p[0], p[1]))
        out.append([t for _, t in pairs[:top]])
    return out


def pitfalls(critiques: list[str], top: int = 3) -> list[dict]:
    """The most frequent failure critiques (normalised), with their counts."""
    norm = [" ".join(str(c).lower().split()) for c in critiques if c and str(c).strip()]
    counts = Counter(norm)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"text": text, "count": n} for text, n in ranked]
