"""Table fingerprints and the skip decision over them, on a real Postgres: every committed write is
seen (even one that writes the same values), reads and rolled-back writes are not; the decision
skips only when the inputs, the output and the project are as the last recorded build saw them."""

import shutil
from datetime import date
from pathlib import Path

from psycopg import sql

from gateway_pipelines.lib.analytics.skip import Node, Window, decide, in_build_order, project_checksum, record_builds
from gateway_pipelines.lib.watermarks import read_entry, table_fingerprint
from gateway_pipelines.settings import DBT_DIR

NODES = {
    "source.t.raw": Node("source.t.raw", "raw", "public.src", "source"),
    "model.t.out": Node("model.t.out", "out", "public.out", "table", inputs=("source.t.raw",)),
}


def _tables(conn) -> None:
    conn.execute("CREATE TABLE public.src (id int PRIMARY KEY, day date NOT NULL, v text)")
    conn.execute("INSERT INTO public.src SELECT i, date '2026-03-01' + (i % 3), 'v' || i FROM generate_series(1, 30) i")
    conn.execute("CREATE TABLE public.out AS SELECT * FROM public.src")
    conn.commit()


def test_every_committed_write_changes_the_fingerprint_and_nothing_else_does(conn):
    _tables(conn)
    start = table_fingerprint(conn, "public.src")
    assert start["rows"] == 30
    conn.execute("SELECT * FROM public.src").fetchall()
    conn.execute("UPDATE public.src SET v = 'x'")
    conn.rollback()
    assert table_fingerprint(conn, "public.src") == start  # a read and a rolled-back write change nothing

    conn.execute("UPDATE public.src SET v = v WHERE id = 7")  # same values, new row version
    conn.commit()
    same_values = table_fingerprint(conn, "public.src")
    assert same_values != start and same_values["rows"] == 30

    conn.execute("DELETE FROM public.src WHERE id = 8")
    conn.execute("INSERT INTO public.src VALUES (8, '2026-03-03', 'v8')")  # the same row back
    conn.commit()
    assert table_fingerprint(conn, "public.src") not in (start, same_values)
    assert table_fingerprint(conn, "public.missing") is None
    conn.execute("CREATE VIEW public.v AS SELECT * FROM public.src")
    # a view has no row versions: it never looks unchanged (dbt's own views are fingerprinted by their inputs)
    assert table_fingerprint(conn, "public.v") != table_fingerprint(conn, "public.v")


def test_a_window_sees_only_its_rows(conn):
    _tables(conn)
    where = sql.SQL("day BETWEEN %s AND %s")
    first_day = table_fingerprint(conn, "public.src", where=where, params=("2026-03-01", "2026-03-01"))
    assert first_day["rows"] == 10
    conn.execute("UPDATE public.src SET v = 'changed' WHERE day = '2026-03-03'")
    conn.commit()
    assert table_fingerprint(conn, "public.src", where=where, params=("2026-03-01", "2026-03-01")) == first_day
    conn.execute("UPDATE public.src SET v = 'changed' WHERE id = 3")  # id 3 is on 2026-03-01
    conn.commit()
    assert table_fingerprint(conn, "public.src", where=where, params=("2026-03-01", "2026-03-01")) != first_day


def test_the_decision_skips_only_while_inputs_output_and_project_are_as_recorded(conn):
    _tables(conn)
    first = decide(conn, NODES, ["model.t.out"], project="p1")
    assert not first.skip and first.reason == "no successful build of out is recorded yet"
    record_builds(conn, NODES, first, window=None, run_id="run-one")
    conn.commit()
    assert read_entry(conn, "dbt:model.t.out").run_id == "run-one"

    again = decide(conn, NODES, ["model.t.out"], project="p1")
    assert again.skip and again.reason.startswith("public.src unchanged since run run-one built out")
    assert decide(conn, NODES, ["model.t.out"], project="p1", force="force: true").skip is False

    changed_code = decide(conn, NODES, ["model.t.out"], project="p2")
    assert not changed_code.skip and changed_code.reason.startswith("the dbt project changed since run run-one")

    conn.execute("INSERT INTO public.src VALUES (99, '2026-03-01', 'new')")
    conn.commit()
    new_row = decide(conn, NODES, ["model.t.out"], project="p1")
    assert not new_row.skip and new_row.reason.startswith("public.src changed (30 → 31 rows) since run run-one")
    record_builds(conn, NODES, new_row, window=None, run_id="run-two")
    conn.commit()
    assert decide(conn, NODES, ["model.t.out"], project="p1").skip

    conn.execute("TRUNCATE public.out")  # someone else's write to the output
    conn.commit()
    truncated = decide(conn, NODES, ["model.t.out"], project="p1")
    assert not truncated.skip and "public.out itself changed (30 → 0 rows)" in truncated.reason


def test_an_input_read_by_window_counts_only_the_window(conn):
    _tables(conn)
    nodes = {**NODES, "model.t.out": Node("model.t.out", "out", "public.out", "incremental", ("source.t.raw",))}
    window = Window(date(2026, 3, 1), date(2026, 3, 2), columns={"source.t.raw": "day"})
    first = decide(conn, nodes, ["model.t.out"], project="p", window=window)
    record_builds(conn, nodes, first, window=window, run_id="r1")
    conn.commit()
    conn.execute("UPDATE public.src SET v = 'later' WHERE day = '2026-03-03'")  # outside 03-01..03-02
    conn.commit()
    assert decide(conn, nodes, ["model.t.out"], project="p", window=window).skip
    conn.execute("UPDATE public.src SET v = 'inside' WHERE day = '2026-03-02'")
    conn.commit()
    inside = decide(conn, nodes, ["model.t.out"], project="p", window=window)
    assert not inside.skip and inside.reason.startswith("public.src changed (rows rewritten)")
    # another window has its own entry
    other = Window(date(2026, 3, 3), date(2026, 3, 4), columns={"source.t.raw": "day"})
    assert decide(conn, nodes, ["model.t.out"], project="p", window=other).reason.startswith(
        "no successful build of out for 2026-03-03..2026-03-04")


def test_the_project_checksum_is_the_files_dbt_parses(tmp_path):
    project = tmp_path / "dbt"
    shutil.copytree(DBT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    before = project_checksum(project)
    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")
    (project / "logs").mkdir(exist_ok=True)
    (project / "logs" / "dbt.log").write_text("noise")
    assert project_checksum(project) == before  # artifacts and logs are not the project
    model = project / "models" / "marts" / "dim_content.sql"
    model.write_text(model.read_text() + "\n-- an edit\n")
    assert project_checksum(project) != before
    assert project_checksum(Path(DBT_DIR)) == project_checksum(Path(DBT_DIR))


def test_models_are_reported_in_build_order():
    """Dagster takes a multi-asset's outputs parents first (fct_watch_events after stg_watch_events)."""
    nodes = {
        "source.s": Node("source.s", "s", "raw.s", "source"),
        "model.a": Node("model.a", "a", "x.a", "view", ("source.s",)),
        "model.b": Node("model.b", "b", "x.b", "table", ("model.a",)),
        "model.c": Node("model.c", "c", "x.c", "table", ("model.b", "source.s")),
    }
    assert in_build_order(nodes, ["model.c", "model.b", "model.a"]) == ("model.a", "model.b", "model.c")
    assert in_build_order(nodes, ["model.c", "model.a"]) == ("model.a", "model.c")
