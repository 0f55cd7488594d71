"""Argument types for the `gateway` CLI: every value is checked before anything runs.

argparse turns an `ArgumentTypeError` into `gateway <cmd>: error: argument --k: ...` and exit code 2,
so a hostile or mistyped argument gets one clear line, never a traceback, and never reaches SQL or
a Dagster run. The domain command modules use these too.
"""

from __future__ import annotations

import argparse
import math
import re
import unicodedata
from pathlib import Path

INT4_MAX = 2**31 - 1
MAX_K = 1000
MAX_QUERY_CHARS = 2000
_CONTENT_KEY = re.compile(r"^(movie|tv)-([1-9][0-9]{0,18})$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_YEAR = re.compile(r"^(?P<low>\d{4})?(?P<sep>-)?(?P<high>\d{4})?$")


def bounded_int(low: int, high: int, what: str = "a whole number"):
    """A type for an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {what} from {low} to {high}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def bounded_float(low: float, high: float, what: str = "a number"):
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {what} from {low:g} to {high:g}")
        return value

    parse.__name__ = what
    return parse


k_results = bounded_int(1, MAX_K, "a number of results")
positive_id = bounded_int(1, INT4_MAX, "a positive id")
rating = bounded_float(0.0, 10.0, "a rating")


def genre_id(text: str) -> int:
    from gateway_pipelines.lib.tmdb.genres import ALL_GENRES

    value = bounded_int(1, INT4_MAX, "a TMDB genre id")(text)
    if value not in ALL_GENRES:
        known = ", ".join(f"{gid} {name}" for gid, name in sorted(ALL_GENRES.items(), key=lambda kv: kv[1]))
        raise argparse.ArgumentTypeError(f"{value} is not a TMDB genre id; use one of: {known}")
    return value


def year_range(text: str) -> tuple[int | None, int | None]:
    """YYYY, YYYY-YYYY, YYYY- or -YYYY."""
    match = _YEAR.match(text.strip())
    if not match or not (match["low"] or match["high"]):
        raise argparse.ArgumentTypeError(f"{text!r} is not a year or a range: write 1999, 1990-2010, 1990- or -2010")
    low = int(match["low"]) if match["low"] else None
    high = int(match["high"]) if match["high"] else (None if match["sep"] else low)
    if low is not None and high is not None and low > high:
        raise argparse.ArgumentTypeError(f"{text!r} runs backwards: write the earlier year first")
    return low, high


def language(text: str) -> str:
    value = text.strip().lower()
    if not _LANGUAGE.match(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a language code: give ISO 639-1, e.g. en, fr, ja")
    return value


def content_key(text: str) -> str:
    value = text.strip()
    if not _CONTENT_KEY.match(value):
        raise argparse.ArgumentTypeError(
            f"{safe(text)!r} is not a content key: write movie-<TMDB id> or tv-<TMDB id>, e.g. movie-603")
    if int(value.split("-", 1)[1]) > INT4_MAX:
        raise argparse.ArgumentTypeError(f"{value}: TMDB ids stop at {INT4_MAX}")
    return value


def query_text(text: str) -> str:
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("the query is empty: describe what to find, e.g. \"heist thriller in space\"")
    if len(value) > MAX_QUERY_CHARS:
        raise argparse.ArgumentTypeError(f"the query has {len(value)} characters; keep it under {MAX_QUERY_CHARS}")
    return value


def existing_file(text: str) -> str:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{safe(text)}: no such file (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{safe(text)} is a directory; give the file inside it")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{safe(text)} cannot be read: {exc.strerror}") from None
    return str(path.resolve())


def safe(text: object) -> str:
    """Text as a terminal may show it: control characters (ANSI escapes, bells, carriage returns)
    written as visible escapes, so stored data can never drive the terminal."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in value)


def _escape(ch: str) -> str:
    code = ord(ch)
    if unicodedata.category(ch) == "Zs":
        return " "
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
