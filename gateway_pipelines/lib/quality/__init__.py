"""Data-quality suites run with Great Expectations 1.x inside Dagster asset checks."""
