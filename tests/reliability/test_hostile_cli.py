"""Hostile and mistyped CLI arguments: one clear `error:` line and exit code 2, never a traceback.

None of these reaches the warehouse or Dagster: the arguments are refused while parsing, so the
table runs in milliseconds. (What needs a catalogue, an unknown content key or a query of unknown
words, is in tests/integration/dagster/test_main_job.py.)
"""

from __future__ import annotations

import pytest

from gateway_pipelines.cli import main

HOSTILE = [
    # (argv, a fragment the message must contain)
    (["search", "x", "--k", "0"], "out of range"),
    (["search", "x", "--k", "-1"], "out of range"),
    (["search", "x", "--k", "1001"], "from 1 to 1000"),
    (["search", "x", "--k", "abc"], "not a number of results"),
    (["search", "x", "--k", "1e3"], "not a number of results"),
    (["search", "x", "--year", "1 OR 1=1"], "not a year or a range"),
    (["search", "x", "--year", "2010-1990"], "runs backwards"),
    (["search", "x", "--year", ""], "not a year or a range"),
    (["search", "x", "--year", "99999"], "not a year or a range"),
    (["search", "x", "--genre", "99999999999"], "out of range"),
    (["search", "x", "--genre", "0"], "out of range"),
    (["search", "x", "--genre", "12345"], "not a TMDB genre id"),
    (["search", "x", "--genre", "28;DROP TABLE raw.tmdb_titles"], "not a TMDB genre id"),
    (["search", "x", "--min-rating", "11"], "out of range"),
    (["search", "x", "--min-rating", "nan"], "out of range"),
    (["search", "x", "--min-rating", "inf"], "out of range"),
    (["search", "x", "--min-rating", "-1"], "out of range"),
    (["search", "x", "--language", "en'; --"], "not a language code"),
    (["search", "x", "--language", "e"], "not a language code"),
    (["search", "x", "--type", "film"], "invalid choice"),
    (["search", ""], "the query is empty"),
    (["search", "   "], "the query is empty"),
    (["search", "x" * 5000], "keep it under"),
    (["similar", "movie-0"], "not a content key"),
    (["similar", "film-3"], "not a content key"),
    (["similar", "movie-99999999999"], "TMDB ids stop at"),
    (["similar", "movie-1; DROP TABLE vectors.content_vectors"], "not a content key"),
    (["similar", "\x1b[31mmovie-1"], "\\x1b"),
    (["ingest", "--source", "csv_dump", "--path", "/nonexistent/tmdb.csv"], "no such file"),
    (["ingest", "--source", "csv_dump", "--path", "/"], "is a directory"),
    (["ingest", "--source", "nope"], "invalid choice"),
    (["ingest", "--date", "2026-13-01"], "not a YYYY-MM-DD date"),
    (["ingest", "--date", "1900-01-01"], "not a partition"),
    (["tmdb", "release", "0"], "out of range"),
    (["tmdb", "release", "abc"], "not a positive id"),
    (["tmdb", "release", "99999999999"], "out of range"),
    (["tmdb", "batches", "--limit", "0"], "out of range"),
    (["tmdb", "batches", "--status", "nope"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "fragment"), HOSTILE, ids=[" ".join(a)[:60] for a, _ in HOSTILE])
def test_a_hostile_argument_gets_a_clear_error_and_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and fragment in err, err
    assert "Traceback" not in err
    assert "\x1b" not in err  # a terminal escape in an argument is shown, not obeyed


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["ingest", "--source", "csv_dump"], "needs --path FILE"),
        (["ingest", "--source", "sample", "--path", __file__], "reads no file"),
    ],
)
def test_contradictory_arguments_are_refused_before_any_run(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_control_characters_in_stored_text_are_shown_escaped():
    from gateway_pipelines.runtime.cli_args import safe

    assert safe("Red\x1b[31m Alert\x07\r") == "Red\\x1b[31m Alert\\x07\\x0d"
    assert safe("Le Dernier Métro") == "Le Dernier Métro"
    assert safe("zero\u200bwidth") == "zero\\u200bwidth"


def test_a_database_lost_mid_command_is_one_clear_line(monkeypatch, capsys):
    """A Postgres crash used to end `gateway run` in a DagsterPostgresException traceback."""
    import psycopg2
    from dagster_postgres.utils import DagsterPostgresException

    from gateway_pipelines import cli

    def crash(args):
        try:
            raise psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis probably means ...")
        except psycopg2.OperationalError as exc:
            raise DagsterPostgresException("too many retries for DB connection") from exc

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["status"].set_defaults(func=crash)
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert "the database stopped answering" in err and "server closed the connection unexpectedly" in err
    assert "Traceback" not in err
