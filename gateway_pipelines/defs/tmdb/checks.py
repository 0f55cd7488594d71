"""The checks of tmdb_titles. They judge the batch the materialisation just wrote, so the asset
evaluates them itself and returns them in its MaterializeResult; this module declares them and
builds their results.

They are partitioned like the asset: each result belongs to the day it judged, so the UI shows the
partition, and a gate that failed on one day holds back only that day's downstream partitions
(Dagster judges an unpartitioned check on a partitioned asset by its latest result, whichever day
that was).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import timezone

import dagster as dg

from gateway_pipelines.lib.tmdb.batches import (
    BatchCounts,
    BatchRecord,
    ReasonCount,
    RejectExample,
    examples_markdown,
    reasons_markdown,
)
from gateway_pipelines.lib.tmdb.raw_store import IngestReport, ReleaseReport
from gateway_pipelines.lib.tmdb.unchanged import UNCHANGED_FILE

REJECT_RATIO_CHECK = "reject_ratio_below_threshold"
PAYLOAD_SHAPE_CHECK = "payloads_have_expected_shape"
NEW_DATA_CHECK = "batch_brought_new_or_changed_rows"

REJECT_RATIO_DESCRIPTION = (
    "Rejected records stay under max_reject_ratio of what the source sent; over it, the batch is held "
    "in raw.tmdb_held_titles instead of reaching raw.tmdb_titles. Blocking, severity ERROR: a source "
    "that sends that many bad records is suspect as a whole, so dbt, embeddings and search must not "
    "build on the day until an operator accepts the batch (accept_rejects) or releases it (release_batch)."
)
PAYLOAD_SHAPE_DESCRIPTION = (
    "Every stored payload of the partition has an id, a title and a genre list. Blocking, severity "
    "ERROR: every downstream model reads those three, so a payload without them would break dbt and "
    "put nameless titles into search."
)
NEW_DATA_DESCRIPTION = (
    "The batch read records and loaded at least one new or changed title. Non-blocking, severity WARN: "
    "an empty day, or a day that only re-sent titles raw already has unchanged (as the offline sample "
    "does every day), is worth a look but is not bad data, so downstream keeps running."
)


def titles_check_specs(asset_key: str, partitions_def: dg.PartitionsDefinition | None) -> list[dg.AssetCheckSpec]:
    # Partitioned checks are a Dagster preview; the warning would be printed at every code-location
    # load and says nothing an operator can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(REJECT_RATIO_CHECK, asset=asset_key, blocking=True,
                              description=REJECT_RATIO_DESCRIPTION, partitions_def=partitions_def),
            dg.AssetCheckSpec(PAYLOAD_SHAPE_CHECK, asset=asset_key, blocking=True,
                              description=PAYLOAD_SHAPE_DESCRIPTION, partitions_def=partitions_def),
            dg.AssetCheckSpec(NEW_DATA_CHECK, asset=asset_key, blocking=False,
                              description=NEW_DATA_DESCRIPTION, partitions_def=partitions_def),
        ]


@dataclass(frozen=True)
class BatchOutcome:
    """What a tmdb_titles run did to one batch, whether it loaded a source or released a held batch."""

    partition: str
    batch: BatchRecord
    action: str  # loaded | held | still_held | released | reloaded | released_by_id | unchanged_file
    counts: BatchCounts  # this run's (all 0 for unchanged_file: nothing was read), or the batch's after release_batch
    reject_ratio: float
    max_reject_ratio: float
    accepted_how: str | None  # 'accept_rejects' | 'release_batch' | None
    reasons: tuple[ReasonCount, ...]
    examples: tuple[RejectExample, ...]
    inserted: int
    updated: int
    unchanged: int

    @classmethod
    def from_ingest(cls, report: IngestReport) -> BatchOutcome:
        assert report.batch is not None
        accepted = "accept_rejects" if report.accepted_rejects else None
        return cls(report.partition, report.batch, report.action, report.counts(), report.reject_ratio,
                   report.max_reject_ratio, accepted, tuple(report.reasons), tuple(report.examples),
                   report.inserted, report.updated, report.unchanged)

    @classmethod
    def from_release(cls, release: ReleaseReport) -> BatchOutcome:
        b = release.batch
        return cls(b.partition.isoformat(), b, "released_by_id", b.counts, b.reject_ratio, b.max_reject_ratio,
                   "release_batch", b.reasons, b.examples, release.inserted, release.updated, release.unchanged)

    @classmethod
    def from_unchanged_file(cls, batch: BatchRecord, max_reject_ratio: float, accept_rejects: bool) -> BatchOutcome:
        """A rerun of a file raw already holds as `batch` left it: nothing read, the batch's figures judged.

        The reject gate is decided as a full rerun of the file would decide it: the batch's ratio
        against this run's limit (a loaded batch is never held again)."""
        over = batch.reject_ratio > max_reject_ratio
        return cls(batch.partition.isoformat(), batch, UNCHANGED_FILE, BatchCounts(0, 0, 0, 0, 0, 0, 0, 0),
                   batch.reject_ratio, max_reject_ratio, "accept_rejects" if over and accept_rejects else None,
                   batch.reasons, batch.examples, 0, 0, 0)

    @property
    def judged_counts(self) -> BatchCounts:
        """The counts the reject gate judges: this run's, or the matched batch's when nothing was read."""
        return self.batch.counts if self.action == UNCHANGED_FILE else self.counts

    @property
    def judged(self) -> int:
        c = self.judged_counts
        return c.read - c.skipped

    @property
    def over_limit(self) -> bool:
        return self.reject_ratio > self.max_reject_ratio


def _top_reason(outcome: BatchOutcome) -> str:
    if not outcome.reasons:
        return ""
    top = outcome.reasons[0]
    return f"; top reason: {top.field}: {top.reason} ({top.count}×)"


def reject_ratio_result(outcome: BatchOutcome) -> dg.AssetCheckResult:
    o, b, c = outcome, outcome.batch, outcome.judged_counts
    share = (f"{c.quarantined} of {o.judged} records rejected "
             f"({o.reject_ratio:.1%}; limit {o.max_reject_ratio:.1%}) on {o.partition}")
    if o.action == UNCHANGED_FILE:
        share += f" (batch {b.batch_id}'s load: this run matched the file to it and did not read it)"
    if o.accepted_how == "release_batch":
        passed = True
        text = (f"Accepted by the operator (release_batch: {b.batch_id}): {share}. The batch's "
                f"{c.loaded} valid rows were merged into raw.tmdb_titles; the {c.quarantined} "
                f"rejects stay in raw.tmdb_rejects{_top_reason(o)}")
    elif o.accepted_how == "accept_rejects":
        passed = True
        text = (f"Accepted by the operator (accept_rejects: true): {share}. Batch {b.batch_id}'s "
                f"{c.loaded} valid rows were loaded; the {c.quarantined} rejects stay in "
                f"raw.tmdb_rejects{_top_reason(o)}")
    elif not o.over_limit:
        passed = True
        released = " released from hold (rerun within the limit)" if o.action == "released" else ""
        text = f"Batch {b.batch_id}{released}: {share}{_top_reason(o)}"
    elif o.action in ("held", "still_held"):
        passed = False
        again = " (a rerun of the same file: still held, not held twice)" if o.action == "still_held" else ""
        text = (f"Batch {b.batch_id} held{again}: {share}{_top_reason(o)}. Its {o.counts.held} valid rows "
                f"wait in raw.tmdb_held_titles: fix the source and rerun, or let them through with "
                f"accept_rejects: true (same file) or release_batch: {b.batch_id}")
    else:
        passed = False
        text = (f"Batch {b.batch_id} was already {b.status} before this run, so nothing was held: "
                f"{share}{_top_reason(o)}")
    return dg.AssetCheckResult(
        check_name=REJECT_RATIO_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=text,
        metadata={
            "partition": o.partition,
            "batch_id": b.batch_id,
            "batch_status": b.status,
            "reject_ratio": round(o.reject_ratio, 4),
            "max_reject_ratio": o.max_reject_ratio,
            "rejected": c.quarantined,
            "judged": o.judged,
            "measured_on": "this run's read" if o.action != UNCHANGED_FILE else f"batch {b.batch_id} (file not read)",
            "accepted_by": o.accepted_how or "",
            "by_field": dg.MetadataValue.json(_by_field(o.reasons)),
            "top_reasons": dg.MetadataValue.md(reasons_markdown(o.reasons)),
            "examples": dg.MetadataValue.md(examples_markdown(o.examples)),
        },
    )


def _by_field(reasons: tuple[ReasonCount, ...]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for r in reasons:
        fields[r.field] = fields.get(r.field, 0) + r.count
    return fields


def payload_shape_result(partition: str, bad_shape: list[tuple[str, int]]) -> dg.AssetCheckResult:
    examples = [f"{m}-{i}" for m, i in bad_shape[:20]]
    text = (f"all payloads of {partition} have an id, a title and a genre list" if not bad_shape
            else f"{len(bad_shape)} payloads of {partition} lack an id, a title or a genre list, "
                 f"e.g. {', '.join(examples[:3])}")
    return dg.AssetCheckResult(
        check_name=PAYLOAD_SHAPE_CHECK,
        passed=not bad_shape,
        severity=dg.AssetCheckSeverity.ERROR,
        description=text,
        metadata={"partition": partition, "malformed_examples": dg.MetadataValue.json(examples)},
    )


def new_data_result(outcome: BatchOutcome) -> dg.AssetCheckResult:
    o, c = outcome, outcome.counts
    changed = o.inserted + o.updated
    if o.action in ("held", "still_held"):
        passed = True
        text = (f"Not judged on {o.partition}: batch {o.batch.batch_id} is held (the reject gate says why), "
                "so nothing was compared with raw")
    elif o.action == UNCHANGED_FILE:
        passed = False
        loaded_at = o.batch.created_at.astimezone(timezone.utc)
        text = (f"0 new or changed rows on {o.partition}: the file is byte-identical to batch {o.batch.batch_id} "
                f"(loaded {loaded_at:%Y-%m-%d %H:%M} UTC, {o.batch.counts.loaded} titles) and raw still holds what "
                "that batch left, so it was not read again (reread: true reads it anyway)")
    elif c.read == 0:
        passed = False
        text = f"The source sent 0 records for {o.partition}: an empty day (source {o.batch.source})"
    elif changed == 0:
        passed = False
        what = ("every title it loaded was already in raw unchanged" if o.unchanged
                else "no record of it was loadable")
        text = (f"0 new or changed rows on {o.partition}: {what} (read {c.read}: {o.unchanged} unchanged, "
                f"{c.quarantined} quarantined, {c.skipped} skipped as deleted, {c.duplicates} duplicates)")
        if o.action == "reloaded":
            loaded_at = o.batch.created_at.astimezone(timezone.utc)
            text += f"; this run repeated batch {o.batch.batch_id}, loaded {loaded_at:%Y-%m-%d %H:%M} UTC"
    else:
        passed = True
        text = f"{o.inserted} new and {o.updated} changed titles on {o.partition} ({o.unchanged} unchanged)"
    return dg.AssetCheckResult(
        check_name=NEW_DATA_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={"partition": o.partition, "batch_id": o.batch.batch_id, "records_read": c.read,
                  "new": o.inserted, "changed": o.updated, "unchanged": o.unchanged},
    )
