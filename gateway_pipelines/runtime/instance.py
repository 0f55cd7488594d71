"""The Dagster instance and workspace for the embedded path, derived from the committed deploy files.

`deploy/dagster.yaml` and `workspace.yaml` are what docker compose uses (the instance file is
not at the repo root because Dagster's CLI would pick it up from the working directory). The embedded
path copies them into `$GATEWAY_HOME/dagster_home/`, filling in the embedded server's URL and a
loopback code-server address, so both paths run the same configuration.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from gateway_pipelines import settings
from gateway_pipelines.lib.warehouse import (
    WarehouseError,
    WarehouseUrls,
    ensure_database,
    resolve_urls,
    with_database,
    with_driver,
)
from gateway_pipelines.runtime.paths import StatePaths, state_paths

LOCATION_NAME = "gateway_pipelines.definitions"


def instance_config(template: dict, dagster_pg_url: str) -> dict:
    config = copy.deepcopy(template)
    config["storage"]["postgres"]["postgres_url"] = with_driver(dagster_pg_url, "psycopg2")
    return config


def write_dagster_home(paths: StatePaths, dagster_pg_url: str, template_path: Path | None = None) -> Path:
    """Write dagster.yaml for the embedded instance and return the Dagster home folder."""
    template_path = template_path or settings.DEPLOY_DIR / "dagster.yaml"
    template = yaml.safe_load(template_path.read_text(encoding="utf-8"))
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    target = paths.dagster_home / "dagster.yaml"
    text = yaml.safe_dump(instance_config(template, dagster_pg_url), sort_keys=False)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return paths.dagster_home


def write_workspace(paths: StatePaths, host: str, port: int, template_path: Path | None = None) -> Path:
    """workspace.yaml pointing at a code server on `host:port`, otherwise identical to the committed one."""
    template_path = template_path or settings.PROJECT_ROOT / "workspace.yaml"
    workspace = yaml.safe_load(template_path.read_text(encoding="utf-8"))
    for entry in workspace["load_from"]:
        if "grpc_server" in entry:
            entry["grpc_server"]["host"] = host
            entry["grpc_server"]["port"] = port
    target = paths.dagster_home / "workspace.yaml"
    target.write_text(yaml.safe_dump(workspace, sort_keys=False), encoding="utf-8")
    return target


def warehouse_urls(env=None, *, start: bool = True) -> WarehouseUrls:
    """The warehouse and Dagster databases as the settings name them (the embedded server by default)."""
    return resolve_urls(
        settings.value("DATABASE_URL", env),
        home=settings.gateway_home(env),
        dagster_pg_url=settings.value("DAGSTER_PG_URL", env),
        start=start,
    )


def bootstrap(env: dict[str, str] | None = None) -> tuple[StatePaths, WarehouseUrls]:
    """Start (or reuse) the warehouse, write the Dagster home, and export what child processes need.

    Afterwards DAGSTER_HOME and GATEWAY_HOME are set in `env` (the process environment by default),
    so `DagsterInstance.get()`, the code server and every run subprocess see the same instance.
    """
    env = settings.environment() if env is None else env
    paths = state_paths(env).ensure()
    urls = warehouse_urls(env)
    if not urls.embedded and not settings.is_set("DAGSTER_PG_URL", env):
        try:
            ensure_database(with_database(urls.warehouse, "postgres"), "dagster")
        except Exception as exc:
            raise WarehouseError(
                f"Could not create the `dagster` database next to the warehouse ({exc}). Create it, or set "
                "DAGSTER_PG_URL to a database Dagster may use for its runs and events."
            ) from exc
    write_dagster_home(paths, urls.dagster)
    env["DAGSTER_HOME"] = str(paths.dagster_home)
    env["GATEWAY_HOME"] = str(paths.home)
    return paths, urls
