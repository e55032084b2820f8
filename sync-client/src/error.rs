//! The client library's one error type.
//!
//! Every variant says what failed (which file, which object) and, where the user can do something
//! about it, what to do. I/O errors keep their `std::io::Error` but are worded by kind, so a full
//! disk or a permission problem reads as such instead of as an errno.

use std::fmt;
use std::io;
use std::path::PathBuf;

use sync_protocol::{CompressError, ObjectId};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(
        "{} is not inside a Cairn working copy (no .cairn/ folder here or above); \
         run `cairn init --server URL --project ID` to make one",
        start.display()
    )]
    NotAWorkingCopy { start: PathBuf },
    #[error("{} is already a Cairn working copy (it has a .cairn/ folder)", root.display())]
    AlreadyAWorkingCopy { root: PathBuf },
    #[error(
        "the working-copy state file {} is corrupted ({detail}); \
         move the .cairn/ folder aside and clone the project again",
        path.display()
    )]
    CorruptState { path: PathBuf, detail: String },
    #[error("{}", IoMessage { action, path, source })]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} can be read by other users (mode {mode:03o}) and holds an access token; \
         run `chmod 600 {}` and try again",
        path.display(),
        path.display()
    )]
    InsecureConfig { path: PathBuf, mode: u32 },
    #[error("invalid configuration in {}: {detail}", path.display())]
    Config { path: PathBuf, detail: String },
    #[error("no configuration folder found: set CAIRN_CONFIG, XDG_CONFIG_HOME or HOME")]
    NoConfigHome,
    #[error(
        "another cairn command is working in {} (it holds {}); wait for it to finish",
        root.display(),
        lock.display()
    )]
    Busy { root: PathBuf, lock: PathBuf },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(
        "object {id} is missing from the local object cache; \
         it must be downloaded (pull) before it can be written"
    )]
    ObjectMissing { id: ObjectId },
    #[error(
        "object {id} in the local object cache is damaged: {source}; it was removed, pull again"
    )]
    ObjectCorrupt {
        id: ObjectId,
        #[source]
        source: CompressError,
    },
    #[error("{} is {size} bytes, more than the {limit} bytes a project file may have", path.display())]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("could not merge the new version into the working copy: {0}")]
    Merge(#[from] sync_protocol::merge::MergeError),
    #[error("could not build an object for {what}: {detail}")]
    InvalidObject { what: String, detail: String },
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error(
        "the last pull could not update {} (see `cairn status`); fix the cause \
         (a file open elsewhere, an unlisted file in the way) and pull again before pushing",
        paths.join(", ")
    )]
    PendingPaths { paths: Vec<String> },
    #[error(
        "others kept pushing: still behind the head after {attempts} attempts (each pulls \
         and merges first); nothing was lost, run the command again"
    )]
    NotConverged { attempts: u32 },
    #[error("could not plan the push: {0}")]
    Plan(#[from] sync_protocol::plan::PushPlanError),
}

impl ClientError {
    /// The error for an I/O failure while doing `action` ("write", "read", ...) on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// True when the disk (or the user's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io { source, .. } if is_disk_full(source))
    }
}

/// `map_err` helper: `.map_err(io_error("read", &path))`.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> ClientError {
    let path = path.into();
    move |source| ClientError::io(action, path, source)
}

fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

struct IoMessage<'a> {
    action: &'a str,
    path: &'a PathBuf,
    source: &'a io::Error,
}

impl fmt::Display for IoMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            action,
            path,
            source,
        } = self;
        let path = path.display();
        match source.kind() {
            io::ErrorKind::StorageFull => write!(
                f,
                "could not {action} {path}: the disk is full; free some space and run the command again \
                 (nothing was lost: files are replaced only once fully written)"
            ),
            io::ErrorKind::QuotaExceeded => write!(
                f,
                "could not {action} {path}: your disk quota is exceeded; free some space and run the command again"
            ),
            io::ErrorKind::PermissionDenied => write!(
                f,
                "could not {action} {path}: permission denied; check the owner and permissions of the file and its folder"
            ),
            io::ErrorKind::ReadOnlyFilesystem => {
                write!(f, "could not {action} {path}: the file system is read-only")
            }
            _ => write!(f, "could not {action} {path}: {source}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_reads_as_such() {
        let error = ClientError::io("write", "/x/y", io::Error::from(io::ErrorKind::StorageFull));
        assert!(error.is_disk_full());
        let text = error.to_string();
        assert!(text.contains("disk is full"), "{text}");
        assert!(text.contains("/x/y"), "{text}");
    }

    #[test]
    fn permission_denied_reads_as_such() {
        let error = ClientError::io(
            "read",
            "/x/y",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(!error.is_disk_full());
        assert!(error.to_string().contains("permission denied"));
    }

    #[test]
    fn a_real_enospc_reads_as_disk_full() {
        // /dev/full fails every write with ENOSPC.
        let Ok(mut full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let source = std::io::Write::write_all(&mut full, b"x").unwrap_err();
        let error = ClientError::io("write", "/dev/full", source);
        assert!(error.is_disk_full(), "{error:?}");
        assert!(error.to_string().contains("disk is full"));
    }

    #[test]
    fn raw_enospc_maps_to_disk_full() {
        // ENOSPC is 28 on Linux and macOS.
        let error = ClientError::io("write", "/x", io::Error::from_raw_os_error(28));
        assert!(error.is_disk_full());
    }
}
