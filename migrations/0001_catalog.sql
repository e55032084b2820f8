-- Cairn catalog, PostgreSQL, migration 1: accounts, tokens, teams, projects, history, push
-- receipts, cluster nodes. See DESIGN.md section 4 and sync-server/src/catalog/mod.rs.
--
-- Ids are 32 lowercase hex digits (128 random bits) chosen by the server; object ids are 64.
-- Every name has a `*_key` twin, lowercased by the server, that uniqueness is checked on, so
-- "Alice" and "alice" are one name in PostgreSQL and SQLite alike.

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    name_key      TEXT NOT NULL CONSTRAINT accounts_name_unique UNIQUE,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL CONSTRAINT accounts_email_unique UNIQUE,
    -- An argon2id PHC string.
    password_hash TEXT NOT NULL,
    created       TIMESTAMPTZ NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    -- BLAKE3 (derive-key) of the secret; the secret itself is never stored.
    secret_hash BYTEA NOT NULL CONSTRAINT tokens_secret_hash_unique UNIQUE,
    created     TIMESTAMPTZ NOT NULL,
    last_used   TIMESTAMPTZ,
    revoked     TIMESTAMPTZ
);
CREATE INDEX tokens_account ON tokens (account_id);

CREATE TABLE teams (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    name_key TEXT NOT NULL CONSTRAINT teams_name_unique UNIQUE,
    created  TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    team_id    TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    PRIMARY KEY (team_id, account_id)
);
CREATE INDEX memberships_account ON memberships (account_id);

CREATE TABLE projects (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL REFERENCES teams (id),
    name         TEXT NOT NULL,
    name_key     TEXT NOT NULL,
    -- The head: moved only by a commit's compare-and-swap on head_version.
    head_version BIGINT NOT NULL CHECK (head_version >= 0),
    head_root    TEXT NOT NULL,
    created      TIMESTAMPTZ NOT NULL,
    CONSTRAINT projects_team_name_unique UNIQUE (team_id, name_key)
);

CREATE TABLE versions (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    number     BIGINT NOT NULL CHECK (number >= 0),
    root       TEXT NOT NULL,
    parent     BIGINT,
    author_id  TEXT NOT NULL REFERENCES accounts (id),
    time       TIMESTAMPTZ NOT NULL,
    message    TEXT NOT NULL,
    push_id    TEXT,
    PRIMARY KEY (project_id, number)
);

-- One row per push id ever seen for a project: the idempotency record. committed_version is
-- NULL when the push conflicted.
CREATE TABLE push_receipts (
    project_id        TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    push_id           TEXT NOT NULL,
    base_version      BIGINT NOT NULL,
    root              TEXT NOT NULL,
    committed_version BIGINT,
    created           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, push_id)
);

CREATE TABLE nodes (
    id        TEXT PRIMARY KEY,
    address   TEXT NOT NULL,
    heartbeat TIMESTAMPTZ NOT NULL
);
