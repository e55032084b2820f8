-- Cairn catalog, embedded SQLite, migration 1: the same tables as ../0001_catalog.sql (read
-- its comments), in SQLite's dialect: times are integer milliseconds since the Unix epoch.

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    name_key      TEXT NOT NULL CONSTRAINT accounts_name_unique UNIQUE,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL CONSTRAINT accounts_email_unique UNIQUE,
    password_hash TEXT NOT NULL,
    created       INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    secret_hash BLOB NOT NULL CONSTRAINT tokens_secret_hash_unique UNIQUE,
    created     INTEGER NOT NULL,
    last_used   INTEGER,
    revoked     INTEGER
) STRICT;
CREATE INDEX tokens_account ON tokens (account_id);

CREATE TABLE teams (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    name_key TEXT NOT NULL CONSTRAINT teams_name_unique UNIQUE,
    created  INTEGER NOT NULL
) STRICT;

CREATE TABLE memberships (
    team_id    TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    PRIMARY KEY (team_id, account_id)
) STRICT;
CREATE INDEX memberships_account ON memberships (account_id);

CREATE TABLE projects (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL REFERENCES teams (id),
    name         TEXT NOT NULL,
    name_key     TEXT NOT NULL,
    head_version INTEGER NOT NULL CHECK (head_version >= 0),
    head_root    TEXT NOT NULL,
    created      INTEGER NOT NULL,
    CONSTRAINT projects_team_name_unique UNIQUE (team_id, name_key)
) STRICT;

CREATE TABLE versions (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    number     INTEGER NOT NULL CHECK (number >= 0),
    root       TEXT NOT NULL,
    parent     INTEGER,
    author_id  TEXT NOT NULL REFERENCES accounts (id),
    time       INTEGER NOT NULL,
    message    TEXT NOT NULL,
    push_id    TEXT,
    PRIMARY KEY (project_id, number)
) STRICT;

CREATE TABLE push_receipts (
    project_id        TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    push_id           TEXT NOT NULL,
    base_version      INTEGER NOT NULL,
    root              TEXT NOT NULL,
    committed_version INTEGER,
    created           INTEGER NOT NULL,
    PRIMARY KEY (project_id, push_id)
) STRICT;

CREATE TABLE nodes (
    id        TEXT PRIMARY KEY,
    address   TEXT NOT NULL,
    heartbeat INTEGER NOT NULL
) STRICT;
