"""What a file dropped into the landing folder means: which source reads it, for which day.

TMDB names its daily exports `movie_ids_MM_DD_YYYY.json.gz` / `tv_series_ids_MM_DD_YYYY.json.gz`,
so an export lands in the partition of its own date. A dump (`*.csv`) has no date: it lands in
the newest partition.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

EXPORT_NAME = re.compile(r"^(movie|tv_series)_ids_(\d{2})_(\d{2})_(\d{4})\.json\.gz$")


@dataclass(frozen=True)
class LandingFile:
    path: Path
    source: str  # 'export' | 'csv_dump'
    sha256: str
    day: date | None  # the export's date; None for dumps

    @property
    def run_key(self) -> str:
        # name and checksum: the same file dropped twice runs once; a corrected file runs again
        return f"{self.path.name}:{self.sha256[:16]}"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def classify(path: Path) -> tuple[str, date | None] | None:
    match = EXPORT_NAME.match(path.name)
    if match:
        month, day, year = (int(g) for g in match.groups()[1:])
        return "export", date(year, month, day)
    if path.suffix.lower() == ".csv":
        return "csv_dump", None
    return None


def scan_landing(folder: Path) -> list[LandingFile]:
    """Files ready to ingest, oldest first. Partial uploads (`*.part`, dotfiles) are ignored."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".part":
            continue
        kind = classify(path)
        if kind:
            found.append(LandingFile(path.resolve(), kind[0], file_sha256(path), kind[1]))
    return found
