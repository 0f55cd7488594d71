"""dbt for Dagster, connected through a generated profile rather than variables in the process."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation

from gateway_pipelines.lib.warehouse import WarehouseResource


class DbtWarehouseResource(dg.ConfigurableResource):
    """The dbt CLI pointed at the run's warehouse.

    `dbt/profiles.yml` (variables GATEWAY_PG_*) is for people running dbt by hand. Runs use a
    private profile that `warehouse` writes for its own URL, so the connection a model builds on is
    always the one the other assets of the run use.
    """

    project_dir: str
    dbt_executable: str = "dbt"
    target: str = "gateway"
    warehouse: WarehouseResource

    def cli_resource(self) -> DbtCliResource:
        return DbtCliResource(
            project_dir=self.project_dir,
            profiles_dir=self.warehouse.dbt_profiles_dir(),
            dbt_executable=self.dbt_executable,
            target=self.target,
        )

    def cli(self, args: Sequence[str], *, context: dg.AssetExecutionContext | None = None,
            raise_on_error: bool = True) -> DbtCliInvocation:
        return self.cli_resource().cli(args, context=context, raise_on_error=raise_on_error)
