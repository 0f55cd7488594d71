"""A deterministic synthetic TMDB catalog for demos and tests (no network, no keys)."""

from __future__ import annotations

import math
import random
import string
from collections.abc import Iterator
from datetime import date, timedelta

from .genres import MOVIE_GENRES, TV_GENRES
from .records import SourceRecord
from .sample_vocab import DEMO_MOVIES, DEMO_TV, FIRST_NAMES, LANGUAGES, LAST_NAMES, THEMES, Theme

# Far above the ids of the real fixtures (550, 603, 76479, ...), stable per position.
MOVIE_ID_BASE = 100_000
TV_ID_BASE = 100_000

_THEMES_BY_KEY = {t.key: t for t in THEMES}
_EXTRA_KEYWORDS = ("based on novel or book", "woman director", "independent film", "sequel", "remake",
                   "based on true story", "duringcreditsstinger", "aftercreditsstinger", "los angeles",
                   "new york city", "london, england", "1980s", "1970s", "small town", "revenge")
# Sorted so every keyword keeps the same id whatever the seed.
_KEYWORD_IDS = {name: 180_000 + i for i, name in
                enumerate(sorted({k for t in THEMES for k in t.keywords} | set(_EXTRA_KEYWORDS)))}
_PROVIDERS = ((8, "Netflix"), (9, "Amazon Prime Video"), (337, "Disney Plus"), (350, "Apple TV Plus"),
              (1899, "Max"), (15, "Hulu"), (11, "MUBI"), (531, "Paramount Plus"))
_COUNTRY_OF = {"en": "US", "fr": "FR", "es": "ES", "ja": "JP", "ko": "KR", "de": "DE", "it": "IT", "hi": "IN",
               "zh": "CN", "pt": "BR", "sv": "SE", "da": "DK", "ru": "RU"}
_SUBTITLES = ("Origins", "The Reckoning", "Redemption", "Homecoming", "Legacy", "The Return", "First Light",
              "Endgame", "Aftermath", "Part One", "Resurrection", "The Last Chapter", "Uprising", "Reunion")
_TONES = ("gripping", "moving", "sweeping", "intimate", "tense", "heartfelt", "bold", "haunting", "witty")
_POSTER_CHARS = string.ascii_letters + string.digits
_LAST_YEAR = 2025


def generate_catalog(seed: int = 7, n_movies: int = 2000, n_tv: int = 500) -> Iterator[SourceRecord]:
    """n_movies movies then n_tv series, identical for the same arguments."""
    rng = random.Random(seed)
    titles = _Titles()
    for i in range(n_movies):
        tmdb_id = MOVIE_ID_BASE + i + 1
        demo = DEMO_MOVIES[i] if i < len(DEMO_MOVIES) else None
        yield SourceRecord("movie", _movie(rng, titles, tmdb_id, demo), f"sample:movie/{tmdb_id}")
    for i in range(n_tv):
        tmdb_id = TV_ID_BASE + i + 1
        demo = DEMO_TV[i] if i < len(DEMO_TV) else None
        yield SourceRecord("tv", _tv(rng, titles, tmdb_id, demo), f"sample:tv/{tmdb_id}")


class _Titles:
    """Makes titles unique the way real catalogs do: later ones become sequels."""

    _ROMAN = ("", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X")

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def unique(self, title: str) -> str:
        n = self._seen.get(title, 0)
        self._seen[title] = n + 1
        if n == 0:
            return title
        return f"{title} {self._ROMAN[n]}" if n < len(self._ROMAN) else f"{title} {n + 1}"


# -- records -----------------------------------------------------------------------
def _movie(rng: random.Random, titles: _Titles, tmdb_id: int, demo: tuple | None) -> dict:
    theme = _THEMES_BY_KEY[demo[1]] if demo else _pick_theme(rng, tv=False)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    title = titles.unique(demo[0] if demo else _title(rng, theme, last))
    overview = demo[2] if demo else _overview(rng, theme, first, last)
    genre_ids = demo[3] if demo else _genre_ids(rng, theme.movie_genres)
    released = _release_date(rng)
    votes = _vote_count(rng, released)
    language = "en" if demo else _language(rng)
    is_doc = 99 in genre_ids
    budget = 0 if is_doc or rng.random() < 0.3 else int(round(rng.lognormvariate(16.5, 1.1), -5))
    return {
        "adult": False,
        "budget": budget,
        "genres": [{"id": g, "name": MOVIE_GENRES[g]} for g in genre_ids],
        "id": tmdb_id,
        "original_language": language,
        "original_title": title,
        "overview": overview,
        "popularity": _popularity(rng, votes, released),
        "poster_path": _poster(rng),
        "release_date": released.isoformat(),
        "revenue": 0 if budget == 0 else int(budget * rng.lognormvariate(0.6, 0.9)),
        "runtime": rng.randint(*theme.runtime),
        "status": "Released",
        "tagline": _tagline(rng, theme),
        "title": title,
        "video": False,
        "vote_average": _vote_average(rng, votes),
        "vote_count": votes,
        "keywords": {"keywords": _keywords(rng, theme)},
        "credits": _credits(rng, first, last, job="Director"),
        "watch/providers": _providers(rng, language),
    }


def _tv(rng: random.Random, titles: _Titles, tmdb_id: int, demo: tuple | None) -> dict:
    theme = _THEMES_BY_KEY[demo[1]] if demo else _pick_theme(rng, tv=True)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    name = titles.unique(demo[0] if demo else _title(rng, theme, last))
    overview = demo[2] if demo else _overview(rng, theme, first, last)
    genre_ids = demo[3] if demo else _genre_ids(rng, theme.tv_genres)
    first_air = _release_date(rng)
    seasons = max(1, min(20, 1 + int(rng.expovariate(1 / 1.8))))
    last_air = min(date(_LAST_YEAR, 12, 31), first_air + timedelta(days=365 * (seasons - 1) + rng.randint(60, 300)))
    running = last_air.year >= _LAST_YEAR - 1 and rng.random() < 0.7
    votes = _vote_count(rng, first_air)
    language = "en" if demo else _language(rng)
    return {
        "adult": False,
        "episode_run_time": [rng.randint(*_episode_minutes(theme))],
        "first_air_date": first_air.isoformat(),
        "genres": [{"id": g, "name": TV_GENRES[g]} for g in genre_ids],
        "id": tmdb_id,
        "in_production": running,
        "last_air_date": last_air.isoformat(),
        "name": name,
        "number_of_episodes": seasons * rng.randint(6, 22),
        "number_of_seasons": seasons,
        "origin_country": [_COUNTRY_OF.get(language, "US")],
        "original_language": language,
        "original_name": name,
        "overview": overview,
        "popularity": _popularity(rng, votes, first_air),
        "poster_path": _poster(rng),
        "status": "Returning Series" if running else rng.choice(("Ended", "Ended", "Ended", "Canceled")),
        "tagline": _tagline(rng, theme),
        "type": {"reality": "Reality", "talk_news": "Talk Show", "nature_doc": "Documentary",
                 "history_doc": "Documentary", "music_doc": "Documentary"}.get(theme.key, "Scripted"),
        "vote_average": _vote_average(rng, votes),
        "vote_count": votes,
        "keywords": {"results": _keywords(rng, theme)},
        "credits": _credits(rng, first, last, job="Executive Producer"),
        "watch/providers": _providers(rng, language),
    }


# -- text --------------------------------------------------------------------------
def _pick_theme(rng: random.Random, *, tv: bool) -> Theme:
    weights = [t.tv_weight if tv else t.weight for t in THEMES]
    return rng.choices(THEMES, weights=weights)[0]


def _title(rng: random.Random, theme: Theme, last: str) -> str:
    b = rng.choice(theme.title_b)
    roll = rng.random()
    if theme.named and roll < 0.2:
        return f"The {last} {b}"
    title = f"{rng.choice(theme.title_a)} {b}"
    return f"{title}: {rng.choice(_SUBTITLES)}" if roll > 0.75 else title


def _overview(rng: random.Random, theme: Theme, first: str, last: str) -> str:
    """2-4 sentences: who and where, what they must do, what is at stake, what it is about."""
    hero, place, incident = rng.choice(theme.heroes), rng.choice(theme.places), rng.choice(theme.incidents)
    named = theme.named and hero.startswith(("a ", "an "))
    if named and rng.random() < 0.6:
        opening = f"{first} {last}, {hero}, {incident} {place}."
        subject = first
    else:
        opening = f"{place[0].upper()}{place[1:]}, {hero} {incident}."
        subject = first if named else "they"
    goal, ally = rng.choice(theme.goals), rng.choice(theme.allies)
    if rng.random() < 0.5:
        middle = f"With the help of {ally}, {subject} must {goal}."
    else:
        middle = f"{subject[0].upper()}{subject[1:]} must {goal}, with {ally} as the only hope."
    extras = [middle, rng.choice(theme.stakes), _article(rng.choice(_TONES)) + f" story of {rng.choice(theme.about)}."]
    keep = sorted(rng.sample(range(3), rng.randint(1, 3)))
    return " ".join([opening, *(extras[i] for i in keep)])


def _article(word: str) -> str:
    return f"{'An' if word[0] in 'aeiou' else 'A'} {word}"


def _tagline(rng: random.Random, theme: Theme) -> str:
    # Many real titles have no tagline; TMDB sends "" for those.
    return "" if rng.random() < 0.15 else rng.choice(theme.taglines)


def _keywords(rng: random.Random, theme: Theme) -> list[dict]:
    k = rng.randint(3, 8)
    names = rng.sample(theme.keywords, min(k, len(theme.keywords)))
    names += [n for n in rng.sample(_EXTRA_KEYWORDS, k) if n not in names][: k - len(names)]
    return [{"id": _KEYWORD_IDS[n], "name": n} for n in names]


def _genre_ids(rng: random.Random, options: tuple[int, ...]) -> tuple[int, ...]:
    extra = rng.sample(options[1:], min(len(options) - 1, rng.choice((0, 1, 1, 2))))
    return (options[0], *extra)


def _episode_minutes(theme: Theme) -> tuple[int, int]:
    if theme.key in ("comedy", "family_animation"):
        return (20, 30)
    return theme.runtime if theme.runtime[1] <= 60 else (40, 62)


# -- numbers -----------------------------------------------------------------------
def _release_date(rng: random.Random) -> date:
    # Skewed toward recent years, like TMDB's catalog.
    year = max(1950, _LAST_YEAR - int(rng.expovariate(1 / 16)))
    return date(year, rng.randint(1, 12), rng.randint(1, 28))


def _vote_count(rng: random.Random, released: date) -> int:
    if rng.random() < 0.04:
        return 0
    age_boost = 1.0 if released.year < _LAST_YEAR else 0.3
    return min(35_000, int(rng.lognormvariate(4.2, 1.7) * age_boost))


def _vote_average(rng: random.Random, votes: int) -> float:
    if votes == 0:
        return 0.0
    spread = 0.8 + 2.0 / math.sqrt(votes + 1)
    return round(min(10.0, max(0.5, rng.gauss(6.4, spread))), 3)


def _popularity(rng: random.Random, votes: int, released: date) -> float:
    recency = 1.0 + max(0, released.year - 2015) / 5
    return round(rng.lognormvariate(1.2, 1.0) * (1 + math.log1p(votes) / 3) * recency, 3)


def _language(rng: random.Random) -> str:
    codes, weights = zip(*LANGUAGES)
    return rng.choices(codes, weights=weights)[0]


def _poster(rng: random.Random) -> str | None:
    if rng.random() < 0.03:
        return None
    return "/" + "".join(rng.choices(_POSTER_CHARS, k=27)) + ".jpg"


def _person(first: str, last: str) -> dict:
    pid = 900_000 + FIRST_NAMES.index(first) * 100 + LAST_NAMES.index(last)
    return {"id": pid, "name": f"{first} {last}"}


def _credits(rng: random.Random, first: str, last: str, *, job: str) -> dict:
    cast = [{**_person(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)), "character": f"{first} {last}", "order": 0}]
    for order in range(1, rng.randint(2, 5)):
        actor = _person(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
        cast.append({**actor, "character": rng.choice(FIRST_NAMES), "order": order})
    director = _person(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
    department = "Directing" if job == "Director" else "Production"
    return {"cast": cast, "crew": [{**director, "job": job, "department": department}]}


def _providers(rng: random.Random, language: str) -> dict:
    picks = rng.sample(_PROVIDERS, rng.choice((0, 1, 1, 2)))
    if not picks:
        return {"results": {}}
    country = _COUNTRY_OF.get(language, "US") if rng.random() < 0.3 else "US"
    flatrate = [{"provider_id": pid, "provider_name": name, "display_priority": i, "logo_path": None}
                for i, (pid, name) in enumerate(picks)]
    return {"results": {country: {"link": f"https://www.themoviedb.org/watch/{country}", "flatrate": flatrate}}}
