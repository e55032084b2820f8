//! Pieces both implementations share: reading stored text back into typed values, and naming
//! the unique constraints so a violation becomes [`CatalogError::AlreadyExists`].

use std::str::FromStr;

use sync_protocol::ObjectId;

use super::error::{CatalogError, Entity, Field};
use super::types::{Role, VersionNumber};

/// Parses a stored id, or reports the row as corrupt.
pub(super) fn parse<T: FromStr>(table: &'static str, text: &str) -> Result<T, CatalogError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|error: T::Err| CatalogError::corrupt(table, format!("{text:?}: {error}")))
}

pub(super) fn object_id(table: &'static str, text: &str) -> Result<ObjectId, CatalogError> {
    parse::<ObjectId>(table, text)
}

pub(super) fn role(table: &'static str, text: &str) -> Result<Role, CatalogError> {
    Role::parse(text).ok_or_else(|| CatalogError::corrupt(table, format!("unknown role {text:?}")))
}

/// A stored version number (a signed 64-bit column) as a [`VersionNumber`].
pub(super) fn version_number(
    table: &'static str,
    value: i64,
) -> Result<VersionNumber, CatalogError> {
    VersionNumber::try_from(value)
        .map_err(|_| CatalogError::corrupt(table, format!("negative version number {value}")))
}

/// A [`VersionNumber`] as a database integer. Numbers past `i64::MAX` cannot exist (each is one
/// commit), so they are refused as invalid input rather than wrapped.
pub(super) fn db_version(value: VersionNumber) -> Result<i64, CatalogError> {
    i64::try_from(value).map_err(|_| CatalogError::NotFound {
        entity: Entity::Version,
        key: value.to_string(),
    })
}

/// The unique constraints of the schema. The names are the PostgreSQL constraint names; SQLite
/// reports the columns instead, see [`Unique::from_sqlite_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unique {
    AccountName,
    AccountEmail,
    TeamName,
    ProjectName,
    TokenSecret,
}

impl Unique {
    pub(super) fn from_constraint(name: &str) -> Option<Self> {
        match name {
            "accounts_name_unique" => Some(Self::AccountName),
            "accounts_email_unique" => Some(Self::AccountEmail),
            "teams_name_unique" => Some(Self::TeamName),
            "projects_team_name_unique" => Some(Self::ProjectName),
            "tokens_secret_hash_unique" => Some(Self::TokenSecret),
            _ => None,
        }
    }

    /// SQLite says "UNIQUE constraint failed: accounts.name_key" (columns, not constraint names).
    pub(super) fn from_sqlite_message(message: &str) -> Option<Self> {
        let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
        match columns {
            "accounts.name_key" => Some(Self::AccountName),
            "accounts.email_key" => Some(Self::AccountEmail),
            "teams.name_key" => Some(Self::TeamName),
            "projects.team_id, projects.name_key" => Some(Self::ProjectName),
            "tokens.secret_hash" => Some(Self::TokenSecret),
            _ => None,
        }
    }

    /// The error for this constraint, with `value` the input that collided.
    pub(super) fn error(self, value: &str) -> CatalogError {
        let (entity, field) = match self {
            Self::AccountName => (Entity::Account, Field::AccountName),
            Self::AccountEmail => (Entity::Account, Field::Email),
            Self::TeamName => (Entity::Team, Field::TeamName),
            Self::ProjectName => (Entity::Project, Field::ProjectName),
            Self::TokenSecret => (Entity::Token, Field::TokenSecret),
        };
        let value = if self == Self::TokenSecret {
            // Never echo anything derived from a secret.
            "(hidden)".to_owned()
        } else {
            value.to_owned()
        };
        CatalogError::AlreadyExists {
            entity,
            field,
            value,
        }
    }
}
