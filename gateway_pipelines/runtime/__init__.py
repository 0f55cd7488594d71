"""Runtime plumbing: the CLI's Dagster instance, the local service topology, and the main run."""
