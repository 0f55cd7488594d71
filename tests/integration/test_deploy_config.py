"""The deploy files agree with each other and with the code.

docker-compose.yml, the Dockerfile and .dockerignore are checked against workspace.yaml (where the
webserver and daemon look for the code server), dagster.yaml (the instance and the env vars it
reads), and every environment variable the package and the dbt project read. No Docker engine is
needed: the files are parsed; when the `docker compose` CLI exists, `docker compose config -q`
validates the file as well.

The embedded path (`gateway run` / `gateway ui`) writes its own dagster.yaml from the committed one;
the last tests check that file and load a real DagsterInstance from it.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DAGSTER_SERVICES = ("code", "webserver", "daemon")

# Env vars the code reads that docker-compose.yml deliberately does not set on the `code` service.
# Each needs a reason; anything else the code reads must be set there (a `${VAR:-}` passthrough
# counts), so a new setting cannot be forgotten in the deployment.
ENV_ALLOWLIST = {
    # dbt/profiles.yml reads these, for a person running dbt by hand. Runs never do: the dbt
    # resource writes a private profile from the warehouse URL (DbtWarehouseResource), so setting
    # them in compose would state the credentials twice, and the two could disagree.
    "GATEWAY_PG_HOST": "dbt/profiles.yml, for dbt by hand only",
    "GATEWAY_PG_PORT": "dbt/profiles.yml, for dbt by hand only",
    "GATEWAY_PG_USER": "dbt/profiles.yml, for dbt by hand only",
    "GATEWAY_PG_PASSWORD": "dbt/profiles.yml, for dbt by hand only",
    "GATEWAY_PG_DATABASE": "dbt/profiles.yml, for dbt by hand only",
    # Set by the dbt resource for one invocation (a run's partition window), never by a deployment.
    "GATEWAY_DBT_MIN_DATE": "stg_tmdb__titles.sql, the run's window, set by DbtWarehouseResource",
    "GATEWAY_DBT_MAX_DATE": "stg_tmdb__titles.sql, the run's window, set by DbtWarehouseResource",
}

# How the code reads env vars. `env` is the project's name for a Mapping parameter that defaults to
# os.environ (resolve_urls, state_paths, TMDBClient.from_env, ...), so it is scanned too. Writes
# (`env["X"] = ...`) are not reads; `setdefault` only supplies a library default.
_NAME = r"""["']([A-Z][A-Z0-9_]*)["']"""
ENV_READ_PATTERNS = [
    re.compile(rf"\bSetting\(\s*{_NAME}"),  # gateway_pipelines/settings.py declares every variable
    re.compile(rf"\benviron\.get\(\s*{_NAME}"),
    re.compile(rf"\benviron\[\s*{_NAME}\s*\](?!\s*=[^=])"),
    re.compile(rf"\bgetenv\(\s*{_NAME}"),
    re.compile(rf"\bEnvVar(?:\.int|\.float|\.bool)?\(\s*{_NAME}"),
    re.compile(rf"\benv_var\(\s*{_NAME}"),
    re.compile(rf"\benv\.get\(\s*{_NAME}"),
    re.compile(rf"\benv\[\s*{_NAME}\s*\](?!\s*=[^=])"),
]
_PASSTHROUGH = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}$")


# --------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def workspace() -> dict:
    return yaml.safe_load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def instance_yaml() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def service_env(compose: dict, name: str) -> dict[str, str]:
    env = compose["services"][name].get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_args(compose: dict, name: str) -> list[str]:
    command = compose["services"][name]["command"]
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def option(args: list[str], *flags: str) -> str:
    for i, arg in enumerate(args):
        if arg in flags:
            return args[i + 1]
        for flag in flags:
            if flag.startswith("--") and arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    raise AssertionError(f"none of {flags} in {args}")


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set: the defaults (what `docker compose up` uses bare)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def dockerfile_env(dockerfile: str) -> dict[str, str]:
    text = dockerfile.replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            env.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    return env


def size_in_bytes(value: str | int) -> int:
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", str(value).lower())
    assert match, f"unreadable size {value!r}"
    return int(float(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_"))


def env_vars_read_by_code() -> dict[str, set[str]]:
    """Every env var name the package or the dbt project reads, with the files that read it."""
    files = list((ROOT / "gateway_pipelines").rglob("*.py"))
    for pattern in ("*.yml", "*.yaml", "*.sql"):
        files += [p for p in (ROOT / "dbt").rglob(pattern) if not {"target", "logs", "dbt_packages"} & set(p.parts)]
    found: dict[str, set[str]] = {}
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for regex in ENV_READ_PATTERNS:
            for name in regex.findall(text):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def instance_env_refs(node) -> set[str]:
    """Names in dagster.yaml's `{env: NAME}` values."""
    if isinstance(node, dict):
        refs = {str(node["env"])} if set(node) == {"env"} else set()
        for value in node.values():
            refs |= instance_env_refs(value)
        return refs
    if isinstance(node, list):
        return set().union(*(instance_env_refs(v) for v in node)) if node else set()
    return set()


# --------------------------------------------------------------------------- compose <-> workspace.yaml


def test_workspace_points_at_the_code_service(compose, workspace):
    from gateway_pipelines.runtime.instance import LOCATION_NAME

    entries = [e["grpc_server"] for e in workspace["load_from"] if "grpc_server" in e]
    assert len(entries) == 1, f"expected one grpc_server entry in workspace.yaml, got {workspace['load_from']}"
    grpc = entries[0]
    assert grpc["host"] in compose["services"], f"workspace.yaml host {grpc['host']!r} is not a compose service"

    args = command_args(compose, grpc["host"])
    assert args[:3] == ["dagster", "api", "grpc"], args
    module = option(args, "-m", "--module-name")
    assert int(option(args, "-p", "--port")) == int(grpc["port"]), "code server port != workspace.yaml port"
    assert option(args, "-h", "--host") == "0.0.0.0", "the code server must listen beyond its own container"

    # The location name is the module name: what the embedded path, the runs and the UI all call it.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert grpc["location_name"] == module == LOCATION_NAME
    assert pyproject["tool"]["dg"]["project"]["code_location_target_module"] == module
    assert pyproject["tool"]["dg"]["project"]["code_location_name"] == grpc["location_name"]

    # The code service's healthcheck asks the port it serves on.
    health = compose["services"][grpc["host"]]["healthcheck"]["test"]
    assert "grpc-health-check" in health and str(grpc["port"]) in health


def test_webserver_and_daemon_load_the_committed_workspace(compose, dockerfile):
    workdir = re.findall(r"^WORKDIR\s+(\S+)", dockerfile, re.M)[-1]
    expected = f"{workdir}/workspace.yaml"
    webserver = command_args(compose, "webserver")
    assert webserver[0] == "dagster-webserver"
    assert option(webserver, "-w", "--workspace") == expected
    assert option(webserver, "-h", "--host") == "0.0.0.0"
    port = option(webserver, "-p", "--port")
    assert any(str(p).endswith(f":{port}") for p in compose["services"]["webserver"]["ports"]), "UI port not published"
    daemon = command_args(compose, "daemon")
    assert daemon[:2] == ["dagster-daemon", "run"]
    assert option(daemon, "-w", "--workspace") == expected

    for name in ("webserver", "daemon"):
        depends = compose["services"][name]["depends_on"]
        assert depends["code"]["condition"] == "service_healthy", f"{name} must wait for the code server"


# --------------------------------------------------------------------------- compose <-> dagster.yaml


def test_instance_is_postgres_with_a_queued_coordinator(instance_yaml):
    assert set(instance_yaml["storage"]) == {"postgres"}, "run, event and schedule storage must be Postgres"
    assert instance_yaml["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    assert instance_yaml["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance_yaml["run_coordinator"]["module"] == "dagster.core.run_coordinator"


def test_every_env_var_of_dagster_yaml_is_set_on_every_dagster_service(compose, instance_yaml, dockerfile):
    refs = instance_env_refs(instance_yaml)
    assert "DAGSTER_PG_URL" in refs
    image_dagster_home = dockerfile_env(dockerfile)["DAGSTER_HOME"]
    assert re.search(rf'cp deploy/dagster\.yaml "?(\$DAGSTER_HOME|{re.escape(image_dagster_home)})/dagster\.yaml', dockerfile), (
        "the Dockerfile must copy the committed dagster.yaml into DAGSTER_HOME"
    )
    for name in DAGSTER_SERVICES:
        env = service_env(compose, name)
        missing = sorted(refs - set(env))
        assert not missing, f"{name} lacks {missing}, which dagster.yaml reads"
        assert env["DAGSTER_HOME"] == image_dagster_home, f"{name}: DAGSTER_HOME is not where the image put dagster.yaml"

        url = urlsplit(interpolate(env["DAGSTER_PG_URL"]))
        assert url.scheme == "postgresql+psycopg2", "dagster-postgres needs the psycopg2 driver (see dagster.yaml)"
        assert url.hostname == "postgres" and (url.port or 5432) == 5432 and url.path == "/dagster", url


def test_the_dagster_database_is_created_by_the_init_script(compose):
    postgres = compose["services"]["postgres"]
    mounts = [str(v) for v in postgres["volumes"]]
    init = [m for m in mounts if ":/docker-entrypoint-initdb.d" in m]
    assert init, "postgres needs an init script folder mounted at /docker-entrypoint-initdb.d"
    folder = ROOT / init[0].split(":", 1)[0]
    scripts = sorted(folder.glob("*.sql")) + sorted(folder.glob("*.sh"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in scripts)
    assert re.search(r"CREATE DATABASE\s+\"?dagster\"?", text, re.I), f"no CREATE DATABASE dagster in {folder}"
    named = [m.split(":", 1)[0] for m in mounts if not m.startswith((".", "/"))]
    assert named and all(v in (compose.get("volumes") or {}) for v in named), "postgres data needs a named volume"


# --------------------------------------------------------------------------- postgres service


def test_postgres_is_pgvector_with_room_for_hnsw_builds(compose):
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("pgvector/pgvector:"), postgres["image"]

    # Parallel HNSW builds share maintenance_work_mem through /dev/shm: it must fit.
    settings = []
    for path in list((ROOT / "gateway_pipelines").rglob("*.py")) + list((ROOT / "sql").glob("*.sql")):
        text = path.read_text(encoding="utf-8", errors="replace")
        settings += re.findall(r"maintenance_work_mem\b[^\n'\"]*['\"](\d+\s*[kMGT]B)['\"]", text, re.I)
    needed = max([size_in_bytes(s.replace("B", "").replace("b", "")) for s in settings] + [1024**3])
    assert size_in_bytes(postgres["shm_size"]) >= needed, f"shm_size {postgres['shm_size']} < maintenance_work_mem {settings}"

    health = postgres["healthcheck"]["test"]
    health = " ".join(health) if isinstance(health, list) else health
    assert "pg_isready" in health
    env = service_env(compose, "postgres")
    assert env["POSTGRES_DB"] == "gateway"
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD"} <= set(env)


def test_code_server_waits_for_a_healthy_postgres(compose):
    for name in DAGSTER_SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", f"{name} must wait for postgres"


def test_urls_match_the_postgres_service(compose):
    env = service_env(compose, "code")
    pg = {k: interpolate(v) for k, v in service_env(compose, "postgres").items()}
    warehouse = urlsplit(interpolate(env["DATABASE_URL"]))
    assert warehouse.scheme == "postgresql"
    assert warehouse.hostname == "postgres" and (warehouse.port or 5432) == 5432
    assert warehouse.path == f"/{pg['POSTGRES_DB']}"
    for url in (warehouse, urlsplit(interpolate(env["DAGSTER_PG_URL"]))):
        assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]), url


# --------------------------------------------------------------------------- compose <-> the code's env vars


def test_code_service_sets_every_env_var_the_code_reads(compose):
    read = env_vars_read_by_code()
    # The scan must see the project's known settings, or the regexes have stopped matching.
    assert {"DATABASE_URL", "DAGSTER_PG_URL", "GATEWAY_HOME", "TMDB_API_KEY", "OPENAI_API_KEY", "GATEWAY_PG_HOST"} <= set(read), sorted(read)

    env = service_env(compose, "code")
    missing = {name: sorted(files) for name, files in read.items() if name not in env and name not in ENV_ALLOWLIST}
    assert not missing, (
        "the code reads these env vars but the `code` service neither sets them nor passes them through "
        f"(`NAME: ${{NAME:-}}`) and tests/integration/test_deploy_config.py does not allowlist them: {missing}"
    )
    stale = sorted(set(ENV_ALLOWLIST) - set(read))
    assert not stale, f"allowlisted but no longer read by the code (remove from ENV_ALLOWLIST): {stale}"
    doubled = sorted(set(ENV_ALLOWLIST) & set(env))
    assert not doubled, f"allowlisted as not set in compose, yet set on `code`: {doubled}"


def test_passthroughs_forward_their_own_name(compose):
    env = service_env(compose, "code")
    for name in ("TMDB_API_KEY", "OPENAI_API_KEY"):
        match = _PASSTHROUGH.match(env[name])
        assert match and match.group(1) == name, f"{name} must be passed through as ${{{name}:-}}, got {env[name]!r}"
    for name, value in env.items():
        match = _PASSTHROUGH.match(value)
        if match:
            assert match.group(1) == name, f"{name} is set from ${{{match.group(1)}}}: a typo?"


def test_partition_start_default_matches_the_code(compose):
    from gateway_pipelines.settings import BY_NAME

    DEFAULT_START = BY_NAME["GATEWAY_TMDB_START_DATE"].default

    match = _PASSTHROUGH.match(service_env(compose, "code")["GATEWAY_TMDB_START_DATE"])
    # An empty value would reach DailyPartitionsDefinition as start_date="" and break the location.
    assert match and match.group(2) == DEFAULT_START, "compose's default start date must equal DEFAULT_START"


def test_dagster_services_share_the_image(compose):
    images = {compose["services"][name].get("image") for name in DAGSTER_SERVICES}
    assert len(images) == 1 and None not in images, images
    build = compose["services"]["code"]["build"]
    assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()


# --------------------------------------------------------------------------- Dockerfile and .dockerignore


def test_dockerfile_builds_what_the_services_run(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert pyproject["project"]["requires-python"].startswith(">=3.11")
    assert re.search(r"pip install[^\n]*-e \.", dockerfile), "the project must be installed (editable, see Dockerfile)"
    assert re.search(r"dbt parse[^\n]*--project-dir dbt[^\n]*--profiles-dir dbt", dockerfile), "no dbt manifest at build"
    env = dockerfile_env(dockerfile)
    assert env["DAGSTER_HOME"] and env["GATEWAY_HOME"]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_image_needs():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    needed = [
        "pyproject.toml", "deploy/dagster.yaml", "workspace.yaml", "gateway_pipelines/definitions.py",
        "sql/001_extensions.sql", "dbt/dbt_project.yml", "dbt/profiles.yml",
    ]
    kept_out = [p for p in needed if _ignored(p, patterns)]
    assert not kept_out, f".dockerignore excludes files the image needs: {kept_out}"
    for path in (".venv/bin/python", ".gateway/pg/postmaster.pid", "dbt/target/manifest.json", ".git/HEAD"):
        assert _ignored(path, patterns), f".dockerignore should keep {path} out of the image"


# --------------------------------------------------------------------------- the file as Compose sees it


def test_compose_file_is_well_formed(compose):
    services = compose["services"]
    assert {"postgres", *DAGSTER_SERVICES} <= set(services)
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name} has neither image nor build"
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for mount in service.get("volumes") or []:
            source = str(mount).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        assert "<<" not in service and "<<" not in (service.get("environment") or {}), "unresolved YAML merge"
    assert not [k for k in compose if k not in {"name", "services", "volumes", "networks", "configs", "secrets"}
                and not k.startswith("x-")], "unknown top-level keys"

    # Validate with the real CLI where there is one (`config` needs no engine); the checks above
    # stand on their own where there is not.
    docker = shutil.which("docker")
    has_compose = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    if has_compose:
        result = subprocess.run(
            [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0, f"docker compose config rejected the file:\n{result.stderr}"


# --------------------------------------------------------------------------- the embedded path's instance


def test_embedded_dagster_yaml_is_the_committed_one_with_the_url(platform, instance_yaml):
    paths, urls = platform
    generated = yaml.safe_load((paths.dagster_home / "dagster.yaml").read_text(encoding="utf-8"))
    url = generated["storage"]["postgres"]["postgres_url"]
    assert isinstance(url, str) and url.startswith("postgresql+psycopg2://"), url
    assert url.split("://", 1)[1] == urls.dagster.split("://", 1)[1], "not the embedded server's dagster database"

    expected = yaml.safe_load(yaml.safe_dump(instance_yaml))
    expected["storage"]["postgres"]["postgres_url"] = url
    assert generated == expected, "the embedded dagster.yaml differs from the committed one beyond the URL"
    for state_file in ("dagster.yaml", "workspace.yaml"):
        if (paths.dagster_home / state_file).exists():
            assert (paths.dagster_home / state_file).stat().st_mode & 0o777 == 0o600, state_file
    assert paths.dagster_home.stat().st_mode & 0o777 == 0o700


def test_a_password_never_reaches_the_generated_instance_file(platform, tmp_path, monkeypatch):
    """With an external server's URL (here: the embedded one, which accepts any password on its socket),
    dagster.yaml names an environment variable; the password lives only in the process environment."""
    import dagster as dg

    from gateway_pipelines.runtime.instance import STORAGE_URL_ENV, bootstrap

    secret = "s3cr3t-Pa55-for-the-scan"
    _, urls = platform
    with_password = urls.dagster.replace("://postgres:@", f"://postgres:{secret}@", 1)
    assert secret in with_password, urls.dagster
    env = {"GATEWAY_HOME": str(tmp_path / "home"), "DATABASE_URL": urls.warehouse, "DAGSTER_PG_URL": with_password}
    paths, _ = bootstrap(env)
    text = (paths.dagster_home / "dagster.yaml").read_text(encoding="utf-8")
    assert secret not in text
    assert yaml.safe_load(text)["storage"]["postgres"]["postgres_url"] == {"env": STORAGE_URL_ENV}
    assert (paths.dagster_home / "dagster.yaml").stat().st_mode & 0o777 == 0o600
    assert secret in env[STORAGE_URL_ENV]
    monkeypatch.setenv(STORAGE_URL_ENV, env[STORAGE_URL_ENV])
    instance = dg.DagsterInstance.from_config(str(paths.dagster_home))
    try:
        instance.get_runs(limit=1)  # Dagster resolves the reference and reaches its storage
    finally:
        instance.dispose()
    leaked = [str(f) for f in paths.home.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]
    assert not leaked, leaked


def test_embedded_instance_loads_with_postgres_storage(platform):
    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    paths, _ = platform
    instance = dg.DagsterInstance.from_config(str(paths.dagster_home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage), type(instance.run_storage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage), type(instance.event_log_storage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage), type(instance.schedule_storage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator), type(instance.run_coordinator)
        instance.get_runs(limit=1)  # the storage answers: the database exists and is migrated
    finally:
        instance.dispose()
