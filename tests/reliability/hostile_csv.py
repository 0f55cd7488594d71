"""A TMDB 5000 CSV with good rows and one of every kind of bad row that once stopped a whole file.

Each bad row is planted at a known line with the reason the platform must give, so a test can
check that the file is never aborted, every good row loads, and every bad line is explained.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from gateway_pipelines.lib.tmdb.dump_writer import CSV_COLUMNS, dump_row
from gateway_pipelines.lib.tmdb.sample import generate_catalog


@dataclass(frozen=True)
class Planted:
    kind: str
    line: int
    field: str  # the reject's field
    reason: str  # a fragment its reason must contain
    tmdb_id: int | None  # None: the line has no usable id


def _row_text(row: dict) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def _bad_rows(base: dict) -> list[tuple[str, str, str, str, int | None]]:
    """(kind, text of the line(s), field, reason fragment, id)."""
    def row(**changes) -> str:
        return _row_text({**base, **changes})

    deep = "[" * 3000 + "]" * 3000
    i = iter(range(990_001, 999_999))
    rows = []

    def add(kind, field, reason, make, tmdb_id=None):
        tid = next(i) if tmdb_id is None else tmdb_id
        rows.append((kind, make(tid), field, reason, tid))

    add("id beyond int4", "id", "outside the range of integer", lambda t: row(id=99999999999), 99999999999)
    add("budget 1e30", "budget", "outside the range of bigint", lambda t: row(id=t, budget="1e30"))
    add("budget '1e20'", "budget", "outside the range of bigint", lambda t: row(id=t, budget="1e20"))
    add("runtime beyond int4", "runtime", "outside the range of integer", lambda t: row(id=t, runtime=3_000_000_000))
    add("vote_count beyond int4", "vote_count", "outside the range of integer",
        lambda t: row(id=t, vote_count=2**31))
    add("genre id beyond int4", "genres", "outside the range of integer",
        lambda t: row(id=t, genres=json.dumps([{"id": 2**31, "name": "Huge"}])))
    add("NUL byte in text", "title", "NUL character", lambda t: row(id=t, title="Nul\x00Title"))
    add("\\u0000 in JSON", "genres", "NUL character",
        lambda t: row(id=t, genres='[{"id": 18, "name": "Dr\\u0000ama"}]'))
    add("lone surrogate", "genres", "lone surrogate",
        lambda t: row(id=t, genres='[{"id": 18, "name": "Dr\\ud800ama"}]'))
    add("deeply nested JSON", "genres", "not a list", lambda t: row(id=t, genres=deep))
    add("integer past 64 bits", "production_companies", "beyond 64 bits",
        lambda t: row(id=t, production_companies=json.dumps([{"id": 10**30, "name": "Big"}])))
    add("vote_average out of scale", "vote_average", "outside 0-10", lambda t: row(id=t, vote_average=11))
    add("bad date", "release_date", "YYYY-MM-DD", lambda t: row(id=t, release_date="31/12/2020"))
    add("extra cells", "<record>", "cells where the header has", lambda t: row(id=t).rstrip("\n") + ",x,y\n")
    add("unclosed quote", "<record>", "does not close", lambda t: row(id=t).replace(",Released,", ',"Released,', 1))
    return rows


def write_hostile_csv(path: Path, n_good: int = 200, seed: int = 5) -> tuple[list[int], list[Planted]]:
    """Write the file; returns (ids of the good rows, the planted bad lines)."""
    good = [dict(r.record) for r in generate_catalog(seed=seed, n_movies=n_good, n_tv=0)]
    header = ",".join(CSV_COLUMNS) + "\n"
    parts: list[bytes] = [header.encode()]
    line = 2
    planted: list[Planted] = []
    bad = _bad_rows(dump_row(good[0]))
    good_ids = []
    stride = max(1, n_good // (len(bad) + 1))
    for index, payload in enumerate(good):
        if index and index % stride == 0 and bad:
            kind, text, field, reason, tmdb_id = bad.pop(0)
            parts.append(text.encode("utf-8", "surrogatepass"))
            planted.append(Planted(kind, line, field, reason, tmdb_id))
            line += text.count("\n")
        text = _row_text(dump_row(payload))
        parts.append(text.encode())
        good_ids.append(int(payload["id"]))
        line += text.count("\n")
    # bytes that are not UTF-8, a 1 MB overview, a duplicate, and a cut-off last line
    invalid = _row_text({**dump_row(good[1]), "id": 998_001, "title": "Caf\x00"}).encode()
    parts.append(invalid.replace(b"Caf\x00", b"Caf\xe9"))
    planted.append(Planted("invalid UTF-8", line, "<record>", "not valid UTF-8", 998_001))
    line += 1
    huge = _row_text({**dump_row(good[2]), "id": 998_002, "overview": "o" * 1_000_000}).encode()
    parts.append(huge)
    good_ids.append(998_002)  # loads, with its overview truncated and a warning
    line += 1
    dup = _row_text(dump_row(good[3])).encode()
    parts.append(dup)  # the first copy (earlier in the file) is superseded by this one
    planted.append(Planted("duplicate id", -1, "id", "appears again at", int(good[3]["id"])))
    line += 1
    cut = _row_text({**dump_row(good[4]), "id": 998_003}).encode()
    parts.append(cut[: len(cut) // 2].rstrip(b'"\n'))
    planted.append(Planted("cut-off last line", line, "<record>", "", 998_003))
    path.write_bytes(b"".join(parts))
    return good_ids, planted
