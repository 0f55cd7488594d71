"""The asset graph as a reviewed snapshot: keys, groups, deps, partitions, checks, owners, automation
conditions, freshness, jobs, sensors and schedules. A change to the graph shows as a diff of
tests/snapshots/asset_graph.json; rewrite it on purpose with GATEWAY_UPDATE_SNAPSHOTS=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).resolve().parents[2] / "snapshots" / "asset_graph.json"


def _condition(condition: dg.AutomationCondition | None):
    if condition is None:
        return None
    node = {"label": condition.get_label() or type(condition).__name__}
    children = [_condition(c) for c in getattr(condition, "children", ())]
    if children:
        node["children"] = children
    return node


def _partitions(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # the start date is a setting: snapshot the shape, not today's value
        return f"{type(partitions_def).__name__}(cron={partitions_def.cron_schedule}, tz={partitions_def.timezone})"
    return type(partitions_def).__name__


def graph_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        checks = sorted(
            [check.name, graph.get_check_spec(check).blocking]
            for check in graph.asset_check_keys if check.asset_key == key
        )
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "owners": sorted(node.owners),
            "kinds": sorted(node.kinds),
            "automation": _condition(node.automation_condition),
            "freshness": type(node.freshness_policy).__name__ if node.freshness_policy else None,
            "column_schema": [c.name for c in getattr(node.metadata["dagster/column_schema"], "schema", node.metadata["dagster/column_schema"]).columns]
            if "dagster/column_schema" in node.metadata else None,
            "checks": checks,
        }
    repository = defs.get_repository_def()
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in repository.get_all_jobs() if not j.name.startswith("__")),
        "sensors": sorted(
            [s.name, str(s.default_status.value)] for s in repository.sensor_defs
        ),
        "schedules": sorted([s.name, s.cron_schedule] for s in repository.schedule_defs),
        "resources": sorted(defs.resources or {}),
    }


@pytest.fixture(scope="module")
def snapshot() -> dict:
    from gateway_pipelines.definitions import defs

    return json.loads(json.dumps(graph_snapshot(defs())))


def test_asset_graph_matches_the_reviewed_snapshot(snapshot):
    if os.environ.get("GATEWAY_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert snapshot == expected, "the asset graph changed: review, then rerun with GATEWAY_UPDATE_SNAPSHOTS=1"


def test_the_snapshot_sees_what_matters(snapshot):
    """Guards the snapshot itself: a field that silently stopped being read would make it vacuous."""
    vectors = snapshot["assets"]["content_vectors"]
    assert vectors["automation"]["label"] and vectors["freshness"] and vectors["checks"]
    assert snapshot["assets"]["stg_tmdb__titles"]["partitions"].startswith("DailyPartitionsDefinition")
    assert snapshot["assets"]["dim_content"]["partitions"] is None
    assert ["platform_automation", "RUNNING"] in snapshot["sensors"]
