//! Trees as flat listings, and the conversion between listings and dir objects.
//!
//! A [`Listing`] is a project version seen as a map from [`Path`] to [`FileRef`]: one entry per
//! file and one per *empty* dir (a non-empty dir is implied by its contents), so a listing and a
//! root dir describe the same tree one to one. Listings are the simple reference that the fast,
//! subtree-skipping algorithms (diff, planning) are tested against, and the shape merge works on.

use std::collections::BTreeMap;
use std::fmt;

use crate::id::ObjectId;
use crate::limits::{MAX_PATH_DEPTH, MAX_PATH_LEN};
use crate::name::{Name, NameError};
use crate::object::{Dir, EntryKind, ObjectKind};

/// A project-relative path: 1 to [`MAX_PATH_DEPTH`] valid names joined by `/`, at most
/// [`MAX_PATH_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(String);

/// Why a path is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("path {path:?} is {len} bytes, more than the limit of {MAX_PATH_LEN}")]
    TooLong { path: String, len: usize },
    #[error("path {path:?} is {depth} levels deep, more than the limit of {MAX_PATH_DEPTH}")]
    TooDeep { path: String, depth: usize },
    #[error("path {path:?} has an invalid component: {error}")]
    BadComponent { path: String, error: NameError },
}

impl Path {
    /// Checks a `/`-separated path. Components must already be in NFC.
    pub fn new(text: &str) -> Result<Self, PathError> {
        if text.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong { path: truncated(text), len: text.len() });
        }
        let mut depth = 0;
        for component in text.split('/') {
            depth += 1;
            Name::new(component)
                .map_err(|error| PathError::BadComponent { path: text.to_owned(), error })?;
        }
        if depth > MAX_PATH_DEPTH {
            return Err(PathError::TooDeep { path: truncated(text), depth });
        }
        Ok(Self(text.to_owned()))
    }

    /// `parent/name`, checked against the path limits.
    pub fn join(parent: Option<&Path>, name: &Name) -> Result<Self, PathError> {
        match parent {
            None => Self::new(name.as_str()),
            Some(parent) => Self::new(&format!("{}/{}", parent.0, name.as_str())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Everything before the last component, if any.
    pub fn parent(&self) -> Option<Path> {
        self.0.rsplit_once('/').map(|(parent, _)| Self(parent.to_owned()))
    }

    /// The sibling of this path called `name`.
    pub fn with_file_name(&self, name: &Name) -> Result<Self, PathError> {
        Self::join(self.parent().as_ref(), name)
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect::<String>() + "…"
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What a listing says about one path: the dir entry it would have, without its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileRef {
    pub kind: EntryKind,
    pub target: ObjectKind,
    pub size: u64,
    pub id: ObjectId,
}

impl FileRef {
    /// The entry of an empty dir.
    pub fn empty_dir() -> Self {
        Self {
            kind: EntryKind::Dir,
            target: ObjectKind::Dir,
            size: 0,
            id: crate::object::Object::Dir(Dir::empty()).id(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// A whole tree as a flat map: every file and every empty dir.
pub type Listing = BTreeMap<Path, FileRef>;
