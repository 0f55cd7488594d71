-- Schemas of the warehouse. pgvector itself is created by the migrator before this file runs,
-- so that a server without it fails with install instructions rather than a bare SQL error.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE SCHEMA IF NOT EXISTS raw;        -- source data as received, plus quarantine
CREATE SCHEMA IF NOT EXISTS analytics;  -- dbt models
CREATE SCHEMA IF NOT EXISTS vectors;    -- content and user vectors, search logs, legacy vector store
CREATE SCHEMA IF NOT EXISTS memory;     -- AgentDB-compatible agent memory
CREATE SCHEMA IF NOT EXISTS learning;   -- impressions, outcomes, causal weights
CREATE SCHEMA IF NOT EXISTS meta;       -- ledgers: migrations, index builds
