"""CLI commands of the newer domains, one module each, registered by `gateway_pipelines.cli`.

Each module has `register(sub)` that adds its subparsers. Shared helpers (`_run_sequence`, which runs
job steps through Dagster and prints the summary, and `_resources`, which sets up resources exactly as
the code location wires them) live in `gateway_pipelines.cli`; import them inside the command function.
"""
