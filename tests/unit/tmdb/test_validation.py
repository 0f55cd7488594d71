"""validate_record, dedupe_latest and content_hash."""

from __future__ import annotations

import copy
import json

import pytest

from gateway_pipelines.lib.tmdb import (
    MAX_OVERVIEW_CHARS,
    MAX_TAGLINE_CHARS,
    MAX_TITLE_CHARS,
    Reject,
    SourceRecord,
    ValidTitle,
    content_hash,
    dedupe_latest,
    validate_record,
)
from tests.fakes.tmdb_server import FIXTURES

PARTITION = "2024-05-01"


def movie(**changes) -> dict:
    base = {
        "id": 603, "title": "The Matrix", "original_title": "The Matrix",
        "overview": "A hacker learns the truth about reality.", "tagline": "Welcome to the Real World.",
        "genres": [{"id": 28, "name": "Action"}, {"id": 878, "name": "Science Fiction"}],
        "keywords": {"keywords": [{"id": 310, "name": "artificial intelligence"}]},
        "release_date": "1999-03-30", "runtime": 136, "vote_average": 7.9, "vote_count": 8907,
        "popularity": 104.3, "original_language": "en", "poster_path": "/abc.jpg", "status": "Released",
        "adult": False,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def tv(**changes) -> dict:
    base = {
        "id": 76479, "name": "The Boys", "original_name": "The Boys", "overview": "Vigilantes vs supes.",
        "genres": [{"id": 10765, "name": "Sci-Fi & Fantasy"}], "keywords": {"results": []},
        "first_air_date": "2019-07-25", "episode_run_time": [60], "number_of_seasons": 3,
        "vote_average": 8.4, "vote_count": 5935, "popularity": 3383.98, "original_language": "en",
        "status": "Returning Series",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def check(media_type: str | None, record, ref: str = "test:1") -> ValidTitle | Reject:
    return validate_record(SourceRecord(media_type, record, ref), source="test", partition=PARTITION)


def rejected(result, field: str) -> Reject:
    assert isinstance(result, Reject), f"expected a reject on {field}, got {result}"
    assert result.field == field, result.reason
    assert result.kind == "invalid" and result.source == "test" and result.partition == PARTITION
    assert result.reason and (field.startswith("<") or field in result.reason)
    json.dumps(result.record)  # always storable
    return result


def test_valid_movie_keeps_all_fields_and_normalises() -> None:
    raw = movie(title="  The Matrix  ", vote_count="8907", runtime="136.0", vote_average="7.9",
                credits={"cast": [{"name": "Keanu Reeves"}]}, **{"watch/providers": {"results": {}}})
    result = check("movie", raw)
    assert isinstance(result, ValidTitle)
    p = result.payload
    assert result.tmdb_id == 603 and result.media_type == "movie"
    assert p["title"] == "The Matrix"
    assert p["vote_count"] == 8907 and isinstance(p["vote_count"], int)
    assert p["runtime"] == 136 and isinstance(p["runtime"], int)
    assert p["vote_average"] == 7.9 and isinstance(p["vote_average"], float)
    assert p["credits"] == {"cast": [{"name": "Keanu Reeves"}]}
    assert p["watch/providers"] == {"results": {}}
    assert p["keywords"] == {"keywords": [{"id": 310, "name": "artificial intelligence"}]}
    assert result.warnings == ()
    assert raw["title"] == "  The Matrix  "  # input untouched


def test_real_fixture_bodies_validate() -> None:
    for media_type, name in (("movie", "movies__appends-1.json"), ("tv", "shows__appends-1.json"),
                             ("movie", "movies__details.json"), ("tv", "shows__details.json")):
        body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
        result = check(media_type, body)
        assert isinstance(result, ValidTitle), getattr(result, "reason", None)
        assert result.payload["credits" if "credits" in body else "id"] == body["credits" if "credits" in body else "id"]


def test_missing_optional_fields_are_none() -> None:
    result = check("movie", {"id": 7, "title": "Bare"})
    assert isinstance(result, ValidTitle)
    assert result.payload["release_date"] is None and result.payload["runtime"] is None
    assert result.payload["genres"] is None and result.payload["overview"] is None
    result = check("movie", movie(release_date="", runtime=None))
    assert result.payload["release_date"] is None


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (movie(id=...), "id"),
        (movie(id="abc"), "id"),
        (movie(id=0), "id"),
        (movie(id=-5), "id"),
        (movie(id=12.5), "id"),
        (movie(id=True), "id"),
        (movie(vote_count="abc"), "vote_count"),
        (movie(vote_count=-1), "vote_count"),
        (movie(vote_average=11.2), "vote_average"),
        (movie(vote_average=-0.1), "vote_average"),
        (movie(vote_average="nan"), "vote_average"),
        (movie(runtime=-3), "runtime"),
        (movie(release_date="2012-13-45"), "release_date"),
        (movie(release_date="30/03/1999"), "release_date"),
        (movie(release_date=19990330), "release_date"),
        (movie(title="", original_title=""), "title"),
        (movie(title="   ", original_title=None), "title"),
        (movie(title=42), "title"),
        (movie(genres='[{"id": 18, "name": "Drama"'), "genres"),
        (movie(genres=[{"name": "Drama"}]), "genres"),
        (movie(keywords="spy, heist"), "keywords"),
        (tv(episode_run_time=[45, -1]), "episode_run_time"),
        (tv(first_air_date="2019-02-30"), "first_air_date"),
        (tv(name="", original_name=""), "name"),
        (tv(number_of_seasons="three"), "number_of_seasons"),
    ],
)
def test_reject_rules(record: dict, field: str) -> None:
    media_type = "tv" if "name" in record or "first_air_date" in record else "movie"
    rejected(check(media_type, record), field)


def test_reject_reason_says_what_and_where() -> None:
    reject = rejected(check("movie", movie(vote_average=11.2), ref="movies.csv:line 17"), "vote_average")
    assert "vote_average=11.2 is outside 0-10" in reject.reason
    assert "movies.csv:line 17" in reject.reason
    assert reject.record["vote_average"] == 11.2


def test_rule_drops_the_value_and_the_location_so_rejects_group() -> None:
    a = check("movie", movie(vote_average=11.2), ref="movies.csv:line 17")
    b = check("movie", movie(vote_average=42), ref="movies.csv:line 99")
    c = check("movie", movie(genres=[{"id": 18, "name": "Drama"}, {"id": -3, "name": "X"}]), ref="m:1")
    d = check("movie", movie(genres=[{"id": -4, "name": "Y"}]), ref="m:2")
    assert isinstance(a, Reject) and isinstance(b, Reject) and isinstance(c, Reject) and isinstance(d, Reject)
    assert a.reason != b.reason and a.rule == b.rule
    assert a.rule.startswith("vote_average is outside 0-10") and "11.2" not in a.rule and "line" not in a.rule
    assert c.rule == d.rule and c.rule.startswith("genres.[].id ")  # whichever list item broke
    malformed = [check("movie", {"__malformed__": f"junk {n}", "__line__": n}) for n in (3, 8)]
    assert len({r.rule for r in malformed}) == 1 and "line" in malformed[0].reason


def test_first_failing_field_is_named() -> None:
    rejected(check("movie", movie(id="x", vote_average=99)), "id")


def test_unknown_media_type_rejected() -> None:
    rejected(check(None, movie()), "media_type")
    rejected(check("person", movie()), "media_type")


def test_malformed_and_non_dict_records() -> None:
    r = rejected(check("movie", {"__malformed__": '{"id": 1, "orig', "__line__": 5}), "<record>")
    assert "line 5" in r.reason
    rejected(check("movie", ["not", "a", "dict"]), "<record>")


def test_reject_record_is_json_safe() -> None:
    odd = movie(vote_average=float("inf"), extra={1, 2}, when=object())
    r = rejected(check("movie", odd), "vote_average")
    json.dumps(r.record)
    assert r.record["vote_average"] == "inf"


def test_title_falls_back_to_original_with_warning() -> None:
    result = check("movie", movie(title="", original_title="Le Dernier Métro"))
    assert isinstance(result, ValidTitle)
    assert result.payload["title"] == "Le Dernier Métro"
    assert any("original_title" in w for w in result.warnings)
    result = check("tv", tv(name=None, original_name="La Casa de Papel"))
    assert result.payload["name"] == "La Casa de Papel"


def test_overlong_text_is_truncated_with_warning() -> None:
    raw = movie(overview="x" * (MAX_OVERVIEW_CHARS + 10), title="T" * (MAX_TITLE_CHARS + 1),
                tagline="g" * (MAX_TAGLINE_CHARS + 5))
    result = check("movie", raw)
    assert isinstance(result, ValidTitle)
    assert len(result.payload["overview"]) == MAX_OVERVIEW_CHARS
    assert len(result.payload["title"]) == MAX_TITLE_CHARS
    assert len(result.payload["tagline"]) == MAX_TAGLINE_CHARS
    assert len(result.warnings) == 3
    assert any("overview truncated" in w for w in result.warnings)


def test_tv_keywords_canonical_key() -> None:
    result = check("tv", tv(keywords={"keywords": [{"id": 1, "name": "superhero"}]}))
    assert result.payload["keywords"] == {"results": [{"id": 1, "name": "superhero"}]}
    assert result.payload["episode_run_time"] == [60]


def test_content_hash_stable_and_sensitive() -> None:
    a = check("movie", movie())
    b = check("movie", dict(reversed(list(movie().items()))))  # other key order
    c = check("movie", movie(vote_count=8908))
    assert a.content_hash == b.content_hash == content_hash(a.payload)
    assert a.content_hash != c.content_hash
    assert len(a.content_hash) == 64
    nested = copy.deepcopy(a.payload)
    nested["genres"][0]["name"] = "Action!"
    assert content_hash(nested) != a.content_hash


def test_dedupe_keeps_latest_in_first_seen_order() -> None:
    first = check("movie", movie(id=1, title="One v1"))
    second = check("movie", movie(id=2, title="Two"))
    same_id_tv = check("tv", tv(id=1, name="Show One"))
    newer = check("movie", movie(id=1, title="One v2"))
    out = dedupe_latest([first, second, same_id_tv, newer])
    assert [(t.media_type, t.tmdb_id) for t in out] == [("movie", 1), ("movie", 2), ("tv", 1)]
    assert out[0].payload["title"] == "One v2"
    assert dedupe_latest([]) == []
