"""`gateway simulate-episodes`, `gateway learn` and `gateway skills`, as a user runs them."""

import pytest

from gateway_pipelines.cli import main


def test_arguments_are_validated_with_exit_code_2(capsys):
    assert main(["learn", "--only", "skills,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert main(["learn", "--window-days", "0"]) == 2
    assert main(["learn", "--date", "yesterday"]) == 2
    assert main(["simulate-episodes", "--families", "1"]) == 2
    assert main(["simulate-episodes", "--sessions", "0"]) == 2
    assert main(["skills", "--k", "0"]) == 2


@pytest.mark.slow
def test_simulate_learn_and_list_skills(fresh_db, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", fresh_db)
    monkeypatch.setenv("GATEWAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster_home"))
    assert main(["simulate-episodes", "--sessions", "150", "--seed", "5"]) == 0
    assert main(["learn", "--window-days", "60"]) == 0
    out = capsys.readouterr().out
    assert "skills" in out and "causal_edges" in out and "causal_experiments" in out
    assert main(["learn", "--only", "causal_edges"]) == 0
    assert "causal_edges" in capsys.readouterr().out
    assert main(["skills", "--search", "fix the failing login tests", "--k", "3"]) == 0
    listing = capsys.readouterr().out
    first = listing.splitlines()[1]
    assert "login" in first and "pitfall:" in listing and "(3 of" in listing
