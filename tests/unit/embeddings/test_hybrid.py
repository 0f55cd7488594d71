from __future__ import annotations

import numpy as np
import pytest

from gateway_pipelines.lib.embeddings import (
    BLOCKS,
    DIM,
    GENRE_SLOTS,
    BlockWeights,
    EmbeddingDimensionError,
    QueryIntent,
    build_content_vectors,
    build_query_vector,
    compose,
    embedding_text,
    genre_block,
    metadata_block,
    mood_block,
    mood_slot,
    split_blocks,
)
from tests.unit.embeddings import plots


def _row(**kw):
    base = dict(content_key="movie:1", tmdb_id=1, media_type="movie", title="Orbit", original_title="Orbit",
                overview="Astronauts aboard a space station fight a rogue AI.", tagline="No one hears you.",
                genre_ids=[878, 53], keywords=["space station", "artificial intelligence"],
                release_date="2019-05-01", year=2019, runtime=110, vote_average=7.1, vote_count=2300,
                popularity=35.2, original_language="en", poster_path="/p.jpg", status="Released")
    base.update(kw)
    return base


EMPTY_ROW = dict(title=None, overview=None, genre_ids=[], keywords=None)


def _nonzero_blocks(v: np.ndarray) -> set[str]:
    return {k for k, (a, b) in BLOCKS.items() if np.any(v[..., a:b])}


def test_layout_constants():
    assert DIM == 768
    assert BLOCKS == {"plot": (0, 512), "genre": (512, 576), "mood": (576, 640), "metadata": (640, 768)}


def test_embedding_text_format():
    r = _row(title="Orbit", overview="Astronauts fight.", tagline="Run.", keywords=["space", "ai"])
    assert embedding_text(r) == "Orbit. Astronauts fight. Tagline: Run. Keywords: space, ai"
    assert embedding_text(_row(tagline=None, keywords=[], overview="X")) == "Orbit. X"
    assert embedding_text(_row(overview="", tagline="", keywords=None)) == "Orbit"
    assert embedding_text(_row(title=None, original_title="Órbita", overview="X", tagline=None,
                               keywords=None)) == "Órbita. X"
    assert embedding_text(EMPTY_ROW) == ""


@pytest.mark.parametrize("block", list(BLOCKS))
def test_each_block_lands_in_its_own_slice(block):
    parts = {"plot": np.zeros(512), "genre": np.zeros(64), "mood": np.zeros(64), "metadata": np.zeros(128)}
    parts[block] = np.arange(1, parts[block].shape[0] + 1, dtype=float)
    v = compose(parts["plot"], parts["genre"], parts["mood"], parts["metadata"], BlockWeights())[0]
    assert _nonzero_blocks(v) == {block}
    a, b = BLOCKS[block]
    # a lone block is just its own direction
    np.testing.assert_allclose(v[a:b], parts[block] / np.linalg.norm(parts[block]), atol=1e-6)


def test_genre_only_row_lights_only_genre_block(stub_provider):
    # TV Movie has no mood mapping, so genre is the only block with input
    v = build_content_vectors([dict(EMPTY_ROW, genre_ids=[10770])], stub_provider)
    assert _nonzero_blocks(v[0]) == {"genre"}
    assert stub_provider.calls == 0  # no text, no call
    # before normalisation the genre block is one-hot on the TV Movie slot
    assert np.flatnonzero(genre_block([10770])).tolist() == [GENRE_SLOTS[10770]]


def test_title_only_row_lights_only_plot_block(stub_provider):
    v = build_content_vectors([dict(EMPTY_ROW, title="Orbit")], stub_provider)
    assert _nonzero_blocks(v[0]) == {"plot"}
    np.testing.assert_allclose(v[0, :512], stub_provider.embed(["Orbit"])[0], atol=1e-6)


def test_full_rows_are_unit_and_one_call(stub_provider):
    rows = [_row(tmdb_id=i, title=f"Title {i}") for i in range(5)]
    v = build_content_vectors(rows, stub_provider)
    assert v.shape == (5, 768) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert stub_provider.calls == 1 and len(stub_provider.seen[0]) == 5
    assert all(_nonzero_blocks(x) == set(BLOCKS) for x in v)


def test_no_rows_no_call(stub_provider):
    v = build_content_vectors([], stub_provider)
    assert v.shape == (0, 768) and stub_provider.calls == 0


def test_block_energy_follows_weights(stub_provider):
    row = _row()
    w = BlockWeights(plot=1.0, genre=0.5, mood=0.25, metadata=0.1)
    v = build_content_vectors([row], stub_provider, w)[0]
    norms = {k: float(np.linalg.norm(x)) for k, x in split_blocks(v).items()}
    total = np.sqrt(sum(x * x for x in w.as_dict().values()))
    for k, weight in w.as_dict().items():
        assert norms[k] == pytest.approx(weight / total, rel=1e-4)
    # doubling one weight doubles that block's norm relative to the others
    w2 = BlockWeights(plot=1.0, genre=1.0, mood=0.25, metadata=0.1)
    v2 = build_content_vectors([row], stub_provider, w2)[0]
    n2 = {k: float(np.linalg.norm(x)) for k, x in split_blocks(v2).items()}
    assert n2["genre"] / n2["plot"] == pytest.approx(2 * norms["genre"] / norms["plot"], rel=1e-4)
    assert n2["mood"] / n2["plot"] == pytest.approx(norms["mood"] / norms["plot"], rel=1e-4)


def test_zero_weight_drops_block_and_skips_embedding(stub_provider):
    v = build_content_vectors([_row()], stub_provider, BlockWeights(plot=0.0))[0]
    assert not v[:512].any() and stub_provider.calls == 0
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_zero_blocks_stay_zero(stub_provider):
    row = dict(EMPTY_ROW, title="Orbit", genre_ids=[878])  # no metadata at all
    v = build_content_vectors([row], stub_provider)[0]
    assert not v[640:768].any()
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert not compose(np.zeros(512), np.zeros(64), np.zeros(64), np.zeros(128)).any()


def test_block_sizes_are_validated():
    with pytest.raises(ValueError, match="plot"):
        compose(np.zeros((1, 256)), np.zeros((1, 64)), np.zeros((1, 64)), np.zeros((1, 128)))
    with pytest.raises(ValueError):
        BlockWeights(plot=-1)


def test_provider_of_wrong_width_is_rejected():
    class Wide:
        kind, model, version, dim, calls = "stub", "wide", "1", 1536, 0
        model_id = "stub:wide@1"

        def embed(self, texts):
            return np.ones((len(texts), 1536), dtype=np.float32)

    with pytest.raises(EmbeddingDimensionError, match="1536"):
        build_content_vectors([_row()], Wide())


def test_tv_sci_fi_fantasy_lights_movie_counterparts():
    g = genre_block([10765])
    assert g[GENRE_SLOTS[10765]] == 1.0
    assert g[GENRE_SLOTS[878]] == 0.5 and g[GENRE_SLOTS[14]] == 0.5
    assert g.shape == (64,) and not g[27:].any()
    # a movie sci-fi query meets a TV sci-fi & fantasy show, but not a romance
    assert float(genre_block([878]) @ g) > 0
    assert float(genre_block([10749]) @ g) == 0
    a = genre_block([10759])
    assert a[GENRE_SLOTS[28]] == 0.5 and a[GENRE_SLOTS[12]] == 0.5
    assert genre_block([10768])[GENRE_SLOTS[10752]] == 0.5


def test_query_with_only_genres_has_zero_plot(stub_provider):
    q = build_query_vector(QueryIntent(genre_ids=[878]), stub_provider)
    assert q.shape == (768,) and np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)
    assert not q[:512].any() and not q[640:].any()
    assert q[512 + GENRE_SLOTS[878]] > 0
    assert stub_provider.calls == 0


def test_query_blocks_follow_intent(stub_provider):
    q = build_query_vector(QueryIntent(text="heist on a space station"), stub_provider)
    assert stub_provider.calls == 1
    assert not q[512:576].any() and not q[640:].any()  # no genres, no metadata asked for
    assert q[576 + mood_slot("heist")] > 0 and q[576 + mood_slot("space")] > 0
    q = build_query_vector(QueryIntent(year=1995, media_type="tv", language="ko"), stub_provider)
    assert _nonzero_blocks(q) == {"metadata"}
    q = build_query_vector(QueryIntent(mood={"energy": 1.0, "tone.dark": 0.8}), stub_provider)
    assert _nonzero_blocks(q) == {"mood"}
    assert q[576 + mood_slot("energy")] > q[576 + mood_slot("tone.dark")] > 0
    with pytest.raises(KeyError):
        build_query_vector(QueryIntent(mood={"sparkliness": 1.0}), stub_provider)
    with pytest.raises(ValueError, match="empty query"):
        build_query_vector(QueryIntent(), stub_provider)


def test_query_matches_content_of_same_subject(lsa_model):
    """End to end with the local model: a space query ranks space titles first."""
    rows = [dict(title=f"{s} {i}", overview=p, genre_ids=[878] if s == "space" else [10749] if s == "romance"
                 else [], year=2000 + i, media_type="movie", original_language="en")
            for s, ps in plots.PLOTS.items() for i, p in enumerate(ps)]
    labels = [s for s, ps in plots.PLOTS.items() for _ in ps]
    v = build_content_vectors(rows, lsa_model)
    q = build_query_vector(QueryIntent(text="astronauts and a rogue AI on a space station"), lsa_model)
    top = np.argsort(-(v @ q))[:5]
    assert [labels[i] for i in top] == ["space"] * 5
    q = build_query_vector(QueryIntent(genre_ids=[10765]), lsa_model)  # TV sci-fi & fantasy genre only
    top = np.argsort(-(v @ q))[:10]
    assert {labels[i] for i in top} == {"space"}


def test_mood_and_metadata_blocks_are_composed_from_features(stub_provider):
    row = _row()
    v = build_content_vectors([row], stub_provider)[0]
    blocks = split_blocks(v)
    mood = mood_block(row["genre_ids"], "Astronauts aboard a space station fight a rogue AI. No one hears you. "
                                        "space station, artificial intelligence")
    meta = metadata_block(row)
    cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))  # noqa: E731
    assert cos(blocks["mood"], mood) == pytest.approx(1.0, abs=1e-5)
    assert cos(blocks["metadata"], meta) == pytest.approx(1.0, abs=1e-5)


def test_weights_helpers():
    w = BlockWeights()
    assert w.as_dict() == {"plot": 1.0, "genre": 0.45, "mood": 0.3, "metadata": 0.25}
    assert w.fingerprint() == BlockWeights().fingerprint()
    assert w.fingerprint() != BlockWeights(mood=0.31).fingerprint()
    assert BlockWeights.from_mapping({"genre": 0.5}) == BlockWeights(genre=0.5)
