"""TMDB access for Dagster: which source to read, the API credentials, and the landing folder."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from gateway_pipelines.lib.tmdb.client import TMDBClient
from gateway_pipelines.lib.tmdb.sources import TitleSource, make_source


class TMDBResource(dg.ConfigurableResource):
    """`source` is the default of tmdb_titles (`sample` is offline). Credentials switch the API on;
    `landing_dir` is the folder the landing sensor watches."""

    source: str = "sample"
    api_key: str | None = None
    read_token: str | None = None
    base_url: str = TMDBClient.DEFAULT_BASE_URL
    rate_per_second: float = 35.0
    max_retries: int = 5
    landing_dir: str | None = None

    def source_name(self, override: str | None = None) -> str:
        return override or self.source or "sample"

    def has_credentials(self) -> bool:
        return bool((self.api_key or "").strip() or (self.read_token or "").strip())

    def client(self) -> TMDBClient:
        return TMDBClient(
            api_key=(self.api_key or "").strip() or None,
            read_token=(self.read_token or "").strip() or None,
            base_url=self.base_url,
            rate_per_second=self.rate_per_second,
            max_retries=self.max_retries,
        )

    def open_source(self, name: str, *, path: str | None = None, seed: int = 7) -> TitleSource:
        needs_client = name == "api" or (name == "export" and self.has_credentials())
        client = self.client() if needs_client and self.has_credentials() else None
        return make_source(name, path=path, client=client, seed=seed)

    def landing_path(self) -> Path:
        if not self.landing_dir:
            raise ValueError("TMDBResource.landing_dir is not set: the landing sensor has no folder to watch")
        return Path(self.landing_dir)
