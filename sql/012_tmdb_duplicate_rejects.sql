-- A title that appears twice in one file: the later row is loaded, the earlier one is kept here with
-- kind 'duplicate' and the line that superseded it, so a file's every line is accounted for.
ALTER TABLE raw.tmdb_rejects DROP CONSTRAINT tmdb_rejects_kind_check;
ALTER TABLE raw.tmdb_rejects
    ADD CONSTRAINT tmdb_rejects_kind_check CHECK (kind IN ('invalid', 'missing', 'duplicate'));
