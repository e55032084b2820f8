//! The folder backend: one file per pack (and, from before packs, per object) under a data
//! folder, for the single-node default.
//!
//! Layout: `<root>/packs/<project-id>/<first two hex digits>/<pack-id>` and
//! `<root>/objects/<project-id>/<first two hex digits>/<id-hex>`, the S3 keys with one level of
//! fan-out so no folder grows past a few thousand entries.
//!
//! A pack is written like an object: temporary file, fsync, rename, folder fsync. Range reads
//! follow the same coalescing plan as S3 (`ranges`), one positioned read per planned range, on
//! several threads when there are several.
//!
//! Writes are atomic and durable before they return: each frame goes to a temporary file in
//! its final folder, which is fsynced and renamed into place, and then the folder is fsynced (and
//! its parent, when the folder is new). A crash leaves either no object or the whole object,
//! never a torn one; leftover temporary files (`.tmp-*`) are ignored by reads and listings. The
//! objects of one call are written and fsynced on several threads at once, so the file system can
//! commit their fsyncs together, and a call returns only once every object and folder is
//! durable. `put_layers` (a push, stored leaves first) writes and fsyncs the temporary files of
//! all its layers at once, then renames one layer at a time, fsyncing its folders before the
//! next layer's names appear: ordered where the store's closure invariant needs it, concurrent
//! everywhere else.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use sync_protocol::ObjectId;

use super::counts::{RequestCounters, RequestCounts, RequestKind};
use super::pack::{MAX_PACK_LEN, PackId};
use super::{MAX_FRAME_SIZE, ObjectBackend, Result, StoreError, ranges};
use crate::catalog::ProjectId;

/// Objects as files under a folder. Cheap to clone; clones share counters.
#[derive(Debug, Clone)]
pub struct FsBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    counters: RequestCounters,
}

impl FsBackend {
    /// A backend over `root` (the data folder). Folders are created as objects arrive.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: root.into(),
                counters: RequestCounters::default(),
            }),
        }
    }

    /// The data folder.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where the object `id` of `project` is (or would be) stored.
    pub fn object_path(&self, project: &ProjectId, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.project_dir(project).join(&hex[..2]).join(hex)
    }

    fn project_dir(&self, project: &ProjectId) -> PathBuf {
        self.inner.root.join("objects").join(project.to_string())
    }

    /// Where the pack `pack` of `project` is (or would be) stored.
    pub fn pack_path(&self, project: &ProjectId, pack: &PackId) -> PathBuf {
        let hex = pack.to_string();
        self.packs_dir(project).join(&hex[..2]).join(hex)
    }

    fn packs_dir(&self, project: &ProjectId) -> PathBuf {
        self.inner.root.join("packs").join(project.to_string())
    }

    /// Runs blocking file work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&FsBackend) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let backend = self.clone();
        tokio::task::spawn_blocking(move || work(&backend))
            .await
            .map_err(|error| StoreError::Backend {
                operation,
                message: error.to_string(),
            })?
    }

    fn count(&self, kind: RequestKind, count: usize) {
        self.inner.counters.add(kind, count as u64);
    }
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error("stat", path)(error)),
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("fsync folder", path))
}

/// Creates `dir` and any missing parents, fsyncing the parent of each folder created so the new
/// entries survive a crash.
fn create_dirs(dir: &Path) -> Result<()> {
    if exists(dir)? {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer created it first.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(error) => return Err(io_error("create folder", dir)(error)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn write_temp(dir: &Path, frame: &[u8]) -> Result<PathBuf> {
    let name = format!(".tmp-{:032x}", rand::random::<u128>());
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error("create", &path))?;
    file.write_all(frame).map_err(io_error("write", &path))?;
    file.sync_all().map_err(io_error("fsync", &path))?;
    Ok(path)
}

/// The most threads one batch of writes, reads or folder fsyncs uses.
const MAX_THREADS: usize = 16;

/// Runs `work` on every item, on up to [`MAX_THREADS`] threads, and returns the results in the
/// items' order; the first error wins. A single item runs on the calling thread.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    if items.len() <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let writers = items.len().min(MAX_THREADS);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, R)>> {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return Ok(done);
                        };
                        match work(item) {
                            Ok(result) => done.push((index, result)),
                            Err(error) => {
                                // The other threads stop at their next item.
                                next.store(items.len(), Ordering::Relaxed);
                                return Err(error);
                            }
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(StoreError::Backend {
                        operation: "file work",
                        message: "a worker thread panicked".to_owned(),
                    })
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(|done| done.into_iter().flatten().collect())
    })?;
    results.sort_unstable_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

fn read_frame(path: &Path, project: &ProjectId, id: &ObjectId) -> Result<Option<Bytes>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("open", path)(error)),
    };
    let len = file.metadata().map_err(io_error("stat", path))?.len();
    if len > MAX_FRAME_SIZE as u64 {
        return Err(StoreError::Oversized {
            project: *project,
            id: *id,
            len,
        });
    }
    let mut frame = Vec::with_capacity(len as usize);
    // The file cannot grow past the limit between the stat and the read: objects are written by
    // rename, never in place. The take() bounds it all the same.
    (&mut file)
        .take(MAX_FRAME_SIZE as u64 + 1)
        .read_to_end(&mut frame)
        .map_err(io_error("read", path))?;
    if frame.len() > MAX_FRAME_SIZE {
        return Err(StoreError::Oversized {
            project: *project,
            id: *id,
            len: frame.len() as u64,
        });
    }
    Ok(Some(Bytes::from(frame)))
}

/// Opens a stored pack for reading; a pack that is not there is [`StoreError::MissingPack`].
fn open_pack(path: &Path, project: &ProjectId, pack: &PackId) -> Result<File> {
    File::open(path).map_err(|error| {
        if error.kind() == io::ErrorKind::NotFound {
            StoreError::MissingPack {
                project: *project,
                pack: *pack,
            }
        } else {
            io_error("open", path)(error)
        }
    })
}

/// The bytes of `range` in `file`, short if the file ends first (as an S3 ranged read is).
fn read_range(file: &mut File, path: &Path, range: &Range<u64>) -> Result<Bytes> {
    file.seek(SeekFrom::Start(range.start))
        .map_err(io_error("seek", path))?;
    let len = range.end - range.start;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(MAX_PACK_LEN));
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(io_error("read", path))?;
    Ok(Bytes::from(bytes))
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(io_error("stat", path))?.len())
}

impl FsBackend {
    /// Writes `layers` (see [`ObjectBackend::put_layers`]). Every new object of every layer is
    /// first written and fsynced under a temporary name, all at once; nothing is visible yet.
    /// Then, layer by layer, its objects are renamed into place and their folders fsynced, so a
    /// layer's names are durable before the next layer's exist. A push of one edited file five
    /// folders deep thus waits for six rounds of fsyncs instead of ten.
    fn write_layers(&self, project: &ProjectId, layers: Vec<Vec<(ObjectId, Bytes)>>) -> Result<()> {
        let mut seen = HashSet::new();
        let mut to_write: Vec<(usize, PathBuf, Bytes)> = Vec::new();
        for (layer, objects) in layers.into_iter().enumerate() {
            for (id, frame) in objects {
                if !seen.insert(id) {
                    continue;
                }
                let path = self.object_path(project, &id);
                self.count(RequestKind::Put, 1);
                // Objects are immutable: an existing file is this object already.
                if exists(&path)? {
                    continue;
                }
                to_write.push((layer, path, frame));
            }
        }
        let dirs: BTreeSet<&Path> = to_write
            .iter()
            .map(|(_, path, _)| path.parent().unwrap_or(self.root()))
            .collect();
        for dir in dirs {
            create_dirs(dir)?;
        }
        // The fsyncs run concurrently (the file system commits them together) instead of one
        // after another. Should one fail, the temporary files written stay behind, ignored by
        // reads and listings, as after a crash.
        let temps = in_parallel(&to_write, |(_, path, frame)| {
            write_temp(path.parent().unwrap_or(self.root()), frame)
        })?;
        let mut start = 0;
        while start < to_write.len() {
            let layer = to_write[start].0;
            let end = to_write[start..]
                .iter()
                .position(|(other, _, _)| *other != layer)
                .map_or(to_write.len(), |offset| start + offset);
            let mut dirs = BTreeSet::new();
            for ((_, path, _), temp) in to_write[start..end].iter().zip(&temps[start..end]) {
                fs::rename(temp, path).map_err(io_error("rename", path))?;
                dirs.insert(path.parent().unwrap_or(self.root()));
            }
            // One folder fsync per folder touched, after all the layer's renames: only then is
            // the layer durable, and only then may the next one become visible.
            let dirs: Vec<&Path> = dirs.into_iter().collect();
            in_parallel(&dirs, |dir| sync_dir(dir))?;
            start = end;
        }
        Ok(())
    }
}

impl FsBackend {
    /// Writes a pack as `put_many` writes an object: a temporary file in its final folder,
    /// fsynced, renamed into place, then the folder fsynced. Packs are immutable and named by
    /// their hash, so an existing file is this pack already.
    fn write_pack(&self, project: &ProjectId, pack: &PackId, bytes: &[u8]) -> Result<()> {
        self.count(RequestKind::Put, 1);
        let path = self.pack_path(project, pack);
        if exists(&path)? {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(self.root());
        create_dirs(dir)?;
        let temp = write_temp(dir, bytes)?;
        fs::rename(&temp, &path).map_err(io_error("rename", &path))?;
        sync_dir(dir)
    }

    /// Reads each planned range with one positioned read, on several threads when there are
    /// several (a cold disk serves them concurrently; cached pages cost nothing either way).
    fn fetch_ranges(&self, project: &ProjectId, fetches: &[ranges::Fetch]) -> Result<Vec<Bytes>> {
        self.count(RequestKind::Get, fetches.len());
        in_parallel(fetches, |fetch| {
            let path = self.pack_path(project, &fetch.pack);
            let mut file = open_pack(&path, project, &fetch.pack)?;
            read_range(&mut file, &path, &fetch.range)
        })
    }

    fn read_whole_pack(&self, project: &ProjectId, pack: &PackId) -> Result<Bytes> {
        self.count(RequestKind::Get, 1);
        let path = self.pack_path(project, pack);
        let mut file = open_pack(&path, project, pack)?;
        let len = file_len(&file, &path)?;
        if len > MAX_PACK_LEN as u64 {
            return Err(StoreError::OversizedPack {
                project: *project,
                pack: *pack,
                len,
            });
        }
        // Packs are written by rename, never in place, so the length cannot change under the
        // read; the bound holds all the same.
        let bytes = read_range(&mut file, &path, &(0..len))?;
        Ok(bytes)
    }

    fn read_pack_tail(&self, project: &ProjectId, pack: &PackId, len: u64) -> Result<(Bytes, u64)> {
        self.count(RequestKind::Get, 1);
        let path = self.pack_path(project, pack);
        let mut file = open_pack(&path, project, pack)?;
        let total = file_len(&file, &path)?;
        let tail = read_range(&mut file, &path, &(total.saturating_sub(len)..total))?;
        Ok((tail, total))
    }

    fn list_pack_files(&self, project: &ProjectId) -> Result<Vec<(PackId, u64)>> {
        // Temporary files (`.tmp-*`) and anything else that is not a pack name are skipped.
        self.list_fanout(&self.packs_dir(project), |name, file| {
            let Ok(pack) = name.parse::<PackId>() else {
                return Ok(None);
            };
            let len = file
                .metadata()
                .map_err(io_error("stat", &file.path()))?
                .len();
            Ok(Some((pack, len)))
        })
    }

    /// The files of a two-level fan-out folder (`dir/xx/name`), each kept as `keep` makes it
    /// from its name; a missing `dir` is empty. Counts a listing per folder read.
    fn list_fanout<T>(
        &self,
        dir: &Path,
        keep: impl Fn(&str, &fs::DirEntry) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        self.count(RequestKind::List, 1);
        let fanout = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("list", dir)(error)),
        };
        let mut kept = Vec::new();
        for entry in fanout {
            let entry = entry.map_err(io_error("list", dir))?;
            let sub = entry.path();
            if !entry.file_type().map_err(io_error("list", &sub))?.is_dir() {
                continue;
            }
            self.count(RequestKind::List, 1);
            for file in fs::read_dir(&sub).map_err(io_error("list", &sub))? {
                let file = file.map_err(io_error("list", &sub))?;
                if let Some(name) = file.file_name().to_str()
                    && let Some(item) = keep(name, &file)?
                {
                    kept.push(item);
                }
            }
        }
        Ok(kept)
    }

    fn delete_pack_files(&self, project: &ProjectId, packs: &[PackId]) -> Result<()> {
        let mut touched = BTreeSet::new();
        for pack in packs {
            let path = self.pack_path(project, pack);
            self.count(RequestKind::Delete, 1);
            match fs::remove_file(&path) {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        touched.insert(dir.to_owned());
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("delete", &path)(error)),
            }
        }
        for dir in touched {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectBackend for FsBackend {
    async fn put_many(&self, project: &ProjectId, objects: Vec<(ObjectId, Bytes)>) -> Result<()> {
        self.put_layers(project, vec![objects]).await
    }

    async fn put_layers(
        &self,
        project: &ProjectId,
        layers: Vec<Vec<(ObjectId, Bytes)>>,
    ) -> Result<()> {
        let project = *project;
        self.blocking("put", move |backend| backend.write_layers(&project, layers))
            .await
    }

    async fn get_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<Option<Bytes>>> {
        let project = *project;
        let ids = ids.to_vec();
        self.blocking("get", move |backend| {
            backend.count(RequestKind::Get, ids.len());
            ids.iter()
                .map(|id| read_frame(&backend.object_path(&project, id), &project, id))
                .collect()
        })
        .await
    }

    async fn missing(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let project = *project;
        let ids = ids.to_vec();
        self.blocking("missing", move |backend| {
            let mut seen = HashSet::new();
            let mut missing = Vec::new();
            for id in ids {
                if !seen.insert(id) {
                    continue;
                }
                backend.count(RequestKind::Head, 1);
                if !exists(&backend.object_path(&project, &id))? {
                    missing.push(id);
                }
            }
            Ok(missing)
        })
        .await
    }

    async fn list(&self, project: &ProjectId) -> Result<Vec<ObjectId>> {
        let project = *project;
        self.blocking("list", move |backend| {
            backend.list_fanout(&backend.project_dir(&project), |name, _| {
                Ok(name.parse::<ObjectId>().ok())
            })
        })
        .await
    }

    async fn delete_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<()> {
        let project = *project;
        let ids = ids.to_vec();
        self.blocking("delete", move |backend| {
            let mut touched = BTreeSet::new();
            for id in ids {
                let path = backend.object_path(&project, &id);
                backend.count(RequestKind::Delete, 1);
                match fs::remove_file(&path) {
                    Ok(()) => {
                        if let Some(dir) = path.parent() {
                            touched.insert(dir.to_owned());
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io_error("delete", &path)(error)),
                }
            }
            for dir in touched {
                sync_dir(&dir)?;
            }
            Ok(())
        })
        .await
    }

    async fn put_pack(&self, project: &ProjectId, pack: PackId, bytes: Bytes) -> Result<()> {
        let project = *project;
        self.blocking("put pack", move |backend| {
            backend.write_pack(&project, &pack, &bytes)
        })
        .await
    }

    async fn read_ranges(
        &self,
        project: &ProjectId,
        reads: &[(PackId, Range<u64>)],
    ) -> Result<Vec<Bytes>> {
        ranges::check(reads)?;
        let fetches = ranges::plan(reads);
        if fetches.is_empty() {
            return ranges::split(project, reads, &fetches, Vec::new());
        }
        let project = *project;
        let reads = reads.to_vec();
        self.blocking("read", move |backend| {
            let fetched = backend.fetch_ranges(&project, &fetches)?;
            ranges::split(&project, &reads, &fetches, fetched)
        })
        .await
    }

    async fn read_pack(&self, project: &ProjectId, pack: PackId) -> Result<Bytes> {
        let project = *project;
        self.blocking("read pack", move |backend| {
            backend.read_whole_pack(&project, &pack)
        })
        .await
    }

    async fn read_tail(&self, project: &ProjectId, pack: PackId, len: u64) -> Result<(Bytes, u64)> {
        let project = *project;
        self.blocking("read pack", move |backend| {
            backend.read_pack_tail(&project, &pack, len)
        })
        .await
    }

    async fn pack_len(&self, project: &ProjectId, pack: PackId) -> Result<Option<u64>> {
        let project = *project;
        self.blocking("stat pack", move |backend| {
            backend.count(RequestKind::Head, 1);
            let path = backend.pack_path(&project, &pack);
            match fs::metadata(&path) {
                Ok(metadata) => Ok(Some(metadata.len())),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(io_error("stat", &path)(error)),
            }
        })
        .await
    }

    async fn list_packs(&self, project: &ProjectId) -> Result<Vec<(PackId, u64)>> {
        let project = *project;
        self.blocking("list packs", move |backend| {
            backend.list_pack_files(&project)
        })
        .await
    }

    async fn delete_packs(&self, project: &ProjectId, packs: &[PackId]) -> Result<()> {
        let project = *project;
        let packs = packs.to_vec();
        self.blocking("delete packs", move |backend| {
            backend.delete_pack_files(&project, &packs)
        })
        .await
    }

    fn request_counts(&self) -> RequestCounts {
        self.inner.counters.snapshot()
    }
}
