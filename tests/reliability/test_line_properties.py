"""Arbitrary lines never abort a file: every watch-event line, episode line, RuVector export line and
TMDB daily-export line is loaded or quarantined with a reason, and the counts add up, all the way
into Postgres. (Arbitrary CSV cells are in test_tmdb_rows.py.)

Hypothesis writes whole files mixing near-valid records (one field swapped for a hostile value),
arbitrary JSON, arbitrary text and bytes that are not UTF-8, plus the values that once stopped a file
(a NUL, a lone surrogate, an integer past 64 bits, JSON nested thousands deep, a huge cell). Each file
goes through the real parser and the real load into a module-scoped database.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from gateway_pipelines.lib.learning.episodes import file_sha256, load_jsonl
from gateway_pipelines.lib.migration.ruvector import RuVectorReader
from gateway_pipelines.lib.migration.staging import stage_source, start_import
from gateway_pipelines.lib.personalization.events import parse_jsonl
from gateway_pipelines.lib.personalization.store import load_events
from gateway_pipelines.lib.tmdb.raw_store import ingest
from gateway_pipelines.lib.tmdb.sources import ExportSource
from gateway_pipelines.lib.warehouse import connect, with_database

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
DAY = date(2026, 4, 1)
CATALOGUE = frozenset({"movie-1", "movie-2", "tv-3"})
EXAMPLES = int(os.environ.get("GATEWAY_PROPERTY_EXAMPLES", "25"))  # bench/reliability runs 200
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
_files = itertools.count()

# -- hostile values -------------------------------------------------------------------------------

# Characters of every category, lone surrogates and NUL included (Hypothesis leaves surrogates out by
# default); no line breaks, so one generated line stays one line of the file.
CHARS = st.characters(exclude_categories=(), exclude_characters="\n\r")
TEXT = st.text(CHARS, max_size=30)
HOSTILE_CONSTANTS = st.sampled_from([
    "a\x00b", "\ud800", "\udfff tail", 2**64, -(2**63) - 1, 99999999999, 1e30, float("nan"), float("inf"),
    "1e20", "", " ", "\x1b[31mred\x1b[0m", "x" * 140_000, [[[[[]]]]], {"": None}, {"\x00": 1},
    {"\ud800": "k"}, True, -1, 0,
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT, HOSTILE_CONSTANTS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
DEEP = "[" * 5000 + "]" * 5000
RAW_LINES = st.one_of(
    st.sampled_from([DEEP, '{"a": ' * 3000 + "1" + "}" * 3000, "{", "null", "[]", '"just a string"', "\x00",
                     "{\"user_id\": \"u\x00\"}", "  ", "\x1b[2J"]),
    TEXT,
)
# Bytes that are not UTF-8 (an 0xff lead byte is never valid) and carry no newline.
BAD_BYTES = st.binary(max_size=20).map(lambda b: b"\xff" + b.replace(b"\n", b"").replace(b"\r", b""))


def _dumps(value) -> str:
    # ensure_ascii writes lone surrogates as \\udXXX escapes, the way a hostile export carries them
    return json.dumps(value, ensure_ascii=True)


def _near_valid(template: dict) -> st.SearchStrategy[str]:
    """The template with one field replaced, dropped or added with a hostile value."""
    fields = st.sampled_from(sorted(template) + ["extra"])

    def mutate(args) -> str:
        field, value, drop = args
        obj = dict(template)
        if drop and field in obj:
            del obj[field]
        else:
            obj[field] = value
        return _dumps(obj)

    return st.tuples(fields, VALUES, st.booleans()).map(mutate)


def _lines(template: dict) -> st.SearchStrategy[list[bytes]]:
    line = st.one_of(
        st.just(_dumps(template)).map(str.encode),
        _near_valid(template).map(str.encode),
        VALUES.map(_dumps).map(str.encode),
        RAW_LINES.map(lambda s: s.encode("utf-8", "surrogatepass")),
        BAD_BYTES,
    )
    return st.lists(line, min_size=1, max_size=12)


def _write(folder: Path, stem: str, lines: list[bytes], newline_at_end: bool) -> Path:
    path = folder / f"{stem}-{os.getpid()}-{next(_files)}.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end else b""))
    return path


def _forget(conn: psycopg.Connection, tables: tuple[str, ...], sha256: str) -> None:
    """Hypothesis repeats a file now and then: each example starts from a warehouse that never saw it."""
    for table in tables:
        conn.execute(sql.SQL("DELETE FROM {} WHERE file_sha256 = %s").format(sql.Identifier(*table.split("."))),
                     (sha256,))
    conn.commit()


def _non_blank(lines: list[bytes], *, as_text: bool = False) -> int:
    """Lines that are not blank: by bytes.strip, or (`as_text`, as the event parser reads them) by
    str.strip, for which control characters such as \\x1f are whitespace too."""
    if as_text:
        return sum(bool(line.decode("utf-8", "replace").strip()) for line in lines)
    return sum(bool(line.strip()) for line in lines)


@pytest.fixture(scope="module")
def db(server_url: str) -> Iterator[str]:
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.settings import SQL_DIR

    name = f"lines_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lines")


# -- watch events ---------------------------------------------------------------------------------

EVENT = {"user_id": "u1", "content_key": "movie-1", "event_type": "play", "completion": 0.4, "rating": 8,
         "duration_s": 2400, "total_duration_s": 5700, "is_rewatch": False, "device": "tv",
         "ts": "2026-11-20T21:04:00Z", "impression_id": "imp-1"}


@PROPERTY
@given(lines=_lines(EVENT), newline_at_end=st.booleans())
def test_every_watch_event_line_is_loaded_or_quarantined(db, folder, lines, newline_at_end):
    path = _write(folder, "events", lines, newline_at_end)
    parsed = parse_jsonl(path, CATALOGUE, now=NOW)
    assert parsed.lines_read == _non_blank(lines, as_text=True)
    assert parsed.adds_up
    assert all(r.reason.strip() for r in parsed.rejects)
    numbered = {e.line_no for e in parsed.events} | {r.line_no for r in parsed.rejects}
    assert len(numbered) == parsed.lines_read - parsed.duplicates_in_file  # no line counted twice
    with connect(db) as conn:
        _forget(conn, ("raw.watch_events", "raw.watch_event_rejects", "raw.event_files"), parsed.sha256)
        report = load_events(conn, parsed)
        conn.commit()
        assert report.adds_up and report.lines_read == parsed.lines_read
        stored = conn.execute("SELECT count(*) FROM raw.watch_event_rejects WHERE file_sha256 = %s",
                              (parsed.sha256,)).fetchone()[0]
        assert stored == report.quarantined
        loaded = conn.execute("SELECT count(*) FROM raw.watch_events WHERE file_sha256 = %s",
                              (parsed.sha256,)).fetchone()[0]
        assert loaded == report.loaded
        again = load_events(conn, parse_jsonl(path, CATALOGUE, now=NOW))  # a rerun changes nothing
        conn.commit()
        assert again.loaded == 0 and again.quarantined == report.quarantined


# -- agent episodes -------------------------------------------------------------------------------

EPISODE = {"session_id": "s1", "task": "summarise the ticket", "input": "in", "output": "out", "critique": None,
           "reward": 0.8, "success": True, "latency_ms": 120.5, "tokens_used": 900, "tags": ["a", "b"],
           "metadata": {"tool": "search"}, "ts": 1764000000}


@PROPERTY
@given(lines=_lines(EPISODE), newline_at_end=st.booleans())
def test_every_episode_line_is_loaded_or_quarantined(db, folder, lines, newline_at_end):
    path = _write(folder, "episodes", lines, newline_at_end)
    with connect(db) as conn:
        _forget(conn, ("memory.episode_rejects", "memory.episode_files"), file_sha256(path))
        before = conn.execute("SELECT count(*) FROM memory.episodes").fetchone()[0]
        load = load_jsonl(conn, path)
        assert load.lines_read == _non_blank(lines)
        assert load.lines_read == load.loaded + load.quarantined + load.duplicates
        assert all(reason.strip() for _, reason, _ in load.rejects)
        after = conn.execute("SELECT count(*) FROM memory.episodes").fetchone()[0]
        assert after - before == load.loaded
        stored = conn.execute("SELECT count(*) FROM memory.episode_rejects WHERE file_sha256 = %s",
                              (load.sha256,)).fetchone()[0]
        assert stored == load.quarantined
        assert load_jsonl(conn, path).already_loaded  # a rerun changes nothing


# -- RuVector exports -----------------------------------------------------------------------------

# 384 dimensions: the smallest the vector store holds
VECTOR = {"id": "doc-1", "vector": [round((i % 7) / 7 - 0.4, 3) for i in range(384)], "metadata": {"lang": "en"},
          "document": "hello"}


@PROPERTY
@given(lines=_lines(VECTOR), newline_at_end=st.booleans())
def test_every_ruvector_line_is_staged_or_quarantined(db, folder, lines, newline_at_end):
    # a first line that is a record keeps the file JSON Lines (one opening with `[` is read as an array)
    lines = [_dumps(VECTOR).encode(), *lines]
    path = _write(folder, "vectors", lines, newline_at_end)
    reader = RuVectorReader(path)
    with connect(db) as conn:
        import_id, _ = start_import(conn, kind="ruvector", path=str(path), fingerprint=reader.fingerprint(),
                                    run_id=f"prop-{path.stem}", dry_run=True)
        conn.commit()
    report = stage_source(lambda: connect(db), reader, import_id=import_id, knn_queries=3, k=2)
    assert report.staged + report.rejects == _non_blank(lines)
    assert all(r.reason.strip() for r in reader.rejects)
    with connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM meta.legacy_rejects WHERE import_id = %s",
                              (import_id,)).fetchone()[0]
        staged = conn.execute("SELECT count(*) FROM migration_staging.records WHERE import_id = %s",
                              (import_id,)).fetchone()[0]
    assert (stored, staged) == (report.rejects, report.staged)
    assert staged >= 1  # the first line is a good record


def test_a_json_array_export_with_a_record_too_deep_to_follow_is_quarantined_not_raised(folder):
    path = folder / "deep_array.json"
    path.write_text("[" + _dumps(VECTOR) + ",\n" + DEEP + "]")
    reader = RuVectorReader(path)
    records = [r for batch in reader.batches(reader.collections()[0]) for r in batch]
    assert [r.source_id for r in records] == ["doc-1"]
    assert len(reader.rejects) == 1 and "nested too deeply" in reader.rejects[0].reason


# -- TMDB daily ID exports (.json.gz) ------------------------------------------------------------------

EXPORT = {"adult": False, "id": 550, "original_title": "Fight Club", "popularity": 61.4, "video": False}


@PROPERTY
@given(lines=_lines(EXPORT))
def test_every_tmdb_export_line_is_loaded_or_quarantined(db, folder, lines):
    path = folder / f"movie_ids_04_01_2026-{os.getpid()}-{next(_files)}.json.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    # adult and video entries are skipped before they count, unless asked for: here every line counts
    source = ExportSource(path, include_adult=True, include_video=True)
    with connect(db) as conn:
        report = ingest(conn, source.records(DAY), source="export", partition=DAY, accept_rejects=True,
                        file_name=path.name)
        conn.commit()
    counts = report.counts()
    assert counts.read == _non_blank(lines)
    assert counts.adds_up, counts
