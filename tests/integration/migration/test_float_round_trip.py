"""A float32 vector survives the binary COPY into pgvector bit for bit, and Postgres's checksum of the
stored value equals the reader's: the basis of the vectors parity check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gateway_pipelines.lib.migration.records import vector_md5
from gateway_pipelines.lib.migration.staging import _vector_dumper
from gateway_pipelines.lib.warehouse import connect

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@pytest.fixture(scope="module")
def pg(platform):
    conn = connect(platform[1].warehouse, autocommit=True)
    conn.execute("CREATE TEMP TABLE rt (vec vector)")
    yield conn, _vector_dumper(conn)
    conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays(np.float32, st.sampled_from([1, 2, 384, 1536]), elements=finite32))
def test_copy_into_pgvector_is_bit_exact(pg, vec):
    conn, dumper = pg
    conn.execute("TRUNCATE rt")
    with conn.cursor() as cur:
        cur.adapters.register_dumper(np.ndarray, dumper)
        with cur.copy("COPY rt (vec) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([dumper.oid])
            copy.write_row((vec,))
    stored, pg_md5 = conn.execute("SELECT vec, md5(substring(vector_send(vec) from 5)) FROM rt").fetchone()
    assert stored.to_numpy().astype(np.float32).tobytes() == vec.tobytes()
    assert pg_md5 == vector_md5(vec)
