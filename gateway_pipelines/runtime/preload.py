"""What a run's forkserver imports once, so that each step process starts warm.

Under the daemon (`make ui`, deployments) a run executes each step in its own process. Started
fresh, each of those spends 3-7 s of CPU importing dagster-dbt, dbt, Great Expectations, scikit-learn
and every module of `defs/` before it runs a line of the step, and most steps then take under a
second. The multiprocess executor's forkserver (see `definitions.py`) imports this module once per
run and forks every step from it. Nothing here opens a connection or a file: a forked child must not
share one with its siblings.
"""

import importlib
import pkgutil

import dagster_dbt  # noqa: F401  (dbt and its adapters: the biggest import)
import great_expectations  # noqa: F401
import numpy  # noqa: F401
import psycopg  # noqa: F401
import sklearn.feature_extraction.text  # noqa: F401

import gateway_pipelines.defs

for module in pkgutil.walk_packages(gateway_pipelines.defs.__path__, prefix="gateway_pipelines.defs."):
    importlib.import_module(module.name)
