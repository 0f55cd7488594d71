"""The personalization jobs (platform_job leaves this group out: its partitions are the events' own).

* personalization_simulation_job: the simulator (users, impressions, outcomes, truth, an events file);
* personalization_job: one file in, through dbt, the preference vectors and the evaluation, in one
  run (what `gateway events ingest`, `gateway simulate` and `make run` launch);
* personalization_ingest_job: the ingest alone;
* personalization_refresh_job: dbt, vectors and evaluation over what is loaded (no ingest);
* personalization_evaluation_job: the evaluation alone (`gateway evaluate`).
"""

import dagster as dg

from gateway_pipelines.defs.personalization.partitions import events_partitions

DOWNSTREAM = ("stg_watch_events", "fct_watch_events", "user_preference_vectors", "offline_evaluation")


def build_jobs(partitions_def: dg.PartitionsDefinition) -> list:
    return [
        dg.define_asset_job(
            "personalization_simulation_job", selection=dg.AssetSelection.assets("watch_event_simulation"),
            description="Simulate users over the catalogue: impressions, outcomes, planted truth and an events file.",
        ),
        dg.define_asset_job(
            "personalization_ingest_job", selection=dg.AssetSelection.assets("watch_events"),
            partitions_def=partitions_def,
            description="One or more event files in (over their days), nothing downstream; automation (or "
            "personalization_refresh_job) carries them on.",
        ),
        dg.define_asset_job(
            "personalization_job", selection=dg.AssetSelection.assets("watch_events", *DOWNSTREAM),
            partitions_def=partitions_def,
            description="One event file in (over its days), then dbt, preference vectors and the offline evaluation.",
        ),
        dg.define_asset_job(
            "personalization_refresh_job", selection=dg.AssetSelection.assets(*DOWNSTREAM),
            description="dbt, preference vectors and the offline evaluation over the events already loaded.",
        ),
        dg.define_asset_job(
            "personalization_evaluation_job", selection=dg.AssetSelection.assets("offline_evaluation"),
            description="The offline evaluation alone.",
        ),
    ]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=build_jobs(events_partitions()))
