import hashlib

import dagster as dg

from gateway_pipelines import automation
from gateway_pipelines.lib.migrations import apply_migrations
from gateway_pipelines.lib.warehouse import WarehouseResource, redact_url
from gateway_pipelines.settings import SQL_DIR


def migrations_version() -> str:
    """A digest of the migration files: a new or edited file is a new code version of the schema."""
    digest = hashlib.sha256()
    for path in sorted(SQL_DIR.glob("[0-9][0-9][0-9]_*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


LEDGER_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("version", "integer", "NNN of sql/NNN_name.sql; applied in order",
                       constraints=dg.TableColumnConstraints(nullable=False, unique=True, other=["primary key"])),
        dg.TableColumn("name", "text", "the file name"),
        dg.TableColumn("checksum", "text", "sha256 of the file as applied: an edited applied migration is refused"),
        dg.TableColumn("applied_at", "timestamp with time zone", "when it was applied"),
        dg.TableColumn("duration_ms", "double precision", "how long it took"),
    ]
)


@dg.asset(
    group_name="warehouse",
    metadata={"dagster/table_name": "meta.schema_migrations", "dagster/column_schema": LEDGER_SCHEMA},
    kinds={"postgres", "sql"},
    owners=["team:platform"],
    code_version=migrations_version(),
    automation_condition=automation.on_missing_or_new_code(),
    description="The warehouse schema: sql/NNN_*.sql applied in order, recorded in meta.schema_migrations.",
)
def warehouse_schema(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    urls = warehouse.urls()
    with warehouse.connection() as conn:
        report = apply_migrations(conn, SQL_DIR)
        ledger = conn.execute(
            "SELECT version, name, left(checksum, 12), applied_at FROM meta.schema_migrations ORDER BY version"
        ).fetchall()
    context.log.info(f"applied {report.applied or 'nothing'}; {len(report.already_applied)} already applied")
    table = "| version | name | checksum | applied at |\n|---|---|---|---|\n" + "\n".join(
        f"| {v:03d} | {n} | `{c}` | {a:%Y-%m-%d %H:%M:%S} |" for v, n, c, a in ledger
    )
    return dg.MaterializeResult(
        metadata={
            "migrations_applied": dg.MetadataValue.int(len(report.applied)),
            "migrations_total": dg.MetadataValue.int(report.total),
            "applied_now": dg.MetadataValue.text(", ".join(report.applied) or "none"),
            "pgvector_version": dg.MetadataValue.text(report.pgvector_version),
            "warehouse": dg.MetadataValue.text(redact_url(urls.warehouse)),
            "embedded_server": dg.MetadataValue.bool(urls.embedded),
            "ledger": dg.MetadataValue.md(table),
            "duration_s": dg.MetadataValue.float(round(report.duration_s, 3)),
        }
    )
