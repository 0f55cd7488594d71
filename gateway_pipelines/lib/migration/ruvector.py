"""RuVector-style exports: JSON Lines (one `{id, vector, metadata}` object a line) or a JSON array of
such objects, streamed either way.

A line that cannot be read (not JSON, no id, a vector that is not a list of finite numbers, a
dimension we cannot store, a dimension other than the export's, a repeated id) is quarantined with
its line number and reason; the `legacy_rejects_within_limit` check then decides whether the rest
may move. The export's name (file stem) is its collection in `vectors.vector_store`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway_pipelines.lib.migration.records import (
    VECTOR_COLUMNS,
    LegacyRecord,
    LegacySourceError,
    as_float32,
    json_safe,
    storable_text,
)
from gateway_pipelines.lib.migration.sources import DEFAULT_BATCH, CollectionInfo, Reject, file_digest

TARGET = "vectors.vector_store"
RAW_KEPT = 300  # characters of a rejected line kept for the person who fixes it


class RuVectorReader:
    kind = "ruvector"

    def __init__(self, path: Path, *, batch_size: int = DEFAULT_BATCH):
        if path.is_dir():
            raise LegacySourceError(f"RuVector export {path} is a folder: pass the .jsonl or .json file")
        self.path = path
        self.batch_size = batch_size
        self._rejects: list[Reject] = []
        self._dim: int | None = None
        self._read = 0

    @property
    def rejects(self) -> list[Reject]:
        return self._rejects

    def fingerprint(self) -> str:
        return "sha256:" + file_digest(self.path)

    def collections(self) -> list[CollectionInfo]:
        # the dimension is the export's first good record's; known once read
        return [CollectionInfo(name=self.path.stem, target=TARGET, space="cosine")]

    def state(self) -> dict[str, Any]:
        return {"format": self._format(), "dimension": self._dim, "records_read": self._read,
                "lines_rejected": len(self._rejects)}

    def close(self) -> None:
        pass

    def _format(self) -> str:
        with open(self.path, "rb") as f:
            head = f.read(4096).lstrip()
        return "json-array" if head.startswith(b"[") else "jsonl"

    def _objects(self) -> Iterator[tuple[int, str, Any]]:
        """(line number, raw text, parsed object or exception) for every record of the file."""
        if self._format() == "json-array":
            yield from _array_objects(self.path)
            return
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield n, raw.decode("utf-8", "replace"), ValueError(f"not UTF-8 at byte {exc.start}")
                    continue
                if not text.strip():
                    continue
                try:
                    yield n, text, _loads(raw)
                except json.JSONDecodeError as exc:
                    yield n, text, ValueError(f"not JSON: {exc.msg} at column {exc.colno}")
                except RecursionError:
                    yield n, text, ValueError("not JSON this reader can follow: nested too deeply")

    def batches(self, info: CollectionInfo) -> Iterator[list[LegacyRecord]]:
        seen: set[str] = set()
        batch: list[LegacyRecord] = []
        for line, raw, obj in self._objects():
            try:
                record = self._record(info, line, obj, seen)
            except (ValueError, LegacySourceError) as exc:
                self._rejects.append(Reject(line, _evidence(str(exc)), _evidence(raw.rstrip("\n")[:RAW_KEPT])))
                continue
            seen.add(record.source_id)
            batch.append(record.compute())
            self._read += 1
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        info.dim = self._dim
        info.source_count = self._read + len(self._rejects)
        info.state = self.state()

    def _record(self, info: CollectionInfo, line: int, obj: Any, seen: set[str]) -> LegacyRecord:
        if isinstance(obj, Exception):
            raise ValueError(str(obj))
        if not isinstance(obj, dict):
            raise ValueError(f"a record must be a JSON object, got {type(obj).__name__}")
        rid = obj.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
            raise ValueError("missing or invalid 'id' (a non-empty string or an integer)")
        rid = str(rid)
        if rid in seen:
            raise ValueError(f"id {rid!r} appears again (first kept)")
        vector = obj.get("vector", obj.get("embedding"))
        if not isinstance(vector, list) or not vector:
            raise ValueError("missing 'vector' (a list of numbers)")
        if not set(map(type, vector)) <= _NUMBER_TYPES:  # bool is not int here, as it should be
            raise ValueError("'vector' holds values that are not numbers")
        vec = as_float32(vector, where=f"line {line}")
        dim = int(vec.shape[0])
        if dim not in VECTOR_COLUMNS:
            raise ValueError(f"dimension {dim}: only {', '.join(map(str, VECTOR_COLUMNS))} can be stored")
        if self._dim is None:
            self._dim = dim
        elif dim != self._dim:
            raise ValueError(f"dimension {dim} differs from the export's {self._dim}")
        metadata = obj.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("'metadata' must be a JSON object or absent")
        metadata = json_safe(metadata, where=f"line {line} metadata") if metadata is not None else None
        document = obj.get("document", obj.get("text"))
        if document is not None:
            if not isinstance(document, str):
                raise ValueError("'document' must be a string")
            document = storable_text(document, where=f"line {line} document")
        return LegacyRecord(info.name, storable_text(rid, where=f"line {line} id"), TARGET, vec, document, metadata)


_NUMBER_TYPES = {int, float}


def _loads(raw: bytes) -> Any:
    """orjson for speed; what it refuses goes to the stdlib parser, which decides, so the records read
    and the reasons given are the stdlib's (it also takes NaN, lone surrogate escapes and huge ints,
    which the checks after it then refuse by name)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw.decode("utf-8"))


def _evidence(text: str) -> str:
    """Text the reject table can always store (NUL and lone surrogates as visible escapes)."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _array_objects(path: Path, chunk_size: int = 1 << 20) -> Iterator[tuple[int, str, Any]]:
    """Stream the objects of a JSON array file: `[ {...}, {...} ]`, with the line each starts on."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8", errors="strict") as f:
        buf = f.read(chunk_size)
        pos = buf.index("[") + 1
        line = 1 + buf.count("\n", 0, pos)
        eof = False
        while True:
            # skip separators
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or eof:
                    break
                more = f.read(chunk_size)
                eof = not more
                buf, pos = buf[pos:] + more, 0
            if pos >= len(buf):
                yield line, "", ValueError("the JSON array is not closed (truncated file?)")
                return
            if buf[pos] == "]":
                return
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except RecursionError:
                    # where this record ends is unknown, so the records after it cannot be found
                    yield line, buf[pos:pos + RAW_KEPT], ValueError(
                        "nested too deeply to follow; the rest of the array cannot be read")
                    return
                except json.JSONDecodeError as exc:
                    if eof:
                        yield line, buf[pos:pos + RAW_KEPT], ValueError(f"not JSON: {exc.msg}")
                        return
                    more = f.read(chunk_size)
                    eof = not more
                    buf, pos = buf[pos:] + more, 0
            raw = buf[pos:end]
            yield line, raw, obj
            line += raw.count("\n")
            pos = end
