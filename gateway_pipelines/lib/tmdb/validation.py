"""Validate TMDB title records into canonical payloads, or explain why not."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from .contract import bounds_for, type_name
from .records import MEDIA_TYPES, Reject, SourceRecord, ValidTitle

MAX_OVERVIEW_CHARS = 4000
MAX_TITLE_CHARS = 500
MAX_TAGLINE_CHARS = 1000

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- field types -------------------------------------------------------------------
def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _int(value: Any) -> Any:
    """Coerce CSV-style numbers ('162', '162.0') to int; refuse bools and fractions."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        raise ValueError("is a boolean, expected a whole number")
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ValueError("is not a whole number") from None
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ValueError("is not a whole number")
    raise ValueError(f"is {_a(type(value).__name__)}, expected a whole number")


def _float(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("is a boolean, expected a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("is not a number") from None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("is not a finite number")
        return float(value)
    raise ValueError(f"is {_a(type(value).__name__)}, expected a number")


def _text(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"is {_a(type(value).__name__)}, expected text")
    return value.strip()


def _date(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"is {_a(type(value).__name__)}, expected a YYYY-MM-DD date or empty")
    text = value.strip()
    if not text:
        return None
    if not _DATE_RE.match(text):
        raise ValueError("is not a YYYY-MM-DD date; fix it or leave it empty")
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError("is not a real calendar date; fix it or leave it empty") from None


def _non_negative(value: Any) -> Any:
    if value is not None and value < 0:
        raise ValueError("is negative; it must be 0 or more")
    return value


def _positive(value: Any) -> Any:
    if value is None or value <= 0:
        raise ValueError("must be a positive integer TMDB id")
    return value


def _score(value: Any) -> Any:
    if value is not None and not 0 <= value <= 10:
        raise ValueError("is outside 0-10; TMDB scores are 0-10")
    return value


def _within(field: str):
    """The range of the column `field` is typed into (see `contract`), so raw never holds a value
    that dbt's cast refuses."""
    lo, hi = bounds_for(field)
    kind = type_name(field)

    def check(value: Any) -> Any:
        if value is not None and not lo <= value <= hi:
            raise ValueError(f"is outside the range of {kind} ({lo}..{hi}) that the warehouse stores it as")
        return value

    return AfterValidator(check)


def Count(field: str):  # noqa: N802 - a type factory, read as a type in the models below
    return Annotated[int | None, BeforeValidator(_int), AfterValidator(_non_negative), _within(field)]


def TmdbId(field: str):  # noqa: N802
    return Annotated[int | None, BeforeValidator(_int), AfterValidator(_positive), _within(field)]


Float = Annotated[float | None, BeforeValidator(_float)]
Score = Annotated[float | None, BeforeValidator(_float), AfterValidator(_score)]
Text = Annotated[str | None, BeforeValidator(_text)]
Day = Annotated[str | None, BeforeValidator(_date)]


class _Genre(BaseModel):
    """{id, name} items of genres."""

    model_config = ConfigDict(extra="allow")
    id: TmdbId("genres[].id")
    name: Text = None


class _Keyword(_Genre):
    id: TmdbId("keywords[].id")


class _Keywords(BaseModel):
    # Movies say {"keywords": [...]}, TV says {"results": [...]}: accept both.
    model_config = ConfigDict(extra="allow")
    keywords: list[_Keyword] | None = None
    results: list[_Keyword] | None = None


class _Title(BaseModel):
    """Fields shared by movies and TV; everything else passes through untouched."""

    model_config = ConfigDict(extra="ignore")
    id: TmdbId("id") = None
    overview: Text = None
    tagline: Text = None
    vote_average: Score = None
    vote_count: Count("vote_count") = None
    popularity: Float = None
    genres: list[_Genre] | None = None
    keywords: _Keywords | None = None
    original_language: Text = None
    poster_path: Text = None
    status: Text = None
    adult: bool | None = None


class MovieModel(_Title):
    title: Text = None
    original_title: Text = None
    release_date: Day = None
    runtime: Count("runtime") = None
    budget: Count("budget") = None
    revenue: Count("revenue") = None
    video: bool | None = None


class TVModel(_Title):
    name: Text = None
    original_name: Text = None
    first_air_date: Day = None
    last_air_date: Day = None
    episode_run_time: list[Annotated[int, BeforeValidator(_int), AfterValidator(_non_negative),
                                     _within("episode_run_time[]")]] | None = None
    number_of_seasons: Count("number_of_seasons") = None
    number_of_episodes: Count("number_of_episodes") = None


_MODELS: dict[str, type[_Title]] = {"movie": MovieModel, "tv": TVModel}
# (display title field, fallback field) per media type
_TITLE_FIELDS = {"movie": ("title", "original_title"), "tv": ("name", "original_name")}
_KEYWORDS_KEY = {"movie": "keywords", "tv": "results"}


# -- public ------------------------------------------------------------------------
def canonical_json(payload: dict) -> bytes:
    """Compact UTF-8 JSON with sorted keys: what is hashed and what is stored."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def content_hash(payload: dict) -> str:
    """sha256 hex of the canonical JSON of payload (key order does not matter)."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def validate_record(rec: SourceRecord, *, source: str, partition: str) -> ValidTitle | Reject:
    """Validate one source record: a ValidTitle with a clean payload, or a Reject naming the field."""
    raw = rec.record

    def reject(field: str, reason: str, rule: str | None = None) -> Reject:
        return Reject(source=source, partition=partition, record=evidence(raw), field=field,
                      reason=f"{reason} ({rec.ref})", rule=rule or reason)

    if not isinstance(raw, Mapping):
        return reject("<record>", f"record is a {type(raw).__name__}, expected a JSON object; drop or fix it")
    if "__malformed__" in raw and raw.get("__reason__"):
        # the rule without line numbers, so that rejects of one kind group together
        return reject("<record>", f"{raw['__reason__']} ({str(raw['__malformed__'])[:120]!r})",
                      re.sub(r"\d+", "N", str(raw["__reason__"]).split(";")[0]))
    if "__malformed__" in raw:
        line = raw.get("__line__")
        where = f"line {line}" if line is not None else "the line"
        return reject("<record>", f"{where} is not a JSON object ({str(raw['__malformed__'])[:120]!r}); "
                                  "fix or delete it in the source file",
                      "the line is not a JSON object; fix or delete it in the source file")
    if rec.media_type not in MEDIA_TYPES:
        return reject("media_type", f"media_type={rec.media_type!r} is unknown; the source must say 'movie' or 'tv'")

    try:
        model = _MODELS[rec.media_type].model_validate(dict(raw))
    except ValidationError as exc:
        field, reason, rule = _explain(exc, raw)
        return reject(field, reason, rule)

    if model.id is None:
        return reject("id", "id is missing; every TMDB title needs its positive integer id")

    # The payload is hashed and stored as JSON, so nothing odd may pass through.
    payload = _json_safe_copy(raw)
    payload.update(model.model_dump(exclude={"genres", "keywords", "id"}))
    payload["id"] = model.id
    payload["genres"] = _named_list(model.genres)
    payload["keywords"] = _keywords(model.keywords, rec.media_type)

    warnings: list[str] = []
    display, fallback = _TITLE_FIELDS[rec.media_type]
    if not payload.get(display):
        if not payload.get(fallback):
            return reject(display, f"{display} and {fallback} are both empty; give the title a name")
        payload[display] = payload[fallback]
        warnings.append(f"{display} was empty; used {fallback}")
    for field, limit in ((display, MAX_TITLE_CHARS), (fallback, MAX_TITLE_CHARS),
                         ("overview", MAX_OVERVIEW_CHARS), ("tagline", MAX_TAGLINE_CHARS)):
        value = payload.get(field)
        if isinstance(value, str) and len(value) > limit:
            payload[field] = value[:limit]
            warnings.append(f"{field} truncated from {len(value)} to {limit} characters")

    try:
        encoded = canonical_json(payload)
    except (orjson.JSONEncodeError, TypeError) as exc:
        field, why = unstorable(payload, str(exc))
        return reject(field, f"{field} {why}; fix it in the source or drop the record", f"{field} {why}")
    if b"\\u0000" in encoded:
        # Postgres text and jsonb cannot hold NUL; storing the title without it would change it
        field, _ = unstorable(payload, "")
        return reject(field, f"{field} contains a NUL character, which Postgres cannot store; remove it in the source",
                      f"{field} contains a NUL character")
    return ValidTitle(
        tmdb_id=model.id,
        media_type=rec.media_type,
        payload=payload,
        content_hash=hashlib.sha256(encoded).hexdigest(),
        warnings=tuple(warnings),
        payload_json=encoded.decode("utf-8"),
    )


def dedupe_latest(items: Iterable[ValidTitle]) -> list[ValidTitle]:
    """Keep the last ValidTitle per (media_type, id), in first-seen order."""
    latest: dict[tuple[str, int], ValidTitle] = {}
    for item in items:
        # Assigning to an existing key keeps its original position.
        latest[(item.media_type, item.tmdb_id)] = item
    return list(latest.values())


def _json_safe_copy(raw: Mapping) -> dict:
    """A top-level copy of `raw` that is safe to store as JSON.

    Records parsed from JSON or CSV already are, and the C encoder proves it far faster than a
    recursive walk; only records holding odd objects or NaN pay for `jsonable`.
    """
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return jsonable(dict(raw))
    if all(isinstance(k, str) for k in raw):
        return dict(raw)
    return jsonable(dict(raw))


MAX_EVIDENCE_CHARS = 2000


def evidence(value: Any, depth: int = 0) -> Any:
    """A copy of a rejected record that the quarantine table can always store, whatever was wrong.

    It is evidence for a person, not data: NUL and lone surrogates are written as visible escapes
    (`\\u0000`, `\\udc80`), integers past 64 bits and odd objects as text, long strings and deep
    nesting cut with a note. The source file keeps the original.
    """
    if depth > MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH} levels: cut>"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if INT64[0] <= value <= INT64[1] else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value if len(value) <= MAX_EVIDENCE_CHARS else (
            value[:MAX_EVIDENCE_CHARS] + f"<cut: {len(value)} characters in all>")
        text = text.replace("\x00", "\\u0000")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {evidence(str(k)): evidence(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [evidence(v, depth + 1) for v in value]
    return evidence(str(value))


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: odd objects and non-finite floats become strings."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


MAX_DEPTH = 64  # deeper JSON is refused: orjson stops at 255 and no TMDB payload nests past 5


def unstorable(payload: Mapping, error: str) -> tuple[str, str]:
    """(top-level field, why) of the first value the payload cannot be stored with."""
    for key, value in payload.items():
        why = _unstorable_value(value, 1)
        if why:
            return str(key), why
    return "<record>", f"cannot be encoded as JSON ({error})"


def _unstorable_value(value: Any, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return f"nests deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (text that is not valid Unicode)"
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64[0] <= value <= INT64[1] else "is an integer beyond 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    if isinstance(value, Mapping):
        for key, item in value.items():
            why = _unstorable_value(key, depth + 1) or _unstorable_value(item, depth + 1)
            if why:
                return why
        return None
    if isinstance(value, (list, tuple)):
        return next((why for item in value if (why := _unstorable_value(item, depth + 1))), None)
    return f"is {_a(type(value).__name__)}, which JSON cannot hold"


INT64 = (-(2**63), 2**63 - 1)


# -- helpers -----------------------------------------------------------------------
def _named_list(items: list[_Genre] | None) -> list[dict] | None:
    if items is None:
        return None
    return [item.model_dump() for item in items]


def _keywords(kw: _Keywords | None, media_type: str) -> dict | None:
    if kw is None:
        return None
    items = kw.keywords if kw.keywords is not None else kw.results
    extra = {k: v for k, v in kw.model_dump(exclude={"keywords", "results"}).items()}
    return {**extra, _KEYWORDS_KEY[media_type]: _named_list(items) or []}


_TYPE_WORDS = {
    "list_type": "is not a list; expected a JSON list of {id, name} objects",
    "model_type": "is not a JSON object",
    "model_attributes_type": "is not a JSON object",
    "dict_type": "is not a JSON object",
    "bool_type": "is not true/false",
    "bool_parsing": "is not true/false",
    "string_type": "is not text",
    "missing": "is missing",
}


def _generic_path(loc: tuple) -> str:
    """genres.[].id for ('genres', 3, 'id'): the same rule whichever list item broke it."""
    return ".".join("[]" if isinstance(part, int) else str(part) for part in loc)


def _explain(exc: ValidationError, raw: Mapping) -> tuple[str, str, str]:
    """Turn pydantic's first error into (top-level field, human reason, the reason without the value)."""
    err = exc.errors(include_url=False)[0]
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else "<record>"
    path = ".".join(str(part) for part in loc) or field
    rule_path = _generic_path(loc) or field
    value = err.get("input")
    if err["type"] == "value_error":
        msg = str(err.get("ctx", {}).get("error") or err["msg"]).removeprefix("Value error, ")
    else:
        msg = _TYPE_WORDS.get(err["type"], err["msg"].lower())
    if "fix" not in msg:
        msg += "; fix it in the source or drop the record"
    if err["type"] == "missing":
        return field, f"{path} {msg}", f"{rule_path} {msg}"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return field, f"{path}={shown} {msg}", f"{rule_path} {msg}"
