//! The schema migrations, embedded from `migrations/` at build time.
//!
//! Each implementation applies its list in order at start, inside one transaction that first
//! takes a lock (PostgreSQL: `pg_advisory_xact_lock`; SQLite: `BEGIN IMMEDIATE`), so nodes that
//! start together apply each migration once. Applied migrations are recorded in
//! `schema_migrations` with a BLAKE3 checksum of their text: editing a migration that has been
//! applied is refused at start instead of silently diverging. New schema changes are new files.

use std::collections::HashMap;

use super::error::CatalogError;

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

/// The migrations of `all` not yet applied, in order, given the checksums `applied` records
/// by version. An applied migration whose text has changed since is refused: the catalog would
/// silently differ from its files.
pub(super) fn pending(
    all: &'static [Migration],
    applied: &HashMap<i64, String>,
) -> Result<Vec<&'static Migration>, CatalogError> {
    let mut pending = Vec::new();
    for migration in all {
        match applied.get(&migration.version) {
            Some(checksum) if *checksum == migration.checksum() => {}
            Some(_) => {
                return Err(CatalogError::Migration {
                    name: migration.name,
                    source: "the migration file changed after it was applied".into(),
                });
            }
            None => pending.push(migration),
        }
    }
    Ok(pending)
}

/// PostgreSQL's migrations, `migrations/*.sql`.
pub(super) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_catalog",
        sql: include_str!("../../../migrations/0001_catalog.sql"),
    },
    Migration {
        version: 2,
        name: "0002_object_index",
        sql: include_str!("../../../migrations/0002_object_index.sql"),
    },
    Migration {
        version: 3,
        name: "0003_dead_packs",
        sql: include_str!("../../../migrations/0003_dead_packs.sql"),
    },
    Migration {
        version: 4,
        name: "0004_node_status",
        sql: include_str!("../../../migrations/0004_node_status.sql"),
    },
    Migration {
        version: 5,
        name: "0005_web_sessions",
        sql: include_str!("../../../migrations/0005_web_sessions.sql"),
    },
];

/// SQLite's migrations, `migrations/sqlite/*.sql`: the same schema in SQLite's dialect.
pub(super) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_catalog",
        sql: include_str!("../../../migrations/sqlite/0001_catalog.sql"),
    },
    Migration {
        version: 2,
        name: "0002_object_index",
        sql: include_str!("../../../migrations/sqlite/0002_object_index.sql"),
    },
    Migration {
        version: 3,
        name: "0003_dead_packs",
        sql: include_str!("../../../migrations/sqlite/0003_dead_packs.sql"),
    },
    Migration {
        version: 4,
        name: "0004_node_status",
        sql: include_str!("../../../migrations/sqlite/0004_node_status.sql"),
    },
    Migration {
        version: 5,
        name: "0005_web_sessions",
        sql: include_str!("../../../migrations/sqlite/0005_web_sessions.sql"),
    },
];

/// The lock key PostgreSQL migrations take (an arbitrary constant: "cairn" in ASCII).
pub(super) const POSTGRES_LOCK_KEY: i64 = 0x63_61_69_72_6e;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_have_the_same_migrations_in_order() {
        let names = |all: &[Migration]| {
            all.iter()
                .map(|migration| (migration.version, migration.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(POSTGRES), names(SQLITE));
        for (index, migration) in POSTGRES.iter().enumerate() {
            assert_eq!(migration.version, index as i64 + 1);
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version))
            );
        }
    }

    #[test]
    fn pending_skips_what_was_applied_and_refuses_what_changed() {
        let none = HashMap::new();
        assert_eq!(pending(SQLITE, &none).unwrap().len(), SQLITE.len());
        let all: HashMap<i64, String> = SQLITE
            .iter()
            .map(|migration| (migration.version, migration.checksum()))
            .collect();
        assert!(pending(SQLITE, &all).unwrap().is_empty());
        let mut edited = all;
        edited.insert(SQLITE[0].version, "another text".to_owned());
        assert!(matches!(
            pending(SQLITE, &edited),
            Err(CatalogError::Migration { name, .. }) if name == SQLITE[0].name
        ));
    }
}
