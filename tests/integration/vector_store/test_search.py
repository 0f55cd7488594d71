"""Search on a 3,000-title catalogue with skewed metadata: filters never come back short."""

from __future__ import annotations

import numpy as np
import pytest

from gateway_pipelines.lib.vector_store import SearchFilters, search_by_text, search_by_vector, similar
from tests.integration.vector_store.data import clustered_vectors

K = 10


def exact_top(catalogue: dict, q: np.ndarray, allowed: set[str] | None, k: int = K, exclude: set[str] = frozenset()):
    keys, x = catalogue["keys"], catalogue["vectors"]
    d = 1.0 - (x @ (q / np.linalg.norm(q)))
    order = np.argsort(d, kind="stable")
    out = [keys[i] for i in order if (allowed is None or keys[i] in allowed) and keys[i] not in exclude]
    return out[:k]


def matching(catalogue: dict, f: SearchFilters) -> set[str]:
    out = set()
    for key, r in catalogue["dims"].items():
        if f.media_type and r["media_type"] != f.media_type:
            continue
        if f.genre_ids and not set(f.genre_ids) & set(r["genre_ids"]):
            continue
        if f.language and r["original_language"] != f.language:
            continue
        if f.year_min is not None and r["year"] < f.year_min:
            continue
        if f.year_max is not None and r["year"] > f.year_max:
            continue
        if f.min_rating is not None and r["vote_average"] < f.min_rating:
            continue
        out.add(key)
    return out


def _q(n: int) -> np.ndarray:
    """Query vectors near the catalogue's clusters (the same 30 centres) that are not catalogue rows."""
    return clustered_vectors(3000 + n, clusters=30, seed=0)[3000:]


FILTERS = {
    "0.5% (language)": (SearchFilters(language="ko"), 15, "exact"),
    "5% (media type)": (SearchFilters(media_type="tv"), 150, None),
    "30% (genre)": (SearchFilters(genre_ids=(18,)), 900, "hnsw_iterative"),
    "combined": (SearchFilters(genre_ids=(18, 99), year_min=1980, year_max=2010, min_rating=5.0), None, None),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_filtered_search_returns_min_k_matching_rows_in_distance_order(cat_conn, catalogue, name):
    f, expected_matching, expected_strategy = FILTERS[name]
    allowed = matching(catalogue, f)
    if expected_matching is not None:
        assert len(allowed) == expected_matching
    found = 0
    for q in _q(15):
        result = search_by_vector(cat_conn, q, k=K, filters=f, log=False)
        assert len(result.hits) == min(K, len(allowed))
        assert all(h.id in allowed for h in result.hits)
        distances = [h.distance for h in result.hits]
        assert distances == sorted(distances)
        assert all(abs(h.similarity - (1 - h.distance)) < 1e-12 for h in result.hits)
        if expected_strategy is not None:
            assert result.strategy == expected_strategy
        truth = exact_top(catalogue, q, allowed)
        if result.strategy == "exact":
            assert result.ids == truth
        found += len(set(result.ids) & set(truth))
    assert found / (15 * min(K, len(allowed))) >= 0.9


def test_selective_filter_with_large_k_returns_every_match(cat_conn, catalogue):
    f = SearchFilters(language="ko")
    allowed = matching(catalogue, f)
    q = _q(1)[0]
    result = search_by_vector(cat_conn, q, k=50, filters=f, log=False)
    assert len(result.hits) == 15 and set(result.ids) == allowed
    assert result.ids == exact_top(catalogue, q, allowed, k=50)


def test_short_index_scan_falls_back_to_exact(cat_conn, catalogue):
    # a threshold of 1 makes the search trust the index for a filter only 15 titles pass; asking for 20
    # makes the iterative scan come back short, and the fallback must still return all 15, exactly
    f = SearchFilters(language="ko")
    q = _q(1)[0]
    result = search_by_vector(cat_conn, q, k=20, filters=f, log=False, exact_threshold=1)
    assert result.strategy == "exact"
    assert result.ids == exact_top(catalogue, q, matching(catalogue, f), k=20)


def test_no_match_returns_nothing(cat_conn):
    result = search_by_vector(cat_conn, _q(1)[0], filters=SearchFilters(language="xx"), log=False)
    assert result.hits == [] and result.strategy == "exact"


def test_unfiltered_search_uses_the_index(cat_conn, catalogue):
    q = _q(1)[0]
    result = search_by_vector(cat_conn, q, k=K, ef_search=100, log=False)
    assert result.strategy == "hnsw" and len(result.hits) == K
    assert len(set(result.ids) & set(exact_top(catalogue, q, None))) >= 9
    # ef_search below k is raised to k (HNSW returns at most ef_search rows)
    small = search_by_vector(cat_conn, q, k=25, ef_search=5, log=False)
    assert small.ef_search == 25 and len(small.hits) == 25


def test_every_search_is_logged(cat_conn):
    count = lambda: cat_conn.execute("SELECT count(*) FROM vectors.vector_search_logs").fetchone()[0]  # noqa: E731
    before = count()
    cat_conn.commit()
    q = _q(1)[0]
    result = search_by_vector(
        cat_conn, q, k=5, filters=SearchFilters(media_type="tv", min_rating=2.5), user_id="u1", query_text="space"
    )
    search_by_vector(cat_conn, q, k=5, log=False)
    assert count() == before + 1
    row = cat_conn.execute(
        "SELECT query_vector, query_text, filters, result_ids, user_id, search_type, latency_ms "
        "FROM vectors.vector_search_logs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    cat_conn.commit()
    vector, text, filters, ids, user, kind, latency = row
    np.testing.assert_allclose(vector.to_numpy(), q, rtol=1e-6)
    assert (text, user, kind, ids) == ("space", "u1", "vector", result.ids)
    assert filters["media_type"] == "tv" and filters["min_rating"] == 2.5
    assert filters["_search"] == {"k": 5, "ef_search": 100, "strategy": result.strategy}
    assert latency > 0


def test_inside_a_callers_transaction_settings_are_restored_and_the_caller_commits(cat_conn):
    cat_conn.execute("SELECT set_config('hnsw.ef_search', '17', true)")  # the caller's transaction is open
    before = cat_conn.execute("SELECT count(*) FROM vectors.vector_search_logs").fetchone()[0]
    search_by_vector(cat_conn, _q(1)[0], k=3, filters=SearchFilters(genre_ids=(18,)), ef_search=120)
    settings = cat_conn.execute(
        "SELECT current_setting('enable_sort'), current_setting('hnsw.ef_search'), "
        "current_setting('hnsw.iterative_scan'), current_setting('synchronous_commit')"
    ).fetchone()
    assert settings == ("on", "17", "off", "on")
    cat_conn.rollback()  # the caller decides: the log row goes with its transaction
    assert cat_conn.execute("SELECT count(*) FROM vectors.vector_search_logs").fetchone()[0] == before
    cat_conn.rollback()


def test_similar_excludes_the_title_itself(cat_conn, catalogue):
    key = catalogue["keys"][42]
    result = similar(cat_conn, key, k=K)
    assert len(result.hits) == K and key not in result.ids
    assert result.strategy == "hnsw_iterative"
    x = catalogue["vectors"][42]
    assert set(result.ids) >= set(exact_top(catalogue, x, None, exclude={key})[:8])
    logged = cat_conn.execute(
        "SELECT search_type, query_text, filters->'exclude_ids' FROM vectors.vector_search_logs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    cat_conn.commit()
    assert logged == ("similar", key, [key])
    filtered = similar(cat_conn, key, k=K, filters=SearchFilters(media_type="tv"))
    assert len(filtered.hits) == K and all(h.media_type == "tv" for h in filtered.hits)


def test_similar_to_an_unknown_title_says_so(cat_conn):
    with pytest.raises(KeyError, match="movie-987654"):
        similar(cat_conn, "movie-987654")


class AsModel:
    """A provider that reports another model id (everything else is the wrapped provider's)."""

    def __init__(self, inner, model_id: str):
        self._inner, self.model_id = inner, model_id

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_search_by_text_builds_the_hybrid_query_vector(cat_conn):
    from gateway_pipelines.lib.embeddings.local_provider import LocalLSAProvider

    provider = LocalLSAProvider.fit(
        [
            "A hacker learns that reality is a simulation and joins a rebellion.",
            "Two detectives hunt a serial killer in a rainy city.",
            "A family of superheroes hides their powers in suburbia.",
            "An astronaut is stranded on Mars and must grow food to survive.",
        ]
    )
    # the catalogue's vectors are of "test-model": the query must be embedded with that model, so
    # the fitted provider stands in for it (test_model_versions.py covers a provider of another model)
    result = search_by_text(cat_conn, "stranded astronaut on mars", AsModel(provider, "test-model"), k=7,
                            filters=SearchFilters(media_type="tv"))
    assert result.embedding_model == "test-model" and {h.embedding_model for h in result.hits} == {"test-model"}
    assert len(result.hits) == 7 and all(h.media_type == "tv" for h in result.hits)
    logged = cat_conn.execute(
        "SELECT search_type, query_text, filters->>'media_type' FROM vectors.vector_search_logs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    cat_conn.commit()
    assert logged == ("text", "stranded astronaut on mars", "tv")


def test_bad_arguments_are_refused(cat_conn):
    with pytest.raises(ValueError, match="768"):
        search_by_vector(cat_conn, np.ones(10, dtype=np.float32))
    with pytest.raises(ValueError, match="non-zero"):
        search_by_vector(cat_conn, np.zeros(768, dtype=np.float32))
    with pytest.raises(ValueError, match="media_type"):
        SearchFilters(media_type="podcast")


def test_nearest_ids_are_the_searchs_candidates_without_their_rows(cat_conn, catalogue):
    """The recommender's candidate query: the same ids as search_by_vector at the same k and ef_search, the
    excluded ids absent, on a plain connection (in the caller's transaction) and on a pooled one."""
    from gateway_pipelines.lib.vector_store.pool import configure_search_connection
    from gateway_pipelines.lib.vector_store.search import nearest_ids
    from gateway_pipelines.lib.warehouse import connect

    pooled = connect(catalogue["url"])
    configure_search_connection(pooled)
    try:
        for n, q in enumerate(_q(5)):
            exclude = exact_top(catalogue, q, None, k=15)[n::2]  # some of the nearest titles, finished
            for conn in (cat_conn, pooled):
                full = search_by_vector(conn, q, k=40, ef_search=60, exclude_ids=exclude, log=False)
                ids = nearest_ids(conn, q, k=40, ef_search=60, exclude_ids=exclude)
                assert len(ids) == 40 and set(ids) == set(full.ids) and not set(ids) & set(exclude)
                assert len(set(ids) & set(exact_top(catalogue, q, None, k=40, exclude=set(exclude)))) >= 36
                plain = nearest_ids(conn, q, k=10, ef_search=40)
                assert set(plain) == set(search_by_vector(conn, q, k=10, ef_search=40, log=False).ids)
        # inside the caller's transaction, the caller's settings are as they were
        cat_conn.rollback()
        cat_conn.execute("SELECT set_config('hnsw.ef_search', '17', true)")
        nearest_ids(cat_conn, _q(1)[0], k=5, exclude_ids=catalogue["keys"][:3])
        assert cat_conn.execute("SELECT current_setting('enable_sort'), current_setting('hnsw.ef_search'), "
                                "current_setting('hnsw.iterative_scan')").fetchone() == ("on", "17", "off")
        cat_conn.rollback()
        # a table smaller than k: the exact scan gives every remaining row
        assert len(nearest_ids(cat_conn, _q(1)[0], k=1000, exclude_ids=catalogue["keys"][:2500])) == 500
    finally:
        pooled.close()
