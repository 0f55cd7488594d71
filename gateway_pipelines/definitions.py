"""The code location: everything under `defs/`, plus the policies that apply to all of it.

* one automation sensor, running by default, evaluates every asset's automation condition
  (see `gateway_pipelines/automation.py`), so a landed file reaches search with no manual step;
* freshness: `content_vectors` (what search serves) must be rebuilt or re-verified at least daily,
  so the UI turns it amber, then red, when the daemon or an upstream has stalled;
* execution: under the daemon, each step in its own process, forked from a warm forkserver;
* retries: steps retry only transient errors (each asset's RetryPolicy; deterministic errors are
  `dg.Failure(allow_retries=False)`), and a run that dies of infrastructure (a killed process, a lost
  code server) is retried from the failure by the run-retry tags below.
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg

SEARCH_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))
FRESHNESS_BY_ASSET = {"content_vectors": SEARCH_FRESHNESS}

# Needs `run_retries: enabled` in the instance (deploy/dagster.yaml). Step failures are not retried
# here: a step's own policy already judged whether its error was transient.
RUN_RETRY_TAGS = {
    "dagster/max_retries": "1",
    "dagster/retry_strategy": "FROM_FAILURE",
    "dagster/retry_on_asset_or_op_failure": "false",
}

AUTOMATION_SENSOR = dg.AutomationConditionSensorDefinition(
    "platform_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    run_tags=RUN_RETRY_TAGS,
    description="Evaluates every asset's automation condition each 15 s: new titles flow through dbt, "
    "embeddings and the vector index by themselves.",
)


# Steps keep a process each (a crash or a leak stays in its step), forked from a server that has
# imported the platform once per run instead of once per step: see runtime/preload.py.
STEP_EXECUTOR = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["gateway_pipelines.runtime.preload"]}}},
    name="gateway_multiprocess",
)


def _with_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    policy = FRESHNESS_BY_ASSET.get(spec.key.to_user_string())
    return spec.replace_attributes(freshness_policy=policy) if policy else spec


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(project_root=Path(__file__).resolve().parent.parent)
    return dg.Definitions.merge(
        loaded.map_asset_specs(func=_with_freshness),
        dg.Definitions(sensors=[AUTOMATION_SENSOR], executor=STEP_EXECUTOR),
    )
