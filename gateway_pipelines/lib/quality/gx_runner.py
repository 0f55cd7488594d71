"""Run a Great Expectations suite against a SQL query on the warehouse, in an ephemeral context.

dagster-ge is abandoned (GX < 1 only), so checks call GX 1.x directly. The context is ephemeral:
nothing is written to disk and every run starts from the same state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_pipelines.lib.warehouse import with_driver

logging.getLogger("great_expectations").setLevel(logging.WARNING)


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    details: dict[str, Any]


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def markdown(self) -> str:
        """The outcome as a table for Dagster metadata."""
        lines = ["| expectation | column | ok | details |", "|---|---|---|---|"]
        lines += [
            f"| {r['expectation']} | {r['column']} | {'✅' if r['success'] else '❌'} | {r['details']} |"
            for r in self.summary_rows()
        ]
        return "\n".join(lines)

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {"expectation": o.expectation, "column": o.column or "", "success": o.success, "details": _short(o.details)}
            for o in self.outcomes
        ]


def _short(details: dict[str, Any], limit: int = 300) -> str:
    text = ", ".join(f"{k}={v}" for k, v in details.items() if v not in (None, [], {}))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_query_suite(
    warehouse_url: str, suite_name: str, query: str, expectations: Sequence[Any]
) -> SuiteOutcome:
    """Validate `expectations` (gx.expectations.* instances) against the rows `query` returns."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    # analytics off in the context's own config: GX would otherwise phone home from every check
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            analytics_enabled=False, store_backend_defaults=InMemoryStoreBackendDefaults()
        ),
    )
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # GX without that knob: the progress bars (noise in Dagster logs) are cosmetic
        pass
    datasource = context.data_sources.add_sql(
        name="warehouse", connection_string=with_driver(warehouse_url, "psycopg")
    )
    asset = datasource.add_query_asset(name=suite_name, query=query)
    batch_definition = asset.add_batch_definition_whole_table("all")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch_definition, suite=suite)
    )
    result = validation.run()
    outcomes = [
        ExpectationOutcome(
            expectation=r.expectation_config.type,
            column=r.expectation_config.kwargs.get("column"),
            success=bool(r.success),
            details=dict(r.result or {}),
        )
        for r in result.results
    ]
    return SuiteOutcome(suite=suite_name, success=bool(result.success), outcomes=outcomes)
