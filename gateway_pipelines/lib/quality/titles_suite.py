"""The GX suite on staged TMDB titles: ranges, null rates and key uniqueness over the typed columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from gateway_pipelines.lib.quality.gx_runner import SuiteOutcome, run_query_suite
from gateway_pipelines.lib.quality.reuse import suite_version
from gateway_pipelines.lib.watermarks import table_fingerprint

STAGED_TITLES = "analytics.stg_tmdb__titles"
STAGED_TITLES_QUERY = (
    "SELECT content_key, tmdb_id, media_type, title, overview, vote_average, vote_count, runtime, year, "
    f"popularity FROM {STAGED_TITLES}"
)
SUITE_VERSION = suite_version(Path(__file__))


def staged_titles_watermark(conn: psycopg.Connection) -> dict[str, Any]:
    """What the suite's verdict depends on: the table it reads (whole) and the suite itself."""
    return {"table": table_fingerprint(conn, STAGED_TITLES), "suite": SUITE_VERSION}


def validate_staged_titles(warehouse_url: str, *, max_missing_overview: float = 0.2) -> SuiteOutcome:
    import great_expectations.expectations as gxe

    return run_query_suite(
        warehouse_url,
        "staged_titles",
        STAGED_TITLES_QUERY,
        [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectColumnValuesToBeUnique(column="content_key"),
            gxe.ExpectColumnValuesToNotBeNull(column="content_key"),
            gxe.ExpectColumnValuesToNotBeNull(column="title"),
            gxe.ExpectColumnValuesToBeInSet(column="media_type", value_set=["movie", "tv"]),
            gxe.ExpectColumnValuesToNotBeNull(column="overview", mostly=1 - max_missing_overview),
            gxe.ExpectColumnValuesToBeBetween(column="vote_average", min_value=0, max_value=10),
            gxe.ExpectColumnValuesToBeBetween(column="vote_count", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="runtime", min_value=0, max_value=10000),
            gxe.ExpectColumnValuesToBeBetween(column="year", min_value=1870, max_value=2100),
            gxe.ExpectColumnValuesToBeBetween(column="popularity", min_value=0),
        ],
    )
