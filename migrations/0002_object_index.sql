-- Cairn catalog, PostgreSQL, migration 2: the object index (DESIGN.md section 4, "Object index
-- in the catalog"): per project, the packs stored and where each object is in them, so that
-- "which of these are stored", their kinds and sizes, and where to read them are one query.
--
-- Pack and object ids are stored as their 32 bytes, not as hex text like the rest of the
-- schema: the index holds a row per stored object, by far the catalog's largest table, and
-- bytes halve its rows and its primary key. project_id stays text, the type of projects.id that
-- it references. Every table leads its primary key with project_id (DESIGN "Past one
-- PostgreSQL").

-- Whether a project's objects are still in the layout from before packs (one stored value per
-- object), until an admin command converts it. Existing projects are: the column's default
-- marks them. The default also covers projects created during a rolling deploy by nodes that
-- predate packs (they write the legacy layout); this release's nodes create projects with
-- FALSE explicitly.
ALTER TABLE projects ADD COLUMN legacy_layout BOOLEAN NOT NULL DEFAULT TRUE;

-- One row per pack stored for a project. A pack is named by the hash of its bytes, so indexing
-- the same pack twice finds its row.
CREATE TABLE packs (
    project_id   TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id           BYTEA NOT NULL CHECK (octet_length(id) = 32),
    length       BIGINT NOT NULL CHECK (length >= 0),
    object_count BIGINT NOT NULL CHECK (object_count BETWEEN 0 AND 4294967295),
    created      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, id)
);

-- One row per stored object: the pack holding its frame, the frame's place in it, and the
-- object's kind (the format's tag: 1 chunk, 2 file, 3 dir) and content size. A row is written
-- only once its pack is durable, and keeps its first location (compaction moves it). touched is
-- the last time a push indexed or referenced the object; garbage collection removes only rows
-- untouched since its cut-off, so a push racing it keeps its objects.
CREATE TABLE objects (
    project_id   TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id           BYTEA NOT NULL CHECK (octet_length(id) = 32),
    pack_id      BYTEA NOT NULL,
    frame_offset BIGINT NOT NULL CHECK (frame_offset >= 0),
    frame_length BIGINT NOT NULL CHECK (frame_length BETWEEN 0 AND 4294967295),
    size         BIGINT NOT NULL CHECK (size >= 0),
    touched      TIMESTAMPTZ NOT NULL,
    kind         SMALLINT NOT NULL CHECK (kind IN (1, 2, 3)),
    PRIMARY KEY (project_id, id),
    -- A pack row goes only when no object row names it.
    FOREIGN KEY (project_id, pack_id) REFERENCES packs (project_id, id)
);
-- The rows naming a pack: compaction reads them, forgetting a pack checks there are none.
CREATE INDEX objects_pack ON objects (project_id, pack_id);
