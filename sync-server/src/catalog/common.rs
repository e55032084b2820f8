//! Pieces both implementations share: reading stored text back into typed values, and naming
//! the unique constraints so a violation becomes [`CatalogError::AlreadyExists`].

use std::str::FromStr;

use sync_protocol::{ObjectId, ObjectKind};

use super::error::{CatalogError, Entity, Field};
use super::types::{IndexedObject, PackId, PackRecord, Role, Timestamp, VersionNumber};

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

/// The columns of an object index row, in the order [`indexed_object`] reads them.
pub(super) const OBJECT_COLUMNS: &str = "objects.id, objects.pack_id, objects.frame_offset, objects.frame_length, objects.kind, \
     objects.size";

/// An object index row read back (as [`OBJECT_COLUMNS`]), or the row reported as corrupt.
pub(super) fn indexed_object(
    id: &[u8],
    pack: &[u8],
    offset: i64,
    length: i64,
    kind: i64,
    size: i64,
) -> Result<IndexedObject, CatalogError> {
    let id = ObjectId::from_bytes(bytes32("objects", id)?);
    let corrupt = |what: &str, value: i64| {
        CatalogError::corrupt(
            "objects",
            format!("object {id}: {what} {value} is out of range"),
        )
    };
    Ok(IndexedObject {
        id,
        pack: PackId::from_bytes(bytes32("objects", pack)?),
        offset: u64::try_from(offset).map_err(|_| corrupt("frame offset", offset))?,
        length: u32::try_from(length).map_err(|_| corrupt("frame length", length))?,
        kind: u8::try_from(kind)
            .ok()
            .and_then(ObjectKind::from_tag)
            .ok_or_else(|| corrupt("kind", kind))?,
        size: u64::try_from(size).map_err(|_| corrupt("size", size))?,
    })
}

/// The columns of a pack row, in the order [`pack_record`] reads them.
pub(super) const PACK_COLUMNS: &str = "packs.id, packs.length, packs.object_count, packs.created";

/// A pack row read back (as [`PACK_COLUMNS`]), or the row reported as corrupt.
pub(super) fn pack_record(
    id: &[u8],
    length: i64,
    object_count: i64,
    created: Timestamp,
) -> Result<PackRecord, CatalogError> {
    let id = PackId::from_bytes(bytes32("packs", id)?);
    let corrupt = |what: &str, value: i64| {
        CatalogError::corrupt(
            "packs",
            format!("pack {id}: {what} {value} is out of range"),
        )
    };
    Ok(PackRecord {
        id,
        length: u64::try_from(length).map_err(|_| corrupt("length", length))?,
        objects: u32::try_from(object_count).map_err(|_| corrupt("object count", object_count))?,
        created,
    })
}

/// A stored 32-byte id (object or pack).
pub(super) fn bytes32(table: &'static str, bytes: &[u8]) -> Result<[u8; 32], CatalogError> {
    bytes.try_into().map_err(|_| {
        CatalogError::corrupt(table, format!("an id of {} bytes, not 32", bytes.len()))
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
