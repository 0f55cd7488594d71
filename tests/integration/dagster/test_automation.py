"""Declarative automation, tick by tick: a dump dropped into the landing folder ends searchable with
no manual step. The conditions are evaluated by Dagster's own evaluator against a real instance; each
tick's requests are executed (as the automation sensor's backfill would) before the next tick."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from gateway_pipelines.definitions import defs as load_defs
from gateway_pipelines.defs.resources import build_resources, dbt_executable
from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.defs.tmdb.sensors import build_landing_sensor
from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.tmdb.dump_writer import write_tmdb5000_csv
from gateway_pipelines.lib.tmdb.resource import TMDBResource
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.vector_store.search import search_by_text
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from gateway_pipelines.settings import DBT_DIR, gateway_home

NEW_TITLE = {
    "id": 990001, "title": "Lanterns of Europa", "original_title": "Lanterns of Europa",
    "overview": "A lighthouse keeper stationed under the ice of Europa befriends a whale-shaped alien probe "
    "and must hide it from the mining company.",
    "genres": [{"id": 878, "name": "Science Fiction"}, {"id": 18, "name": "Drama"}],
    "keywords": {"keywords": [{"id": 1, "name": "europa"}, {"id": 2, "name": "lighthouse"}]},
    "release_date": "2025-06-01", "runtime": 118, "vote_average": 7.4, "vote_count": 420,
    "popularity": 30.0, "original_language": "en", "status": "Released",
}


class Platform:
    """The code location's assets and checks with resources on a test database, and one instance."""

    def __init__(self, db: str, tmp_path) -> None:
        self.defs = load_defs()
        warehouse = WarehouseResource(database_url=db, gateway_home=str(gateway_home()))  # its parse cache
        self.landing = tmp_path / "landing" / "tmdb"
        self.landing.mkdir(parents=True)
        self.resources = {
            **build_resources(),  # every domain's resources, as the code location wires them
            "warehouse": warehouse,
            "dbt": DbtWarehouseResource(project_dir=str(DBT_DIR), dbt_executable=dbt_executable(), warehouse=warehouse),
            "tmdb": TMDBResource(landing_dir=str(self.landing)),
            "embeddings": EmbeddingResource(models_dir=str(tmp_path / "models")),
            "vector_search": VectorSearchResource(),
        }
        self.assets = list(self.defs.assets or [])
        self.checks = list(self.defs.asset_checks or [])
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None
        self.now = datetime.now(timezone.utc)

    def tick(self) -> dict[str, set[str | None]]:
        """One evaluation of every automation condition; returns {asset: requested partitions}."""
        self.now += timedelta(seconds=30)
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=self.now
        )
        self.cursor = result.cursor
        requested = {}
        for key in self.defs.resolve_asset_graph().get_all_asset_keys():
            count = result.get_num_requested(key)
            if count:
                requested[key.to_user_string()] = set(result.get_requested_partitions(key))
        return requested

    def execute(self, requested: dict[str, set[str | None]], run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        """Run what a tick asked for in one run, as the sensor's backfill orders it."""
        partitions = {p for parts in requested.values() for p in parts if p is not None}
        assert len(partitions) <= 1, partitions
        result = dg.materialize(
            [*self.assets, *self.checks],
            selection=sorted(requested),
            partition_key=next(iter(partitions), None),
            instance=self.instance,
            resources=self.resources,
            run_config=run_config,
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return result


@pytest.mark.timeout(900)
def test_a_landed_dump_flows_to_search_by_itself(fresh_db, tmp_path):
    platform = Platform(fresh_db, tmp_path)

    # A fresh instance: the schema first (missing); the genres once its blocking contract check passed.
    first = platform.tick()
    assert first == {"warehouse_schema": {None}}, first
    platform.execute(first)
    second = platform.tick()
    assert second == {"tmdb_genres": {None}}, second
    platform.execute(second)
    assert platform.tick() == {}  # nothing new: nothing requested, and no never-built day either

    # A dump lands; the landing sensor starts tmdb_titles for the newest day.
    write_tmdb5000_csv(platform.landing / "tmdb_5000_movies.csv", 40, id_offset=900_000, extra=[NEW_TITLE])
    sensor = build_landing_sensor(daily_partitions("2026-01-01"))
    with dg.build_sensor_context(instance=platform.instance, resources={"tmdb": platform.resources["tmdb"]}) as ctx:
        fired = sensor(ctx)
    [request] = fired.run_requests
    platform.execute({"tmdb_titles": {request.partition_key}}, run_config=request.run_config)

    # The next ticks carry it all the way: that day's staging; then the catalogue (a daily partition
    # and a whole table cannot share a run); then, once the catalogue's blocking dbt tests have
    # passed, embeddings and vectors together.
    ticks = []
    while requested := platform.tick():
        ticks.append(requested)
        platform.execute(requested)
        assert len(ticks) < 5, ticks  # it must settle, each update handled once
    assert ticks == [
        {"stg_tmdb__titles": {request.partition_key}},
        {"dim_content": {None}},
        {"content_embeddings": {None}, "content_vectors": {None}},
    ], ticks

    with connect(fresh_db) as conn:
        embeddings = EmbeddingResource(models_dir=str(tmp_path / "models"))
        hits = search_by_text(conn, "lighthouse keeper under the ice of Europa befriends an alien probe",
                              embeddings.open(), k=5, weights=embeddings.weights()).hits
        conn.commit()
    assert hits[0].title == "Lanterns of Europa", [h.title for h in hits]


@pytest.mark.timeout(900)
def test_a_held_batch_does_not_move_downstream(fresh_db, tmp_path):
    """A dump that fails its blocking reject gate materialises tmdb_titles with a failed check: the
    automation condition then holds that day's staging back (all_deps_blocking_checks_passed)."""
    platform = Platform(fresh_db, tmp_path)
    platform.execute(platform.tick())
    platform.execute(platform.tick())
    # ten good rows and ten whose vote_average is out of range: half rejected, far above the 5% gate
    out_of_range = [{**NEW_TITLE, "id": 880_000 + i, "vote_average": 11} for i in range(10)]
    write_tmdb5000_csv(platform.landing / "tmdb_5000_movies.csv", 10, id_offset=800_000, extra=out_of_range)
    sensor = build_landing_sensor(daily_partitions("2026-01-01"))
    with dg.build_sensor_context(instance=platform.instance, resources={"tmdb": platform.resources["tmdb"]}) as ctx:
        [request] = sensor(ctx).run_requests
    result = dg.materialize(
        [*platform.assets, *platform.checks], selection=["tmdb_titles"], partition_key=request.partition_key,
        instance=platform.instance, resources=platform.resources, run_config=request.run_config, raise_on_error=False,
    )
    gates = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert gates.get("reject_ratio_below_threshold") is False, gates
    assert "stg_tmdb__titles" not in platform.tick()
