//! `.cairn/push-journal`: a push whose objects may be partly on the server, or whose outcome is
//! unknown. Written before a large push sends anything, and when any push ends without an
//! answer; removed once the push's outcome is known. While it exists, the next push or pull
//! settles it first (`operations::settle`), and a push of the same base and root reuses its
//! push id, asking the server what it lacks (`operations::upload`).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sync_protocol::ObjectId;

use super::atomic::{Mode, Replace, write_atomic};
use crate::error::{ClientError, io_error};

/// A push under way: its id, the base and root it was for, and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushJournal {
    pub push_id: String,
    pub base_version: u64,
    pub root: String,
    /// Absent from journals of earlier versions.
    #[serde(default)]
    pub message: String,
}

impl PushJournal {
    /// The journal at `path`, if any. A damaged journal is treated as present (resume by asking
    /// the server) with no push id to reuse.
    pub(super) fn load(path: &Path) -> Result<Option<Self>, ClientError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Self {
                push_id: String::new(),
                base_version: u64::MAX,
                root: String::new(),
                message: String::new(),
            }))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ClientError::io("read", path, error)),
        }
    }

    pub(super) fn save(&self, path: &Path) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|error| ClientError::io("write", path, error.into()))?;
        write_atomic(path, &bytes, Mode::Umask(0o644), Replace::Overwrite)?;
        Ok(())
    }

    pub(super) fn remove(path: &Path) -> Result<(), ClientError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("remove", path)(error)),
        }
    }

    /// True when this journal is for exactly this push, so its push id may be sent again.
    pub fn is_for(&self, base_version: u64, root: &ObjectId) -> bool {
        self.base_version == base_version && self.root == root.to_hex() && !self.push_id.is_empty()
    }
}
