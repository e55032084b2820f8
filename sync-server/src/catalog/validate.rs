//! Input checks shared by both implementations, so they refuse exactly the same things.

use super::error::{CatalogError, Field};
use super::limits;
use super::types::NodeStatus;

/// A node's heartbeat: its address and version are short single-line text.
pub(super) fn node_status(status: &NodeStatus) -> Result<(), CatalogError> {
    text(
        Field::NodeAddress,
        &status.address,
        limits::MAX_NODE_ADDRESS_LEN,
    )?;
    text(
        Field::NodeVersion,
        &status.version,
        limits::MAX_NODE_ADDRESS_LEN,
    )
}

/// Checks that `value` is non-empty (after trimming), at most `max` characters (Unicode scalar
/// values, as JSON Schema's `maxLength` counts them, so the API document's limits are exact)
/// and free of control characters.
pub(super) fn text(field: Field, value: &str, max: usize) -> Result<(), CatalogError> {
    let invalid = |reason: String| Err(CatalogError::Invalid { field, reason });
    if value.trim().is_empty() {
        return invalid("must not be empty".to_owned());
    }
    let length = value.chars().count();
    if length > max {
        return invalid(format!("{length} characters, more than the limit of {max}"));
    }
    if value.chars().any(char::is_control) {
        return invalid("must not contain control characters".to_owned());
    }
    Ok(())
}

/// A stored password hash (a PHC string): checked as text, never parsed.
pub(super) fn password_hash(value: &str) -> Result<(), CatalogError> {
    text(Field::PasswordHash, value, limits::MAX_PASSWORD_HASH_LEN)
}

/// A version message: may be empty and may hold newlines, bounded in length, and free of NUL
/// (which PostgreSQL's text cannot hold).
pub fn message(value: &str) -> Result<(), CatalogError> {
    if value.contains('\0') {
        return Err(CatalogError::Invalid {
            field: Field::Message,
            reason: "must not contain NUL characters".to_owned(),
        });
    }
    let length = value.chars().count();
    if length > limits::MAX_MESSAGE_LEN {
        return Err(CatalogError::Invalid {
            field: Field::Message,
            reason: format!(
                "{length} characters, more than the limit of {}",
                limits::MAX_MESSAGE_LEN
            ),
        });
    }
    Ok(())
}

/// Whether a name looked up could belong to something stored: stored names passed [`text`],
/// so one with a control character (NUL among them, which PostgreSQL cannot even compare)
/// names nothing, and the lookup answers "none" without asking the database.
pub(super) fn could_be_a_name(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// The case-folded key that uniqueness is checked on.
pub(super) fn fold(value: &str) -> String {
    value.to_lowercase()
}
