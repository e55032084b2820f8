//! Entry names: the one place that decides what a file or folder may be called.
//!
//! Names must survive every desktop the client runs on, so the rules are the union of their
//! limits: UTF-8 in NFC (macOS would otherwise rename files behind our back), 1 to 255 bytes, no
//! separators, NUL or control characters, not `.` or `..`. Case-insensitive disks are handled by
//! [`Name::fold_key`]: two entries of one dir may not share it.

use std::fmt;

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;

use crate::limits::MAX_NAME_LEN;

/// A valid entry name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a name is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("a name may not be empty")]
    Empty,
    #[error("a name may be at most {MAX_NAME_LEN} bytes, this one is {0}")]
    TooLong(usize),
    #[error("a name must be UTF-8")]
    NotUtf8,
    #[error("a name must be in Unicode NFC form")]
    NotNfc,
    #[error("a name may not be `.` or `..`")]
    Dots,
    #[error("a name may not contain {0:?}")]
    ForbiddenChar(char),
}

impl Name {
    /// Checks `text` against every naming rule.
    pub fn new(text: &str) -> Result<Self, NameError> {
        validate(text)?;
        Ok(Self(text.to_owned()))
    }

    /// Checks raw bytes from the wire.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NameError> {
        let text = std::str::from_utf8(bytes).map_err(|_| NameError::NotUtf8)?;
        Self::new(text)
    }

    /// Normalizes `text` to NFC first, for names read from a local disk.
    pub fn normalized(text: &str) -> Result<Self, NameError> {
        Self::new(&text.nfc().collect::<String>())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key under which two names clash on a case-insensitive disk: Unicode default case
    /// folding between canonical decompositions (the "canonical caseless match" of Unicode §3.13).
    pub fn fold_key(&self) -> String {
        fold_key(&self.0)
    }
}

/// [`Name::fold_key`] for any string.
pub fn fold_key(text: &str) -> String {
    text.nfd().default_case_fold().nfd().collect()
}

/// Every naming rule, without making a `Name` (a path checks each of its components, and a
/// client's scan each name it meets).
pub fn validate(text: &str) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(text.len()));
    }
    if text == "." || text == ".." {
        return Err(NameError::Dots);
    }
    if text.is_ascii() {
        // Nearly every name: ASCII is its own NFC form, and its control characters are the
        // C0 range and DEL (what `char::is_control` says of them). A scan checks every name
        // it meets, so the Unicode passes are kept for the names that need them.
        return match text
            .bytes()
            .find(|&byte| byte == b'/' || byte == b'\\' || byte.is_ascii_control())
        {
            Some(bad) => Err(NameError::ForbiddenChar(char::from(bad))),
            None => Ok(()),
        };
    }
    check_characters(text)
}

/// The character rules for any name: no separator or control character, and NFC.
fn check_characters(text: &str) -> Result<(), NameError> {
    if let Some(bad) = text
        .chars()
        .find(|&c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(NameError::ForbiddenChar(bad));
    }
    if !unicode_normalization::is_nfc(text) {
        return Err(NameError::NotNfc);
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_shortcut_agrees_with_the_unicode_rules() {
        for byte in 0u8..=0x7f {
            let text = format!("a{}b", char::from(byte));
            assert_eq!(validate(&text), check_characters(&text), "{byte:#x}");
            let alone = char::from(byte).to_string();
            if alone != "." {
                assert_eq!(validate(&alone), check_characters(&alone), "{byte:#x}");
            }
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for text in [
            "a",
            "requests.json",
            "Ünïcödé",
            "with space",
            "日本語",
            ".hidden",
            "...",
        ] {
            assert_eq!(Name::new(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn length_at_and_past_the_limit() {
        assert!(Name::new(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            Name::new(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong(256))
        );
        // 85 three-byte characters are 255 bytes; one more is past the limit.
        assert!(Name::new(&"語".repeat(85)).is_ok());
        assert_eq!(Name::new(&"語".repeat(86)), Err(NameError::TooLong(258)));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new("."), Err(NameError::Dots));
        assert_eq!(Name::new(".."), Err(NameError::Dots));
        assert_eq!(Name::new("a/b"), Err(NameError::ForbiddenChar('/')));
        assert_eq!(Name::new("a\\b"), Err(NameError::ForbiddenChar('\\')));
        assert_eq!(Name::new("a\0b"), Err(NameError::ForbiddenChar('\0')));
        assert_eq!(Name::new("a\nb"), Err(NameError::ForbiddenChar('\n')));
        assert_eq!(
            Name::new("a\u{85}b"),
            Err(NameError::ForbiddenChar('\u{85}'))
        );
        assert_eq!(Name::new("e\u{301}"), Err(NameError::NotNfc));
        assert_eq!(Name::from_bytes(b"\xff"), Err(NameError::NotUtf8));
    }

    #[test]
    fn normalizes_local_names() {
        assert_eq!(Name::normalized("e\u{301}").unwrap().as_str(), "\u{e9}");
    }

    #[test]
    fn fold_key_matches_case_variants() {
        let key = |s: &str| Name::new(s).unwrap().fold_key();
        assert_eq!(key("README.md"), key("readme.MD"));
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("\u{c5}"), key("\u{e5}"));
        assert_ne!(key("a"), key("b"));
    }
}
