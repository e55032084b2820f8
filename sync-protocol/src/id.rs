//! Object ids: BLAKE3 over a domain-separated encoding.
//!
//! The hash runs in derive-key mode with one context string per format version, over the whole
//! encoded object, whose first two bytes are the kind tag and the format version. So a chunk can
//! never be read as a dir, and a future format cannot collide with this one. The id is of the
//! uncompressed encoding: zstd is only a storage and transport encoding.

use std::fmt;
use std::str::FromStr;

/// The derive-key context of format version 1. Changing it changes every id.
pub const HASH_CONTEXT_V1: &str = "cairn.dev 2026-11 object format v1";

/// A 32-byte BLAKE3 object id. Displays and parses as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// The id's length in bytes.
    pub const LEN: usize = 32;

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hashes a whole encoded object (header included) into its id.
    pub fn of_encoded(encoded: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(HASH_CONTEXT_V1);
        hasher.update(encoded);
        Self(*hasher.finalize().as_bytes())
    }

    /// Hashes an object given as header and body, without concatenating them.
    pub fn of_parts(header: &[u8], body: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(HASH_CONTEXT_V1);
        hasher.update(header);
        hasher.update(body);
        Self(*hasher.finalize().as_bytes())
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The id as 64 lowercase ASCII hex digits.
    fn hex_digits(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (index, byte) in self.0.iter().enumerate() {
            hex[2 * index] = DIGITS[usize::from(byte >> 4)];
            hex[2 * index + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        hex
    }

    /// The first 8 hex digits, for conflict-copy names and human-facing output.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_owned()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex_digits()).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

/// Why a string is not an object id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    #[error("an object id is 64 hex digits, got {0} characters")]
    Length(usize),
    #[error("an object id is lowercase hex, found {0:?}")]
    Digit(char),
}

impl FromStr for ObjectId {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 64 {
            return Err(ParseIdError::Length(text.chars().count()));
        }
        let mut bytes = [0u8; 32];
        let digits = text.as_bytes();
        for (index, byte) in bytes.iter_mut().enumerate() {
            let high = hex_value(digits[2 * index])?;
            let low = hex_value(digits[2 * index + 1])?;
            *byte = (high << 4) | low;
        }
        Ok(Self(bytes))
    }
}

fn hex_value(digit: u8) -> Result<u8, ParseIdError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        other => Err(ParseIdError::Digit(char::from(other))),
    }
}

/// Object ids travel in JSON as 64 lowercase hex digits.
impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex_digits();
        serializer.serialize_str(std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = ObjectId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object id: 64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ObjectId, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for ObjectId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ObjectId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "A BLAKE3 object id: 64 lowercase hex digits",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ObjectId::of_encoded(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ObjectId>(), Ok(id));
        assert_eq!(id.short(), text[..8]);
    }

    #[test]
    fn parse_rejects_bad_text() {
        assert_eq!("ab".parse::<ObjectId>(), Err(ParseIdError::Length(2)));
        let upper = "A".repeat(64);
        assert_eq!(upper.parse::<ObjectId>(), Err(ParseIdError::Digit('A')));
        let multibyte = format!("{}é", "a".repeat(62));
        assert!(multibyte.parse::<ObjectId>().is_err());
    }

    #[test]
    fn parts_equal_whole() {
        assert_eq!(
            ObjectId::of_parts(b"\x01\x01", b"abc"),
            ObjectId::of_encoded(b"\x01\x01abc")
        );
    }

    #[test]
    fn context_separates_from_plain_blake3() {
        let plain = blake3::hash(b"\x01\x01abc");
        assert_ne!(
            ObjectId::of_encoded(b"\x01\x01abc").as_bytes(),
            plain.as_bytes()
        );
    }
}
