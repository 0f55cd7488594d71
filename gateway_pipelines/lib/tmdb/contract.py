"""The ingestion contract: which payload fields become typed columns, and the range each may hold.

One declaration serves both sides. The types are read from the staging model's own YAML
(`dbt/models/staging/stg_tmdb__titles.yml`, `data_type` of each column), and `STAGING_SOURCES` says
which payload fields `stg_tmdb__titles.sql` casts into each column. Validation bounds every such
field by its column's type, so a value that passes validation can never make the staging model
fail ("value out of range for type integer") on every later run.

Fields that stay inside the JSON payload are bounded too, by what the payload must survive: they
are encoded by orjson (64-bit integers) and stored as jsonb.
"""

from __future__ import annotations

from functools import cache

import yaml

from gateway_pipelines.settings import DBT_DIR

STAGING_YAML = DBT_DIR / "models" / "staging" / "stg_tmdb__titles.yml"
STAGING_MODEL = "stg_tmdb__titles"

INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)
TYPE_RANGES: dict[str, tuple[int, int]] = {
    "smallint": (-(2**15), 2**15 - 1), "integer": INT4, "int": INT4, "int4": INT4,
    "bigint": INT8, "int8": INT8,
}

# staging column -> payload fields it is cast from, as in stg_tmdb__titles.sql ("[]": every item)
STAGING_SOURCES: dict[str, tuple[str, ...]] = {
    "tmdb_id": ("id",),
    "genre_ids": ("genres[].id",),
    "runtime": ("runtime", "episode_run_time[]"),
    "vote_count": ("vote_count",),
    "vote_average": ("vote_average",),
    "popularity": ("popularity",),
    "release_date": ("release_date", "first_air_date"),
}

# Integer fields no staging column reads: they must still fit orjson and `raw.tmdb_titles`.
PAYLOAD_ONLY_TYPES: dict[str, str] = {
    "id": "integer",  # raw.tmdb_titles.id is integer (sql/002_raw.sql)
    "keywords[].id": "integer",
    "budget": "bigint",
    "revenue": "bigint",
    "number_of_seasons": "integer",
    "number_of_episodes": "integer",
}


@cache
def staging_types() -> dict[str, str]:
    """column -> data_type, as the staging model's YAML declares them."""
    doc = yaml.safe_load(STAGING_YAML.read_text(encoding="utf-8"))
    model = next(m for m in doc["models"] if m["name"] == STAGING_MODEL)
    return {c["name"]: c["data_type"] for c in model["columns"] if c.get("data_type")}


def _element_type(data_type: str) -> str:
    return data_type[:-2] if data_type.endswith("[]") else data_type


@cache
def integer_bounds() -> dict[str, tuple[int, int]]:
    """payload field -> (min, max) for every integer field; the narrowest declaration wins."""
    bounds: dict[str, tuple[int, int]] = {}

    def narrow(field: str, data_type: str) -> None:
        rng = TYPE_RANGES.get(_element_type(data_type))
        if rng is None:
            return
        lo, hi = bounds.get(field, INT8)
        bounds[field] = (max(lo, rng[0]), min(hi, rng[1]))

    types = staging_types()
    for column, fields in STAGING_SOURCES.items():
        for field in fields:
            narrow(field, types[column])
    for field, data_type in PAYLOAD_ONLY_TYPES.items():
        narrow(field, data_type)
    return bounds


def bounds_for(field: str) -> tuple[int, int]:
    """The range a payload integer field may hold: its column's type, else 64-bit."""
    return integer_bounds().get(field, INT8)


def type_name(field: str) -> str:
    """The Postgres type that bounds `field`, for messages."""
    lo, hi = bounds_for(field)
    return next((name for name, rng in TYPE_RANGES.items() if rng == (lo, hi)), f"{lo}..{hi}")
