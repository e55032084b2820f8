-- Cairn catalog, PostgreSQL, migration 5: browser sessions of the account pages.
--
-- A session is what a signed-in browser's cookie names. Like an API token, only the BLAKE3
-- (derive-key) hash of its secret is stored; unlike a token it expires (`expires`) and is never
-- a bearer credential for the API. Sign-out deletes its row; "sign out everywhere" and a
-- password change delete every row of the account. Expired rows are deleted when the account
-- signs in again.
CREATE TABLE web_sessions (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    secret_hash BYTEA NOT NULL CONSTRAINT web_sessions_secret_hash_unique UNIQUE,
    created     TIMESTAMPTZ NOT NULL,
    expires     TIMESTAMPTZ NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions (account_id);
