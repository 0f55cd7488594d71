"""The cursor every landing-folder sensor keeps: the run keys (file name + checksum) it has launched.

The run key also makes Dagster refuse a second launch of the same key, so a key that falls off the
end of the cursor can never ingest its file twice; the cursor only spares the sensor re-asking.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import dagster as dg

MAX_REMEMBERED = 5000


def seen_keys(cursor: str | None) -> list[str]:
    """The run keys a cursor remembers (a list, or a dict with a 'seen' list)."""
    if not cursor:
        return []
    value = json.loads(cursor)
    return list(value.get("seen", []) if isinstance(value, dict) else value)


def remembered(seen: Iterable[str], requests: Iterable[dg.RunRequest]) -> list[str]:
    """The newest MAX_REMEMBERED keys, in the order they were first launched."""
    keys = list(dict.fromkeys([*seen, *(r.run_key for r in requests if r.run_key)]))
    return keys[-MAX_REMEMBERED:]
