"""LearningResource: where episodes land, where the task model lives, and the learning thresholds."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from gateway_pipelines.lib.learning.clustering import DEFAULT_THRESHOLD
from gateway_pipelines.lib.learning.consolidation import ConsolidationParams
from gateway_pipelines.lib.learning.embedding import TaskEmbedder
from gateway_pipelines.lib.learning.experiments import ExperimentParams
from gateway_pipelines.lib.learning.learner import LearnerParams


class LearningResource(dg.ConfigurableResource):
    """Settings of the learning domain (defaults: AgentDB's gates where it has them, docs/learning.md)."""

    landing_dir: str  # $GATEWAY_HOME/landing/episodes: AgentDB-shaped *.jsonl files
    models_dir: str  # $GATEWAY_HOME/models: the episode task model is saved under models/episodes
    window_days: int = 90  # consolidation window
    min_attempts: int = 3
    distance_threshold: float = DEFAULT_THRESHOLD  # cosine distance cut of the task clustering
    session_window_minutes: float = 60.0  # A before B within this, in one session
    min_batch_units: int = 200  # the learner waits for this many new episodes
    half_life_days: float = 30.0  # edge confidence halves per this many days without new evidence
    new_episodes_threshold: int = 1000  # the new-episodes sensor starts the nightly job above this
    experiment_ci_width: float = 0.2
    experiment_budget: int = 10
    experiment_min_per_arm: int = 30
    experiment_max_days: int = 30
    experiment_max_per_arm: int = 2000  # cap of the pre-registered n per arm
    experiment_mde: float = 0.1  # the effect on the reward experiments are powered (0.8) to detect

    def landing_path(self) -> Path:
        return Path(self.landing_dir)

    def embedder(self, tasks=None, refit: bool = False) -> TaskEmbedder:
        return TaskEmbedder.load_or_fit(self.models_dir, tasks, refit=refit)

    def consolidation_params(self, window_days: int | None = None) -> ConsolidationParams:
        return ConsolidationParams(window_days=window_days or self.window_days, min_attempts=self.min_attempts,
                                   distance_threshold=self.distance_threshold)

    def learner_params(self) -> LearnerParams:
        return LearnerParams(window_minutes=self.session_window_minutes, min_batch_units=self.min_batch_units,
                             half_life_days=self.half_life_days)

    def experiment_params(self) -> ExperimentParams:
        return ExperimentParams(max_ci_width=self.experiment_ci_width, budget=self.experiment_budget,
                                min_per_arm=self.experiment_min_per_arm, max_days=self.experiment_max_days,
                                max_per_arm=self.experiment_max_per_arm, mde=self.experiment_mde,
                                window_minutes=self.session_window_minutes)
