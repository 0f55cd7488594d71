"""The dbt catalogue documents every column, and its test severities are deliberate.

Manifest-only (no database): `dbt parse` into a temporary target path, so `dbt/target` (which the
Dagster definitions load) is left alone, then the manifest and the specs dagster-dbt builds from
it, i.e. what the Dagster UI shows. tests/integration/test_dbt_catalogue.py checks the documented
columns and types against the tables dbt really builds, and runs the checks through Dagster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DBT_DIR = ROOT / "dbt"
MODELS = ("stg_tmdb__titles", "dim_content")
SOURCES = ("tmdb_titles", "tmdb_genres")

# The rules that must stop the line: a failure fails `dbt build` and skips what is downstream.
KEY_TESTS = {
    (model, column, test)
    for model in MODELS
    for column, test in [
        ("content_key", "unique"),
        ("content_key", "not_null"),
        ("media_type", "accepted_values"),
        ("title", "not_null"),
    ]
}
# Worth a look, not a stop (see the comments in the model YAML files).
WARN_TESTS = {
    "stg_tmdb__titles_rated_titles_have_votes": ("stg_tmdb__titles", "vote_count", "value_between"),
    "dim_content_overview_present_for_most_titles": ("dim_content", "overview", "mostly_not_null"),
    "dim_content_every_genre_id_has_a_name": ("dim_content", "genre_names", "same_cardinality_as"),
}


def dbt_parse(target: Path) -> dict:
    """`dbt parse` with the venv's dbt into `target`; returns the manifest."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "parse", "--profiles-dir", ".", "--quiet",
         "--no-partial-parse", "--target-path", str(target), "--log-path", str(target / "logs")],
        cwd=DBT_DIR, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((target / "manifest.json").read_text())


@pytest.fixture(scope="module")
def manifest() -> Iterator[dict]:
    with tempfile.TemporaryDirectory(prefix="dbt-docs-") as target:
        yield dbt_parse(Path(target))


def _model(manifest: dict, name: str) -> dict:
    return manifest["nodes"][f"model.gateway.{name}"]


def _tests(manifest: dict) -> list[dict]:
    return [node for node in manifest["nodes"].values() if node["resource_type"] == "test"]


def _attached_model(test: dict) -> str:
    return test["attached_node"].rsplit(".", 1)[-1]


def test_parse_left_the_shared_target_alone(manifest):
    # the fixture wrote to a temporary folder; the manifest still names the real project
    assert manifest["metadata"]["project_name"] == "gateway"
    assert {f"model.gateway.{m}" for m in MODELS} <= set(manifest["nodes"])


@pytest.mark.parametrize("model", MODELS)
def test_every_model_column_has_a_description_and_a_data_type(manifest, model):
    node = _model(manifest, model)
    assert len(node["description"].split()) >= 30, f"{model}: the model description is too thin"
    columns = node["columns"]
    assert len(columns) > 3  # more than the tested columns
    undocumented = [c for c, info in columns.items() if not (info.get("description") or "").strip()]
    untyped = [c for c, info in columns.items() if not (info.get("data_type") or "").strip()]
    assert undocumented == [] and untyped == [], (undocumented, untyped)
    for name, info in columns.items():
        assert info["name"] == name
        assert info["description"].strip() != name  # says more than the column's name


@pytest.mark.parametrize("table", SOURCES)
def test_sources_are_described(manifest, table):
    node = manifest["sources"][f"source.gateway.raw.{table}"]
    assert node["description"].strip()
    assert node["columns"], f"raw.{table} lists no columns"
    for name, info in node["columns"].items():
        assert info["description"].strip() and info["data_type"].strip(), name


def test_key_tests_keep_error_severity(manifest):
    found = {
        (_attached_model(t), t["column_name"], t["test_metadata"]["name"]): t["config"]["severity"].lower()
        for t in _tests(manifest)
        if t.get("test_metadata")
    }
    missing = KEY_TESTS - found.keys()
    assert not missing, missing
    assert {key: found[key] for key in KEY_TESTS} == {key: "error" for key in KEY_TESTS}


def test_warn_tests_exist_with_warn_severity(manifest):
    by_name = {t["name"]: t for t in _tests(manifest)}
    for name, (model, column, generic) in WARN_TESTS.items():
        test = by_name.get(name)
        assert test is not None, f"{name} is not a dbt test any more"
        assert test["config"]["severity"].lower() == "warn", name
        assert (_attached_model(test), test["column_name"], test["test_metadata"]["name"]) == (model, column, generic)
        assert test["meta"].get("description"), f"{name}: Dagster shows meta.description on the check"
    for model in MODELS:  # each model has something to look at that does not stop the line
        assert any(
            _attached_model(t) == model and t["config"]["severity"].lower() == "warn" for t in _tests(manifest)
        ), model


def test_rated_titles_check_reuses_value_between_on_rated_rows(manifest):
    [test] = [t for t in _tests(manifest) if t["name"] == "stg_tmdb__titles_rated_titles_have_votes"]
    assert test["config"]["where"] == "vote_average > 0"
    assert test["test_metadata"]["kwargs"]["min_value"] == 1
    assert "macro.gateway.test_value_between" in test["depends_on"]["macros"]


def test_dagster_shows_the_catalogue_and_blocks_only_on_error_tests(manifest):
    """What dagster-dbt makes of the manifest: column schemas, and `blocking` from the severity."""
    from dagster_dbt import dbt_assets

    @dbt_assets(manifest=manifest)
    def models(context): ...

    specs = {spec.key.to_user_string(): spec for spec in models.specs}
    for model in MODELS:
        schema = specs[model].metadata.get("dagster/column_schema")  # the UI's Columns table
        assert isinstance(schema, dg.TableSchema), model
        documented = _model(manifest, model)["columns"]
        assert [c.name for c in schema.columns] == list(documented)
        for column in schema.columns:
            assert column.type == documented[column.name]["data_type"] != "?"
            assert column.description == documented[column.name]["description"]

    checks = {spec.name: spec for spec in models.check_specs}
    tests = {t["name"]: t for t in _tests(manifest)}
    assert set(checks) == set(tests)  # every dbt test is an asset check
    for name, spec in checks.items():
        assert spec.blocking == (tests[name]["config"]["severity"].lower() == "error"), name
    for name in WARN_TESTS:
        assert not checks[name].blocking
        assert checks[name].description == tests[name]["meta"]["description"]
