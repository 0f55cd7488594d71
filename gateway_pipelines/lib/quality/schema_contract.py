"""The declared warehouse schema (`sql/schema_contract.yml`) and the GX suite that proves it.

The catalog is flattened into one column of signatures such as
`column:vectors.content_vectors.vector:vector(768)` or
`index:vectors.content_vectors.content_vectors_vector_hnsw:hnsw:vector_cosine_ops`, so one
expectation ("the distinct signatures contain the declared set") catches a missing table, a
dropped column, a changed type or vector dimension, and a missing or invalid index, and reports
exactly which ones.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml

from gateway_pipelines.lib.quality.gx_runner import SuiteOutcome, run_query_suite
from gateway_pipelines.lib.quality.reuse import suite_version
from gateway_pipelines.settings import SQL_DIR

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
SUITE_VERSION = suite_version(Path(__file__))

# The migrations as applied (a migration applied since, here or by `gateway db migrate`, changes it).
MIGRATIONS_FINGERPRINT_SQL = """
SELECT encode(sha256(convert_to(coalesce(string_agg(
           version || ':' || checksum || ':' || extract(epoch FROM applied_at)::text, ',' ORDER BY version), ''),
       'UTF8')), 'hex')
FROM meta.schema_migrations
"""


@dataclass(frozen=True)
class SchemaContract:
    signatures: frozenset[str]
    schemas: tuple[str, ...]
    tables: tuple[str, ...]
    digest: str = ""  # sha256 of the contract file as loaded

    @classmethod
    def load(cls, path: Path | None = None) -> SchemaContract:
        path = path or SQL_DIR / "schema_contract.yml"
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        signatures: set[str] = set()
        tables = []
        for table, body in spec["tables"].items():
            schema, name = table.split(".", 1)
            for ident in (schema, name):
                if not _IDENT.match(ident):
                    raise ValueError(f"{path.name}: {table!r} is not a plain lowercase schema.table name")
            tables.append(table)
            signatures.add(f"table:{table}")
            for column, type_ in (body.get("columns") or {}).items():
                signatures.add(f"column:{table}.{column}:{type_}")
            for index, kind in (body.get("indexes") or {}).items():
                signatures.add(f"index:{table}.{index}:{kind}")
        schemas = tuple(sorted({t.split(".", 1)[0] for t in tables}))
        return cls(frozenset(signatures), schemas, tuple(tables), hashlib.sha256(path.read_bytes()).hexdigest()[:16])

    def catalog_query(self) -> str:
        # The schema names come from our own contract file and were checked against _IDENT above;
        # GX query assets take no bind parameters.
        in_list = ", ".join(f"'{s}'" for s in self.schemas)
        return f"""
SELECT 'table:' || n.nspname || '.' || c.relname AS signature
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ({in_list}) AND c.relkind IN ('r', 'p')
UNION ALL
SELECT 'column:' || n.nspname || '.' || c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ({in_list}) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index:' || n.nspname || '.' || t.relname || '.' || i.relname || ':' || am.amname || ':' ||
       (SELECT string_agg(opc.opcname, ',' ORDER BY k.ord)
        FROM unnest(ix.indclass::oid[]) WITH ORDINALITY AS k(oid, ord)
        JOIN pg_opclass opc ON opc.oid = k.oid)
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname IN ({in_list}) AND ix.indisvalid AND NOT ix.indisprimary AND NOT ix.indisunique
"""


    def catalog_fingerprint_sql(self) -> str:
        """The rows of the catalog query the GX suite's verdict depends on, as (count, sha256): the
        declared signatures that are present, and any NULL signature. The suite asks whether the
        declared signatures are among the catalog's and whether any is NULL, so equal fingerprints
        mean equal verdicts. Everything else may come and go without a new measurement: other tables
        of the same schemas (shadow builds, staging tables) and indexes the contract leaves to
        configuration (the HNSW index of the configured kind, partial indexes of hot genres), which a
        first pass builds after the check has run."""
        return (
            "SELECT count(*), encode(sha256(convert_to(coalesce(string_agg(coalesce(signature, '<null>'), "
            "E'\\n' ORDER BY signature), ''), 'UTF8')), 'hex') "
            f"FROM ({self.catalog_query()}) AS catalog WHERE signature IS NULL OR signature = ANY(%(declared)s)"
        )


def contract_watermark(conn: psycopg.Connection, contract: SchemaContract) -> dict[str, Any] | None:
    """What the contract check's verdict depends on: the catalog of the contract's tables, the applied
    migrations, the contract and the suite. Computed in SQL: a few milliseconds, against seconds for GX.
    None on a database that was never migrated (nothing to compare: GX measures)."""
    if conn.execute("SELECT to_regclass('meta.schema_migrations') IS NULL").fetchone()[0]:
        return None
    signatures, catalog = conn.execute(contract.catalog_fingerprint_sql(),
                                       {"declared": sorted(contract.signatures)}).fetchone()
    migrations = conn.execute(MIGRATIONS_FINGERPRINT_SQL).fetchone()[0]
    return {"catalog": {"signatures": int(signatures), "sha256": catalog}, "migrations": migrations,
            "contract": contract.digest, "suite": SUITE_VERSION}


def validate_schema(warehouse_url: str, contract: SchemaContract | None = None) -> tuple[SuiteOutcome, list[str]]:
    """Run the suite; return its outcome and the declared signatures the database lacks."""
    import great_expectations.expectations as gxe

    contract = contract or SchemaContract.load()
    outcome = run_query_suite(
        warehouse_url,
        "warehouse_schema_contract",
        contract.catalog_query(),
        [
            gxe.ExpectColumnDistinctValuesToContainSet(column="signature", value_set=sorted(contract.signatures)),
            gxe.ExpectColumnValuesToNotBeNull(column="signature"),
        ],
    )
    missing: list[str] = []
    for o in outcome.outcomes:
        if o.expectation == "expect_column_distinct_values_to_contain_set" and not o.success:
            missing = sorted(o.details.get("partial_missing_list") or [])
    return outcome, missing
