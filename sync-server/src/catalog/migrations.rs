//! The schema migrations, embedded from `migrations/` at build time.
//!
//! Each implementation applies its list in order at start, inside one transaction that first
//! takes a lock (PostgreSQL: `pg_advisory_xact_lock`; SQLite: `BEGIN IMMEDIATE`), so nodes that
//! start together apply each migration once. Applied migrations are recorded in
//! `schema_migrations` with a BLAKE3 checksum of their text: editing a migration that has been
//! applied is refused at start instead of silently diverging. New schema changes are new files.

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Migration {
    /// Its number: the order it runs in, and its key in `schema_migrations`.
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        blake3::hash(self.sql.as_bytes()).to_hex().to_string()
    }
}

/// PostgreSQL's migrations, `migrations/*.sql`.
pub(super) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "0001_catalog",
    sql: include_str!("../../../migrations/0001_catalog.sql"),
}];

/// SQLite's migrations, `migrations/sqlite/*.sql`: the same schema in SQLite's dialect.
pub(super) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "0001_catalog",
    sql: include_str!("../../../migrations/sqlite/0001_catalog.sql"),
}];

/// The lock key PostgreSQL migrations take (an arbitrary constant: "cairn" in ASCII).
pub(super) const POSTGRES_LOCK_KEY: i64 = 0x63_61_69_72_6e;
