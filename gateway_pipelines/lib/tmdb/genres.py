"""TMDB's official genre ids (stable; from /genre/movie/list and /genre/tv/list)."""

from __future__ import annotations

MOVIE_GENRES: dict[int, str] = {
    28: "Action",
    12: "Adventure",
    16: "Animation",
    35: "Comedy",
    80: "Crime",
    99: "Documentary",
    18: "Drama",
    10751: "Family",
    14: "Fantasy",
    36: "History",
    27: "Horror",
    10402: "Music",
    9648: "Mystery",
    10749: "Romance",
    878: "Science Fiction",
    10770: "TV Movie",
    53: "Thriller",
    10752: "War",
    37: "Western",
}

TV_GENRES: dict[int, str] = {
    10759: "Action & Adventure",
    16: "Animation",
    35: "Comedy",
    80: "Crime",
    99: "Documentary",
    18: "Drama",
    10751: "Family",
    10762: "Kids",
    9648: "Mystery",
    10763: "News",
    10764: "Reality",
    10765: "Sci-Fi & Fantasy",
    10766: "Soap",
    10767: "Talk",
    10768: "War & Politics",
    37: "Western",
}


def _merge(*tables: dict[int, str]) -> dict[int, str]:
    merged: dict[int, str] = {}
    for table in tables:
        for gid, name in table.items():
            # a shared id must mean the same genre on both lists, or one id would carry two names
            if merged.setdefault(gid, name) != name:
                raise ValueError(f"TMDB genre {gid} is {merged[gid]!r} for one media type and {name!r} for another")
    return merged


#: every genre of either media type: movie ids in TMDB's order, then the TV-only ones
ALL_GENRES: dict[int, str] = _merge(MOVIE_GENRES, TV_GENRES)
ALL_GENRE_IDS: tuple[int, ...] = tuple(sorted(ALL_GENRES))


def genres_for(media_type: str) -> dict[int, str]:
    """Genre id -> name table for 'movie' or 'tv'."""
    if media_type == "movie":
        return MOVIE_GENRES
    if media_type == "tv":
        return TV_GENRES
    raise ValueError(f"media_type={media_type!r} is unknown; use 'movie' or 'tv'")
