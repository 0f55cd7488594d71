"""gateway-pipelines: TMDB ingestion, hybrid embeddings and pgvector search on Dagster."""

__version__ = "0.1.0"
