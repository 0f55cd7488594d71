"""Every bad-input kind is loaded correctly or quarantined with its reason, and the counts add up."""

import json
from datetime import date, datetime, timezone

import pytest

from gateway_pipelines.lib.personalization import events as ev

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
CATALOGUE = frozenset({"movie-100001", "movie-100002", "tv-100001"})
GOOD = {"user_id": "u1", "content_key": "movie-100001", "event_type": "play", "completion": 0.5, "rating": 8,
        "duration_s": 3000, "total_duration_s": 6000, "is_rewatch": False, "device": "tv",
        "ts": "2026-11-20T21:00:00Z"}


def line(**changes) -> str:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def test_every_bad_kind_is_quarantined_with_its_reason(tmp_path):
    lines = [
        line(),                                                   # 1 loaded
        line(user_id="brand-new-user"),                           # 2 an unknown user is a new user: loaded
        line(content_key="movie-999"),                            # 3 unknown content
        line(completion=1.4),                                     # 4 completion outside 0-1
        line(completion=-0.1),                                    # 5
        line(rating=11),                                          # 6 rating outside 0-10
        line(ts="2030-01-01T00:00:00Z"),                          # 7 future
        line(ts="yesterday-ish"),                                 # 8 unparsable
        line(ts="1990-05-01T00:00:00Z"),                          # 9 before the first partition
        line(),                                                   # 10 duplicate of line 1
        line(event_type="binge"),                                 # 11 unknown event type
        "{not json",                                              # 12 unparsable JSON
        "[1, 2]",                                                 # 13 not an object
        line(user_id=""),                                         # 14 missing user
        line(duration_s=-5),                                      # 15 negative duration
        line(is_rewatch="yes"),                                   # 16 not a boolean
        "",                                                       # blank: not a line read
        line(ts=1763672400),                                      # 17 epoch seconds: loaded
        line(ts="2026-11-20T21:00:00", content_key="tv-100001"),  # 18 naive = UTC: loaded
        line(completion=None, rating=None, event_type="impression", content_key="movie-100002"),  # 19 loaded
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n" + line(user_id="u9")[:40])  # 20: the file ends mid-record
    parsed = ev.parse_jsonl(path, CATALOGUE, now=NOW)
    assert parsed.lines_read == 20 and parsed.blank_lines == 1
    assert len(parsed.events) == 5 and parsed.duplicates_in_file == 1 and len(parsed.rejects) == 14
    assert parsed.adds_up
    by_line = {r.line_no: r.reason for r in parsed.rejects}
    expected = {3: ev.R_UNKNOWN_CONTENT, 4: ev.R_COMPLETION, 5: ev.R_COMPLETION, 6: ev.R_RATING, 7: ev.R_FUTURE,
                8: ev.R_TS, 9: ev.R_TOO_OLD, 11: ev.R_EVENT_TYPE, 12: ev.R_JSON, 13: ev.R_NOT_OBJECT, 14: ev.R_USER,
                15: ev.R_DURATION, 16: ev.R_REWATCH, 21: ev.R_TRUNCATED}
    assert {n: r.split(":", 1)[0] for n, r in by_line.items()} == expected
    assert parsed.not_in_catalogue == 1
    assert all(r.raw_line for r in parsed.rejects)
    users = [e.user_id for e in parsed.events]
    assert users == ["u1", "brand-new-user", "u1", "u1", "u1"]
    epoch = parsed.events[2]
    assert epoch.ts == datetime(2025, 11, 20, 21, 0, tzinfo=timezone.utc)
    assert parsed.events[3].ts.tzinfo is not None and parsed.events[3].content_key == "tv-100001"
    assert parsed.events[4].completion is None and parsed.events[4].rating is None


def test_event_ids_are_stable_and_separate_sources():
    ts = datetime(2026, 11, 20, 21, tzinfo=timezone.utc)
    a = ev.event_id("simulator", "u", "movie-1", "play", ts)
    assert a == ev.event_id("simulator", "u", "movie-1", "play", ts)
    assert a != ev.event_id("events:other", "u", "movie-1", "play", ts)
    assert a != ev.event_id("simulator", "u", "movie-1", "complete", ts)


def _movielens(tmp_path, ratings: list[str], links: list[str] | None = None, name: str = "ratings.csv"):
    links = links if links is not None else ["1,0114709,100001", "2,0113497,100002", "3,0113228,999999", "4,0114885,"]
    (tmp_path / name.replace("ratings", "links")).write_text("movieId,imdbId,tmdbId\n" + "\n".join(links) + "\n")
    path = tmp_path / name
    path.write_text("userId,movieId,rating,timestamp\n" + "\n".join(ratings))
    return path


def test_movielens_scales_ratings_and_reports_titles_outside_the_catalogue(tmp_path):
    path = _movielens(tmp_path, [
        "1,1,4.0,1537799250",   # 2 loaded: 8/10 on movie-100001
        "1,2,0.5,1537799260",   # 3 loaded: 1/10
        "1,3,3.0,1537799270",   # 4 tmdbId outside the catalogue
        "1,4,3.0,1537799280",   # 5 no tmdbId
        "1,7,3.0,1537799290",   # 6 movieId not in links.csv
        "2,1,5.5,1537799300",   # 7 rating outside the scale
        "2,1,3.25,1537799310",  # 8 not a half star
        "2,2,4.0,soon",         # 9 unparsable timestamp
        "x,2,4.0,1537799320",   # 10 bad userId
        "1,1,4.0,1537799250",   # 11 duplicate of line 2
        "2,2,4.0",              # 12 three fields
        "3,1,4",                # 13 truncated at the end of the file
    ])
    parsed = ev.parse_movielens(path, CATALOGUE, now=NOW, dataset="ml-test")
    assert parsed.source == "movielens:ml-test"
    assert parsed.lines_read == 12 and len(parsed.events) == 2 and parsed.duplicates_in_file == 1
    assert len(parsed.rejects) == 9 and parsed.adds_up
    assert parsed.not_in_catalogue == 3  # outside the catalogue, no tmdbId, not in links.csv: counted, not loaded
    assert [(e.user_id, e.content_key, e.event_type, e.rating) for e in parsed.events] == [
        ("ml-test:1", "movie-100001", "rate", 8.0), ("ml-test:1", "movie-100002", "rate", 1.0)]
    reasons = {r.line_no: r.reason.split(":", 1)[0] for r in parsed.rejects}
    assert reasons == {4: ev.R_UNKNOWN_CONTENT, 5: ev.R_NO_TMDB, 6: ev.R_NO_LINK, 7: ev.R_RATING, 8: ev.R_RATING,
                       9: ev.R_TS, 10: ev.R_ML_USER, 12: ev.R_FIELDS, 13: ev.R_TRUNCATED}


def test_movielens_file_errors(tmp_path):
    path = _movielens(tmp_path, ["1,1,4.0,1537799250"])
    (tmp_path / "links.csv").unlink()
    with pytest.raises(ev.EventFileError, match="links"):
        ev.parse_movielens(path, CATALOGUE, now=NOW)
    bad = tmp_path / "x_ratings.csv"
    bad.write_text("user,movie,stars,when\n1,1,4,1\n")
    (tmp_path / "x_links.csv").write_text("movieId,imdbId,tmdbId\n1,1,100001\n")
    with pytest.raises(ev.EventFileError, match="header"):
        ev.parse_movielens(bad, CATALOGUE, now=NOW)


def test_file_naming_dataset_and_span(tmp_path):
    landing = tmp_path / "landing"
    (landing / "ml-small").mkdir(parents=True)
    assert ev.links_beside(landing / "ml_ratings_v2.csv").name == "ml_links_v2.csv"
    assert ev.dataset_name(landing / "ml-small" / "ratings.csv", landing) == "ml-small"
    assert ev.dataset_name(landing / "ml_small_ratings.csv", landing) == "ml_small"
    assert ev.dataset_name(landing / "ratings.csv", landing) == "movielens"
    assert ev.source_for_jsonl(landing / "simulator-sim-s7.jsonl") == "simulator"
    assert ev.source_for_jsonl(landing / "app events.jsonl") == "events:app_events"
    path = landing / "a.jsonl"
    path.write_text("\n".join([line(ts="2026-11-03T10:00:00Z"), "{broken", line(ts="2026-11-09T23:59:00Z"),
                               line(ts="2031-01-01T00:00:00Z")]) + "\n")
    assert ev.date_span(path, now=NOW) == (date(2026, 11, 3), date(2026, 11, 9))
    (landing / "b.jsonl.part").write_text("")
    (landing / ".hidden.jsonl").write_text("")
    ml = _movielens(landing / "ml-small", ["1,1,4.0,1537799250"])
    assert [p.name for p in ev.scan_landing(landing)] == ["a.jsonl", "ratings.csv"]
    assert ev.date_span(ml, now=NOW) == (date(2018, 9, 24), date(2018, 9, 24))
