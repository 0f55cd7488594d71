"""A local HTTP server that speaks TMDB's v3 wire format under ``/3/...``.

A real server (``ThreadingHTTPServer`` on ``127.0.0.1``, free port, daemon
thread), so the production client talks to it over real HTTP::

    with FakeTMDB() as tmdb:
        client = TMDBClient(api_key=tmdb.api_key, base_url=tmdb.base_url)
        client.details("movie", 550)          # Fight Club, from the real fixture
        tmdb.fail_next(429, headers={"Retry-After": "1"})
        assert tmdb.log[-1].path == "/3/movie/550"

Endpoints, answered with bodies built from real TMDB responses
(tests/fixtures/tmdb, see its README):

* ``GET /3/genre/movie/list``, ``/3/genre/tv/list``
* ``GET /3/movie/changes``, ``/3/tv/changes``: ``start_date``/``end_date``
  (at most 14 days apart, else 422 as TMDB does) and ``page``; results are
  ``[{"id", "adult"}]`` from :meth:`FakeTMDB.set_changes`, 100 per page.
* ``GET /3/movie/{id}``, ``/3/tv/{id}``: the fixture body with the id
  substituted, plus :meth:`FakeTMDB.add_title` overrides; honours
  ``append_to_response`` (keywords, credits, watch/providers and the other
  appends present in the fixtures). Unknown ids: 404 with status_code 34.
* Auth: ``api_key`` query parameter or ``Authorization: Bearer``; a wrong or
  missing credential is a 401 with status_code 7.
* Faults: :meth:`FakeTMDB.fail_next` queues canned responses for the next
  requests (optionally only those whose path contains a string).
* Every request is logged with a monotonic timestamp (:attr:`FakeTMDB.log`).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.loopback import LoopbackServer

__all__ = ["FakeTMDB", "LoggedRequest", "tmdb_error", "fake_tmdb", "FIXTURES"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tmdb"
CHANGES_PAGE_SIZE = 100

# TMDB's own status codes and messages for the errors the fake can produce.
_ERRORS: dict[int, tuple[int, str]] = {
    401: (7, "Invalid API key: You must be granted a valid key."),
    404: (34, "The resource you requested could not be found."),
    422: (47, "The input is not valid."),
    429: (25, "Your request count (#) is over the allowed limit of (40)."),
    500: (11, "Internal error: Something went wrong, contact TMDb."),
    502: (24, "Your request to the backend server timed out. Try again."),
    503: (9, "Service offline: This service is temporarily offline, try again later."),
    504: (24, "Your request to the backend server timed out. Try again."),
}


def tmdb_error(status: int, status_code: int | None = None, message: str | None = None) -> dict:
    """A TMDB error body, e.g. ``{"success": false, "status_code": 34, "status_message": ...}``."""
    default_code, default_message = _ERRORS.get(status, (status, f"HTTP {status}"))
    return {"success": False, "status_code": status_code or default_code,
            "status_message": message or default_message}


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class LoggedRequest:
    t: float  # time.monotonic() when the request arrived
    method: str
    path: str  # e.g. "/3/movie/550"
    params: dict[str, str]  # first value of each query parameter
    headers: dict[str, str]
    status: int = 0


@dataclass
class _Fault:
    status: int
    body: Any
    headers: dict[str, str]
    times: int
    path: str | None


@dataclass
class _Title:
    media_type: str
    tmdb_id: int
    overrides: dict = field(default_factory=dict)


class FakeTMDB(LoopbackServer):
    """Context manager running the fake server; see the module docstring."""

    def __init__(self, *, api_key: str = "test-api-key", read_token: str = "test-read-token",
                 changes_page_size: int = CHANGES_PAGE_SIZE) -> None:
        self.api_key = api_key
        self.read_token = read_token
        self.changes_page_size = changes_page_size
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._changes: dict[str, list[dict]] = {"movie": [], "tv": []}
        # Ids of the real fixtures are always known.
        self._titles: dict[tuple[str, int], _Title] = {}
        self._bases = {
            "movie": _load("movies__appends-1.json"),
            "tv": _load("shows__appends-1.json"),
        }
        self._genres = {"movie": _load("genres__movies.json"), "tv": _load("genres__tv.json")}
        self.add_title("movie", self._bases["movie"]["id"])
        self.add_title("tv", self._bases["tv"]["id"])
        LoopbackServer.__init__(self)

    # -- lifecycle ---------------------------------------------------------------------
    thread_name = "fake-tmdb"

    def handler_class(self):
        return type("Handler", (_Handler,), {"fake": self})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/3"

    # -- scripting -----------------------------------------------------------------------
    def fail_next(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None,
                  times: int = 1, path: str | None = None) -> None:
        """Answer the next `times` requests (whose path contains `path`, if given) with this response."""
        body = tmdb_error(status) if body is None else body
        with self._lock:
            self._faults.append(_Fault(status, body, dict(headers or {}), times, path))

    def set_changes(self, media_type: str, ids: Iterable[int | tuple[int, bool] | dict]) -> None:
        """Ids /changes reports (for any date window); (id, adult) tuples mark adult entries."""
        entries = []
        for item in ids:
            if isinstance(item, dict):
                entries.append(dict(item))
            elif isinstance(item, tuple):
                entries.append({"id": item[0], "adult": item[1]})
            else:
                entries.append({"id": item, "adult": False})
        with self._lock:
            self._changes[media_type] = entries

    def add_title(self, media_type: str, tmdb_id: int, overrides: Mapping[str, Any] | None = None) -> None:
        """Make /{media_type}/{tmdb_id} answer 200 with the fixture body plus overrides."""
        with self._lock:
            self._titles[(media_type, int(tmdb_id))] = _Title(media_type, int(tmdb_id), dict(overrides or {}))

    def remove_title(self, media_type: str, tmdb_id: int) -> None:
        with self._lock:
            self._titles.pop((media_type, int(tmdb_id)), None)

    # -- inspection ----------------------------------------------------------------------
    def requests_to(self, path_part: str) -> list[LoggedRequest]:
        return [r for r in list(self.log) if path_part in r.path]

    def max_requests_in_window(self, seconds: float = 1.0, path_part: str = "") -> int:
        """Most requests that arrived within any `seconds`-long window."""
        times = sorted(r.t for r in self.requests_to(path_part))
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # -- responses (called from handler threads) -----------------------------------------
    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _authorised(self, params: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        if params.get("api_key") == self.api_key:
            return True
        return headers.get("authorization", "") == f"Bearer {self.read_token}"

    def respond(self, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any, dict]:
        fault = self._take_fault(path)
        if fault is not None:
            return fault.status, fault.body, fault.headers
        if not self._authorised(params, headers):
            return 401, tmdb_error(401), {}
        parts = [p for p in path.split("/") if p]
        if len(parts) < 3 or parts[0] != "3":
            return 404, tmdb_error(404), {}
        _, head, tail, *rest = parts
        if head == "genre" and tail in ("movie", "tv") and rest == ["list"]:
            return 200, copy.deepcopy(self._genres[tail]), {}
        if head in ("movie", "tv") and tail == "changes" and not rest:
            return self._changes_page(head, params)
        if head in ("movie", "tv") and tail.isdigit() and not rest:
            return self._details(head, int(tail), params)
        return 404, tmdb_error(404), {}

    def _changes_page(self, media_type: str, params: Mapping[str, str]) -> tuple[int, Any, dict]:
        try:
            start = date.fromisoformat(params["start_date"]) if "start_date" in params else None
            end = date.fromisoformat(params["end_date"]) if "end_date" in params else None
            page = int(params.get("page", "1"))
        except ValueError:
            return 422, tmdb_error(422), {}
        if start and end and ((end - start).days > 14 or end < start):
            return 422, tmdb_error(422, message="Invalid date range: Should be a range no longer than 14 days."), {}
        with self._lock:
            entries = list(self._changes[media_type])
        size = self.changes_page_size
        total_pages = max(1, -(-len(entries) // size))
        chunk = entries[(page - 1) * size: page * size]
        return 200, {"results": chunk, "page": page, "total_pages": total_pages,
                     "total_results": len(entries)}, {}

    def _details(self, media_type: str, tmdb_id: int, params: Mapping[str, str]) -> tuple[int, Any, dict]:
        with self._lock:
            title = self._titles.get((media_type, tmdb_id))
        if title is None:
            return 404, tmdb_error(404), {}
        base = copy.deepcopy(self._bases[media_type])
        appended = {k: base.pop(k) for k in list(base) if isinstance(base[k], dict) and k in _APPEND_KEYS}
        body = {**base, "id": tmdb_id}
        for name in [a.strip() for a in params.get("append_to_response", "").split(",") if a.strip()]:
            if name in appended:
                body[name] = appended[name]
            elif name == "keywords":
                body[name] = _keywords(media_type)
            elif name == "watch/providers":
                body[name] = _providers(media_type, tmdb_id)
        body.update(copy.deepcopy(title.overrides))
        return 200, body, {}


# Keys in the appends fixtures that only belong in a body when asked for.
_APPEND_KEYS = frozenset({"credits", "aggregate_credits", "alternative_titles", "changes", "content_ratings",
                          "external_ids", "images", "keywords", "watch/providers"})


def _keywords(media_type: str) -> dict:
    items = [{"id": 825, "name": "support group"}, {"id": 851, "name": "dual identity"},
             {"id": 1541, "name": "nihilism"}]
    return {"keywords": items} if media_type == "movie" else {"results": items}


def _providers(media_type: str, tmdb_id: int) -> dict:
    link = f"https://www.themoviedb.org/{media_type}/{tmdb_id}/watch?locale=US"
    return {"results": {"US": {"link": link, "flatrate": [
        {"logo_path": "/pbpMk2JmcoNnQwx5JGpXngfoWtp.jpg", "provider_id": 8, "provider_name": "Netflix",
         "display_priority": 0}]}}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTMDB  # set on the per-server subclass
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY keep-alive
    # clients wait ~40 ms per response for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        arrived = time.monotonic()
        split = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra_headers = self.fake.respond(split.path, params, headers)
        with self.fake._lock:
            self.fake.log.append(LoggedRequest(arrived, "GET", split.path, params, headers, status))
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra_headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def fake_tmdb() -> Iterator[FakeTMDB]:
    """A started FakeTMDB; import this fixture into a conftest to use it."""
    with FakeTMDB() as server:
        yield server
