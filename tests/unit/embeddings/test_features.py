from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from gateway_pipelines.lib.embeddings import (
    BLOCKS,
    GENRE_ALIASES,
    GENRE_IDS,
    GENRE_NAMES,
    GENRE_SLOTS,
    LANGUAGES,
    METADATA_LAYOUT,
    MOOD_BANDS,
    MOOD_FEATURES,
    MOOD_GENRES,
    MOOD_LEVEL_GENRES,
    as_genre_ids,
    explain_mood,
    genre_block,
    metadata_block,
    mood_block,
    mood_slot,
    query_metadata_block,
)
from gateway_pipelines.lib.tmdb import genres as tmdb_genres


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_genre_slots_cover_all_27_sorted():
    assert len(GENRE_SLOTS) == 27
    assert list(GENRE_SLOTS) == sorted(GENRE_SLOTS) == list(GENRE_IDS)
    assert sorted(GENRE_SLOTS.values()) == list(range(27))
    assert GENRE_SLOTS[12] == 0 and GENRE_SLOTS[10770] == 26


def test_genre_slots_come_from_the_tmdb_table():
    assert GENRE_NAMES is tmdb_genres.ALL_GENRES
    assert GENRE_NAMES == {**tmdb_genres.MOVIE_GENRES, **tmdb_genres.TV_GENRES}
    assert GENRE_IDS == tmdb_genres.ALL_GENRE_IDS
    # stored vectors keep these positions: editing the TMDB table must fail here first (and bump HASH_VERSION)
    assert GENRE_IDS == (12, 14, 16, 18, 27, 28, 35, 36, 37, 53, 80, 99, 878, 9648, 10402, 10749, 10751, 10752,
                         10759, 10762, 10763, 10764, 10765, 10766, 10767, 10768, 10770)


def test_genre_tables_of_the_blocks_name_only_tmdb_genres():
    known = set(tmdb_genres.ALL_GENRES)
    assert set(GENRE_ALIASES) <= set(tmdb_genres.TV_GENRES) - set(tmdb_genres.MOVIE_GENRES)
    assert all(set(targets) <= set(tmdb_genres.MOVIE_GENRES) for targets in GENRE_ALIASES.values())
    for table in (*MOOD_GENRES.values(), *MOOD_LEVEL_GENRES.values()):
        assert set(table) <= known, set(table) - known


def test_genre_block_lights_tv_aliases_and_drops_unknown_ids():
    g = genre_block([10765, 99999])
    assert g.shape == (64,) and g.dtype == np.float32
    assert g[GENRE_SLOTS[10765]] == 1.0
    assert g[GENRE_SLOTS[878]] == g[GENRE_SLOTS[14]] == 0.5
    assert np.count_nonzero(g) == 3 and not g[27:].any()


def test_explain_mood_reads_the_mood_slice_of_a_full_vector():
    m = mood_block([27], "A ghost haunts an old house.")
    full = np.zeros(768, dtype=np.float32)
    full[slice(*BLOCKS["mood"])] = m
    assert explain_mood(full) == explain_mood(m) != {}


@pytest.mark.parametrize("raw,expected", [
    ([28, 12], [28, 12]), ("[28, 12]", [28, 12]), ("{28,12}", [28, 12]), (None, []),
    (np.array([18]), [18]), ([{"id": 35, "name": "Comedy"}], [35]), (80, [80]), ("", []),
])
def test_as_genre_ids(raw, expected):
    assert as_genre_ids(raw) == expected


def test_mood_layout_and_names():
    assert MOOD_BANDS == ("energy", "tone", "intensity", "era")
    assert all(len(MOOD_FEATURES[b]) == 16 for b in MOOD_BANDS)
    assert mood_slot("energy") == 0 and mood_slot("tone.comedic") == 16
    assert mood_slot("intensity") == 32 and mood_slot("era.future") == 48 and mood_slot("space") == 49
    with pytest.raises(KeyError, match="ambiguous"):
        mood_slot("survival")  # energy.survival and intensity.survival


def test_energy_band_reads_genres_and_words():
    chase = mood_block([28, 53], "A getaway driver races through the city, chased by police after an explosion.")
    quiet = mood_block([18, 10749], "Two old friends share a quiet, gentle summer by the lake.")
    e = slice(0, 16)
    assert chase[mood_slot("energy")] > 0.9 > quiet[mood_slot("energy")]
    assert chase[mood_slot("energy.chase")] > 0 and chase[mood_slot("energy.explosion")] > 0
    assert quiet[mood_slot("energy.calm")] > chase[mood_slot("energy.calm")]
    assert chase[e].sum() > quiet[e].sum()
    # words alone (no genres) move the energy level too
    assert mood_block([], "a high speed chase and a huge explosion")[mood_slot("energy")] > 0


def test_tone_and_intensity_bands():
    comedy = mood_block([35], "A hilarious prank goes wrong at a wedding.")
    horror = mood_block([27], "A family is terrorised by a demon in their haunted house; blood on the walls.")
    assert comedy[mood_slot("tone.comedic")] == 1.0 and horror[mood_slot("tone.comedic")] == 0
    assert horror[mood_slot("tone.eerie")] > 0.9 and comedy[mood_slot("tone.eerie")] == 0
    assert horror[mood_slot("intensity")] > comedy[mood_slot("intensity")]
    assert comedy[mood_slot("intensity.light")] > horror[mood_slot("intensity.light")]
    assert horror[mood_slot("intensity.fear")] > 0.7
    assert cos(comedy, horror) < cos(horror, mood_block([27], "A ghost haunts an old house."))


@pytest.mark.parametrize("text,feature", [
    ("Colonists travel to a distant planet aboard a starship.", "era.space"),
    ("In the far future, androids rule a dystopian city.", "era.future"),
    ("A knight defends a medieval castle from a dragon.", "era.medieval"),
    ("Bootleggers rise during Prohibition in 1920s Chicago.", "era.early_20th"),
    ("A cowboy and a sheriff face an outlaw gang on the frontier.", "era.western"),
    ("In 1968, two students join the civil rights movement.", "era.mid_century"),
    ("A teenager survives her last year of high school.", "era.school"),
])
def test_era_band(text, feature):
    m = mood_block([], text)
    era = slice(48, 64)
    assert m[mood_slot(feature)] > 0
    assert int(np.argmax(m[era])) + 48 == mood_slot(feature)


def test_mood_is_deterministic_bounded_and_explainable():
    m = mood_block([878, 10765], "Astronauts aboard a space station in 2149 fight a rogue AI.")
    assert m.shape == (64,) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1
    np.testing.assert_array_equal(m, mood_block([878, 10765], "Astronauts aboard a space station in 2149 fight "
                                                               "a rogue AI."))
    names = explain_mood(m)
    assert "era.space" in names and "era.future" in names
    assert not mood_block(None, None).any() and not mood_block([], "").any()


def test_metadata_slots_documented_and_none_safe():
    covered = sorted(i for a, b in METADATA_LAYOUT.values() for i in range(a, b))
    assert covered == list(range(128))
    empty = metadata_block({})
    assert empty.shape == (128,) and not empty.any()
    none = metadata_block(dict(year=None, vote_average=None, vote_count=None, popularity=None, runtime=None,
                               media_type=None, original_language=None))
    assert not none.any()
    full = metadata_block(dict(year=1999, vote_average=8.1, vote_count=20000, popularity=60, runtime=136,
                               media_type="movie", original_language="en"))
    assert np.isfinite(full).all() and not full[slice(*METADATA_LAYOUT["reserved"])].any()
    for group in ("year", "vote_average", "log_vote_count", "log_popularity", "runtime", "media_type",
                  "language"):
        assert full[slice(*METADATA_LAYOUT[group])].any(), group


def test_metadata_similarity_means_closeness():
    def y(year):
        return metadata_block({"year": year})

    assert cos(y(1999), y(2001)) > cos(y(1999), y(1985)) > cos(y(1999), y(1950))
    assert cos(y(2010), y(2010)) == pytest.approx(1.0)
    # year falls back to release_date
    np.testing.assert_allclose(metadata_block({"release_date": "2001-09-01"}), y(2001))

    def r(avg, votes=1000):
        return metadata_block({"vote_average": avg, "vote_count": votes})

    assert cos(r(8.0), r(8.3)) > cos(r(8.0), r(5.0))
    # an unrated title (0 votes) gets no rating features, only the vote-count group
    unrated = metadata_block({"vote_average": 0, "vote_count": 0})
    assert not unrated[slice(*METADATA_LAYOUT["vote_average"])].any()
    # Decimals (as read from Postgres) work like floats
    np.testing.assert_allclose(metadata_block({"vote_average": Decimal("7.5"), "vote_count": 10}),
                               metadata_block({"vote_average": 7.5, "vote_count": 10}))


def test_media_type_and_language_one_hot():
    tv_ko = metadata_block({"media_type": "tv", "original_language": "ko"})
    a, _ = METADATA_LAYOUT["media_type"]
    la, _ = METADATA_LAYOUT["language"]
    assert tv_ko[a] == 0 and tv_ko[a + 1] > 0
    assert tv_ko[la + LANGUAGES.index("ko")] > 0
    assert np.count_nonzero(tv_ko) == 2
    other = metadata_block({"original_language": "is"})
    assert other[METADATA_LAYOUT["language_other"][0]] > 0 and np.count_nonzero(other) == 1


def test_query_metadata_min_rating_prefers_higher_ratings():
    q = query_metadata_block(min_rating=7.5)
    good = metadata_block({"vote_average": 8.4, "vote_count": 5000})
    bad = metadata_block({"vote_average": 5.2, "vote_count": 5000})
    assert float(q @ good) > float(q @ bad)
    assert not query_metadata_block().any()
    q = query_metadata_block(year=1994, media_type="movie", language="fr")
    assert float(q @ metadata_block({"year": 1995, "media_type": "movie", "original_language": "fr"})) > \
        float(q @ metadata_block({"year": 2020, "media_type": "tv", "original_language": "en"}))
