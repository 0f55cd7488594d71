"""One home for settings: only gateway_pipelines/settings.py reads the environment, and every
variable it reads is declared there with a default and a description."""

import re
from pathlib import Path

import dagster as dg

from gateway_pipelines import settings

PACKAGE = Path(__file__).resolve().parents[2] / "gateway_pipelines"
ENV_READ = re.compile(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(|\benviron\[")


def test_no_module_but_settings_reads_the_environment():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "settings.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ENV_READ.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_scan_would_catch_a_read():
    assert ENV_READ.search('key = os.environ.get("X")') and ENV_READ.search("os.getenv('X')")


def test_set_variables_become_env_vars_and_unset_ones_defaults():
    env = {"DATABASE_URL": "postgresql://u:pw@db/gateway", "TMDB_SOURCE": ""}
    url = settings.from_env("DATABASE_URL", env)
    assert isinstance(url, dg.EnvVar) and url.env_var_name == "DATABASE_URL"
    assert settings.from_env("TMDB_SOURCE", env) == "sample"  # blank counts as unset
    assert settings.from_env("OPENAI_API_KEY", env) is None


def test_resources_show_where_each_value_comes_from(tmp_path):
    from gateway_pipelines.defs.resources import build_resources
    from gateway_pipelines.runtime.config_report import resource_rows

    env = {"GATEWAY_HOME": str(tmp_path), "OPENAI_API_KEY": "sk-test-secret-1234"}
    resources = build_resources(env)
    rows = {key: (shown, origin) for key, shown, origin in resource_rows(resources, env)}
    assert rows["embeddings.openai_api_key"] == ("***1234", "env OPENAI_API_KEY")  # masked, and named
    assert rows["warehouse.database_url"] == ("-", "default")
    assert rows["embeddings.models_dir"][0] == str(tmp_path / "models")
    assert rows["vector_search.ef_search"][1] == "default"


def test_config_report_masks_secrets(tmp_path):
    from gateway_pipelines.runtime.config_report import config_report

    env = {"GATEWAY_HOME": str(tmp_path), "DATABASE_URL": "postgresql://u:hunter2@db:5432/gw",
           "TMDB_READ_TOKEN": "eyJhbGciOiJIUzI1NiJ9.token"}
    text = config_report(env, resolve=False)
    assert "hunter2" not in text and "eyJhbGciOiJIUzI1NiJ9" not in text
    assert "postgresql://u:***@db:5432/gw" in text
    for setting in settings.SETTINGS:
        assert setting.env in text
