"""The dbt project, with its manifest prepared before definitions load (fresh clones included)."""

from dagster_dbt import DbtProject

from gateway_pipelines.lib.state import dbt_project_dir

dbt_project = DbtProject(project_dir=dbt_project_dir(), profiles_dir=dbt_project_dir(), target="gateway")
if not dbt_project.manifest_path.exists():
    # `dbt parse` needs no database; prepare_if_dev() only runs under `dagster dev`, and a fresh
    # clone has no manifest, so prepare whenever it is missing.
    dbt_project.preparer.prepare(dbt_project)
