"""The learning jobs (platform_job leaves this group out).

* nightly_learning_job: skills -> causal_edges -> causal_experiments for one day (the 02:00 schedule,
  the new-episodes sensor, `gateway learn`, `make run`); backfill it over a range of days, oldest first;
* learning_<asset>_job: one nightly asset alone (`gateway learn --only ...`);
* episodes_ingest_job: agent_episodes (the landing sensor, `gateway simulate-episodes`, `make run`).
"""

import dagster as dg

from gateway_pipelines.defs.learning.partitions import learning_partitions

NIGHTLY_ASSETS = ("skills", "causal_edges", "causal_experiments")
NIGHTLY_JOB = "nightly_learning_job"
EPISODES_JOB = "episodes_ingest_job"


def single_asset_job(asset: str) -> str:
    return f"learning_{asset}_job"


def build_jobs(partitions_def: dg.PartitionsDefinition) -> list:
    jobs = [
        dg.define_asset_job(
            NIGHTLY_JOB, selection=dg.AssetSelection.assets(*NIGHTLY_ASSETS), partitions_def=partitions_def,
            description="Nightly learning for one day: skill consolidation, the causal-edge learner, experiments.",
        ),
        dg.define_asset_job(
            EPISODES_JOB, selection=dg.AssetSelection.assets("agent_episodes"),
            description="Agent episodes in: the landing folder's JSONL files, one file, or a generated set.",
        ),
    ]
    jobs += [
        dg.define_asset_job(single_asset_job(a), selection=dg.AssetSelection.assets(a), partitions_def=partitions_def,
                            description=f"{a} alone, for one day (gateway learn --only {a}).")
        for a in NIGHTLY_ASSETS
    ]
    return jobs


JOBS = build_jobs(learning_partitions())  # built once: the failure sensor monitors these objects


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=JOBS)
