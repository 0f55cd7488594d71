"""dbt reuses its parse between invocations on one warehouse, and invocation folders do not pile up."""

from __future__ import annotations

import os
import time
from pathlib import Path

from gateway_pipelines.defs.resources import dbt_executable
from gateway_pipelines.lib.analytics.resource import (
    PARSE_FILE,
    DbtWarehouseResource,
    parse_cache_key,
    prune_invocations,
)
from gateway_pipelines.lib.warehouse import WarehouseResource
from gateway_pipelines.settings import DBT_DIR

FULL_PARSE = "Unable to do partial parsing"


def test_second_invocation_on_a_warehouse_skips_the_full_parse(fresh_db: str, tmp_path: Path):
    warehouse = WarehouseResource(database_url=fresh_db, gateway_home=str(tmp_path))
    dbt = DbtWarehouseResource(project_dir=str(DBT_DIR), dbt_executable=dbt_executable(), warehouse=warehouse)
    try:
        first = dbt.run(["parse"])
        cache = tmp_path / "dbt" / "parse" / parse_cache_key(fresh_db) / PARSE_FILE
        assert cache.exists() and (cache.stat().st_mode & 0o777) == 0o600
        # a new window is an environment variable, which must not invalidate the parse as --vars would
        second = dbt.run(["parse"], env={"GATEWAY_DBT_MIN_DATE": "2026-01-01", "GATEWAY_DBT_MAX_DATE": "2026-01-02"})
    finally:
        warehouse.close()
    assert FULL_PARSE in (first.target_path / "dbt.log").read_text()  # nothing to reuse yet
    log = (second.target_path / "dbt.log").read_text()
    assert FULL_PARSE not in log and "Partial parsing enabled" in log
    assert "GATEWAY_DBT_MIN_DATE" not in os.environ  # the window was lent to dbt, not left behind


def test_cache_key_names_the_database_not_the_password():
    a = parse_cache_key("postgresql://gw:secret-one@db.example:5432/gateway")
    assert a == parse_cache_key("postgresql://gw:secret-two@db.example:5432/gateway")
    assert a != parse_cache_key("postgresql://gw:secret-one@db.example:5432/other")
    assert "secret" not in a


def test_prune_keeps_the_newest_and_anything_young(tmp_path: Path):
    now = time.time()
    for i in range(6):
        folder = tmp_path / f"inv-{i}"
        folder.mkdir()
        age = 7200 if i < 4 else 60  # four old folders, two from the last minutes
        os.utime(folder, (now - age - i, now - age - i))
    removed = prune_invocations(tmp_path, keep=3, now=now)
    # the newest 3 stay (inv-5, inv-4, inv-0); of the other three, all old: removed
    assert removed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv-0", "inv-4", "inv-5"]
    assert prune_invocations(tmp_path, keep=0, now=now) == 1  # inv-0 is old; the young two stay
