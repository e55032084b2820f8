//! The folder backend: one file per object under a data folder, for the single-node default.
//!
//! Layout: `<root>/objects/<project-id>/<first two hex digits>/<id-hex>`, the S3 key with one
//! level of fan-out so no folder grows past a few thousand entries.
//!
//! Writes are atomic and durable before they return: each frame goes to a temporary file in
//! its final folder, which is fsynced and renamed into place, and then the folder is fsynced (and
//! its parent, when the folder is new). A crash leaves either no object or the whole object,
//! never a torn one; leftover temporary files (`.tmp-*`) are ignored by reads and listings. The
//! objects of one `put_many` are written and fsynced on several threads at once, so the file
//! system can commit their fsyncs together: a call never ordered its own objects (its folders
//! are fsynced at its end), and it returns only once every object and folder is durable, so a
//! caller that needs order (a push, stored in layers) makes one call per layer.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use sync_protocol::ObjectId;

use super::counts::{RequestCounters, RequestCounts, RequestKind};
use super::{MAX_FRAME_SIZE, ObjectBackend, Result, StoreError};
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

/// The most threads one batch of writes or folder fsyncs uses.
const MAX_WRITERS: usize = 16;

/// Runs `work` on every item, on up to [`MAX_WRITERS`] threads; the first error wins. A single
/// item runs on the calling thread.
fn in_parallel<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    if items.len() <= 1 {
        return items.iter().try_for_each(work);
    }
    let next = AtomicUsize::new(0);
    let writers = items.len().min(MAX_WRITERS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return Ok(());
                        };
                        if let Err(error) = work(item) {
                            // The other threads stop at their next item.
                            next.store(items.len(), Ordering::Relaxed);
                            return Err(error);
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
                        operation: "put",
                        message: "a writer thread panicked".to_owned(),
                    })
                })
            })
            .collect::<Result<Vec<()>>>()
            .map(drop)
    })
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

#[async_trait]
impl ObjectBackend for FsBackend {
    async fn put_many(&self, project: &ProjectId, objects: Vec<(ObjectId, Bytes)>) -> Result<()> {
        let project = *project;
        self.blocking("put", move |backend| {
            let mut seen = HashSet::new();
            let mut to_write = Vec::new();
            for (id, frame) in objects {
                if !seen.insert(id) {
                    continue;
                }
                let path = backend.object_path(&project, &id);
                backend.count(RequestKind::Put, 1);
                // Objects are immutable: an existing file is this object already.
                if exists(&path)? {
                    continue;
                }
                to_write.push((path, frame));
            }
            let dirs: BTreeSet<PathBuf> = to_write
                .iter()
                .map(|(path, _)| path.parent().unwrap_or(backend.root()).to_owned())
                .collect();
            for dir in &dirs {
                create_dirs(dir)?;
            }
            // Each object is written, fsynced and renamed on its own; the fsyncs of a batch run
            // concurrently (the file system commits them together) instead of one after another.
            in_parallel(&to_write, |(path, frame)| {
                let dir = path.parent().unwrap_or(backend.root());
                let temp = write_temp(dir, frame)?;
                fs::rename(&temp, path).map_err(io_error("rename", path))
            })?;
            // One folder fsync per folder touched, after all its renames: only then is the batch
            // durable, and only then does this call return.
            let dirs: Vec<PathBuf> = dirs.into_iter().collect();
            in_parallel(&dirs, |dir| sync_dir(dir))
        })
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
            let dir = backend.project_dir(&project);
            backend.count(RequestKind::List, 1);
            let fanout = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(error) => return Err(io_error("list", &dir)(error)),
            };
            let mut ids = Vec::new();
            for entry in fanout {
                let entry = entry.map_err(io_error("list", &dir))?;
                let sub = entry.path();
                if !entry.file_type().map_err(io_error("list", &sub))?.is_dir() {
                    continue;
                }
                backend.count(RequestKind::List, 1);
                for object in fs::read_dir(&sub).map_err(io_error("list", &sub))? {
                    let object = object.map_err(io_error("list", &sub))?;
                    if let Some(id) = object
                        .file_name()
                        .to_str()
                        .and_then(|name| name.parse::<ObjectId>().ok())
                    {
                        ids.push(id);
                    }
                }
            }
            Ok(ids)
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

    fn request_counts(&self) -> RequestCounts {
        self.inner.counters.snapshot()
    }
}
