//! The catalog's error type. Every variant says what failed; the HTTP layer maps them to problem
//! documents in one place.

use std::fmt;

use sync_protocol::ObjectId;

use super::types::{PushId, VersionNumber};

/// The kinds of rows the catalog holds, to say which one was missing or duplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entity {
    Account,
    Token,
    Team,
    Membership,
    Project,
    Version,
    Node,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Account => "account",
            Self::Token => "token",
            Self::Team => "team",
            Self::Membership => "membership",
            Self::Project => "project",
            Self::Version => "version",
            Self::Node => "node",
        })
    }
}

/// The input fields the catalog checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    AccountName,
    Email,
    PasswordHash,
    TokenLabel,
    TokenSecret,
    TeamName,
    ProjectName,
    Message,
    PushId,
    Role,
    NodeAddress,
    NodeVersion,
    /// A pack record given to the object index.
    Pack,
    /// An object's row given to the object index (its pack, frame or size).
    IndexedObject,
}

impl Field {
    /// The request member that carries this field, as a problem's `field` names it: the name
    /// the client sent (`name`, not `team name`).
    pub fn member(self) -> String {
        match self {
            Self::AccountName | Self::TeamName | Self::ProjectName => "name".to_owned(),
            Self::TokenLabel => "label".to_owned(),
            Self::PushId => "push_id".to_owned(),
            other => other.to_string().replace(' ', "_"),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AccountName => "account name",
            Self::Email => "email",
            Self::PasswordHash => "password hash",
            Self::TokenLabel => "token label",
            Self::TokenSecret => "token secret",
            Self::TeamName => "team name",
            Self::ProjectName => "project name",
            Self::Message => "message",
            Self::PushId => "push id",
            Self::Role => "role",
            Self::NodeAddress => "node address",
            Self::NodeVersion => "node version",
            Self::Pack => "pack",
            Self::IndexedObject => "indexed object",
        })
    }
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A unique constraint: the name, email or other key is taken.
    #[error("{entity} with {field} {value:?} already exists")]
    AlreadyExists {
        entity: Entity,
        field: Field,
        value: String,
    },
    /// A row the operation needs (e.g. the project to commit to) does not exist.
    #[error("{entity} {key} not found")]
    NotFound { entity: Entity, key: String },
    /// Input past a limit or otherwise unstorable; nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid { field: Field, reason: String },
    /// The push id already belongs to a different commit request of this project: a client
    /// bug, since a retry must resend the same base and root.
    #[error("push id {push_id} was already used with base version {base_version} and root {root}")]
    PushIdReused {
        push_id: PushId,
        base_version: VersionNumber,
        root: ObjectId,
    },
    /// Removing or demoting this member would leave the team with no owner.
    #[error("team {team} would be left without an owner")]
    LastOwner { team: String },
    /// A stored row that cannot be read back (bad id text, negative version number...).
    #[error("corrupt catalog row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// A schema migration failed; the server must not start on a half-migrated catalog.
    #[error("catalog migration {name} failed: {source}")]
    Migration {
        name: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database failed or could not be reached.
    #[error("catalog {operation} failed: {source}")]
    Database {
        /// The catalog operation, e.g. "commit".
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CatalogError {
    /// A [`CatalogError::Database`] for `operation`.
    pub fn database(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Database {
            operation,
            source: source.into(),
        }
    }

    /// A [`CatalogError::Corrupt`] row of `table`.
    pub fn corrupt(table: &'static str, reason: impl fmt::Display) -> Self {
        Self::Corrupt {
            table,
            reason: reason.to_string(),
        }
    }

    /// A [`CatalogError::NotFound`] `entity` named by `key`.
    pub fn not_found(entity: Entity, key: impl fmt::Display) -> Self {
        Self::NotFound {
            entity,
            key: key.to_string(),
        }
    }
}
