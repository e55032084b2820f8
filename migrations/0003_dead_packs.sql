-- Cairn catalog, PostgreSQL, migration 3: packs waiting to be deleted (garbage collection).
--
-- A pack is deleted from the object store only after no index row names it and a grace period
-- has passed, so a reader that located an object in it just before compaction moved the object
-- still finds it. A row here records since when a pack has been dead: forgotten by the index
-- (compaction moved its last live object, or collection dropped them), or found in the store
-- without ever having been indexed (a node died between writing a pack and indexing it). Pack
-- names are salted, so a dead pack's name is never written again; the row goes when the pack
-- has been deleted.
CREATE TABLE dead_packs (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id         BYTEA NOT NULL CHECK (octet_length(id) = 32),
    since      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, id)
);
