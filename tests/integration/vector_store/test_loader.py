"""copy_merge_embeddings: binary COPY into a temp stage, one merge transaction, idempotent, kill-safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from gateway_pipelines.lib.vector_store import copy_merge_embeddings, raw_binary_copy
from tests.integration.vector_store.data import clustered_vectors, embedding_rows, vector_hash

REPO = Path(__file__).resolve().parents[3]
KEYS = [f"movie-{i}" for i in range(1, 201)]


def snapshot(conn: psycopg.Connection) -> dict[str, tuple]:
    """Every row with its physical version (xmin): any rewrite of a row changes it."""
    rows = conn.execute(
        "SELECT content_key, xmin::text, embedding_hash, embedded_at, md5(vector::text) FROM vectors.content_embeddings"
    ).fetchall()
    conn.commit()
    return {r[0]: r[1:] for r in rows}


def stored_vectors(conn: psycopg.Connection) -> dict[str, np.ndarray]:
    rows = conn.execute("SELECT content_key, vector FROM vectors.content_embeddings").fetchall()
    conn.commit()
    return {k: v.to_numpy() for k, v in rows}


def test_load_is_exact_and_idempotent(conn):
    x = clustered_vectors(len(KEYS), seed=1)
    first = copy_merge_embeddings(conn, embedding_rows(KEYS, x))
    assert (first.staged, first.inserted, first.updated, first.deleted, first.unchanged) == (200, 200, 0, 0, 0)
    assert first.path == "direct"  # an empty table: COPY straight in
    stored = stored_vectors(conn)
    assert set(stored) == set(KEYS)
    # the binary encoding round-trips bit for bit
    for i, key in enumerate(KEYS):
        np.testing.assert_array_equal(stored[key], x[i])

    before = snapshot(conn)
    again = copy_merge_embeddings(conn, embedding_rows(KEYS, x))
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 200)
    assert again.path == "staged"
    assert snapshot(conn) == before  # not a single row rewritten: same xmin, same embedded_at


def test_only_rows_whose_hash_changed_are_rewritten(conn):
    x = clustered_vectors(len(KEYS), seed=2)
    copy_merge_embeddings(conn, embedding_rows(KEYS, x))
    before = snapshot(conn)

    rows = embedding_rows(KEYS, x)
    changed = {0: None, 5: None, 17: None}
    for i in changed:
        v = clustered_vectors(1, seed=100 + i)[0]
        rows[i] = (KEYS[i], v, "test-model", vector_hash(v))
    # a different vector under the SAME hash is, by contract, the same embedding: not rewritten
    rows[9] = (KEYS[9], clustered_vectors(1, seed=999)[0], "test-model", rows[9][3])
    new_keys = [f"tv-{i}" for i in range(1, 11)]
    rows += embedding_rows(new_keys, clustered_vectors(10, seed=3))

    report = copy_merge_embeddings(conn, rows)
    assert (report.staged, report.inserted, report.updated, report.unchanged) == (210, 10, 3, 197)
    after = snapshot(conn)
    rewritten = {k for k in before if after[k] != before[k]}
    assert rewritten == {KEYS[i] for i in changed}
    assert set(after) - set(before) == set(new_keys)
    stored = stored_vectors(conn)
    for i in changed:
        np.testing.assert_array_equal(stored[KEYS[i]], rows[i][1])
    np.testing.assert_array_equal(stored[KEYS[9]], x[9])


def test_delete_absent_and_delete_missing_keys(conn):
    x = clustered_vectors(len(KEYS), seed=4)
    copy_merge_embeddings(conn, embedding_rows(KEYS, x))

    report = copy_merge_embeddings(conn, embedding_rows(KEYS[:150], x[:150]), delete_absent=True)
    assert (report.deleted, report.unchanged) == (50, 150)
    assert set(stored_vectors(conn)) == set(KEYS[:150])

    # explicit deletes; a key that is also staged in the same load is kept
    report = copy_merge_embeddings(
        conn, embedding_rows(KEYS[:1], x[:1]), delete_missing_keys=[KEYS[0], KEYS[1], KEYS[2], "movie-999999"]
    )
    assert report.deleted == 2
    assert set(stored_vectors(conn)) == set(KEYS[:150]) - {KEYS[1], KEYS[2]}


def test_duplicate_keys_in_a_first_load_are_refused(conn):
    rows = embedding_rows(KEYS[:20], clustered_vectors(20, seed=15))
    rows.append(rows[4])
    with pytest.raises(ValueError, match="duplicate content_key"):
        copy_merge_embeddings(conn, rows)
    assert snapshot(conn) == {}


def test_a_bad_load_changes_nothing(conn):
    x = clustered_vectors(len(KEYS), seed=5)
    copy_merge_embeddings(conn, embedding_rows(KEYS, x))
    before = snapshot(conn)
    rows = embedding_rows(KEYS, clustered_vectors(len(KEYS), seed=6))  # all would be updates...
    rows.append(rows[3])  # ...but one key appears twice
    with pytest.raises(ValueError, match="duplicate content_key"):
        copy_merge_embeddings(conn, rows, delete_absent=True)
    with pytest.raises(ValueError, match="shape"):
        copy_merge_embeddings(conn, [(KEYS[0], np.ones(767, dtype=np.float32), "m", "h")])
    assert snapshot(conn) == before


def test_raw_binary_copy_baseline(conn):
    x = clustered_vectors(50, seed=8)
    conn.execute("CREATE TABLE public.raw_copy (LIKE vectors.content_embeddings INCLUDING ALL)")
    conn.commit()
    assert raw_binary_copy(conn, "public.raw_copy", embedding_rows(KEYS[:50], x)) == 50
    got = dict(conn.execute("SELECT content_key, vector FROM public.raw_copy").fetchall())
    np.testing.assert_array_equal(got[KEYS[7]].to_numpy(), x[7])


@pytest.mark.parametrize("preloaded", [100, 0], ids=["staged-merge", "direct-copy"])
def test_loader_killed_mid_copy_leaves_the_table_as_it_was(conn, fresh_db, tmp_path, preloaded):
    x = clustered_vectors(len(KEYS), seed=9)
    if preloaded:
        copy_merge_embeddings(conn, embedding_rows(KEYS[:preloaded], x[:preloaded]))
    before = snapshot(conn)

    marker = tmp_path / "copy-started"
    app = f"vs_killed_loader_{os.getpid()}"
    url = f"{fresh_db}&application_name={app}" if "?" in fresh_db else f"{fresh_db}?application_name={app}"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from gateway_pipelines.lib.warehouse import connect
        from gateway_pipelines.lib.vector_store import copy_merge_embeddings
        from tests.integration.vector_store.data import clustered_vectors, embedding_rows

        keys = [f"movie-{{i}}" for i in range(1, 501)]
        rows = embedding_rows(keys, clustered_vectors(500, seed=10))

        def stalling():
            for n, row in enumerate(rows):
                if n == 400:  # ~1.2 MB already streamed to the server
                    open({str(marker)!r}, "w").write("copying")
                    time.sleep(600)
                yield row

        copy_merge_embeddings(connect({url!r}), stalling(), delete_absent=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(REPO))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, f"the loader exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "the loader never reached the stall"
            time.sleep(0.05)
        # the server is in the middle of that COPY, into the staging table
        active = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", (app,)
        ).fetchall()
        conn.commit()
        assert active and active[0][0].lstrip().upper().startswith("COPY"), active
        progress = conn.execute(
            "SELECT p.bytes_processed FROM pg_stat_progress_copy p JOIN pg_stat_activity a ON a.pid = p.pid "
            "WHERE a.application_name = %s",
            (app,),
        ).fetchall()
        conn.commit()
        assert progress and progress[0][0] > 0, progress  # ~1.2 MB of rows have reached the server
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # the backend notices the closed socket, aborts, and drops its temp relations
    deadline = time.monotonic() + 30
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchone()[0]:
        conn.commit()
        assert time.monotonic() < deadline, "the killed loader's backend is still there"
        time.sleep(0.1)
    conn.commit()
    assert snapshot(conn) == before
    leftovers = conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%stage_content_embeddings%'").fetchone()[0]
    conn.commit()
    assert leftovers == 0

    # and the next load runs normally
    report = copy_merge_embeddings(conn, embedding_rows(KEYS, x))
    assert (report.inserted, report.unchanged) == (200 - preloaded, preloaded)
