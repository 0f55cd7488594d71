"""The work itself, as plain functions and classes. Not autoloaded by Dagster."""
