from datetime import date

import dagster as dg

from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.lib.tmdb.genres import genres_for
from gateway_pipelines.lib.tmdb.raw_store import PREVIEW_SQL, SHAPE_SQL, ingest, upsert_genres
from gateway_pipelines.lib.tmdb.resource import TMDBResource
from gateway_pipelines.lib.warehouse import WarehouseResource

TMDB_RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL)


class TitlesConfig(dg.Config):
    source: str | None = None  # sample | csv_dump | export | api; default TMDB_SOURCE, else sample
    path: str | None = None  # the file for csv_dump and export
    seed: int = 7  # the sample catalogue's seed
    max_reject_ratio: float = 0.05  # the blocking gate: more rejects than this stops dbt and embeddings


REJECT_RATIO_CHECK = "reject_ratio_below_threshold"
PAYLOAD_SHAPE_CHECK = "payloads_have_expected_shape"


@dg.asset(
    group_name="tmdb",
    kinds={"postgres", "api"},
    deps=["warehouse_schema"],
    retry_policy=TMDB_RETRY,
    description="TMDB's genre lists (movie and TV) in raw.tmdb_genres: from the API with a key, else bundled.",
)
def tmdb_genres(context: dg.AssetExecutionContext, warehouse: WarehouseResource, tmdb: TMDBResource):
    if tmdb.has_credentials():
        with tmdb.client() as client:
            lists = {m: client.genres(m) for m in ("movie", "tv")}
        origin = "api"
    else:
        lists = {m: [{"id": k, "name": v} for k, v in genres_for(m).items()] for m in ("movie", "tv")}
        origin = "bundled"
    with warehouse.connection() as conn:
        counts = {m: upsert_genres(conn, m, genres) for m, genres in lists.items()}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(counts.values()),
            "movie_genres": counts["movie"],
            "tv_genres": counts["tv"],
            "origin": origin,
        }
    )


@dg.asset(
    group_name="tmdb",
    kinds={"postgres", "api"},
    partitions_def=daily_partitions,
    deps=["warehouse_schema"],
    retry_policy=TMDB_RETRY,
    pool="tmdb_api",
    check_specs=[
        dg.AssetCheckSpec(REJECT_RATIO_CHECK, asset="tmdb_titles", blocking=True,
                          description="Rejected records stay under max_reject_ratio of what the source sent."),
        dg.AssetCheckSpec(PAYLOAD_SHAPE_CHECK, asset="tmdb_titles", blocking=True,
                          description="Every stored payload of the partition has an id, a title and a genre list."),
    ],
    description="TMDB titles that changed on the partition's day, upserted into raw.tmdb_titles; "
    "invalid records go to raw.tmdb_rejects with the field and the reason.",
)
def tmdb_titles(
    context: dg.AssetExecutionContext,
    config: TitlesConfig,
    warehouse: WarehouseResource,
    tmdb: TMDBResource,
) -> dg.MaterializeResult:
    partition = date.fromisoformat(context.partition_key)
    name = tmdb.source_name(config.source)
    source = tmdb.open_source(name, path=config.path, seed=config.seed)
    with warehouse.connection() as conn:
        # source.missing fills while the records stream; ingest reads it after the COPY
        report = ingest(conn, source.records(partition), source=name, partition=partition, missing=source.missing)
        in_partition = conn.execute(
            "SELECT count(*) FROM raw.tmdb_titles WHERE partition_date = %s", (partition,)
        ).fetchone()[0]
        preview = conn.execute(PREVIEW_SQL, (partition, 10)).fetchall()
        bad_shape = conn.execute(SHAPE_SQL, (partition,)).fetchall()
    context.log.info(
        f"{name}: {report.records_in} read, {report.inserted} inserted, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.rejected} rejected, {report.missing} missing"
    )
    ratio_ok = report.reject_ratio <= config.max_reject_ratio
    checks = [
        dg.AssetCheckResult(
            check_name=REJECT_RATIO_CHECK,
            passed=ratio_ok,
            description=f"{report.rejected} of {report.valid + report.rejected} records rejected "
            f"({report.reject_ratio:.1%}; limit {config.max_reject_ratio:.1%})",
            metadata={"reject_ratio": round(report.reject_ratio, 4), "rejected": report.rejected,
                      "by_field": dg.MetadataValue.json(report.reject_reasons)},
        ),
        dg.AssetCheckResult(
            check_name=PAYLOAD_SHAPE_CHECK,
            passed=not bad_shape,
            description="all payloads well-formed" if not bad_shape else f"{len(bad_shape)} malformed payloads",
            metadata={"malformed_examples": dg.MetadataValue.json([f"{m}-{i}" for m, i in bad_shape[:20]])},
        ),
    ]
    return dg.MaterializeResult(
        check_results=checks,
        metadata={
            "dagster/row_count": int(in_partition),
            "source": name,
            "rows_in": report.records_in,
            "rows_inserted": report.inserted,
            "rows_updated": report.updated,
            "rows_unchanged": report.unchanged,
            "rows_rejected": report.rejected,
            "rows_missing": report.missing,
            "duplicates_in_batch": report.duplicates,
            "truncation_warnings": report.warnings,
            "reject_ratio": round(report.reject_ratio, 4),
            "reject_fields": dg.MetadataValue.json(report.reject_reasons),
            "titles_per_second": round(report.titles_per_second, 1),
            "duration_s": round(report.seconds, 3),
            "preview": dg.MetadataValue.md(_preview_md(preview)),
        }
    )


def _preview_md(rows) -> str:
    lines = ["| content_key | title | released | rating | overview |", "|---|---|---|---|---|"]
    for key, title, released, rating, overview in rows:
        text = (overview or "").replace("|", "/")
        lines.append(f"| {key} | {(title or '').replace('|', '/')} | {released or ''} | {rating or ''} | {text}… |")
    return "\n".join(lines)
