"""failures_told_apart: which errors reach the retry policy, and what the others' headline says."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import httpx
import pytest

from gateway_pipelines.defs.tmdb.assets import failures_told_apart
from gateway_pipelines.lib.tmdb.batches import BatchError
from gateway_pipelines.lib.tmdb.records import SourceError


@dataclass
class Attempt:
    """The three things the context manager reads from a step's context."""

    retry_number: int = 0
    partition_key: str = "2026-03-01"
    has_partition_key: bool = True


def _raised(exc: Exception, attempt: Attempt = Attempt(), max_retries: int = 3) -> BaseException:
    with pytest.raises(BaseException) as info:
        with failures_told_apart(attempt, "tmdb_titles", max_retries):  # type: ignore[arg-type]
            raise exc
    return info.value


@pytest.mark.parametrize("exc", [SourceError("x.csv is not a TMDB 5000 movies CSV"), BatchError("no batch 9"),
                                 FileNotFoundError(2, "No such file or directory", "/data/x.csv")])
def test_deterministic_errors_fail_once_with_their_reason(exc: Exception) -> None:
    raised = _raised(exc)
    assert isinstance(raised, dg.Failure) and raised.allow_retries is False
    assert raised.description.startswith("tmdb_titles 2026-03-01: ") and "Not retried" in raised.description
    assert raised.__cause__ is exc


def test_transient_errors_go_to_the_retry_policy_until_the_last_attempt() -> None:
    network = httpx.ConnectError("connection refused")
    assert _raised(network, Attempt(retry_number=0)) is network  # untouched: the RetryPolicy retries it
    assert _raised(network, Attempt(retry_number=2)) is network
    last = _raised(network, Attempt(retry_number=3))
    assert isinstance(last, dg.Failure) and last.allow_retries is False
    assert "still failing after 4 attempts with a transient error (ConnectError: connection refused)" \
        in last.description


def test_an_unexpected_error_is_not_retried_and_says_so() -> None:
    raised = _raised(KeyError("genres"))
    assert isinstance(raised, dg.Failure) and raised.allow_retries is False
    assert "unexpected KeyError" in raised.description and "Not retried" in raised.description


def test_dagster_control_flow_passes_through() -> None:
    retry = dg.RetryRequested(max_retries=1)
    assert _raised(retry) is retry
    failure = dg.Failure("already told", allow_retries=True)
    assert _raised(failure) is failure
