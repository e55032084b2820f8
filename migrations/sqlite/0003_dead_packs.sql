-- Cairn catalog, embedded SQLite, migration 3: packs waiting to be deleted, as
-- ../0003_dead_packs.sql (read its comments), in SQLite's dialect: times are integer
-- milliseconds since the Unix epoch.
CREATE TABLE dead_packs (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id         BLOB NOT NULL CHECK (length(id) = 32),
    since      INTEGER NOT NULL,
    PRIMARY KEY (project_id, id)
) STRICT, WITHOUT ROWID;
