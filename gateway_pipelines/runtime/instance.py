"""The Dagster instance and workspace for the embedded path, derived from the committed deploy files.

`deploy/dagster.yaml` and `workspace.yaml` are what docker compose uses (the instance file is
not at the repo root because Dagster's CLI would pick it up from the working directory). The embedded
path copies them into `$GATEWAY_HOME/dagster_home/`, filling in the storage URL and a loopback
code-server address, so both paths run the same configuration. A URL with a password is never
written: the file references an environment variable instead, and every state file is 0600.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

from gateway_pipelines import settings
from gateway_pipelines.lib.warehouse import (
    WarehouseError,
    WarehouseUrls,
    ensure_database,
    redact_url,
    resolve_urls,
    with_database,
    with_driver,
)
from gateway_pipelines.runtime.paths import StatePaths, state_paths

LOCATION_NAME = "gateway_pipelines.definitions"


# Where the generated dagster.yaml points Dagster's storage when the URL holds a password: the file
# names this variable, `bootstrap` sets it for this process and its children, and the secret stays
# out of every file.
STORAGE_URL_ENV = "GATEWAY_DAGSTER_STORAGE_URL"


def instance_config(template: dict, dagster_pg_url: str) -> dict:
    """The committed instance config with the storage URL filled in: inline when it holds no
    secret (the embedded server's socket URL), else as a reference to STORAGE_URL_ENV."""
    config = copy.deepcopy(template)
    url = with_driver(dagster_pg_url, "psycopg2")
    config["storage"]["postgres"]["postgres_url"] = {"env": STORAGE_URL_ENV} if _has_secret(url) else url
    return config


def _has_secret(url: str) -> bool:
    return redact_url(url) != url


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # O_CREAT's mode applies only to a new file


def write_dagster_home(paths: StatePaths, dagster_pg_url: str, template_path: Path | None = None) -> Path:
    """Write dagster.yaml for the embedded instance and return the Dagster home folder."""
    template_path = template_path or settings.DEPLOY_DIR / "dagster.yaml"
    template = yaml.safe_load(template_path.read_text(encoding="utf-8"))
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    target = paths.dagster_home / "dagster.yaml"
    text = yaml.safe_dump(instance_config(template, dagster_pg_url), sort_keys=False)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        write_private(target, text)
    target.chmod(0o600)
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
    write_private(target, yaml.safe_dump(workspace, sort_keys=False))
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
    if _has_secret(urls.dagster):
        env[STORAGE_URL_ENV] = with_driver(urls.dagster, "psycopg2")
    env["DAGSTER_HOME"] = str(paths.dagster_home)
    env["GATEWAY_HOME"] = str(paths.home)
    return paths, urls


# -- run monitoring ---------------------------------------------------------------------------------
#
# A run executed in-process (`gateway run`, `gateway ingest`) has no launcher watching it: killed with
# -9, it stayed STARTED forever and held its concurrency slots. Such runs carry WORKER_TAG (host, pid
# and start time of the process executing them); the launcher below lets the daemon's run monitoring
# check that process, and `fail_dead_runs` does the same sweep before every `gateway run`, so no
# daemon is needed for a dead run to be marked failed. Runs launched through a code server are the
# code server's to watch: it marks a run whose worker process died as failed itself.

WORKER_TAG = "gateway/run_worker"


def worker_tags() -> dict[str, str]:
    """Tags naming this process as the worker of a run it executes in-process."""
    import socket

    import psutil

    return {WORKER_TAG: f"{socket.gethostname()}|{os.getpid()}|{psutil.Process().create_time():.2f}"}


def worker_alive(tag: str) -> bool | None:
    """True/False for a worker on this host; None when the tag names another host (or is unreadable)."""
    import socket

    import psutil

    try:
        host, pid, created = tag.rsplit("|", 2)
        pid_n, created_s = int(pid), float(created)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        # the same pid and start time: a recycled pid is another process, and the worker is dead
        return abs(psutil.Process(pid_n).create_time() - created_s) < 1.0
    except psutil.Error:
        return False


def _dead_worker_message(tag: str) -> str:
    host, pid, _ = tag.rsplit("|", 2)
    return (f"The process executing this run (pid {pid} on {host}) is gone: it was killed or crashed. "
            "Nothing it had not committed was kept; run it again.")


class GatewayRunLauncher(DefaultRunLauncher):
    """Dagster's DefaultRunLauncher, plus a worker health check for the daemon's run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        tag = run.tags.get(WORKER_TAG)
        alive = worker_alive(tag) if tag else None
        if alive is False:
            return CheckRunHealthResult(WorkerStatus.FAILED, _dead_worker_message(tag))
        # alive, on another host, or launched through a code server (which watches its own workers):
        # monitoring treats anything but RUNNING as dead, so only a proven death is reported
        return CheckRunHealthResult(WorkerStatus.RUNNING, "not known to be dead")


def fail_dead_runs(instance) -> list[str]:
    """Mark failed every STARTED/STARTING run whose in-process worker on this host is dead; returns
    their ids. Reporting the failure also frees the concurrency slots the run held."""
    import dagster as dg

    failed = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]))
    for record in records:
        run = record.dagster_run
        tag = run.tags.get(WORKER_TAG)
        if tag and worker_alive(tag) is False:
            instance.report_run_failed(run, _dead_worker_message(tag))
            failed.append(run.run_id)
    return failed
