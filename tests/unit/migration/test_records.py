"""Pure parts of the migration: float32 digests, epoch conversion, AgentDB blobs, the JSON array
streamer, the source-side exact k-NN, and refusing text that cannot be stored as it is."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gateway_pipelines.lib.migration.agentdb import blob_to_vector, convert, vector_blob
from gateway_pipelines.lib.migration.knn import distances, exact_top_k
from gateway_pipelines.lib.migration.records import (
    LegacyRecord,
    LegacySourceError,
    as_float32,
    epoch_to_iso,
    storable_text,
    vector_md5,
)
from gateway_pipelines.lib.migration.ruvector import RuVectorReader

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
vectors = arrays(np.float32, st.sampled_from([1, 3, 384]), elements=finite32)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@given(vectors)
def test_blob_round_trip_is_bit_exact(vec):
    blob = vector_blob(vec)
    back = blob_to_vector(blob, where="t", dim=len(vec))
    assert back.tobytes() == vec.astype("<f4").tobytes()
    assert vector_md5(back) == vector_md5(vec)


@given(vectors)
def test_float64_view_of_float32_converts_back_exactly(vec):
    # Chroma's client hands out float64 arrays of the stored float32 values
    assert as_float32(vec.astype(np.float64), where="t").tobytes() == vec.tobytes()


def test_vector_md5_is_of_big_endian_float32():
    import hashlib

    v = np.array([1.0, -0.0, 3.5], dtype=np.float32)
    assert vector_md5(v) == hashlib.md5(b"\x3f\x80\x00\x00\x80\x00\x00\x00\x40\x60\x00\x00").hexdigest()
    assert vector_md5(v) != vector_md5(np.array([1.0, 0.0, 3.5], dtype=np.float32))  # -0.0 is not 0.0, bitwise


@given(st.integers(min_value=-2_000_000_000, max_value=32_503_680_000))
def test_epoch_seconds_become_the_same_instant(seconds):
    iso = epoch_to_iso(seconds, "s", where="t")
    assert datetime.fromisoformat(iso) - EPOCH == timedelta(seconds=seconds)


@given(st.integers(min_value=-2_000_000_000_000, max_value=32_503_680_000_000))
def test_epoch_milliseconds_keep_their_milliseconds(ms):
    iso = epoch_to_iso(ms, "ms", where="t")
    assert datetime.fromisoformat(iso) - EPOCH == timedelta(milliseconds=ms)


def test_epoch_refusals_name_the_place():
    assert epoch_to_iso(None, "s", where="x") is None
    with pytest.raises(LegacySourceError, match="episodes row 3 column ts: 'soon' is not an epoch s number"):
        epoch_to_iso("soon", "s", where="episodes row 3 column ts")
    with pytest.raises(LegacySourceError, match="outside the representable range"):
        epoch_to_iso(10**18, "s", where="x")


def test_blob_of_the_wrong_length_is_refused_with_its_length():
    with pytest.raises(LegacySourceError, match="1532 bytes, expected 1536 \\(384 float32 values\\)"):
        blob_to_vector(b"\x00" * 1532, where="episode 7 embedding")


def test_agentdb_conversions():
    assert convert('["a", 2]', "list", where="w") == ["a", "2"]
    assert convert('{"k": [1, 2.5]}', "json", where="w") == {"k": [1, 2.5]}
    assert convert(1, "bool", where="w") is True
    with pytest.raises(LegacySourceError, match="w: holds text that is not valid JSON"):
        convert("{broken", "json", where="w")
    with pytest.raises(LegacySourceError, match="is not a JSON array"):
        convert("a,b", "list", where="w")


def test_text_is_never_repaired():
    assert storable_text("caf\u00c3\u00a9", where="w") == "caf\u00c3\u00a9"  # mojibake is kept as it is
    with pytest.raises(LegacySourceError, match="NUL character"):
        storable_text("a\x00b", where="doc 1")
    with pytest.raises(LegacySourceError, match="not valid Unicode"):
        storable_text("bad \udcff byte", where="doc 2")


def test_fingerprint_changes_with_any_part():
    v = np.ones(3, dtype=np.float32)
    base = LegacyRecord("c", "1", "t", v, "doc", {"a": 1}).compute().digests["fingerprint"]
    assert LegacyRecord("c", "1", "t", v, "doc", {"a": 1}).compute().digests["fingerprint"] == base
    assert LegacyRecord("c", "1", "t", v, "doc ", {"a": 1}).compute().digests["fingerprint"] != base
    assert LegacyRecord("c", "1", "t", v, "doc", {"a": 2}).compute().digests["fingerprint"] != base
    assert LegacyRecord("c", "1", "t", v * 2, "doc", {"a": 1}).compute().digests["fingerprint"] != base
    assert LegacyRecord("c", "1", "t", v, None, {"a": 1}).compute().digests["fingerprint"] != base


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.sampled_from(["l2", "cosine", "ip"]), st.integers(0, 10**6))
def test_streamed_exact_top_k_equals_a_full_sort(n, space, seed):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, 8)).astype(np.float32)
    queries = data[: min(5, n)]
    k = min(10, n)
    import gateway_pipelines.lib.migration.knn as knn

    old, knn.CHUNK = knn.CHUNK, 7  # many chunks
    try:
        got, kth = exact_top_k(data, queries, k=k, space=space)
    finally:
        knn.CHUNK = old
    full = distances(data, queries, space)
    for qi in range(len(queries)):
        want = np.sort(full[qi])[:k]
        assert np.allclose(full[qi][got[qi]], want)
        assert kth[qi] == pytest.approx(want[-1])


def test_json_array_export_reads_like_jsonl(tmp_path):
    records = [{"id": i, "vector": [float(i)] * 384, "metadata": {"n": i}} for i in range(5)]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    array = tmp_path / "b.json"
    array.write_text("[\n" + ",\n".join(json.dumps(r, indent=1) for r in records) + "\n]\n")

    def read(path):
        reader = RuVectorReader(path, batch_size=2)
        [info] = reader.collections()
        return [(r.source_id, r.digests["fingerprint"]) for b in reader.batches(info) for r in b], reader

    a, _ = read(jsonl)
    b, reader = read(array)
    assert a == b and len(a) == 5 and reader.state()["format"] == "json-array"
    truncated = tmp_path / "c.json"
    truncated.write_text(array.read_text()[:-40])
    _, reader = read(truncated)
    assert reader.rejects and "not JSON" in reader.rejects[-1].reason
