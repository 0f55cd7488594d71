"""Promote a staged import into its targets, in one transaction, after its parity checks passed.

Inside the transaction:

1. lock the id map and the targets against other writers (readers are not blocked);
2. per collection/table, in dependency order: give every new AgentDB source id a target id (from
   the target's own identity sequence, recorded in `meta.legacy_id_map`), then upsert the rows whose
   fingerprint is new or changed, mapping the links between tables through the id map;
3. verify the targets against the manifest: every source record present, its vector bit-identical;
4. update the id map (fingerprints) and the ledger, and drop the import's staging rows.

Any error, including a failed verification, rolls all of it back: the targets stay exactly as they
were. Unchanged records are not written at all, so re-promoting the same source writes 0 rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from gateway_pipelines.lib.migration.staging import drop_staging

P = "r.metadata"  # the converted AgentDB row, as jsonb


def _ts(key: str) -> str:
    return f"({P}->>'{key}')::timestamptz"


def _list(key: str) -> str:
    return (f"CASE WHEN jsonb_typeof({P}->'{key}') = 'array' "
            f"THEN ARRAY(SELECT jsonb_array_elements_text({P}->'{key}')) ELSE '{{}}'::text[] END")


def _ref(table: str, key: str) -> str:
    """The target id of the row `key` points at in `table` of the same source (NULL when absent)."""
    return (f"(SELECT x.target_id::bigint FROM meta.legacy_id_map x WHERE x.source_key = %(key)s "
            f"AND x.collection = '{table}' AND x.source_id = {P}->>'{key}')")


def _endpoint(key: str, type_key: str) -> str:
    """A causal edge endpoint: an episode or skill of the same source is mapped to its target id;
    anything else (notes, facts, abstract 0 ids) keeps the source id."""
    return (f"coalesce((SELECT x.target_id FROM meta.legacy_id_map x WHERE x.source_key = %(key)s "
            f"AND x.collection = CASE {P}->>'{type_key}' WHEN 'episode' THEN 'episodes' WHEN 'skill' THEN 'skills' END "
            f"AND x.source_id = {P}->>'{key}'), {P}->>'{key}')")


# Fixed SQL fragments only: column -> expression over the staged row `r` and its id map row `mp`.
MEMORY_COLUMNS: dict[str, dict[str, str]] = {
    "memory.episodes": {
        "id": "mp.target_id::bigint", "session_id": f"{P}->>'session_id'", "task": f"{P}->>'task'",
        "input": f"{P}->>'input'", "output": f"{P}->>'output'", "critique": f"{P}->>'critique'",
        "reward": f"coalesce(({P}->>'reward')::float8, 0)", "success": f"coalesce(({P}->>'success')::boolean, false)",
        "latency_ms": f"({P}->>'latency_ms')::float8", "tokens_used": f"({P}->>'tokens_used')::integer",
        "tags": _list("tags"), "metadata": f"coalesce({P}->'metadata', '{{}}')", "ts": f"coalesce({_ts('ts')}, now())",
        "created_at": _ts("created_at"), "embedding": "r.vec::vector(384)", "embedding_model": f"{P}->>'embedding_model'",
    },
    "memory.skills": {
        "id": "mp.target_id::bigint", "name": f"{P}->>'name'", "description": f"{P}->>'description'",
        "signature": f"coalesce({P}->'signature', '{{}}')", "code": f"{P}->>'code'",
        "success_rate": f"coalesce(({P}->>'success_rate')::float8, 0)", "uses": f"coalesce(({P}->>'uses')::integer, 0)",
        "avg_reward": f"coalesce(({P}->>'avg_reward')::float8, 0)",
        "avg_latency_ms": f"coalesce(({P}->>'avg_latency_ms')::float8, 0)",
        "created_from_episodes": f"CASE WHEN {P}->>'created_from_episode' IS NULL THEN '{{}}'::bigint[] "
                                 f"ELSE ARRAY[coalesce({_ref('episodes', 'created_from_episode')}, "
                                 f"({P}->>'created_from_episode')::bigint)] END",
        "metadata": f"coalesce({P}->'metadata', '{{}}')", "created_at": f"coalesce({_ts('created_at')}, now())",
        "updated_at": f"coalesce({_ts('updated_at')}, now())", "last_used_at": _ts("last_used_at"),
        "embedding": "r.vec::vector(384)", "embedding_model": f"{P}->>'embedding_model'",
    },
    "memory.skill_links": {
        "parent_skill_id": _ref("skills", "parent_skill_id"), "child_skill_id": _ref("skills", "child_skill_id"),
        "relationship": f"{P}->>'relationship'", "weight": f"coalesce(({P}->>'weight')::float8, 1)",
        "metadata": f"coalesce({P}->'metadata', '{{}}')",
    },
    "memory.reasoning_patterns": {
        "id": "mp.target_id::bigint", "task_type": f"{P}->>'task_type'", "approach": f"{P}->>'approach'",
        "success_rate": f"coalesce(({P}->>'success_rate')::float8, 0)", "uses": f"coalesce(({P}->>'uses')::integer, 0)",
        "avg_reward": f"coalesce(({P}->>'avg_reward')::float8, 0)", "tags": _list("tags"),
        "metadata": f"coalesce({P}->'metadata', '{{}}')", "created_at": f"coalesce({_ts('ts')}, now())",
        "updated_at": f"coalesce({_ts('ts')}, now())", "embedding": "r.vec::vector(384)",
    },
    "memory.causal_experiments": {
        "id": "mp.target_id::bigint", "name": f"{P}->>'name'", "hypothesis": f"{P}->>'hypothesis'",
        "treatment_id": _endpoint("treatment_id", "treatment_type"), "treatment_type": f"{P}->>'treatment_type'",
        "control_id": f"{P}->>'control_id'", "start_time": f"coalesce({_ts('start_time')}, now())",
        "end_time": _ts("end_time"), "sample_size": f"coalesce(({P}->>'sample_size')::integer, 0)",
        "treatment_mean": f"({P}->>'treatment_mean')::float8", "control_mean": f"({P}->>'control_mean')::float8",
        "uplift": f"({P}->>'uplift')::float8", "p_value": f"({P}->>'p_value')::float8",
        "confidence_interval_low": f"({P}->>'confidence_interval_low')::float8",
        "confidence_interval_high": f"({P}->>'confidence_interval_high')::float8",
        "status": f"coalesce({P}->>'status', 'running')", "metadata": f"coalesce({P}->'metadata', '{{}}')",
        "created_at": _ts("created_at"),
    },
    "memory.causal_observations": {
        "id": "mp.target_id::bigint", "experiment_id": _ref("causal_experiments", "experiment_id"),
        "episode_id": f"coalesce({_ref('episodes', 'episode_id')}, ({P}->>'episode_id')::bigint)",
        "is_treatment": f"({P}->>'is_treatment')::boolean", "outcome_value": f"({P}->>'outcome_value')::float8",
        "outcome_type": f"coalesce({P}->>'outcome_type', 'reward')", "context": f"coalesce({P}->'context', '{{}}')",
        "observed_at": f"coalesce({_ts('observed_at')}, now())",
    },
    "memory.causal_edges": {
        "id": "mp.target_id::bigint",
        "from_memory_id": _endpoint("from_memory_id", "from_memory_type"), "from_memory_type": f"{P}->>'from_memory_type'",
        "to_memory_id": _endpoint("to_memory_id", "to_memory_type"), "to_memory_type": f"{P}->>'to_memory_type'",
        "similarity": f"coalesce(({P}->>'similarity')::float8, 0)", "uplift": f"({P}->>'uplift')::float8",
        "confidence": f"coalesce(({P}->>'confidence')::float8, 0.5)", "sample_size": f"({P}->>'sample_size')::integer",
        "evidence_ids": _list("evidence_ids"), "experiment_ids": f"CASE WHEN {P}->'experiment_ids' IS NULL OR "
        f"{P}->'experiment_ids' = 'null' THEN NULL ELSE {_list('experiment_ids')} END",
        "confounder_score": f"({P}->>'confounder_score')::float8", "mechanism": f"{P}->>'mechanism'",
        "metadata": f"coalesce({P}->'metadata', '{{}}')", "created_at": f"coalesce({_ts('created_at')}, now())",
        "updated_at": f"coalesce({_ts('updated_at')}, now())", "last_validated_at": _ts("last_validated_at"),
    },
}
CONFLICT_KEYS = {"memory.skill_links": ("parent_skill_id", "child_skill_id", "relationship")}

VECTOR_STORE = {
    "collection": "r.collection", "document_id": "r.source_id",
    "user_id": "CASE WHEN jsonb_typeof(r.metadata->'user_id') = 'string' THEN r.metadata->>'user_id' END",
    "content": "r.document", "metadata": "coalesce(r.metadata, '{}')",
    "embedding": "CASE WHEN vector_dims(r.vec) = 384 THEN r.vec::vector(384) END",
    "embedding_768": "CASE WHEN vector_dims(r.vec) = 768 THEN r.vec::vector(768) END",
    "embedding_1536": "CASE WHEN vector_dims(r.vec) = 1536 THEN r.vec::vector(1536) END",
}
# the table's row for a staged record, and that row's vector whatever its column
TARGET_VECTOR = {
    "vectors.vector_store": "coalesce(t.embedding::vector, t.embedding_768::vector, t.embedding_1536::vector)",
}


BULK_FRACTION = 0.2  # more new rows than this share of the table: drop its HNSW indexes, rebuild after


def _hnsw_indexes(conn, target: str) -> list[tuple[str, str]]:
    schema, table = target.split(".")
    return conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am "
        "ON am.oid = c.relam WHERE n.nspname = %s AND t.relname = %s AND am.amname = 'hnsw' ORDER BY 1",
        (schema, table),
    ).fetchall()


def _bulk_targets(conn, collections, import_id: int) -> dict[str, list[tuple[str, str]]]:
    """Targets that receive many rows relative to their size: building their HNSW indexes once after
    the load is far cheaper than maintaining them row by row. Readers wait for the commit meanwhile
    (DROP INDEX takes an ACCESS EXCLUSIVE lock) and then see the new rows with a complete index."""
    incoming = dict(conn.execute(
        "SELECT c.target, count(*) FROM migration_staging.manifest m JOIN migration_staging.collections c "
        "USING (import_id, collection) WHERE m.import_id = %s AND m.action <> 'unchanged' GROUP BY c.target",
        (import_id,),
    ).fetchall())
    out = {}
    for target in sorted({t for _, t in collections}):
        n = int(incoming.get(target, 0))
        if n < 1000:
            continue
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*target.split(".")))).fetchone()[0]
        if n > BULK_FRACTION * (rows + n):
            indexes = _hnsw_indexes(conn, target)
            if indexes:
                out[target] = indexes
    return out


class PromotionError(RuntimeError):
    """The promotion was rolled back: the targets are as they were."""


@dataclass
class PromotionReport:
    import_id: int
    written: dict[str, dict[str, int]] = field(default_factory=dict)  # collection -> inserted/updated/unchanged
    verified: int = 0
    seconds: float = 0.0
    hnsw: dict[str, Any] = field(default_factory=dict)  # reported HNSW overlap on the targets
    rebuilt_indexes: list[str] = field(default_factory=list)  # HNSW indexes dropped for a bulk load and rebuilt

    @property
    def rows_written(self) -> int:
        return sum(v["inserted"] + v["updated"] for v in self.written.values())

    def markdown(self) -> str:
        lines = ["| collection / table | target | inserted | updated | unchanged |", "|---|---|---|---|---|"]
        for name, v in self.written.items():
            lines.append(f"| {name} | {v['target']} | {v['inserted']} | {v['updated']} | {v['unchanged']} |")
        return "\n".join(lines)


def _changed(alias: str = "m") -> str:
    # not yet written by this source with this fingerprint (recomputed here, under the lock)
    return (f"NOT EXISTS (SELECT 1 FROM meta.legacy_id_map x WHERE x.source_key = %(key)s AND x.collection = "
            f"{alias}.collection AND x.source_id = {alias}.source_id AND x.fingerprint = {alias}.fingerprint)")


def _upsert_vector_store(conn, params) -> tuple[int, int]:
    cols = list(VECTOR_STORE)
    stmt = sql.SQL(
        "WITH w AS (INSERT INTO vectors.vector_store AS t ({cols}) SELECT {exprs} "
        "FROM migration_staging.records r JOIN migration_staging.manifest m USING (import_id, collection, source_id) "
        "WHERE r.import_id = %(id)s AND r.collection = %(c)s AND " + _changed() + " "
        "ON CONFLICT (collection, document_id) DO UPDATE SET {sets}, updated_at = now() "
        "RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM w"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        exprs=sql.SQL(", ").join(sql.SQL(VECTOR_STORE[c]) for c in cols),
        sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in cols[2:]),
    )
    ins, upd = conn.execute(stmt, params).fetchone()
    conn.execute(
        "INSERT INTO meta.legacy_id_map (source_key, collection, source_id, target_table, target_id, fingerprint, "
        "import_id) SELECT %(key)s, m.collection, m.source_id, 'vectors.vector_store', t.id::text, m.fingerprint, %(id)s "
        "FROM migration_staging.manifest m JOIN vectors.vector_store t ON t.collection = m.collection "
        "AND t.document_id = m.source_id WHERE m.import_id = %(id)s AND m.collection = %(c)s AND " + _changed() + " "
        "ON CONFLICT (source_key, collection, source_id) DO UPDATE SET target_id = excluded.target_id, "
        "fingerprint = excluded.fingerprint, import_id = excluded.import_id, updated_at = now()",
        params,
    )
    return int(ins), int(upd)


def _allocate_ids(conn, target: str, params) -> None:
    """A target id for each source id this source has not mapped yet. Skills are unique by name, so a
    skill that already exists under that name keeps its id (the import updates it)."""
    existing = ("(SELECT s.id FROM memory.skills s WHERE s.name = r.metadata->>'name')"
                if target == "memory.skills" else "NULL")
    conn.execute(
        sql.SQL(
            "INSERT INTO meta.legacy_id_map (source_key, collection, source_id, target_table, target_id, fingerprint, "
            "import_id) SELECT %(key)s, r.collection, r.source_id, %(target)s, "
            "coalesce({existing}, nextval(pg_get_serial_sequence(%(target)s, 'id')))::text, '', %(id)s "
            "FROM migration_staging.records r WHERE r.import_id = %(id)s AND r.collection = %(c)s "
            "AND NOT EXISTS (SELECT 1 FROM meta.legacy_id_map x WHERE x.source_key = %(key)s "
            "AND x.collection = r.collection AND x.source_id = r.source_id) ORDER BY r.source_id"
        ).format(existing=sql.SQL(existing)),
        {**params, "target": target},
    )


def _upsert_memory(conn, target: str, params) -> tuple[int, int]:
    spec = MEMORY_COLUMNS[target]
    cols = list(spec)
    key = CONFLICT_KEYS.get(target, ("id",))
    has_id = "id" in spec
    if has_id:
        _allocate_ids(conn, target, params)
    join_map = ("JOIN meta.legacy_id_map mp ON mp.source_key = %(key)s AND mp.collection = r.collection "
                "AND mp.source_id = r.source_id ") if has_id else ""
    sets = [c for c in cols if c not in key]
    stmt = sql.SQL(
        "WITH w AS (INSERT INTO {target} AS t ({cols}) SELECT {exprs} "
        "FROM migration_staging.records r JOIN migration_staging.manifest m USING (import_id, collection, source_id) "
        + join_map + "WHERE r.import_id = %(id)s AND r.collection = %(c)s AND " + _changed() + " "
        "ON CONFLICT ({key}) DO UPDATE SET {sets} RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM w"
    ).format(
        target=sql.Identifier(*target.split(".")),
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        exprs=sql.SQL(", ").join(sql.SQL(spec[c]) for c in cols),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in sets),
    )
    ins, upd = conn.execute(stmt, params).fetchone()
    if not has_id:  # links: the map records that the row was written, keyed by the source's link id
        conn.execute(
            "INSERT INTO meta.legacy_id_map (source_key, collection, source_id, target_table, target_id, fingerprint, "
            "import_id) SELECT %(key)s, m.collection, m.source_id, %(target)s, m.source_id, m.fingerprint, %(id)s "
            "FROM migration_staging.manifest m WHERE m.import_id = %(id)s AND m.collection = %(c)s AND "
            + _changed() + " ON CONFLICT (source_key, collection, source_id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, import_id = excluded.import_id, updated_at = now()",
            {**params, "target": target},
        )
    else:
        conn.execute(
            "UPDATE meta.legacy_id_map x SET fingerprint = m.fingerprint, import_id = %(id)s, updated_at = now() "
            "FROM migration_staging.manifest m WHERE m.import_id = %(id)s AND m.collection = %(c)s "
            "AND x.source_key = %(key)s AND x.collection = m.collection AND x.source_id = m.source_id "
            "AND x.fingerprint <> m.fingerprint",
            params,
        )
    return int(ins), int(upd)


def _dangling(conn, target: str, params) -> list[str]:
    """Links whose ends are not in the same source: they would break a foreign key."""
    checks = {
        "memory.skill_links": [("parent_skill_id", "skills"), ("child_skill_id", "skills")],
        "memory.causal_observations": [("experiment_id", "causal_experiments")],
    }.get(target, [])
    out = []
    for key, table in checks:
        rows = conn.execute(
            sql.SQL(
                "SELECT r.source_id, r.metadata->>{k} FROM migration_staging.records r WHERE r.import_id = %(id)s "
                "AND r.collection = %(c)s AND NOT EXISTS (SELECT 1 FROM meta.legacy_id_map x WHERE x.source_key = "
                "%(key)s AND x.collection = {t} AND x.source_id = r.metadata->>{k}) ORDER BY 1 LIMIT 20"
            ).format(k=sql.Literal(key), t=sql.Literal(table)),
            params,
        ).fetchall()
        out += [f"{params['c']} id {sid}: {key} {ref} is not in {table}" for sid, ref in rows]
    return out


def _verify(conn, target: str, params) -> list[str]:
    """Every manifest row present in the target with a bit-identical vector; returns what differs."""
    if target == "vectors.vector_store":
        join = "LEFT JOIN vectors.vector_store t ON t.collection = m.collection AND t.document_id = m.source_id"
        vec = TARGET_VECTOR[target]
        present = "t.id IS NOT NULL"
    elif "id" in MEMORY_COLUMNS[target]:
        join = (f"LEFT JOIN meta.legacy_id_map x ON x.source_key = %(key)s AND x.collection = m.collection "
                f"AND x.source_id = m.source_id LEFT JOIN {target} t ON t.id = x.target_id::bigint")
        vec = "t.embedding" if "embedding" in MEMORY_COLUMNS[target] else "NULL::vector"
        present = "t.id IS NOT NULL"
    else:
        return []  # links are verified by their count below
    rows = conn.execute(
        "SELECT m.source_id, " + present + ", m.vec_md5 IS NOT DISTINCT FROM md5(substring(vector_send("
        + vec + ") from 5)) FROM migration_staging.manifest m " + join
        + " WHERE m.import_id = %(id)s AND m.collection = %(c)s AND NOT (" + present + " AND m.vec_md5 IS NOT DISTINCT "
        "FROM md5(substring(vector_send(" + vec + ") from 5))) ORDER BY 1 LIMIT 20",
        params,
    ).fetchall()
    return [f"{params['c']}/{sid}: " + ("missing from " + target if not ok else "vector differs in " + target)
            for sid, ok, _ in rows]


def promote(conn: psycopg.Connection, import_id: int, source_key: str) -> PromotionReport:
    """Upsert the staged import into its targets (see the module docstring); one transaction."""
    started = time.perf_counter()
    report = PromotionReport(import_id)
    collections = conn.execute(
        "SELECT collection, target FROM migration_staging.collections WHERE import_id = %s", (import_id,)
    ).fetchall()
    from gateway_pipelines.lib.migration.agentdb import ORDER

    rank = {name: i for i, name in enumerate(ORDER)}
    collections.sort(key=lambda c: (rank.get(c[0], -1), c[0]))
    targets = sorted({t for _, t in collections})
    with conn.transaction():
        conn.execute("LOCK TABLE meta.legacy_id_map IN SHARE ROW EXCLUSIVE MODE")
        for t in targets:
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(*t.split("."))))
        bulk = _bulk_targets(conn, collections, import_id)
        for target, indexes in bulk.items():
            for name, _ in indexes:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(target.split(".")[0], name)))
        problems: list[str] = []
        for collection, target in collections:
            params = {"id": import_id, "key": source_key, "c": collection}
            unchanged = conn.execute(
                "SELECT count(*) FROM migration_staging.manifest m WHERE m.import_id = %(id)s AND m.collection = %(c)s "
                "AND NOT " + _changed(), params,
            ).fetchone()[0]
            if target == "vectors.vector_store":
                ins, upd = _upsert_vector_store(conn, params)
            else:
                dangling = _dangling(conn, target, params)
                if dangling:
                    raise PromotionError(
                        f"{len(dangling)} rows of {collection} point at rows that are not in the source: "
                        + "; ".join(dangling[:10]) + ". Nothing was written.")
                try:
                    with conn.transaction():
                        ins, upd = _upsert_memory(conn, target, params)
                except psycopg.errors.IntegrityError as exc:
                    raise PromotionError(
                        f"{collection} -> {target}: {exc.diag.message_primary} ({exc.diag.message_detail or ''}). "
                        "Nothing was written.") from None
            report.written[collection] = {"target": target, "inserted": ins, "updated": upd, "unchanged": int(unchanged)}
            if ins + upd > 1000:  # fresh statistics, or the planner verifies 100k rows by nested loops
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(*target.split("."))))
                conn.execute("ANALYZE meta.legacy_id_map")
            problems += _verify(conn, target, params)
        if problems:
            raise PromotionError(
                f"verification after the upsert failed for {len(problems)} records, so nothing was written: "
                + "; ".join(problems[:20]))
        if bulk:
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for target, indexes in bulk.items():
                for _, definition in indexes:
                    conn.execute(sql.SQL(definition))  # the catalog's own definition of the index just dropped
                report.rebuilt_indexes += [name for name, _ in indexes]
        report.verified = int(conn.execute(
            "SELECT count(*) FROM migration_staging.manifest WHERE import_id = %s", (import_id,)).fetchone()[0])
        report.seconds = time.perf_counter() - started
        conn.execute(
            "UPDATE meta.legacy_imports SET status = 'promoted', rows_written = %s, finished_at = now(), "
            "counts = counts || %s WHERE import_id = %s",
            (report.rows_written, Jsonb({"written": _jsonable(report.written)}), import_id),
        )
        from gateway_pipelines.lib.migration.hnsw import hnsw_overlap

        report.hnsw = hnsw_overlap(conn, import_id)
        drop_staging(conn, [import_id])
    return report


def _jsonable(written: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) for k, v in written.items()}
