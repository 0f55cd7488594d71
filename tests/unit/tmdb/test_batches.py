"""The batch ledger's pure parts: the count identity, reason summaries and their markdown."""

from __future__ import annotations

from gateway_pipelines.lib.tmdb.batches import (
    BatchCounts,
    examples_markdown,
    reasons_markdown,
    reject_examples,
    summarise_rejects,
)
from gateway_pipelines.lib.tmdb.records import Reject, SourceRecord
from gateway_pipelines.lib.tmdb.validation import validate_record


def _reject(record: dict, ref: str) -> Reject:
    result = validate_record(SourceRecord("movie", record, ref), source="csv_dump", partition="2026-03-01")
    assert isinstance(result, Reject)
    return result


def _bad_score(i: int) -> Reject:
    return _reject({"id": 900 + i, "title": f"T{i}", "vote_average": 11 + i}, f"dump.csv:line {i}")


def _bad_id(i: int) -> Reject:
    return _reject({"id": -i, "title": f"Bad {i}"}, f"dump.csv:line {100 + i}")


def test_identity_adds_up_and_says_so() -> None:
    counts = BatchCounts(read=17, inserted=5, updated=1, unchanged=2, held=0, quarantined=9, skipped=0, duplicates=0)
    assert counts.loaded == 8 and counts.adds_up
    assert counts.identity().startswith("read 17 = loaded 8 (5 new, 1 changed, 2 unchanged) + held 0")
    off = BatchCounts(read=18, inserted=5, updated=1, unchanged=2, held=0, quarantined=9, skipped=0, duplicates=0)
    assert not off.adds_up and "read 18 ≠" in off.identity()


def test_reasons_group_by_rule_not_by_value_and_rank_by_count() -> None:
    rejects = [_bad_id(i) for i in range(1, 6)] + [_bad_score(i) for i in range(1, 3)]
    top = summarise_rejects(rejects)
    assert [(r.field, r.count) for r in top] == [("id", 5), ("vote_average", 2)]
    assert "must be a positive integer TMDB id" in top[0].reason and "line" not in top[0].reason


def test_examples_show_different_problems_first_and_are_cut() -> None:
    long = _reject({"id": -1, "title": "x" * 400}, "dump.csv:line 7")
    rejects = [long] + [_bad_id(i) for i in range(2, 9)] + [_bad_score(1)]
    examples = reject_examples(rejects, n=3)
    assert [e.field for e in examples] == ["id", "vote_average", "id"]
    assert len(examples[0].record) <= 240 and examples[0].record.endswith("…")
    assert "dump.csv:line 7" in examples[0].reason  # the example keeps where it came from


def test_markdown_tables_escape_pipes() -> None:
    rejects = [_reject({"id": -1, "title": "A | B"}, "x.csv:line 2")]
    reasons = reasons_markdown(summarise_rejects(rejects))
    assert reasons.splitlines()[0] == "| field | reason | count |"
    assert reasons.splitlines()[2].startswith("| id | ") and reasons.endswith("| 1 |")
    table = examples_markdown(reject_examples(rejects))
    assert "A \\| B" in table and len(table.splitlines()) == 3
    assert reasons_markdown([]) == "No record was rejected."
