"""Write a dump in the exact TMDB 5000 CSV format (`tmdb_5000_movies.csv`) from the sample generator:
for the landing-folder demo, the benchmarks and the automation tests."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway_pipelines.lib.tmdb.sample import generate_catalog

CSV_COLUMNS = [
    "budget", "genres", "homepage", "id", "keywords", "original_language", "original_title", "overview",
    "popularity", "production_companies", "production_countries", "release_date", "revenue", "runtime",
    "spoken_languages", "status", "tagline", "title", "vote_average", "vote_count",
]


def dump_row(p: Mapping[str, Any]) -> dict[str, Any]:
    """One CSV row from a details-shaped movie payload, as TMDB 5000 encodes it (JSON cells)."""
    return {
        "budget": 1_000_000, "genres": json.dumps(p.get("genres") or []), "homepage": "",
        "id": p["id"], "keywords": json.dumps((p.get("keywords") or {}).get("keywords") or []),
        "original_language": p.get("original_language") or "", "original_title": p.get("original_title") or "",
        "overview": p.get("overview") or "", "popularity": p.get("popularity") or 0,
        "production_companies": "[]", "production_countries": "[]",
        "release_date": p.get("release_date") or "", "revenue": 0, "runtime": p.get("runtime") or "",
        "spoken_languages": "[]", "status": p.get("status") or "Released", "tagline": p.get("tagline") or "",
        "title": p.get("title") or "", "vote_average": p.get("vote_average") or 0,
        "vote_count": p.get("vote_count") or 0,
    }


def write_tmdb5000_csv(
    path: Path, n: int, *, seed: int = 11, id_offset: int = 0, extra: Iterable[Mapping[str, Any]] = ()
) -> Path:
    """`n` generated movies (ids shifted by `id_offset`, so a dump can hold titles the sample has
    not), plus `extra` payloads as given."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for record in generate_catalog(seed=seed, n_movies=n, n_tv=0):
            payload = dict(record.record)
            payload["id"] = int(payload["id"]) + id_offset
            writer.writerow(dump_row(payload))
        for payload in extra:
            writer.writerow(dump_row(payload))
    return path
