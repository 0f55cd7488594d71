"""The events sensor launches one run per file over its days; `make run`'s steps match the simulator."""

import json
import shutil

import dagster as dg

from gateway_pipelines.defs.personalization.partitions import RANGE_END, RANGE_START, events_partitions
from gateway_pipelines.defs.personalization.sensors import build_events_sensor
from gateway_pipelines.lib.personalization.movielens import ML_END, ML_START
from gateway_pipelines.lib.personalization.resource import PersonalizationResource
from gateway_pipelines.lib.personalization.simulator import SIM_END_DATE, SimulationParams


def test_sensor_fires_once_per_file_over_its_days(tmp_path):
    landing = tmp_path / "events"
    landing.mkdir()
    sensor = build_events_sensor(events_partitions())
    resource = PersonalizationResource(landing_dir=str(landing))

    def evaluate(cursor=None):
        with dg.DagsterInstance.ephemeral() as instance:
            return sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                  resources={"personalization": resource}))

    assert isinstance(evaluate(), dg.SkipReason)
    lines = [{"user_id": "u", "content_key": "movie-1", "event_type": "play", "ts": f"2026-11-{d:02d}T10:00:00Z"}
             for d in (3, 9)]
    (landing / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (landing / "one-day.jsonl").write_text(json.dumps(lines[0]) + "\n")
    (landing / "ml").mkdir()
    (landing / "ml" / "links.csv").write_text("movieId,imdbId,tmdbId\n1,1,100001\n")
    (landing / "ml" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1537799250\n")
    first = evaluate()
    by_file = {r.tags["gateway/file"]: r for r in first.run_requests}
    assert set(by_file) == {"a.jsonl", "one-day.jsonl", "ratings.csv"}
    assert (by_file["a.jsonl"].tags[RANGE_START], by_file["a.jsonl"].tags[RANGE_END]) == ("2026-11-03", "2026-11-09")
    assert by_file["one-day.jsonl"].partition_key == "2026-11-03"
    assert by_file["ratings.csv"].partition_key == "2018-09-24"
    assert by_file["a.jsonl"].run_config["ops"]["watch_events"]["config"]["paths"][0].endswith("a.jsonl")
    assert isinstance(evaluate(first.cursor), dg.SkipReason)
    # a corrected file is new content
    shutil.copy(landing / "a.jsonl", landing / "b")
    (landing / "a.jsonl").write_text((landing / "b").read_text() + json.dumps(lines[0] | {"user_id": "v"}) + "\n")
    third = evaluate(first.cursor)
    assert [r.tags["gateway/file"] for r in third.run_requests] == ["a.jsonl"]


def test_make_run_steps_match_the_simulator_defaults():
    from gateway_pipelines.runtime.runner import PERSONALIZATION_STEPS

    sim, ml, main = PERSONALIZATION_STEPS
    config = sim.run_config["ops"]["watch_event_simulation"]["config"]
    params = SimulationParams(config["users"], config["days"], config["seed"], SIM_END_DATE)
    assert main.run_config["ops"]["watch_events"]["config"]["paths"] == [f"simulator-{params.run_id}.jsonl"]
    start = SIM_END_DATE.toordinal() - params.n_days + 1
    assert (main.tags[RANGE_START], main.tags[RANGE_END]) == (  # and the next day, where late watches end
        SIM_END_DATE.fromordinal(start).isoformat(), SIM_END_DATE.fromordinal(SIM_END_DATE.toordinal() + 1).isoformat())
    assert (ml.tags[RANGE_START], ml.tags[RANGE_END]) == (ML_START.date().isoformat(), ML_END.date().isoformat())
    assert ml.job == "personalization_ingest_job" and main.job == "personalization_job"
