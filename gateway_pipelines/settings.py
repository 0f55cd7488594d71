"""Every setting the platform reads from the environment, and the only module that reads it.

Each variable is declared once here, with its default and what it switches on. Two consumers:

* `defs/resources.py` turns them into resource fields: a variable that is set becomes
  `dg.EnvVar(NAME)`, so the Dagster UI shows which variable a value comes from (and never shows a
  secret); an unset one becomes the declared default.
* the CLI (`gateway run`, `gateway ui`, `gateway config`) needs a few before Dagster starts: where
  the state folder is and which Postgres holds the Dagster instance.

Nothing else in the package may touch `os.environ` (a test greps for it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = PROJECT_ROOT / "sql"
DBT_DIR = PROJECT_ROOT / "dbt"
DEPLOY_DIR = PROJECT_ROOT / "deploy"


@dataclass(frozen=True)
class Setting:
    env: str
    description: str
    default: str | None = None  # None: unset means "off", or the embedded server
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("GATEWAY_HOME", "state folder: embedded Postgres data, Dagster home, models, landing folders",
            default="./.gateway"),
    Setting("DATABASE_URL", "the warehouse Postgres (with pgvector); unset: the embedded server in "
            "$GATEWAY_HOME/pg", secret=True),
    Setting("DAGSTER_PG_URL", "Dagster's run/event/schedule storage; unset: database `dagster` beside the "
            "warehouse", secret=True),
    Setting("TMDB_API_KEY", "TMDB API v3 key: enables the `api` source, the 03:00 schedule, genres from the API",
            secret=True),
    Setting("TMDB_READ_TOKEN", "TMDB v4 read token (Bearer); preferred over the key when both are set", secret=True),
    Setting("TMDB_BASE_URL", "TMDB API root", default="https://api.themoviedb.org/3"),
    Setting("TMDB_SOURCE", "default source of tmdb_titles: sample, csv_dump, export or api", default="sample"),
    Setting("OPENAI_API_KEY", "switches the 512-d plot block to OpenAI text-embedding-3-small", secret=True),
    Setting("OPENAI_BASE_URL", "OpenAI-compatible API root (unset: the client's default)"),
    Setting("GATEWAY_TMDB_START_DATE", "first daily partition of tmdb_titles and stg_tmdb__titles; read when "
            "the code location loads, since partitions are part of the graph", default="2026-01-01"),
    Setting("GATEWAY_EMBED_MIN_COVERAGE", "refit the local embedding model when it knows less than this share of "
            "the catalogue's token mass", default="0.90"),
    Setting("GATEWAY_EMBED_MAX_GROWTH", "refit the local embedding model when the catalogue has grown this many "
            "times since the fit", default="2.0"),
    Setting("GATEWAY_EMBED_AUTO_REFIT", "refit a stale local embedding model automatically (0: only warn)",
            default="1"),
    Setting("GATEWAY_EMBED_PROVIDER", "plot-text model: auto (OpenAI when OPENAI_API_KEY is set, else local), "
            "openai, local (TF-IDF + SVD) or wordllama (needs the [wordllama] extra)", default="auto"),
    Setting("GATEWAY_VECTOR_INDEX", "what the search index is built on: halfvec (HNSW on a halfvec(768) "
            "expression), vector (HNSW on vector(768)) or bit (binary quantisation, re-ranked); docs/vector_store.md",
            default="halfvec"),
)
BY_NAME: dict[str, Setting] = {s.env: s for s in SETTINGS}


def environment() -> Mapping[str, str]:
    """The process environment. The one read of `os.environ` in the package."""
    return os.environ


def export_default(name: str, value: str) -> None:
    """Set a library switch for this process and its children, unless the user already set it."""
    os.environ.setdefault(name, value)


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return environment() if env is None else env


def is_set(name: str, env: Mapping[str, str] | None = None) -> bool:
    return bool((_env(env).get(name) or "").strip())


def value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The variable's value when set (non-blank), else its declared default."""
    setting = BY_NAME[name]
    raw = (_env(env).get(name) or "").strip()
    return raw or setting.default


def from_env(name: str, env: Mapping[str, str] | None = None) -> dg.EnvVar | str | None:
    """For a resource field: `dg.EnvVar(name)` when the variable is set, else the default.

    An unset EnvVar fails the run ("environment variable … is not set"), so optional settings
    can only be EnvVars when they exist; the default then shows as a literal in the UI.
    """
    return dg.EnvVar(name) if is_set(name, env) else BY_NAME[name].default


def gateway_home(env: Mapping[str, str] | None = None) -> Path:
    """The state folder, absolute (relative defaults resolve against the working directory)."""
    return Path(value("GATEWAY_HOME", env) or ".gateway").expanduser().resolve()


def origin(name: str, env: Mapping[str, str] | None = None) -> str:
    return f"env {name}" if is_set(name, env) else "default"


def mask(name: str, text: str | None) -> str | None:
    """Secrets are never printed: a URL keeps its host and database, a key shows its last 4 characters."""
    if text is None or not BY_NAME.get(name, Setting(name, "")).secret:
        return text
    if "://" in text or "password" in text.lower():
        from gateway_pipelines.lib.warehouse import redact_url

        return redact_url(text)
    return "***" + text[-4:] if len(text) > 8 else "***"


# dagster-dbt gives dbt a copy of os.environ taken when it starts the process and accepts no other
# environment, so a value meant for one dbt child (a run's partition window) must be lent to the
# process for that moment. Here, beside the only other code that touches os.environ; the lock keeps
# two threads of one process from lending at once (it is held while dbt starts, not while it runs).
_LEND_LOCK = threading.Lock()


@contextmanager
def lent_to_children(extra: Mapping[str, str]):
    with _LEND_LOCK:
        saved = {key: os.environ.get(key) for key in extra}
        os.environ.update(extra)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
