//! The working copy's lock: `.cairn/lock`, held (flock) while a command changes the working
//! copy, so two commands never apply or push at once.

use std::fs;
use std::path::Path;

use crate::error::{ClientError, io_error};

/// Held while a command changes the working copy; released on drop (or when the process dies).
#[derive(Debug)]
pub struct WorkingCopyLock {
    _file: fs::File,
}

/// Takes the lock file `path` of the working copy at `root`, failing at once with `Busy` if
/// another process holds it.
pub(super) fn lock(root: &Path, path: &Path) -> Result<WorkingCopyLock, ClientError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    match file.try_lock() {
        Ok(()) => Ok(WorkingCopyLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(ClientError::Busy {
            root: root.to_path_buf(),
            lock: path.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(error)) => Err(ClientError::io("lock", path, error)),
    }
}
