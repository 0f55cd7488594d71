"""Legacy migrations into pgvector: readers for ChromaDB directories, RuVector JSON/JSONL exports and
AgentDB SQLite files; staging with a source-side manifest; parity checks with Great Expectations;
one-transaction promotion into vectors.* and memory.*. See docs/migration.md."""
