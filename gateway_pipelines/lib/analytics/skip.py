"""Whether a dbt invocation has anything to do, and the ledger that lets a rerun know.

dbt's models are functions of what they read and of the project's code. So after every successful
build, each model built records (in `meta.build_watermarks`, subject `dbt:<unique_id>`, scope the
partition window of an incremental build) the fingerprints (lib/watermarks.py) of:

* each relation it reads, as the build read it: taken before dbt starts for relations built
  elsewhere (a write that lands while dbt runs then shows as a change next time, never the
  reverse), after the build for those built in the same invocation;
* its own table after the build, so that a model dropped, truncated or rebuilt by someone else
  since is built again;
* the project (every file dbt parses, and dbt's version).

A later invocation over the same selection and window is skipped when, for every selected model,
all of that is still the same: building again would write what the tables already hold. A view has
no rows: it is fingerprinted as whether it exists plus what it reads.

Why the warehouse and not the Dagster instance: the ledger lives in the database whose tables it
describes, so a rebuilt or swapped warehouse (another DATABASE_URL, a restore) never inherits
another one's history, and it is written only after dbt finished without error, whereas Dagster
records a model's materialisation while the rest of the invocation (its tests) may still fail.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from gateway_pipelines.lib.watermarks import LedgerEntry, read_entry, record_entry, split_relation, table_fingerprint

# What dbt parses; everything else under the project (target/, logs/, profiles) is not the project.
PROJECT_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml", "selectors.yml")
PROJECT_DIRS = ("models", "tests", "macros", "seeds", "snapshots", "analyses")
PROJECT_PACKAGES = ("dbt-core", "dbt-postgres", "dbt-adapters")
RELATION_TYPES = ("model", "seed", "snapshot")


def subject(unique_id: str) -> str:
    return f"dbt:{unique_id}"


def project_checksum(project_dir: Path) -> str:
    """A digest of every file dbt parses and of dbt's version: any edit means a real build."""
    digest = hashlib.sha256()
    paths = [project_dir / name for name in PROJECT_FILES if (project_dir / name).is_file()]
    for folder in PROJECT_DIRS:
        if (project_dir / folder).is_dir():
            paths += sorted(p for p in (project_dir / folder).rglob("*") if p.is_file())
    for path in paths:
        digest.update(path.relative_to(project_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for package in PROJECT_PACKAGES:
        try:
            digest.update(f"{package}=={importlib.metadata.version(package)}\0".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package}==none\0".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Node:
    """A relation dbt reads or builds."""

    unique_id: str
    name: str
    relation: str | None  # schema.name; None for an ephemeral model
    materialized: str  # source | seed | snapshot | table | incremental | view | ephemeral | ...
    inputs: tuple[str, ...] = ()  # unique ids of the relations it reads
    tests: tuple[str, ...] = ()  # unique ids of its dbt tests

    @property
    def label(self) -> str:
        return self.relation or self.name


def manifest_nodes(manifest: Mapping[str, Any]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for uid, source in manifest.get("sources", {}).items():
        nodes[uid] = Node(uid, source["name"], f"{source['schema']}.{source.get('identifier') or source['name']}",
                          "source")
    children = manifest.get("child_map", {})
    for uid, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") not in RELATION_TYPES:
            continue
        materialized = node.get("config", {}).get("materialized") or node["resource_type"]
        relation = node.get("relation_name")
        inputs = tuple(d for d in node.get("depends_on", {}).get("nodes", [])
                       if d.split(".", 1)[0] in ("source", *RELATION_TYPES))
        tests = tuple(c for c in children.get(uid, []) if c.startswith("test."))
        nodes[uid] = Node(uid, node["name"], ".".join(split_relation(relation)) if relation else None,
                          materialized, inputs, tests)
    return nodes


@dataclass(frozen=True)
class Window:
    """The dates an incremental build reads of its windowed sources (`column BETWEEN start AND end`)."""

    start: date
    end: date
    columns: Mapping[str, str]  # unique id of a source read by window -> its date column

    @property
    def scope(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


class StateReader:
    """The fingerprint of a node as it is now, memoised; `preset` fixes some (the ones taken before a build)."""

    def __init__(self, conn: psycopg.Connection, nodes: Mapping[str, Node], window: Window | None = None,
                 preset: Mapping[str, Any] | None = None) -> None:
        self.conn, self.nodes, self.window = conn, nodes, window
        self.cache: dict[str, Any] = dict(preset or {})

    def state(self, uid: str) -> Any:
        if uid not in self.cache:
            self.cache[uid] = self._read(uid)
        return self.cache[uid]

    def _read(self, uid: str) -> Any:
        node = self.nodes.get(uid)
        if node is None:
            return {"unknown": uid}  # not in the manifest: never equal to a real fingerprint
        inputs = {i: self.state(i) for i in node.inputs}
        if node.materialized == "ephemeral" or node.relation is None:
            return {"ephemeral": True, "inputs": inputs}
        if node.materialized == "view":
            exists = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (node.relation,)).fetchone()[0]
            return {"view": bool(exists), "inputs": inputs}
        column = self.window.columns.get(uid) if self.window else None
        if column is None:
            return table_fingerprint(self.conn, node.relation)
        assert self.window is not None
        where = sql.SQL("{} BETWEEN %s AND %s").format(sql.Identifier(column))
        fingerprint = table_fingerprint(self.conn, node.relation, where=where,
                                        params=(self.window.start, self.window.end))
        return None if fingerprint is None else {**fingerprint, "window": self.window.scope}


def model_watermark(reader: StateReader, uid: str, project: str) -> dict[str, Any]:
    node = reader.nodes[uid]
    return {"project": project, "inputs": {i: reader.state(i) for i in node.inputs}, "output": reader.state(uid)}


def in_build_order(nodes: Mapping[str, Node], models: Iterable[str]) -> tuple[str, ...]:
    """The models, each after those of them it reads: Dagster takes a multi-asset's outputs in that order."""
    wanted, ordered, seen = set(models), [], set()

    def visit(uid: str) -> None:
        if uid in seen:
            return
        seen.add(uid)
        for parent in nodes[uid].inputs if uid in nodes else ():
            visit(parent)
        if uid in wanted:
            ordered.append(uid)

    for uid in sorted(wanted):
        visit(uid)
    return tuple(ordered)


@dataclass
class Decision:
    """Whether to invoke dbt for `models`, why, and the fingerprints taken before (kept for the ledger)."""

    skip: bool
    reason: str
    models: tuple[str, ...]
    scope: str
    project: str
    before: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, LedgerEntry] = field(default_factory=dict)


def decide(conn: psycopg.Connection, nodes: Mapping[str, Node], models: Iterable[str], *, project: str,
           window: Window | None = None, force: str | None = None) -> Decision:
    """Skip only when every selected model's ledger entry matches what it would read and hold now."""
    models = in_build_order(nodes, models)
    scope = window.scope if window else ""
    reader = StateReader(conn, nodes, window)
    current = {uid: model_watermark(reader, uid, project) for uid in models}
    decision = Decision(False, "", models, scope, project, before=dict(reader.cache))
    if force:
        decision.reason = force
        return decision
    if not models:
        decision.reason = "no model is selected (only tests): dbt runs them"
        return decision
    for uid in models:
        entry = read_entry(conn, subject(uid), scope)
        if entry is None:
            where = f" for {scope}" if scope else ""
            decision.reason = f"no successful build of {nodes[uid].name}{where} is recorded yet"
            return decision
        decision.entries[uid] = entry
        difference = _difference(nodes, uid, entry, current[uid])
        if difference:
            decision.reason = f"{difference} since run {_run(entry)} built {nodes[uid].name}"
            return decision
    decision.skip = True
    decision.reason = _unchanged_reason(nodes, models, decision.entries, current, scope)
    return decision


def _run(entry: LedgerEntry) -> str:
    return (entry.run_id or "?")[:8]


def _difference(nodes: Mapping[str, Node], uid: str, entry: LedgerEntry, now: Mapping[str, Any]) -> str | None:
    then = entry.watermark
    if then.get("project") != now["project"]:
        return "the dbt project changed"
    for input_uid, state in now["inputs"].items():
        if (then.get("inputs") or {}).get(input_uid) != state:
            return f"{_label(nodes, input_uid)} changed{_rows(then.get('inputs', {}).get(input_uid), state)}"
    if set(then.get("inputs") or {}) != set(now["inputs"]):
        return "what it reads changed"
    if then.get("output") != now["output"]:
        return f"{_label(nodes, uid)} itself changed{_rows(then.get('output'), now['output'])}"
    return None


def _label(nodes: Mapping[str, Node], uid: str) -> str:
    return nodes[uid].label if uid in nodes else uid


def _rows(then: Any, now: Any) -> str:
    if not isinstance(now, Mapping) or "rows" not in now:
        return " (missing now)" if now is None else ""
    if not isinstance(then, Mapping) or "rows" not in then:
        return ""
    return f" ({then['rows']} → {now['rows']} rows)" if then["rows"] != now["rows"] else " (rows rewritten)"


def _unchanged_reason(nodes, models, entries, current, scope) -> str:
    runs = sorted({_run(e) for e in entries.values()})
    latest = max(e.recorded_at for e in entries.values()).astimezone(timezone.utc)
    read = sorted({_label(nodes, i) for uid in models for i in current[uid]["inputs"]})
    where = f" for {scope}" if scope else ""
    return (f"{', '.join(read)} unchanged{where} since run {', '.join(runs)} built "
            f"{', '.join(nodes[m].name for m in models)} ({latest:%Y-%m-%d %H:%M:%S} UTC), and the dbt project "
            "is unchanged: building again would write what the tables already hold")


def record_builds(conn: psycopg.Connection, nodes: Mapping[str, Node], decision: Decision, *,
                  window: Window | None, run_id: str) -> int:
    """After a successful invocation: each selected model's inputs as it read them and its output now."""
    selected = set(decision.models)
    preset = {uid: state for uid, state in decision.before.items() if uid not in selected}
    reader = StateReader(conn, nodes, window, preset=preset)
    written = 0
    for uid in decision.models:
        watermark = model_watermark(reader, uid, decision.project)
        output = watermark["output"]
        rows = output.get("rows") if isinstance(output, Mapping) else None
        written += record_entry(conn, subject(uid), decision.scope, watermark, {"rows": rows}, run_id)
    return written
