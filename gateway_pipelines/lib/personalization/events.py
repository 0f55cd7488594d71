"""Watch-event files: the JSONL event format and the MovieLens CSV format, parsed and validated.

Pure functions (no database): a file and the set of catalogue keys in, a `ParsedFile` out, in which
every data line of the file is exactly one of: an event to load, a duplicate of an earlier line of
the same file, or a quarantined line with its reason. So ``lines_read == events + duplicates +
rejects`` holds by construction; the store then splits ``events`` into loaded and already-present
(duplicates of an earlier ingest).

JSONL, one object a line::

    {"user_id": "u1", "content_key": "movie-100001", "event_type": "play", "completion": 0.42,
     "rating": 8, "duration_s": 2400, "total_duration_s": 5700, "is_rewatch": false,
     "device": "tv", "ts": "2026-11-20T21:04:00Z"}

``event_type`` is one of impression, click, play, progress, complete, rate, dismiss; ``completion``
0-1 and ``rating`` 0-10 are optional; ``ts`` is ISO-8601 (naive means UTC) or epoch seconds.
An optional ``impression_id`` links the event to the served impression it answers.

MovieLens: ``ratings.csv`` (``userId,movieId,rating,timestamp``; rating 0.5-5 in half stars,
timestamp in epoch seconds) with ``links.csv`` (``movieId,imdbId,tmdbId``). A rating becomes a
``rate`` event with rating x 2 (0-10) on ``movie-<tmdbId>``, for user ``<dataset>:<userId>``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

EVENT_TYPES = ("impression", "click", "play", "progress", "complete", "rate", "dismiss")
# The first daily partition of watch_events: MovieLens ratings start in 1995-96, so the partitions do too.
EVENTS_START = date(1995, 1, 1)
FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew between a device and the platform
RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
LINKS_HEADER = ["movieId", "imdbId", "tmdbId"]
_NUMBER = (int, float)
_DATASET_CLEAN = re.compile(r"[^A-Za-z0-9_-]+")

# Reasons, as stored in raw.watch_event_rejects.reason (a prefix; details follow after ": ")
R_JSON = "unparsable JSON"
R_TRUNCATED = "truncated line"
R_NOT_OBJECT = "not a JSON object"
R_USER = "missing or invalid user_id"
R_CONTENT = "missing or invalid content_key"
R_UNKNOWN_CONTENT = "content not in catalogue"
R_EVENT_TYPE = "unknown event_type"
R_COMPLETION = "completion outside 0-1"
R_RATING = "rating outside the scale"
R_DURATION = "invalid duration"
R_REWATCH = "is_rewatch is not a boolean"
R_DEVICE = "device is not a string"
R_TS = "unparsable timestamp"
R_FUTURE = "timestamp in the future"
R_TOO_OLD = "timestamp before the first partition"
R_FIELDS = "wrong number of fields"
R_ML_USER = "invalid userId"
R_ML_MOVIE = "invalid movieId"
R_NO_LINK = "movieId not in links.csv"
R_NO_TMDB = "movieId has no tmdbId in links.csv"
R_DEEP = "JSON nested too deeply"
R_UNSTORABLE = "text Postgres cannot store"


class EventFileError(ValueError):
    """The file as a whole cannot be read (wrong header, missing links.csv): nothing is loaded."""


@dataclass(frozen=True)
class Event:
    event_id: str
    source: str
    user_id: str
    content_key: str
    event_type: str
    completion: float | None
    rating: float | None
    duration_s: float | None
    total_duration_s: float | None
    is_rewatch: bool
    device: str | None
    ts: datetime
    impression_id: str | None
    line_no: int

    @property
    def event_date(self) -> date:
        return self.ts.astimezone(timezone.utc).date()


@dataclass(frozen=True)
class Reject:
    line_no: int
    reason: str
    raw_line: str


@dataclass
class ParsedFile:
    path: Path
    format: str  # 'jsonl' | 'movielens'
    source: str
    sha256: str
    lines_read: int = 0
    blank_lines: int = 0  # whitespace-only lines: not events, reported, not counted as read
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    duplicates_in_file: int = 0
    # reported separately, and also among the rejects (reason R_UNKNOWN_CONTENT / R_NO_LINK / R_NO_TMDB)
    not_in_catalogue: int = 0

    @property
    def adds_up(self) -> bool:
        return self.lines_read == len(self.events) + len(self.rejects) + self.duplicates_in_file

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejects:
            key = r.reason.split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def time_range(self) -> tuple[datetime, datetime] | None:
        if not self.events:
            return None
        times = [e.ts for e in self.events]
        return min(times), max(times)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def event_id(source: str, user_id: str, content_key: str, event_type: str, ts: datetime) -> str:
    key = "\x1f".join((source, user_id, content_key, event_type, ts.astimezone(timezone.utc).isoformat()))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def parse_ts(value: object) -> datetime | None:
    """ISO-8601 (a trailing Z, or naive = UTC) or epoch seconds; None when unparsable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, _NUMBER):
        if not math.isfinite(value):
            return None
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return parse_ts(float(text))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _check_ts(ts: datetime | None, raw: object, now: datetime) -> str | None:
    if ts is None:
        return f"{R_TS}: {str(raw)[:40]!r}"
    if ts > now + FUTURE_TOLERANCE:
        return f"{R_FUTURE}: {ts.isoformat()} is after {now.isoformat(timespec='seconds')}"
    if ts.date() < EVENTS_START:
        return f"{R_TOO_OLD}: {ts.date().isoformat()} is before {EVENTS_START.isoformat()}"
    return None


def _optional_number(obj: dict, key: str) -> tuple[float | None, bool]:
    """(value, ok): absent or null is (None, True); a non-number or non-finite one is not ok."""
    value = obj.get(key)
    if value is None:
        return None, True
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
        return None, False
    return float(value), True


def _lines(path: Path) -> Iterable[tuple[int, str, bool]]:
    """(line number, text, ended with a newline) for every line of the file."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, 1):
            ended = line.endswith("\n")
            yield number, line.rstrip("\r\n"), ended


def source_for_jsonl(path: Path) -> str:
    """`simulator` for the simulator's files (simulator-*.jsonl), else `events:<file stem>`."""
    stem = path.name.split(".", 1)[0]
    return "simulator" if stem.startswith("simulator-") else f"events:{_DATASET_CLEAN.sub('_', stem)}"


def parse_jsonl(path: Path, catalogue: set[str] | frozenset[str], *, now: datetime | None = None,
                source: str | None = None, sha256: str | None = None) -> ParsedFile:
    now = now or datetime.now(timezone.utc)
    parsed = ParsedFile(path, "jsonl", source or source_for_jsonl(path), sha256 or file_sha256(path))
    seen: set[str] = set()
    for number, text, ended in _lines(path):
        if not text.strip():
            parsed.blank_lines += 1
            continue
        parsed.lines_read += 1
        result = _jsonl_event(text, number, ended, parsed.source, catalogue, now)
        if isinstance(result, Reject):
            parsed.rejects.append(result)
            if result.reason.startswith(R_UNKNOWN_CONTENT):
                parsed.not_in_catalogue += 1
        elif result.event_id in seen:
            parsed.duplicates_in_file += 1
        else:
            seen.add(result.event_id)
            parsed.events.append(result)
    return parsed


def _evidence(text: str) -> str:
    """A rejected line as the quarantine table can always store it: NUL and lone surrogates written
    as visible escapes (the file keeps the original)."""
    return text[:2000].replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _unstorable(value: object) -> bool:
    """A NUL or a lone surrogate (from a JSON \\u escape): a text column cannot hold it."""
    if not isinstance(value, str):
        return False
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _jsonl_event(text: str, number: int, ended: bool, source: str, catalogue, now: datetime) -> Event | Reject:
    def reject(reason: str) -> Reject:
        return Reject(number, _evidence(reason), _evidence(text))

    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if not ended:
            return reject(f"{R_TRUNCATED}: the file ends inside this record ({exc.msg})")
        return reject(f"{R_JSON}: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return reject(f"{R_DEEP}: more levels than the parser follows")
    if not isinstance(obj, dict):
        return reject(f"{R_NOT_OBJECT}: {type(obj).__name__}")
    user = obj.get("user_id")
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not user.strip() or len(user) > 200:
        return reject(f"{R_USER}: {str(user)[:40]!r}")
    content = obj.get("content_key")
    if not isinstance(content, str) or not content.strip():
        return reject(f"{R_CONTENT}: {str(content)[:40]!r}")
    if content not in catalogue:
        return reject(f"{R_UNKNOWN_CONTENT}: {content[:60]}")
    event_type = obj.get("event_type")
    if event_type not in EVENT_TYPES:
        return reject(f"{R_EVENT_TYPE}: {str(event_type)[:40]!r}")
    completion, ok = _optional_number(obj, "completion")
    if not ok or (completion is not None and not 0 <= completion <= 1):
        return reject(f"{R_COMPLETION}: {str(obj.get('completion'))[:40]}")
    rating, ok = _optional_number(obj, "rating")
    if not ok or (rating is not None and not 0 <= rating <= 10):
        return reject(f"{R_RATING}: {str(obj.get('rating'))[:40]} (the scale is 0-10)")
    durations = []
    for key in ("duration_s", "total_duration_s"):
        value, ok = _optional_number(obj, key)
        if not ok or (value is not None and value < 0):
            return reject(f"{R_DURATION}: {key}={str(obj.get(key))[:40]}")
        durations.append(value)
    rewatch = obj.get("is_rewatch", False)
    if rewatch is None:
        rewatch = False
    if not isinstance(rewatch, bool):
        return reject(f"{R_REWATCH}: {str(rewatch)[:40]!r}")
    device = obj.get("device")
    if device is not None and not isinstance(device, str):
        return reject(f"{R_DEVICE}: {str(device)[:40]!r}")
    ts = parse_ts(obj.get("ts"))
    problem = _check_ts(ts, obj.get("ts"), now)
    if problem:
        return reject(problem)
    impression = obj.get("impression_id")
    impression = impression if isinstance(impression, str) and impression else None
    for key, value in (("user_id", user), ("content_key", content), ("device", device),
                       ("impression_id", impression)):
        if _unstorable(value):
            return reject(f"{R_UNSTORABLE}: {key} holds a NUL character or a lone surrogate")
    user = user.strip()
    return Event(event_id(source, user, content, event_type, ts), source, user, content, event_type, completion,
                 rating, durations[0], durations[1], rewatch, device or None, ts, impression, number)


# --------------------------------------------------------------------------- MovieLens


def is_ratings_file(path: Path) -> bool:
    return path.suffix.lower() == ".csv" and "ratings" in path.name.lower()


def links_beside(ratings: Path) -> Path:
    """`links.csv` for `ratings.csv`; `<prefix>links<suffix>.csv` for `<prefix>ratings<suffix>.csv`."""
    name = ratings.name
    at = name.lower().index("ratings")
    return ratings.with_name(name[:at] + "links" + name[at + len("ratings"):])


def dataset_name(ratings: Path, landing: Path | None = None) -> str:
    """A folder of its own names the dataset (landing/events/ml-small/ratings.csv: ml-small); else
    the file name around `ratings` (ml_small_ratings.csv: ml_small), else `movielens`."""
    parent = ratings.parent
    if landing is not None and parent.resolve() != landing.resolve() and parent.name:
        return _DATASET_CLEAN.sub("_", parent.name)
    name = ratings.name
    at = name.lower().index("ratings")
    around = (name[:at] + name[at + len("ratings"):]).rsplit(".", 1)[0].strip("_-. ")
    return _DATASET_CLEAN.sub("_", around) or "movielens"


def read_links(path: Path) -> dict[int, int | None]:
    """movieId -> tmdbId (None where links.csv has no tmdbId)."""
    if not path.is_file():
        raise EventFileError(f"{path}: links file not found; a MovieLens ratings file needs its links.csv "
                             "(movieId,imdbId,tmdbId) beside it or given with --links")
    links: dict[int, int | None] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != LINKS_HEADER:
            raise EventFileError(f"{path}: header {header} is not {','.join(LINKS_HEADER)}")
        for row in reader:
            if len(row) < 3 or not row[0].strip().isdigit():
                continue
            tmdb = row[2].strip()
            links[int(row[0])] = int(float(tmdb)) if tmdb.replace(".", "", 1).isdigit() else None
    return links


def parse_movielens(ratings: Path, catalogue: set[str] | frozenset[str], *, links: Path | None = None,
                    dataset: str | None = None, now: datetime | None = None,
                    sha256: str | None = None) -> ParsedFile:
    now = now or datetime.now(timezone.utc)
    link_map = read_links(links or links_beside(ratings))
    name = dataset or dataset_name(ratings)
    parsed = ParsedFile(ratings, "movielens", f"movielens:{name}", sha256 or file_sha256(ratings))
    seen: set[str] = set()
    lines = _lines(ratings)
    first = next(iter(lines), None)
    header = next(csv.reader(io.StringIO(first[1]))) if first else None
    if header is None or [h.strip() for h in header] != RATINGS_HEADER:
        raise EventFileError(f"{ratings}: header {header} is not {','.join(RATINGS_HEADER)}")
    for number, text, ended in lines:
        if not text.strip():
            parsed.blank_lines += 1
            continue
        parsed.lines_read += 1
        result = _movielens_event(text, number, ended, parsed.source, name, link_map, catalogue, now)
        if isinstance(result, Reject):
            parsed.rejects.append(result)
            if result.reason.startswith((R_UNKNOWN_CONTENT, R_NO_LINK, R_NO_TMDB)):
                parsed.not_in_catalogue += 1
        elif result.event_id in seen:
            parsed.duplicates_in_file += 1
        else:
            seen.add(result.event_id)
            parsed.events.append(result)
    return parsed


def _movielens_event(text: str, number: int, ended: bool, source: str, dataset: str, links: dict[int, int | None],
                     catalogue, now: datetime) -> Event | Reject:
    def reject(reason: str) -> Reject:
        return Reject(number, _evidence(reason), _evidence(text))

    row = next(csv.reader(io.StringIO(text)), [])
    if len(row) != 4 or any(not cell.strip() for cell in row):
        if not ended:
            return reject(f"{R_TRUNCATED}: the file ends inside this record ({len(row)} of 4 fields)")
        return reject(f"{R_FIELDS}: {len(row)} of 4 (userId,movieId,rating,timestamp)")
    user_raw, movie_raw, rating_raw, ts_raw = (cell.strip() for cell in row)
    if not user_raw.isdigit():
        return reject(f"{R_ML_USER}: {user_raw[:40]!r}")
    if not movie_raw.isdigit():
        return reject(f"{R_ML_MOVIE}: {movie_raw[:40]!r}")
    movie = int(movie_raw)
    if movie not in links:
        return reject(f"{R_NO_LINK}: {movie}")
    tmdb = links[movie]
    if tmdb is None:
        return reject(f"{R_NO_TMDB}: {movie}")
    content = f"movie-{tmdb}"
    if content not in catalogue:
        return reject(f"{R_UNKNOWN_CONTENT}: {content} (movieId {movie})")
    try:
        stars = float(rating_raw)
    except ValueError:
        return reject(f"{R_RATING}: {rating_raw[:40]!r} (the scale is 0.5-5 in half stars)")
    if not math.isfinite(stars) or not 0.5 <= stars <= 5 or abs(stars * 2 - round(stars * 2)) > 1e-9:
        return reject(f"{R_RATING}: {rating_raw[:40]} (the scale is 0.5-5 in half stars)")
    if not re.fullmatch(r"\d+", ts_raw):
        return reject(f"{R_TS}: {ts_raw[:40]!r} (MovieLens timestamps are epoch seconds)")
    ts = parse_ts(int(ts_raw))
    problem = _check_ts(ts, ts_raw, now)
    if problem:
        return reject(problem)
    user = f"{dataset}:{user_raw}"
    return Event(event_id(source, user, content, "rate", ts), source, user, content, "rate", None, stars * 2,
                 None, None, False, None, ts, None, number)


def parse_file(path: Path, catalogue: set[str] | frozenset[str], *, links: Path | None = None,
               now: datetime | None = None, landing: Path | None = None) -> ParsedFile:
    """The right parser for the file: MovieLens for `*ratings*.csv`, JSONL otherwise."""
    if is_ratings_file(path):
        return parse_movielens(path, catalogue, links=links, dataset=dataset_name(path, landing), now=now)
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return parse_jsonl(path, catalogue, now=now)
    raise EventFileError(f"{path}: not an event file (JSONL .jsonl/.ndjson, or a MovieLens *ratings*.csv)")


def date_span(path: Path, *, now: datetime | None = None) -> tuple[date, date] | None:
    """The first and last UTC event dates among the file's lines with a valid timestamp (None when
    there are none): the partition range a run for the file covers. A quick pass, no catalogue."""
    now = now or datetime.now(timezone.utc)
    low = high = None
    movielens = is_ratings_file(path)
    for number, text, _ in _lines(path):
        if not text.strip() or (movielens and number == 1):
            continue
        if movielens:
            raw = text.rsplit(",", 1)[-1].strip()
            ts = parse_ts(int(raw)) if raw.isdigit() else None
        else:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                continue
            ts = parse_ts(obj.get("ts")) if isinstance(obj, dict) else None
        if ts is None or _check_ts(ts, None, now):
            continue
        day = ts.date()
        low = day if low is None or day < low else low
        high = day if high is None or day > high else high
    return (low, high) if low is not None else None


def scan_landing(folder: Path) -> list[Path]:
    """Event files ready to ingest, oldest first: JSONL files and MovieLens `*ratings*.csv` (their
    links.csv beside them is read with them, not on its own). Partial uploads (`*.part`, dotfiles)
    are ignored; sub-folders one level down are datasets of their own."""
    if not folder.is_dir():
        return []
    found = []
    candidates = list(folder.iterdir()) + [p for d in folder.iterdir() if d.is_dir() for p in d.iterdir()]
    for path in sorted(candidates, key=lambda p: (p.stat().st_mtime, str(p))):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".part":
            continue
        if is_ratings_file(path) or path.suffix.lower() in (".jsonl", ".ndjson"):
            found.append(path.resolve())
    return found
