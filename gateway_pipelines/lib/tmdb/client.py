"""A small synchronous TMDB v3 client: rate limited, retrying, key-redacting."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx

from .ratelimit import TokenBucket
from .records import MEDIA_TYPES

# TMDB rejects /changes ranges longer than 14 days (start and end inclusive).
CHANGES_WINDOW_DAYS = 14
DETAILS_APPENDS = "keywords,credits,watch/providers"
_REDACTED = "REDACTED"
CREDENTIALS_FIX = (
    "set TMDB_API_KEY (v3 API key) or TMDB_READ_TOKEN (v4 API read access token) "
    "from https://www.themoviedb.org/settings/api"
)


class TMDBError(Exception):
    """A TMDB request that failed for good; `url` never contains the api_key."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        status_code: int | None = None,
        status_message: str | None = None,
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.status_code = status_code
        self.status_message = status_message
        self.url = url


class TMDBConfigError(ValueError):
    """The client cannot be built: credentials or settings are missing."""


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429s seen
    not_found: int = 0
    server_errors: int = 0


def _check_media_type(media_type: str) -> str:
    if media_type not in MEDIA_TYPES:
        raise ValueError(f"media_type={media_type!r} is unknown; use 'movie' or 'tv'")
    return media_type


def change_windows(start: date, end: date, days: int = CHANGES_WINDOW_DAYS) -> list[tuple[date, date]]:
    """Split the inclusive range start..end into windows of at most `days` days."""
    if end < start:
        raise ValueError(f"changes range start={start} is after end={end}; swap them")
    windows = []
    cursor = start
    while cursor <= end:
        stop = min(cursor + timedelta(days=days - 1), end)
        windows.append((cursor, stop))
        cursor = stop + timedelta(days=1)
    return windows


def _retry_after_seconds(value: str | None) -> float | None:
    """Parse Retry-After: delta-seconds, or an HTTP date as a fallback."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_body(response: httpx.Response) -> tuple[int | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return None, text[:200] or None
    if not isinstance(body, dict):
        return None, None
    code = body.get("status_code")
    message = body.get("status_message")
    return (code if isinstance(code, int) else None), (str(message) if message is not None else None)


class TMDBClient:
    """Sync TMDB v3 client. Every request passes the token bucket; 429/5xx/network errors retry."""

    DEFAULT_BASE_URL = "https://api.themoviedb.org/3"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        read_token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        rate_per_second: float = 35.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key and not read_token:
            raise TMDBConfigError(f"TMDBClient needs credentials: {CREDENTIALS_FIX}")
        if max_retries < 0:
            raise ValueError(f"max_retries={max_retries} must be >= 0")
        self._api_key = api_key or None
        self._read_token = read_token or None
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stats = ClientStats()
        self._sleep = sleep
        self._rng = random.Random()
        self._stats_lock = threading.Lock()
        # The bucket really sleeps: `sleep` is only for backoff so tests stay fast.
        self._bucket = TokenBucket(rate_per_second)
        headers = {"Accept": "application/json"}
        # A v4 token wins when both are given: it is the credential TMDB recommends.
        if self._read_token:
            headers["Authorization"] = f"Bearer {self._read_token}"
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    # -- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "TMDBClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints -----------------------------------------------------------------
    def genres(self, media_type: str) -> list[dict]:
        """The official genre list for 'movie' or 'tv'."""
        body = self._get(f"genre/{_check_media_type(media_type)}/list")
        return list(body.get("genres") or [])

    def changes(self, media_type: str, start: date, end: date) -> Iterator[int]:
        """Ids changed between start and end (inclusive), adult entries skipped, each once."""
        _check_media_type(media_type)
        seen: set[int] = set()
        for lo, hi in change_windows(start, end):
            page, total_pages = 1, 1
            while page <= total_pages:
                body = self._get(
                    f"{media_type}/changes",
                    {"start_date": lo.isoformat(), "end_date": hi.isoformat(), "page": page},
                )
                total_pages = int(body.get("total_pages") or 0)
                for entry in body.get("results") or []:
                    tmdb_id = entry.get("id") if isinstance(entry, dict) else None
                    if not isinstance(tmdb_id, int) or entry.get("adult") is True or tmdb_id in seen:
                        continue
                    seen.add(tmdb_id)
                    yield tmdb_id
                page += 1

    def details(self, media_type: str, tmdb_id: int) -> dict | None:
        """Full details with keywords, credits and watch/providers; None when TMDB says 404."""
        _check_media_type(media_type)
        try:
            return self._get(f"{media_type}/{int(tmdb_id)}", {"append_to_response": DETAILS_APPENDS})
        except TMDBError as exc:
            if exc.status == 404:
                return None
            raise

    # -- transport -----------------------------------------------------------------
    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads retries of parallel workers instead of syncing them.
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return self._rng.uniform(0, ceiling)

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, _REDACTED)
        if self._read_token:
            text = text.replace(self._read_token, _REDACTED)
        return text

    def _redacted_url(self, url: httpx.URL) -> str:
        if "api_key" in url.params:
            url = url.copy_set_param("api_key", _REDACTED)
        return self._redact(str(url))

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict:
        query = dict(params or {})
        if self._api_key and not self._read_token:
            query["api_key"] = self._api_key
        request = self._http.build_request("GET", path, params=query)
        url = self._redacted_url(request.url)
        attempt = 0
        while True:
            self._bucket.acquire()
            self._count(requests=1)
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:  # timeouts are TransportErrors too
                if attempt >= self.max_retries:
                    raise TMDBError(
                        f"TMDB GET {url} failed after {attempt + 1} attempts: "
                        f"{type(exc).__name__}: {self._redact(str(exc))}; check the network or TMDB_BASE_URL",
                        status=0,
                        url=url,
                    ) from None
                attempt += 1
                self._count(retries=1)
                self._sleep(self._backoff(attempt))
                continue

            status = response.status_code
            if status == 200:
                try:
                    body = response.json()
                except ValueError:
                    raise TMDBError(
                        f"TMDB GET {url} returned HTTP 200 with a body that is not JSON",
                        status=status,
                        url=url,
                    ) from None
                if not isinstance(body, dict):
                    raise TMDBError(f"TMDB GET {url} returned JSON that is not an object", status=status, url=url)
                return body

            code, message = _error_body(response)
            retryable = status == 429 or status >= 500
            if status == 429:
                self._count(throttled=1)
            elif status >= 500:
                self._count(server_errors=1)
            elif status == 404:
                self._count(not_found=1)
            if retryable and attempt < self.max_retries:
                attempt += 1
                self._count(retries=1)
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                delay = min(retry_after, self.backoff_max) if retry_after is not None else self._backoff(attempt)
                self._sleep(delay)
                continue
            raise TMDBError(self._failure_text(url, status, code, message, attempt), status=status,
                            status_code=code, status_message=message, url=url)

    def _failure_text(self, url: str, status: int, code: int | None, message: str | None, attempt: int) -> str:
        detail = f"HTTP {status}"
        if code is not None:
            detail += f" (TMDB status_code {code})"
        if message:
            detail += f": {self._redact(message)}"
        if status == 401:
            fix = f"the credentials were refused; {CREDENTIALS_FIX}"
        elif status == 404:
            fix = "the title or endpoint does not exist on TMDB"
        elif status == 429 or status >= 500:
            fix = f"gave up after {attempt} retries; try later or lower rate_per_second"
        else:
            fix = "check the request parameters"
        return f"TMDB GET {url} failed: {detail}; {fix}"
