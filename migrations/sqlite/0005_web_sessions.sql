-- Cairn catalog, embedded SQLite, migration 5: browser sessions of the account pages, as
-- ../0005_web_sessions.sql (read its comments), in SQLite's dialect: times are integer
-- milliseconds since the Unix epoch.
CREATE TABLE web_sessions (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    secret_hash BLOB NOT NULL CONSTRAINT web_sessions_secret_hash_unique UNIQUE,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL
) STRICT;
CREATE INDEX web_sessions_account ON web_sessions (account_id);
