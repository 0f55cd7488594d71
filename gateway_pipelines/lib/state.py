"""Where the platform keeps its local state (embedded Postgres, Dagster home, models, landing files).

Every path is derived from one root, `GATEWAY_HOME` (default `./.gateway`), so that tests can
point the whole platform at a temporary folder and never touch a user's data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class StatePaths:
    home: Path

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    def ensure(self) -> StatePaths:
        for path in (self.home, self.dagster_home, self.models, self.landing / "tmdb"):
            path.mkdir(parents=True, exist_ok=True)
        return self


def state_paths(env: Mapping[str, str] | None = None) -> StatePaths:
    env = os.environ if env is None else env
    home = env.get("GATEWAY_HOME") or str(Path.cwd() / ".gateway")
    return StatePaths(Path(home).expanduser().resolve())


def sql_dir() -> Path:
    """The numbered migrations. They live beside the package (the repo root), not inside it."""
    override = os.environ.get("GATEWAY_SQL_DIR")
    return Path(override) if override else PROJECT_ROOT / "sql"


def dbt_project_dir() -> Path:
    override = os.environ.get("GATEWAY_DBT_DIR")
    return Path(override) if override else PROJECT_ROOT / "dbt"
