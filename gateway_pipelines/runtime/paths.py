"""Where the platform keeps its local state (embedded Postgres, Dagster home, models, landing files).

Every path derives from one root, `GATEWAY_HOME` (default `./.gateway`), so that tests can point
the whole platform at a temporary folder and never touch a user's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway_pipelines import settings
from gateway_pipelines.lib.warehouse import embedded_data_dir


@dataclass(frozen=True)
class StatePaths:
    home: Path

    @property
    def pgdata(self) -> Path:
        return embedded_data_dir(self.home)

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def ensure(self) -> StatePaths:
        for path in (self.home, self.dagster_home, self.models, self.landing / "tmdb"):
            path.mkdir(parents=True, exist_ok=True)
        # Only the owner may look into the Dagster home, whatever the modes of the files in it. (The
        # state folder itself must stay traversable: run as root, the embedded server starts
        # Postgres as an unprivileged user that needs to reach its data folder inside it.)
        self.dagster_home.chmod(0o700)
        return self


def state_paths(env: Mapping[str, str] | None = None) -> StatePaths:
    return StatePaths(settings.gateway_home(env))
