-- Runs once, when the postgres service's volume is first initialised (docker-entrypoint-initdb.d),
-- as POSTGRES_USER, after POSTGRES_DB (`gateway`, the warehouse) was created.
--
-- Dagster keeps its runs, event logs and schedules in a database of its own, never in the
-- warehouse: docker-compose.yml points DAGSTER_PG_URL at this one.
CREATE DATABASE dagster;

-- pgvector is created in the warehouse by the migrations (sql/001_extensions.sql), not here, so the
-- same migrations work on any Postgres that has the extension available.
