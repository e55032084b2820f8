-- Cairn catalog, embedded SQLite, migration 2: the object index, as ../0002_object_index.sql
-- (read its comments), in SQLite's dialect: times are integer milliseconds since the Unix
-- epoch, flags 0 or 1. Both tables are WITHOUT ROWID: their rows live in the primary key's
-- b-tree, so a lookup by id is one search and the key is not stored twice.

ALTER TABLE projects
    ADD COLUMN legacy_layout INTEGER NOT NULL DEFAULT 1 CHECK (legacy_layout IN (0, 1));

CREATE TABLE packs (
    project_id   TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id           BLOB NOT NULL CHECK (length(id) = 32),
    length       INTEGER NOT NULL CHECK (length >= 0),
    object_count INTEGER NOT NULL CHECK (object_count BETWEEN 0 AND 4294967295),
    created      INTEGER NOT NULL,
    PRIMARY KEY (project_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE objects (
    project_id   TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id           BLOB NOT NULL CHECK (length(id) = 32),
    pack_id      BLOB NOT NULL,
    frame_offset INTEGER NOT NULL CHECK (frame_offset >= 0),
    frame_length INTEGER NOT NULL CHECK (frame_length BETWEEN 0 AND 4294967295),
    size         INTEGER NOT NULL CHECK (size >= 0),
    touched      INTEGER NOT NULL,
    kind         INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
    PRIMARY KEY (project_id, id),
    FOREIGN KEY (project_id, pack_id) REFERENCES packs (project_id, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX objects_pack ON objects (project_id, pack_id);
