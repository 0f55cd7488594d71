"""The dbt project. Its manifest is built by `make install` (`dbt parse`), or on first load if missing."""

from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject

from gateway_pipelines import settings


@cache
def dbt_project(project_dir: Path = settings.DBT_DIR) -> DbtProject:
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir, target="gateway")
    if not project.manifest_path.exists():
        # `dbt parse` needs no database; this runs when definitions load, never on import, and
        # only on a checkout that skipped `make install` (the manifest is then written once)
        project.preparer.prepare(project)
    return project
