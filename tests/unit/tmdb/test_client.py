"""TMDBClient against the local FakeTMDB server (real HTTP)."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest

from gateway_pipelines.lib.tmdb import TMDBClient, TMDBConfigError, TMDBError
from tests.fakes.tmdb_server import FakeTMDB, tmdb_error


def test_details_returns_body_with_appends(client: TMDBClient, fake_tmdb: FakeTMDB) -> None:
    body = client.details("movie", 550)
    assert body is not None
    assert body["id"] == 550 and body["title"] == "Fight Club"
    assert body["keywords"]["keywords"]
    assert body["credits"]["cast"][0]["name"] == "Edward Norton"
    assert "US" in body["watch/providers"]["results"]
    sent = fake_tmdb.requests_to("/3/movie/550")[-1]
    assert sent.params["append_to_response"] == "keywords,credits,watch/providers"
    assert sent.params["api_key"] == fake_tmdb.api_key
    assert client.stats.requests == 1 and client.stats.retries == 0


def test_tv_details_use_results_keywords(client: TMDBClient, fake_tmdb: FakeTMDB) -> None:
    fake_tmdb.add_title("tv", 1399, {"name": "Game of Thrones"})
    body = client.details("tv", 1399)
    assert body["id"] == 1399 and body["name"] == "Game of Thrones"
    assert body["keywords"]["results"]
    assert "aggregate_credits" not in body  # only the appends asked for


def test_details_404_returns_none_and_counts(client: TMDBClient) -> None:
    assert client.details("movie", 424242) is None
    assert client.stats.not_found == 1
    assert client.stats.retries == 0


def test_429_honours_retry_after(client: TMDBClient, fake_tmdb: FakeTMDB, sleeps) -> None:
    fake_tmdb.fail_next(429, headers={"Retry-After": "1"})
    body = client.details("movie", 550)
    assert body is not None and body["id"] == 550
    assert client.stats.throttled == 1 and client.stats.retries == 1
    assert sleeps.calls and sleeps.calls[0] >= 1.0
    assert [r.status for r in fake_tmdb.requests_to("/3/movie/550")] == [429, 200]


def test_500_then_success(client: TMDBClient, fake_tmdb: FakeTMDB, sleeps) -> None:
    fake_tmdb.fail_next(500)
    assert client.details("tv", 76479)["name"] == "The Boys"
    assert client.stats.server_errors == 1 and client.stats.retries == 1
    assert len(sleeps.calls) == 1 and 0 <= sleeps.calls[0] <= client.backoff_base


def test_persistent_500_raises_with_tmdb_message(client: TMDBClient, fake_tmdb: FakeTMDB, sleeps) -> None:
    fake_tmdb.fail_next(500, times=10)
    with pytest.raises(TMDBError) as info:
        client.details("movie", 550)
    err = info.value
    assert err.status == 500 and err.status_code == 11
    assert err.status_message == tmdb_error(500)["status_message"]
    assert "Internal error" in str(err)
    assert client.stats.requests == client.max_retries + 1
    assert len(sleeps.calls) == client.max_retries


def test_backoff_is_capped(fake_tmdb: FakeTMDB, sleeps) -> None:
    fake_tmdb.fail_next(503, times=6)
    fake_tmdb.fail_next(429, headers={"Retry-After": "120"})
    with TMDBClient(api_key=fake_tmdb.api_key, base_url=fake_tmdb.base_url, rate_per_second=1000,
                    max_retries=7, backoff_base=1.0, backoff_max=4.0, sleep=sleeps) as c:
        assert c.genres("movie")
    assert len(sleeps.calls) == 7
    assert all(0 <= s <= 4.0 for s in sleeps.calls)
    assert sleeps.calls[-1] == 4.0  # Retry-After 120 capped at backoff_max


def test_401_raises_immediately_naming_the_fix(fake_tmdb: FakeTMDB, sleeps) -> None:
    with TMDBClient(api_key="wrong-key-123", base_url=fake_tmdb.base_url, sleep=sleeps) as c:
        with pytest.raises(TMDBError) as info:
            c.details("movie", 550)
    err = info.value
    assert err.status == 401 and err.status_code == 7
    assert "TMDB_API_KEY" in str(err) and "TMDB_READ_TOKEN" in str(err)
    assert sleeps.calls == [] and c.stats.requests == 1


def test_api_key_is_redacted_from_errors(fake_tmdb: FakeTMDB, sleeps) -> None:
    secret = "s3cr3t-key-abc"
    with TMDBClient(api_key=secret, base_url=fake_tmdb.base_url, max_retries=1, sleep=sleeps) as c:
        with pytest.raises(TMDBError) as unauthorised:
            c.genres("tv")
        fake_tmdb.fail_next(502, times=5)
        with pytest.raises(TMDBError) as unavailable:
            c.genres("tv")
    for err in (unauthorised.value, unavailable.value):
        assert secret not in str(err) and secret not in err.url and secret not in repr(err.args)
        assert "api_key=REDACTED" in err.url
    assert fake_tmdb.log[0].params["api_key"] == secret  # the real key was sent


def test_bearer_token_auth(fake_tmdb: FakeTMDB) -> None:
    with TMDBClient(read_token=fake_tmdb.read_token, base_url=fake_tmdb.base_url) as c:
        genres = c.genres("movie")
    assert {"id": 878, "name": "Science Fiction"} in genres
    sent = fake_tmdb.log[-1]
    assert sent.headers["authorization"] == f"Bearer {fake_tmdb.read_token}"
    assert "api_key" not in sent.params


def test_transport_errors_are_retried(sleeps) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            raise httpx.ConnectTimeout("timed out", request=request)
        return httpx.Response(200, json={"genres": [{"id": 28, "name": "Action"}]})

    with TMDBClient(api_key="k", base_url="https://tmdb.invalid/3", transport=httpx.MockTransport(handler),
                    sleep=sleeps) as c:
        assert c.genres("movie") == [{"id": 28, "name": "Action"}]
    assert calls == ["/3/genre/movie/list"] * 3
    assert c.stats.retries == 2 and len(sleeps.calls) == 2


def test_transport_errors_give_up(sleeps) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with TMDBClient(api_key="k", base_url="https://tmdb.invalid/3", transport=httpx.MockTransport(handler),
                    max_retries=2, sleep=sleeps) as c:
        with pytest.raises(TMDBError) as info:
            c.genres("tv")
    assert info.value.status == 0 and "ConnectError" in str(info.value)
    assert c.stats.requests == 3


def test_rate_limit_holds_over_one_second_windows(fake_tmdb: FakeTMDB, sleeps) -> None:
    with TMDBClient(api_key=fake_tmdb.api_key, base_url=fake_tmdb.base_url, rate_per_second=20,
                    sleep=sleeps) as c:
        for _ in range(60):
            c.genres("movie")
    assert len(fake_tmdb.log) == 60
    # One token of burst on top of the steady rate.
    assert fake_tmdb.max_requests_in_window(1.0) <= 21


def test_changes_pages_and_skips_adult(client: TMDBClient, fake_tmdb: FakeTMDB) -> None:
    ids = list(range(1, 251))
    fake_tmdb.set_changes("movie", [(i, i % 50 == 0) for i in ids])
    got = list(client.changes("movie", date(2024, 5, 1), date(2024, 5, 1)))
    assert got == [i for i in ids if i % 50 != 0]
    pages = [r.params["page"] for r in fake_tmdb.requests_to("/3/movie/changes")]
    assert pages == ["1", "2", "3"]


def test_changes_split_into_14_day_windows(client: TMDBClient, fake_tmdb: FakeTMDB) -> None:
    fake_tmdb.set_changes("tv", [5, 6, 7])
    start, end = date(2024, 1, 1), date(2024, 1, 30)
    got = list(client.changes("tv", start, end))
    assert got == [5, 6, 7]  # each id once although every window reports it
    windows = [(date.fromisoformat(r.params["start_date"]), date.fromisoformat(r.params["end_date"]))
               for r in fake_tmdb.requests_to("/3/tv/changes")]
    assert len(windows) >= 3
    assert all(r.status == 200 for r in fake_tmdb.requests_to("/3/tv/changes"))
    assert windows[0][0] == start and windows[-1][1] == end
    for (lo, hi), (next_lo, _) in zip(windows, windows[1:]):
        assert next_lo == hi + timedelta(days=1)
    assert all((hi - lo).days < 14 for lo, hi in windows)


def test_changes_rejects_reversed_range(client: TMDBClient) -> None:
    with pytest.raises(ValueError, match="after end"):
        list(client.changes("movie", date(2024, 2, 1), date(2024, 1, 1)))


def test_unknown_media_type(client: TMDBClient) -> None:
    with pytest.raises(ValueError, match="'movie' or 'tv'"):
        client.details("person", 1)


def test_no_credentials_names_both_variables() -> None:
    with pytest.raises(TMDBConfigError) as info:
        TMDBClient()
    assert "TMDB_API_KEY" in str(info.value) and "TMDB_READ_TOKEN" in str(info.value)


def test_key_and_base_url_reach_the_server(fake_tmdb: FakeTMDB) -> None:
    with TMDBClient(api_key=fake_tmdb.api_key, base_url=fake_tmdb.base_url) as c:
        assert c.base_url == fake_tmdb.base_url
        assert c.genres("tv")[0] == {"id": 10759, "name": "Action & Adventure"}
