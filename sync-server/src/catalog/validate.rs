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

/// Checks that `value` is non-empty (after trimming), at most `max` bytes and free of control
/// characters.
pub(super) fn text(field: Field, value: &str, max: usize) -> Result<(), CatalogError> {
    let invalid = |reason: String| Err(CatalogError::Invalid { field, reason });
    if value.trim().is_empty() {
        return invalid("must not be empty".to_owned());
    }
    if value.len() > max {
        return invalid(format!(
            "{} bytes, more than the limit of {max}",
            value.len()
        ));
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
    if value.len() > limits::MAX_MESSAGE_LEN {
        return Err(CatalogError::Invalid {
            field: Field::Message,
            reason: format!(
                "{} bytes, more than the limit of {}",
                value.len(),
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
