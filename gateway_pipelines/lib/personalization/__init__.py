"""Personalization: watch events, a simulator, preference vectors, recommendations and their evaluation.

Pure work on numpy/pandas (events, simulator, preference, recommender, evaluation, movielens) plus the
warehouse side (store, catalogue); the Dagster layer is `gateway_pipelines/defs/personalization/`.
"""
