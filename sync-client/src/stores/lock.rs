//! The working copy's lock: `.cairn/lock`, held (flock) while a command changes the working
//! copy, so two commands never apply or push at once.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{ClientError, io_error};

/// Held while a command changes the working copy; released on drop (or when the process dies).
#[derive(Debug)]
pub struct WorkingCopyLock {
    _file: fs::File,
}

/// How long a command waits for the lock before it says `Busy`: long enough to outlast a
/// `status` recording what its scan learned (a few milliseconds under the lock), far too short
/// to wait for another push or pull, which is what `Busy` is for.
pub const PATIENCE: Duration = Duration::from_millis(250);
/// How often a waiting command tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(5);

/// Takes the lock file `path` of the working copy at `root`, trying again for `patience` and
/// then failing with `Busy` if another process still holds it.
pub(super) fn lock(
    root: &Path,
    path: &Path,
    patience: Duration,
) -> Result<WorkingCopyLock, ClientError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    let deadline = Instant::now() + patience;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(WorkingCopyLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(RETRY_EVERY);
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(ClientError::Busy {
                    root: root.to_path_buf(),
                    lock: path.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(error)) => {
                return Err(ClientError::io("lock", path, error));
            }
        }
    }
}
