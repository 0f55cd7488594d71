from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg

from gateway_pipelines import automation
from gateway_pipelines.defs.tmdb.checks import (
    NEW_DATA_CHECK,
    PAYLOAD_SHAPE_CHECK,
    REJECT_RATIO_CHECK,
    BatchOutcome,
    new_data_result,
    payload_shape_result,
    reject_ratio_result,
    titles_check_specs,
)
from gateway_pipelines.defs.tmdb.partitions import tmdb_partitions
from gateway_pipelines.lib.tmdb.batches import BatchError, get_batch
from gateway_pipelines.lib.tmdb.client import CREDENTIALS_FIX, TMDBConfigError
from gateway_pipelines.lib.tmdb.genres import genres_for
from gateway_pipelines.lib.tmdb.landing import file_sha256
from gateway_pipelines.lib.tmdb.raw_store import (
    DEFAULT_MAX_REJECT_RATIO,
    PREVIEW_SQL,
    SHAPE_SQL,
    ingest,
    release_batch,
    upsert_genres,
)
from gateway_pipelines.lib.tmdb.records import SourceError, file_error
from gateway_pipelines.lib.tmdb.resource import TMDBResource
from gateway_pipelines.lib.tmdb.sources import FILE_SOURCES, SOURCE_NAMES, deterministic_reason, is_transient
from gateway_pipelines.lib.tmdb.unchanged import LOADER_VERSION, match_unchanged_file
from gateway_pipelines.lib.warehouse import WarehouseResource

__all__ = ["NEW_DATA_CHECK", "PAYLOAD_SHAPE_CHECK", "REJECT_RATIO_CHECK", "TMDB_RETRY", "TitlesConfig",
           "build_tmdb_titles", "tmdb_genres"]

# Only transient errors reach this policy: everything else is raised as Failure(allow_retries=False).
TMDB_RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL)
PATH_FIX = "fix `path` in the tmdb_titles run config (ops: tmdb_titles: config: path)"


class TitlesConfig(dg.Config):
    source: str | None = None  # sample | csv_dump | export | api; default: the tmdb resource's source
    path: str | None = None  # the file for csv_dump and export
    seed: int = 7  # the sample catalogue's seed
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO  # over it, the batch is held and the gate fails
    accept_rejects: bool = False  # load (or release) a batch over max_reject_ratio anyway: an operator's call
    release_batch: int | None = None  # merge this held batch (raw.tmdb_batches.batch_id); reads no source
    # read a file even when it is byte-identical to a loaded batch that raw still holds unchanged
    reread: bool = False


def _column(name: str, type_: str, description: str) -> dg.TableColumn:
    return dg.TableColumn(name, type_, description=description,
                          constraints=dg.TableColumnConstraints(nullable=False))


# As in sql/002_raw.sql (types as Postgres prints them); a test compares them with the warehouse.
TITLES_SCHEMA = dg.TableSchema(
    columns=[
        _column("id", "integer", "TMDB id; movie and TV ids overlap, so a title is (media_type, id)"),
        _column("media_type", "text", "'movie' or 'tv'"),
        _column("payload", "jsonb", "the TMDB details payload after validation (canonical JSON)"),
        _column("content_hash", "text", "sha256 of the canonical payload; an unchanged title is not rewritten"),
        _column("source", "text", "where the stored payload came from: sample, csv_dump, export or api"),
        _column("partition_date", "date", "the daily partition that last inserted or changed the title"),
        _column("fetched_at", "timestamp with time zone", "when the stored payload was written"),
    ],
    constraints=dg.TableConstraints(other=["PRIMARY KEY (media_type, id)"]),
)
GENRES_SCHEMA = dg.TableSchema(
    columns=[
        _column("media_type", "text", "'movie' or 'tv': TMDB keeps a genre list per media type"),
        _column("genre_id", "integer", "TMDB genre id, as in a payload's genres[].id"),
        _column("name", "text", "the genre's English name"),
    ],
    constraints=dg.TableConstraints(other=["PRIMARY KEY (media_type, genre_id)"]),
)


@contextmanager
def failures_told_apart(context: dg.AssetExecutionContext, asset: str,
                        max_retries: int = TMDB_RETRY.max_retries) -> Iterator[None]:
    """Let only transient errors reach the retry policy; everything else fails once, with its reason
    as the run's headline (a retry policy would otherwise retry it and report "Exceeded max_retries").
    On the last attempt a transient error, too, becomes a Failure, so the headline says what it was."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested, dg.DagsterError):
        raise
    except Exception as exc:
        where = f"{asset} {context.partition_key}" if context.has_partition_key else asset
        reason = str(exc) if isinstance(exc, BatchError) else deterministic_reason(exc)
        if reason is not None:
            raise dg.Failure(description=f"{where}: {reason.rstrip('.')}. Not retried: it fails the same way on "
                             "every attempt.", allow_retries=False) from exc
        if is_transient(exc):
            attempt = context.retry_number + 1
            if attempt <= max_retries:
                raise  # the asset's RetryPolicy retries it, with backoff
            raise dg.Failure(description=f"{where}: still failing after {attempt} attempts with a transient error "
                             f"({type(exc).__name__}: {exc}); check the network, TMDB's status or the warehouse, "
                             "then rerun.", allow_retries=False) from exc
        raise dg.Failure(description=f"{where} failed with an unexpected {type(exc).__name__}: {exc}. Not retried: "
                         "it is not a network, rate-limit or warehouse-connection error; the traceback below "
                         "shows where it comes from.", allow_retries=False) from exc


@dg.asset(
    group_name="tmdb",
    owners=["team:ingestion"],
    automation_condition=automation.after_parents(),
    kinds={"postgres", "api"},
    deps=["warehouse_schema"],
    retry_policy=TMDB_RETRY,
    metadata={"dagster/table_name": "raw.tmdb_genres", "dagster/column_schema": GENRES_SCHEMA},
    description="TMDB's genre lists (movie and TV) in raw.tmdb_genres: from the API with a key, else bundled.",
)
def tmdb_genres(context: dg.AssetExecutionContext, warehouse: WarehouseResource, tmdb: TMDBResource):
    with failures_told_apart(context, "tmdb_genres"):
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


def build_tmdb_titles(partitions_def: dg.PartitionsDefinition,
                      retry_policy: dg.RetryPolicy = TMDB_RETRY) -> dg.AssetsDefinition:
    """tmdb_titles over the configured daily partitions (built when definitions load)."""

    @dg.asset(
        group_name="tmdb",
        owners=["team:ingestion"],
        kinds={"postgres", "api"},
        partitions_def=partitions_def,
        deps=["warehouse_schema"],
        retry_policy=retry_policy,
        pool="tmdb_api",
        check_specs=titles_check_specs("tmdb_titles", partitions_def),
        metadata={"dagster/table_name": "raw.tmdb_titles", "dagster/column_schema": TITLES_SCHEMA},
        description="TMDB titles that changed on the partition's day, upserted into raw.tmdb_titles; "
        "invalid records go to raw.tmdb_rejects with the field and the reason. Each load is a batch in "
        "raw.tmdb_batches; a batch over max_reject_ratio is held in raw.tmdb_held_titles until released.",
    )
    def tmdb_titles(
        context: dg.AssetExecutionContext,
        config: TitlesConfig,
        warehouse: WarehouseResource,
        tmdb: TMDBResource,
    ) -> dg.MaterializeResult:
        return materialize_titles(context, config, warehouse, tmdb, max_retries=retry_policy.max_retries)

    return tmdb_titles


def materialize_titles(
    context: dg.AssetExecutionContext,
    config: TitlesConfig,
    warehouse: WarehouseResource,
    tmdb: TMDBResource,
    *,
    max_retries: int = TMDB_RETRY.max_retries,
) -> dg.MaterializeResult:
    with failures_told_apart(context, "tmdb_titles", max_retries):
        partition = date.fromisoformat(context.partition_key)
        _check_config(config)
        if config.release_batch is not None:
            outcome, extra = _release(context, config, warehouse, partition)
        else:
            outcome, extra = _load(context, config, warehouse, tmdb, partition)
        with warehouse.connection() as conn:
            in_partition = conn.execute(
                "SELECT count(*) FROM raw.tmdb_titles WHERE partition_date = %s", (partition,)
            ).fetchone()[0]
            preview = conn.execute(PREVIEW_SQL, (partition, 10)).fetchall()
            bad_shape = conn.execute(SHAPE_SQL, (partition,)).fetchall()
        counts, batch = outcome.counts, outcome.batch
        context.log.info(f"batch {batch.batch_id} ({outcome.action}, now {batch.status}): {counts.identity()}")
        checks = [
            reject_ratio_result(outcome),
            payload_shape_result(context.partition_key, bad_shape),
            new_data_result(outcome),
        ]
        return dg.MaterializeResult(
            check_results=checks,
            metadata={
                "dagster/row_count": int(in_partition),
                "batch_id": batch.batch_id,
                "batch_status": batch.status,
                "batch_action": outcome.action,
                "count_identity": counts.identity(),
                "records_read": counts.read,
                "loaded": counts.loaded,
                "quarantined": counts.quarantined,
                "skipped_missing": counts.skipped,
                "held": counts.held,
                "duplicates_in_batch": counts.duplicates,
                "source": batch.source,
                "file": batch.file_name or "",
                "file_sha256": batch.file_sha256 or "",
                "rows_inserted": outcome.inserted,
                "rows_updated": outcome.updated,
                "rows_unchanged": outcome.unchanged,
                "rows_rejected": counts.quarantined,
                "rows_missing": counts.skipped,
                "reject_ratio": round(outcome.reject_ratio, 4),
                **extra,
                "preview": dg.MetadataValue.md(_preview_md(preview)),
            },
        )


def _check_config(config: TitlesConfig) -> None:
    if not 0 <= config.max_reject_ratio <= 1:
        raise SourceError(f"max_reject_ratio={config.max_reject_ratio} in the tmdb_titles run config is not a "
                          "fraction between 0 and 1; write 0.05 for 5%")
    if config.release_batch is not None and (config.source or config.path):
        raise SourceError(f"release_batch: {config.release_batch} merges rows already held in "
                          "raw.tmdb_held_titles and reads no source; remove `source` and `path` from the "
                          "tmdb_titles run config, or drop release_batch to load the file")


def _load(context, config: TitlesConfig, warehouse: WarehouseResource, tmdb: TMDBResource,
          partition: date) -> tuple[BatchOutcome, dict]:
    name = tmdb.source_name(config.source)
    if name not in SOURCE_NAMES:
        setting = "`source` in the tmdb_titles run config" if config.source else "the tmdb resource's `source`"
        raise SourceError(f"source {name!r} ({setting}) is unknown; use one of {', '.join(SOURCE_NAMES)}")
    if name in FILE_SOURCES and not config.path:
        raise SourceError(f"source {name!r} reads a file, but the tmdb_titles run config has no `path`; set "
                          "ops: tmdb_titles: config: path: to the file, or drop the file into the landing folder")
    if name == "api" and not tmdb.has_credentials():
        raise TMDBConfigError(f"source 'api' needs TMDB credentials: {CREDENTIALS_FIX} where the code location "
                              "runs, or pick an offline source (sample, csv_dump, export) in the run config")
    try:
        source = tmdb.open_source(name, path=config.path, seed=config.seed)
        file = Path(source.path) if name in FILE_SOURCES else None  # type: ignore[attr-defined]
        checksum = file_sha256(file) if file else None
    except OSError as exc:
        raise SourceError(f"{file_error(exc.filename or config.path or '', exc)}; {PATH_FIX}") from exc
    except SourceError as exc:
        if name not in FILE_SOURCES:
            raise
        raise SourceError(f"{exc}; {PATH_FIX}") from exc
    file_check: dict = {}
    if file is not None and checksum is not None:
        unchanged, file_check = _match_file(config, source, warehouse, partition, name, checksum)
        if unchanged is not None:
            context.log.info(f"{file.name} not read: {file_check['file_check']}")
            return unchanged, file_check
    with warehouse.connection() as conn:
        # source.missing fills while the records stream; ingest reads it after the COPY
        report = ingest(
            conn, source.records(partition), source=name, partition=partition, missing=source.missing,
            max_reject_ratio=config.max_reject_ratio, accept_rejects=config.accept_rejects,
            file_name=file.name if file else None, file_sha256=checksum, run_id=context.run_id,
        )
    return BatchOutcome.from_ingest(report), {
        **file_check,
        "loader_version": LOADER_VERSION,
        "truncation_warnings": report.warnings,
        "titles_per_second": round(report.titles_per_second, 1),
        "duration_s": round(report.seconds, 3),
    }


def _match_file(config: TitlesConfig, source, warehouse: WarehouseResource, partition: date, name: str,
                checksum: str) -> tuple[BatchOutcome | None, dict]:
    """The outcome of a rerun that needs no read (or None), and metadata saying why it does or not."""
    if config.reread:
        return None, {"file_unchanged": False, "file_check": "reread: true in the run config: read in full"}
    if not source.reads_only_its_file:
        return None, {"file_unchanged": False, "file_check": "read in full: with TMDB credentials an export's "
                      "details come from the API, so the same file may bring changed titles"}
    with warehouse.connection() as conn:
        match = match_unchanged_file(conn, partition=partition, source=name, file_sha256=checksum)
    file_check = {"file_unchanged": match.unchanged, "file_check": match.reason}
    if not match.unchanged or match.batch is None:
        return None, file_check
    return BatchOutcome.from_unchanged_file(match.batch, config.max_reject_ratio, config.accept_rejects), {
        **file_check, "matched_batch_id": match.batch.batch_id, "loader_version": LOADER_VERSION,
        "raw_watermark": match.batch.raw_watermark or "",
    }


def _release(context, config: TitlesConfig, warehouse: WarehouseResource, partition: date) -> tuple[BatchOutcome, dict]:
    batch_id = config.release_batch
    assert batch_id is not None
    with warehouse.connection() as conn:
        batch = get_batch(conn, batch_id)
        if batch is not None and batch.partition != partition:
            # The materialisation, its checks and the dbt run after it must land on the batch's own day.
            raise BatchError(f"batch {batch_id} belongs to partition {batch.partition}, not {partition}; launch "
                             f"the release_batch run for partition {batch.partition}")
        release = release_batch(conn, batch_id, run_id=context.run_id)
    return BatchOutcome.from_release(release), {"duration_s": round(release.seconds, 3)}


def _preview_md(rows) -> str:
    lines = ["| content_key | title | released | rating | overview |", "|---|---|---|---|---|"]
    for key, title, released, rating, overview in rows:
        text = (overview or "").replace("|", "/")
        lines.append(f"| {key} | {(title or '').replace('|', '/')} | {released or ''} | {rating or ''} | {text}… |")
    return "\n".join(lines)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[tmdb_genres, build_tmdb_titles(tmdb_partitions())])
