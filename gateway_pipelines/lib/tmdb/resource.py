"""TMDB access for Dagster: which source to read, and an API client when a key is set."""

from __future__ import annotations

import os

import dagster as dg

from gateway_pipelines.lib.tmdb.client import TMDBClient
from gateway_pipelines.lib.tmdb.sources import TitleSource, make_source


class TMDBResource(dg.ConfigurableResource):
    """`source` defaults to `TMDB_SOURCE`, else `sample` (offline). Keys come from the environment
    (`TMDB_API_KEY` or `TMDB_READ_TOKEN`, `TMDB_BASE_URL`) when a run starts."""

    source: str | None = None
    rate_per_second: float = 35.0
    max_retries: int = 5

    def source_name(self, override: str | None = None) -> str:
        return override or self.source or os.environ.get("TMDB_SOURCE") or "sample"

    def has_credentials(self) -> bool:
        return bool(os.environ.get("TMDB_API_KEY") or os.environ.get("TMDB_READ_TOKEN"))

    def client(self) -> TMDBClient:
        return TMDBClient.from_env(rate_per_second=self.rate_per_second, max_retries=self.max_retries)

    def open_source(self, name: str, *, path: str | None = None, seed: int = 7) -> TitleSource:
        needs_client = name == "api" or (name == "export" and self.has_credentials())
        client = self.client() if needs_client else None
        return make_source(name, path=path, client=client, seed=seed)
