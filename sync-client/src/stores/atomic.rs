//! Atomic file replacement: write a temp file beside the target, fsync it, rename it into place,
//! fsync the folder. A reader (or a crash) sees the old file or the new one, never a mix.
//!
//! Temp files are named `.<name>.cairn-tmp-<pid>-<n>` in the target's own folder (a rename is
//! only atomic within one file system); the scanner never lists them, and a leftover one from a
//! crash is harmless.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ClientError, io_error};

/// The marker every temp file name carries.
pub const TEMP_MARKER: &str = ".cairn-tmp-";

/// True for names this module writes as temp files.
pub fn is_temp_name(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|name| name.starts_with('.') && name.contains(TEMP_MARKER))
}

/// What to do when the target already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it (rename over it).
    Overwrite,
    /// Leave it and fail with `io::ErrorKind::AlreadyExists`: the new file is renamed into place
    /// with `RENAME_NOREPLACE` (or linked, where that is missing), which the file system refuses
    /// atomically when the name is taken.
    NoClobber,
}

/// Permissions of a newly created file, before the umask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exactly these bits, whatever the umask (used for secrets: 0o600).
    Exact(u32),
    /// These bits less the umask, as any program creating a file (0o666 or 0o777).
    Umask(u32),
}

/// How much of a write must survive a crash once the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing is fsynced: for caches, which are verified on read and can be rebuilt.
    Cache,
    /// The file is fsynced before the rename; the caller fsyncs the folder later (once for many
    /// files, with [`sync_dir`]) before it relies on the new name.
    FileOnly,
    /// The file, then its folder.
    Full,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Keep the temp name within NAME_MAX even for a 255-byte target name.
    let short: String = name.chars().take(64).collect();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{short}{TEMP_MARKER}{}-{n}", std::process::id()))
}

/// Writes `target` atomically with `bytes`. Returns the written file's metadata.
pub fn write_atomic(
    target: &Path,
    bytes: &[u8],
    mode: Mode,
    replace: Replace,
) -> Result<fs::Metadata, ClientError> {
    write_atomic_with(target, mode, replace, Durability::Full, |file| {
        file.write_all(bytes)
            .map_err(io_error("write", target.to_path_buf()))
    })
}

/// Writes `target` atomically with whatever `fill` writes into the temp file, as durable as
/// `durability` says.
pub fn write_atomic_with(
    target: &Path,
    mode: Mode,
    replace: Replace,
    durability: Durability,
    fill: impl FnOnce(&mut File) -> Result<(), ClientError>,
) -> Result<fs::Metadata, ClientError> {
    let temp = temp_path(target);
    let bits = match mode {
        Mode::Exact(bits) | Mode::Umask(bits) => bits,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(bits)
        .open(&temp)
        .map_err(io_error("create", target.to_path_buf()))?;
    // The metadata, and whether the temp name is still there to remove.
    let result: Result<(fs::Metadata, bool), ClientError> = (|| {
        if let Mode::Exact(bits) = mode {
            file.set_permissions(fs::Permissions::from_mode(bits))
                .map_err(io_error("set permissions of", target.to_path_buf()))?;
        }
        fill(&mut file)?;
        if durability != Durability::Cache {
            file.sync_all()
                .map_err(io_error("write", target.to_path_buf()))?;
        }
        let metadata = file
            .metadata()
            .map_err(io_error("inspect", target.to_path_buf()))?;
        drop(file);
        let temp_left = match replace {
            Replace::Overwrite => {
                fs::rename(&temp, target).map_err(io_error("replace", target.to_path_buf()))?;
                false
            }
            Replace::NoClobber => link_no_clobber(&temp, target)?,
        };
        Ok((metadata, temp_left))
    })();
    if result.as_ref().map_or(true, |&(_, temp_left)| temp_left) {
        // After a link the temp name is a second name of the new file.
        let _ = fs::remove_file(&temp);
    }
    let (metadata, _) = result?;
    if durability == Durability::Full
        && let Some(parent) = target.parent()
    {
        sync_dir(parent)?;
    }
    Ok(metadata)
}

/// Gives the file at `temp` the name `target` unless that name is taken. Returns true when
/// `temp` is still a name of it (it was linked, not renamed).
fn link_no_clobber(temp: &Path, target: &Path) -> Result<bool, ClientError> {
    // One step where the kernel and file system have it (Linux 3.15+: ext4, xfs, btrfs,
    // tmpfs): a rename that refuses a taken name. Elsewhere a hard link, then the temp name goes.
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, temp, CWD, target, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(false),
            Err(rustix::io::Errno::EXIST) => {
                return Err(ClientError::io(
                    "create",
                    target.to_path_buf(),
                    io::Error::from(io::ErrorKind::AlreadyExists),
                ));
            }
            // Not supported here (EINVAL, ENOSYS): the portable way.
            Err(_) => {}
        }
    }
    match fs::hard_link(temp, target) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            Err(ClientError::io("create", target.to_path_buf(), error))
        }
        // A file system without hard links (some network and FAT mounts): check, then rename.
        // The check and the rename are two steps, so this fallback is only nearly atomic.
        Err(_) => {
            if fs::symlink_metadata(target).is_ok() {
                return Err(ClientError::io(
                    "create",
                    target.to_path_buf(),
                    io::Error::from(io::ErrorKind::AlreadyExists),
                ));
            }
            fs::rename(temp, target).map_err(io_error("create", target.to_path_buf()))?;
            Ok(false)
        }
    }
}

/// Fsyncs a folder, so a rename or a removal in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    let handle = File::open(dir).map_err(io_error("open folder", dir.to_path_buf()))?;
    match handle.sync_all() {
        Ok(()) => Ok(()),
        // Some file systems refuse fsync on a folder; the rename is then as durable as they allow.
        Err(error) if error.kind() == io::ErrorKind::InvalidInput => Ok(()),
        Err(error) => Err(ClientError::io("sync folder", dir.to_path_buf(), error)),
    }
}

/// True where [`sync_file_system`] works: there, a batch of new files can be written without
/// an fsync each and made durable together.
pub const CAN_SYNC_FILE_SYSTEM: bool = cfg!(target_os = "linux");

/// Makes every write to the file system holding `dir` durable, with one `syncfs(2)`: for a
/// batch of thousands of new files, one flush instead of an fsync per file and folder.
#[cfg(target_os = "linux")]
pub fn sync_file_system(dir: &Path) -> Result<(), ClientError> {
    let handle = File::open(dir).map_err(io_error("open folder", dir.to_path_buf()))?;
    rustix::fs::syncfs(&handle).map_err(|error| {
        ClientError::io("sync the file system of", dir.to_path_buf(), error.into())
    })
}

/// Only Linux has `syncfs(2)`; elsewhere callers fsync each file ([`CAN_SYNC_FILE_SYSTEM`]).
#[cfg(not(target_os = "linux"))]
pub fn sync_file_system(dir: &Path) -> Result<(), ClientError> {
    Err(ClientError::io(
        "sync the file system of",
        dir.to_path_buf(),
        io::Error::from(io::ErrorKind::Unsupported),
    ))
}

/// True when `error` is the `AlreadyExists` a [`Replace::NoClobber`] write fails with.
pub fn is_already_exists(error: &ClientError) -> bool {
    matches!(error, ClientError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        write_atomic(&target, b"one", Mode::Umask(0o666), Replace::NoClobber).unwrap();
        let error =
            write_atomic(&target, b"two", Mode::Umask(0o666), Replace::NoClobber).unwrap_err();
        assert!(is_already_exists(&error));
        assert_eq!(fs::read(&target).unwrap(), b"one");
        write_atomic(&target, b"three", Mode::Umask(0o666), Replace::Overwrite).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"three");
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn exact_mode_ignores_umask() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        write_atomic(&target, b"x", Mode::Exact(0o600), Replace::Overwrite).unwrap();
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        fs::write(&target, b"old").unwrap();
        let result = write_atomic_with(
            &target,
            Mode::Umask(0o666),
            Replace::Overwrite,
            Durability::Full,
            |_| {
                Err(ClientError::io(
                    "write",
                    "f",
                    io::Error::from(io::ErrorKind::StorageFull),
                ))
            },
        );
        assert!(result.unwrap_err().is_disk_full());
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_are_recognized() {
        let temp = temp_path(Path::new("/a/requests.json"));
        assert!(is_temp_name(temp.file_name().unwrap()));
        assert!(!is_temp_name(OsStr::new("requests.json")));
    }
}
