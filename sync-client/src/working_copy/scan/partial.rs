//! The scan when the file-system monitor named the paths that changed: only the folders
//! holding them are walked, and everything else is taken from the index as the last recorded
//! scan left it.
//!
//! A named path that the last scan listed as a file and that is still a regular file is only
//! stat'ed (an edit does not change its folder's entries). Every other named path becomes a
//! folder to walk: the path itself when it is a folder the last scan listed, otherwise the
//! nearest folder above it that exists and was listed (a new file's folder, a removed folder's
//! parent). A walk of a folder is the full scan's walk of it (ignore rules of
//! the folders above loaded first, name clashes and empty folders found the same way), so the
//! result equals a full scan's wherever the monitor did not miss an event. Anything this cannot
//! reproduce exactly makes the caller walk everything: a path whose disk name is not its listed
//! name, a changed `.cairnignore`, a path that climbs to the root, an index without a recorded
//! scan. Paths the last scan found unreadable are walked again every time.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use sync_protocol::tree::{FileRef, Path, is_under};

use super::{
    Found, IGNORE_FILE, Scan, Taken, Walker, is_ignored, load_ignore_file, normalized_name,
    open_folder, read_found,
};
use crate::error::ClientError;
use crate::stores::META_DIR;
use crate::stores::index::Index;
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::DiskStat;

/// True when `path` is one of `folders` (sorted) or under one.
pub(crate) fn is_within(path: &str, folders: &[Path]) -> bool {
    let found = |prefix: &str| {
        folders
            .binary_search_by(|folder| folder.as_str().cmp(prefix))
            .is_ok()
    };
    path.match_indices('/').any(|(at, _)| found(&path[..at])) || found(path)
}

/// True when the last recorded scan listed `text` or anything under it.
fn listed(index: &Index, text: &str) -> bool {
    index.find(text).is_some_and(|record| record.scan.is_some())
        || index
            .under(text)
            .any(|slot| index.record(slot).scan.is_some())
}

/// What a monitor-guided scan looks at.
pub(crate) struct Targets {
    /// The folders to walk and the listed files to stat, sorted, none under another.
    pub(crate) paths: Vec<Path>,
    /// The stat of each of those files, taken when it was found to be still a regular file.
    files: HashMap<Path, DiskStat>,
}

/// The [`Targets`] for the changed `paths` (relative to `root`); `None` when only a walk of
/// everything gives the right answer.
pub(crate) fn folders_to_walk(root: &FsPath, index: &Index, paths: &[PathBuf]) -> Option<Targets> {
    if !index.scan_recorded() || index.has_renames() {
        return None;
    }
    let unsettled = index
        .records()
        .filter(|record| record.unsettled)
        .map(|record| PathBuf::from(record.path));
    let mut folders = BTreeSet::new();
    let mut files = HashMap::new();
    for relative in paths.iter().cloned().chain(unsettled) {
        let mut components = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(name) => components.push(name.to_str()?),
                Component::CurDir => {}
                _ => return None,
            }
        }
        if components.first() == Some(&META_DIR) {
            continue;
        }
        if components.last() == Some(&IGNORE_FILE) {
            return None;
        }
        for name in &components {
            // A name that is not its own listed form (or not a valid name at all, which the
            // full walk reports).
            if normalized_name(name).ok()?.as_str() != *name {
                return None;
            }
        }
        // A file the last scan listed that is still a regular file only needs its own stat:
        // its folder's entries did not change.
        let text = components.join("/");
        if !text.is_empty()
            && is_listed_file(index, &text)
            && let Ok(metadata) = fs::symlink_metadata(root.join(&text))
            && metadata.is_file()
        {
            let path = Path::new(&text).ok()?;
            files.insert(path.clone(), DiskStat::from(&metadata));
            folders.insert(path);
            continue;
        }
        let mut depth = components.len();
        loop {
            if depth == 0 {
                return None;
            }
            let text = components[..depth].join("/");
            let is_dir = fs::symlink_metadata(root.join(&text)).is_ok_and(|meta| meta.is_dir());
            if is_dir && listed(index, &text) {
                folders.insert(Path::new(&text).ok()?);
                break;
            }
            depth -= 1;
        }
    }
    let mut out: Vec<Path> = Vec::new();
    for folder in folders {
        if !out.iter().any(|outer| is_under(&folder, outer)) {
            out.push(folder);
        }
    }
    Some(Targets { paths: out, files })
}

/// True when the last recorded scan listed `text` as a file.
fn is_listed_file(index: &Index, text: &str) -> bool {
    index
        .find(text)
        .is_some_and(|record| record.scan.is_some_and(|entry| !entry.is_dir()))
}

/// Walks the folders of `targets` as the full scan would, takes the files among them with the
/// stat `folders_to_walk` found, and takes every other entry from the index's recorded scan.
/// The scan's stats are the walked files' only. `None` when a folder to walk is a file
/// the last scan listed: its folder may have changed, and the caller walks everything.
pub(crate) fn scan_folders(
    root: &FsPath,
    index: &Index,
    objects: &ObjectCache,
    targets: &Targets,
) -> Result<Option<Scan>, ClientError> {
    let walker = Walker { index };
    let folders = &targets.paths;
    let mut found = Found::default();
    for folder in folders {
        if let Some(stat) = targets.files.get(folder) {
            // A file named by the monitor (see `folders_to_walk`).
            found.stated += 1;
            found.files += 1;
            if !walker.take_from_index(&mut found, folder.as_str(), stat, None) {
                let on_disk = || (root.join(folder.as_str()), PathBuf::from(folder.as_str()));
                Walker::to_read(&mut found, folder.clone(), on_disk, stat);
            }
            continue;
        }
        if is_listed_file(index, folder.as_str()) {
            return Ok(None);
        }
        // The ignore rules of every folder above, and whether one of them hides this folder.
        let mut matchers = Vec::new();
        let mut disk = root.to_path_buf();
        let mut listed_so_far = String::new();
        let mut ignored = false;
        for name in folder.components() {
            if fs::symlink_metadata(disk.join(IGNORE_FILE)).is_ok() {
                matchers.push(Arc::new(load_ignore_file(&disk).0));
            }
            disk.push(name);
            if !listed_so_far.is_empty() {
                listed_so_far.push('/');
            }
            listed_so_far.push_str(name);
            if !matchers.is_empty()
                && is_ignored(&matchers, &disk, true)
                && !index.tracks(&listed_so_far)
            {
                ignored = true;
                break;
            }
        }
        if ignored {
            continue;
        }
        let mut below = Found::default();
        let listed_below = walker.walk_dir(
            &mut below,
            open_folder(&disk),
            &disk,
            PathBuf::from(folder.as_str()),
            Some((folder, index.under(folder.as_str()))),
            &matchers,
        )?;
        if !listed_below && !below.unsettled.contains(folder) {
            below.listing.push((folder.clone(), FileRef::empty_dir()));
        }
        found.append(below);
    }
    let mut scan = read_found(root, found, index, objects)?;
    // Everything outside the walked folders, as the last recorded scan found it, taken from
    // the index by record (making a path of each of 8,000 records took 2.8 ms).
    for slot in 0..index.len() {
        let path = index.path_at(slot);
        if is_within(path, folders) {
            continue;
        }
        let record = index.record(slot);
        if record.unsettled
            && let Ok(path) = Path::new(path)
        {
            scan.unsettled.insert(path);
        }
        if let (Some(entry), Ok(slot)) = (record.scan, u32::try_from(slot)) {
            scan.taken.push(Taken {
                slot,
                kind: entry.kind,
                with_stat: false,
            });
        }
    }
    scan.taken.sort_unstable_by_key(|taken| taken.slot);
    Ok(Some(scan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_means_equal_or_below() {
        let folders = [Path::new("a").unwrap(), Path::new("b/c").unwrap()];
        assert!(is_within("a", &folders));
        assert!(is_within("a/x/y", &folders));
        assert!(is_within("b/c/d", &folders));
        assert!(!is_within("a.txt", &folders));
        assert!(!is_within("b", &folders));
        assert!(!is_within("b/cd", &folders));
    }
}
