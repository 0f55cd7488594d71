"""Legacy migrations for Dagster: the landing folder the sensor watches, where spill files go, and
the parity thresholds."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from gateway_pipelines.lib.migration.sources import DEFAULT_BATCH


class LegacyMigrationResource(dg.ConfigurableResource):
    """`landing_dir` ($GATEWAY_HOME/landing/legacy) is watched by `legacy_landing_sensor`; `work_dir`
    holds the temporary spill files of the k-NN parity check (deleted after each collection)."""

    landing_dir: str | None = None
    work_dir: str | None = None
    samples_dir: str | None = None  # where `make run` writes its small demo sources
    batch_size: int = DEFAULT_BATCH
    knn_queries: int = 100  # sampled source vectors per collection
    knn_k: int = 10
    min_knn_overlap: float = 0.99  # mean overlap of exact top-10, source side against pgvector on staging

    def landing_path(self) -> Path:
        if not self.landing_dir:
            raise ValueError("LegacyMigrationResource.landing_dir is not set: the landing sensor has no folder to watch")
        return Path(self.landing_dir)

    def spill_path(self) -> Path | None:
        return Path(self.work_dir) if self.work_dir else None
