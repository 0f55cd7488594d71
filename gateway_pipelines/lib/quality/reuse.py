"""A GX verdict that may stand for a rerun: the same suite over the same data needs no new measurement.

A check records, after a passing validation, the watermark of what it validated (taken before the
validation started, so a write during it shows as a change next time) and the suite's version. A
rerun whose watermark is equal reuses that pass and says so (`measured: false`, when and in which
run it was measured). Only passes are kept: a failure is measured again, with fresh details, every
time. Great Expectations is not even imported on that path, which is most of a validation's cost.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from gateway_pipelines.lib.watermarks import LedgerEntry, read_entry, record_entry

_HERE = Path(__file__).resolve().parent


def suite_version(*files: Path) -> str:
    """A digest of the suite's code (and the runner's) and of Great Expectations' version."""
    digest = hashlib.sha256()
    for path in (*files, _HERE / "gx_runner.py"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(importlib.metadata.version("great_expectations").encode())
    return digest.hexdigest()[:16]


def check_subject(check_name: str) -> str:
    return f"check:{check_name}"


def reusable_pass(conn: psycopg.Connection, check_name: str, watermark: Mapping[str, Any]) -> LedgerEntry | None:
    """The last passing verdict of `check_name` if it was measured on exactly this watermark."""
    entry = read_entry(conn, check_subject(check_name))
    if entry is None or entry.watermark != dict(watermark) or not entry.result.get("passed"):
        return None
    return entry


def remember_pass(conn: psycopg.Connection, check_name: str, watermark: Mapping[str, Any],
                  result: Mapping[str, Any], run_id: str) -> bool:
    return record_entry(conn, check_subject(check_name), "", watermark, {**result, "passed": True}, run_id)
