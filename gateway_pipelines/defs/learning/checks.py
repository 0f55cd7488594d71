"""The learning assets' gates: evaluated by the assets on what they just wrote, returned with the
materialisation (so they are partitioned like the assets)."""


import warnings

import dagster as dg

SKILLS_CONSISTENT = "skills_are_consistent"
EDGES_VALID = "causal_edges_are_valid"
EXPERIMENTS_VALID = "experiments_are_well_formed"

SKILLS_SQL = """
SELECT
  count(*) FILTER (WHERE success_rate < 0 OR success_rate > 1 OR avg_reward < 0 OR avg_reward > 1) AS bad_rates,
  count(*) FILTER (WHERE archived_at IS NULL AND uses <> cardinality(created_from_episodes)) AS bad_uses,
  count(*) FILTER (WHERE archived_at IS NULL AND embedding IS NULL) AS no_embedding
FROM memory.skills
WHERE metadata ->> 'method' = 'semantic-cluster'  -- the skills consolidation writes (not imported AgentDB ones)
"""
EDGES_SQL = """
SELECT
  count(*) FILTER (WHERE confidence < 0 OR confidence > 1) AS bad_confidence,
  count(*) FILTER (WHERE uplift IS NOT NULL AND (ci_low > uplift OR ci_high < uplift)) AS bad_interval,
  count(*) FILTER (WHERE verdict IS NULL OR verdict NOT IN ('causal', 'no_effect', 'inconclusive')) AS bad_verdict
FROM memory.causal_edges WHERE metadata ->> 'method' = 'aipw-crossfit'  -- the learner's (not imported) edges
"""
EXPERIMENTS_SQL = """
SELECT
  count(*) FILTER (WHERE status = 'completed' AND (p_value IS NULL OR confidence_interval_low IS NULL)) AS incomplete,
  count(*) FILTER (WHERE status = 'running' AND NOT metadata ? 'deadline') AS no_deadline
FROM memory.causal_experiments WHERE metadata ? 'edge_id'  -- the learner's follow-ups (not imported ones)
"""


def specs(asset: str, partitions_def) -> list[dg.AssetCheckSpec]:
    name, description = {
        "skills": (SKILLS_CONSISTENT, "Every consolidated skill's rates lie in [0, 1] and an active one's uses "
                   "equal the episodes it was built from (skills imported from AgentDB keep their own figures). "
                   "Blocking: causal_edges reads the task -> skill map."),
        "causal_edges": (EDGES_VALID, "Confidence in [0, 1], the uplift inside its interval, a verdict on every "
                         "edge. Blocking: experiments start from these intervals."),
        "causal_experiments": (EXPERIMENTS_VALID, "Completed experiments carry their test result; running ones "
                               "have a deadline. Blocking."),
    }[asset]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description,
                                  partitions_def=partitions_def)]


def result(conn, asset: str) -> dg.AssetCheckResult:
    sql_text, name = {"skills": (SKILLS_SQL, SKILLS_CONSISTENT), "causal_edges": (EDGES_SQL, EDGES_VALID),
                      "causal_experiments": (EXPERIMENTS_SQL, EXPERIMENTS_VALID)}[asset]
    cur = conn.execute(sql_text)
    counts = dict(zip([c.name for c in cur.description], cur.fetchone()))
    return dg.AssetCheckResult(check_name=name, passed=not any(counts.values()),
                               metadata={k: int(v) for k, v in counts.items()})
