"""The landing sensor: each migratable entry of $GATEWAY_HOME/landing/legacy/ starts one migration run,
keyed by name + fingerprint; nothing new means a skip; a changed file runs again."""

from __future__ import annotations

import shutil

import dagster as dg

from gateway_pipelines.defs.migration.sensors import legacy_landing_sensor
from gateway_pipelines.defs.resources import build_resources


def test_landing_sensor_requests_one_run_per_new_source(legacy_sources, tmp_path):
    home = tmp_path / "home"
    legacy = build_resources({"GATEWAY_HOME": str(home)})["legacy"]
    landing = legacy.landing_path()
    assert landing == home / "landing" / "legacy"
    landing.mkdir(parents=True)
    shutil.copytree(legacy_sources["chroma"], landing / "journal_chroma")
    shutil.copy2(legacy_sources["ruvector"], landing / "media.jsonl")
    shutil.copy2(legacy_sources["agentdb"], landing / "agent.sqlite")
    (landing / "notes.txt").write_text("not a source")

    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"legacy": legacy})
        result = legacy_landing_sensor(ctx)
        kinds = {r.tags["gateway/file"]: r.run_config["ops"]["legacy_staging"]["config"]["kind"]
                 for r in result.run_requests}
        assert kinds == {"journal_chroma": "chroma", "media.jsonl": "ruvector", "agent.sqlite": "agentdb"}
        assert all(r.run_key.startswith(r.tags["gateway/file"] + ":") for r in result.run_requests)

        again = legacy_landing_sensor(dg.build_sensor_context(instance=instance, resources={"legacy": legacy},
                                                              cursor=result.cursor))
        assert not again.run_requests and "no new legacy sources" in again.skip_reason.skip_message

        with open(landing / "media.jsonl", "a") as f:
            f.write('{"id": "extra", "vector": [0.5]}\n')
        changed = legacy_landing_sensor(dg.build_sensor_context(instance=instance, resources={"legacy": legacy},
                                                                cursor=again.cursor))
        assert [r.tags["gateway/file"] for r in changed.run_requests] == ["media.jsonl"]
