//! Three-way merges of file content: what a client does with a file both sides changed before it
//! falls back to a conflict copy.
//!
//! [`merge_content`] takes the base's, ours' and theirs' bytes of one file and its name, and
//! returns either a clean merge or a conflict with the text of a line merge carrying the usual
//! markers. Files named `*.json` (any case) whose three sides are JSON are merged by key path
//! ([`json`]); every other text file, and a `.json` file that does not parse on some side, line
//! by line ([`lines`]). Shortcuts come first and are byte-exact: both sides equal gives that
//! side, one side equal to the base gives the other.
//!
//! Only text is merged: every side valid UTF-8 without a NUL byte (the test git uses for
//! "binary"), and at most [`MAX_CONTENT_MERGE_SIZE`] bytes, so the merge's time and memory stay
//! small next to the pull that asked for it. Anything else is [`NotMergeable`], and the caller
//! keeps its usual conflict handling.

pub mod json;
pub mod json_parse;
pub mod lines;

pub use json::JsonConflict;
pub use lines::{LineMerge, merge_lines};

/// The largest side, in bytes, [`merge_content`] merges. Requests and environments are a few
/// KiB; the largest text files of a typical project a few hundred.
pub const MAX_CONTENT_MERGE_SIZE: usize = 1024 * 1024;

/// How a content merge ended: there is no third way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentMerge {
    /// Every change of both sides is in the merged bytes.
    Clean(Vec<u8>),
    /// Both sides changed the same lines or the same JSON value.
    Conflict(ContentConflict),
}

/// A merge that needs a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentConflict {
    /// The line merge with conflict blocks (`<<<<<<< ours`, `||||||| base`, `=======`,
    /// `>>>>>>> theirs`).
    pub marked: Vec<u8>,
    /// How many conflict blocks `marked` holds. Zero only when a JSON merge conflicted where the
    /// line merge did not (an element inserted in front of an array on one side, say): the
    /// structural verdict stands, because a clean line merge of JSON can still be wrong (two
    /// equal keys added in different places).
    pub blocks: usize,
    /// For a JSON merge, the key paths both sides changed differently.
    pub json_paths: Vec<String>,
}

/// Why a file's content was not merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotMergeable {
    #[error(
        "the {side} version is {size} bytes, more than the {MAX_CONTENT_MERGE_SIZE} a content merge takes"
    )]
    TooLarge {
        side: crate::merge::Side,
        size: usize,
    },
    #[error("the {side} version is not text (not UTF-8, or holds a NUL byte)")]
    Binary { side: crate::merge::Side },
}

/// Whether `name` is merged as JSON.
pub fn is_json_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 5 && bytes[bytes.len() - 5..].eq_ignore_ascii_case(b".json")
}

/// Merges the content of the file `name`; see the module docs.
pub fn merge_content(
    name: &str,
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
) -> Result<ContentMerge, NotMergeable> {
    use crate::merge::Side;
    let mut texts = [""; 3];
    for ((side, bytes), text) in [
        (Side::Base, base),
        (Side::Ours, ours),
        (Side::Theirs, theirs),
    ]
    .into_iter()
    .zip(&mut texts)
    {
        if bytes.len() > MAX_CONTENT_MERGE_SIZE {
            return Err(NotMergeable::TooLarge {
                side,
                size: bytes.len(),
            });
        }
        *text = std::str::from_utf8(bytes)
            .ok()
            .filter(|text| !text.contains('\0'))
            .ok_or(NotMergeable::Binary { side })?;
    }
    if ours == theirs || base == theirs {
        return Ok(ContentMerge::Clean(ours.to_vec()));
    }
    if base == ours {
        return Ok(ContentMerge::Clean(theirs.to_vec()));
    }
    let [base_text, ours_text, theirs_text] = texts;
    let mut json_paths = Vec::new();
    if is_json_name(name)
        && let (Ok(base_doc), Ok(ours_doc), Ok(theirs_doc)) = (
            json_parse::parse(base_text),
            json_parse::parse(ours_text),
            json_parse::parse(theirs_text),
        )
    {
        match json::merge_documents(&base_doc, &ours_doc, &theirs_doc) {
            Ok(merged) => return Ok(ContentMerge::Clean(merged.into_bytes())),
            Err(conflicts) => {
                json_paths = conflicts
                    .into_iter()
                    .map(|conflict| conflict.path)
                    .collect();
            }
        }
    }
    let merged = merge_lines(base, ours, theirs);
    if merged.is_clean() && json_paths.is_empty() {
        return Ok(ContentMerge::Clean(merged.text));
    }
    Ok(ContentMerge::Conflict(ContentConflict {
        marked: merged.text,
        blocks: merged.conflicts,
        json_paths,
    }))
}
