//! `sync-server admin convert-layout [--project ID] [--dry-run]`: moves projects from the layout
//! before packs (one stored value per object, `objects/<project>/<id>`: the "loose" keys) into
//! packs indexed in the catalog, the layout every push has written since.
//!
//! Until it runs, a project in the old layout still reads (`objects` falls back to the loose
//! keys for what the index lacks) and takes pushes (packed, like any other). The conversion is
//! what lets those fallbacks go: afterwards every read is one index query and ranged pack reads.
//!
//! # Steps, per project
//!
//! 1. **List** the project's loose keys, sorted by id.
//! 2. **Pack**: skip the ids the index already has (objects pushed again since the upgrade, or
//!    packed by an earlier run), read the rest a batch at a time and verify each against its id,
//!    and store the good ones with [`ProjectObjects::store`], exactly as a push stores: each
//!    pack written, durable, then indexed. Batches are cut so that each makes one pack of at
//!    most `MAX_PACK_LEN`. Dirs and file objects go in packs of their own, apart from chunks:
//!    a pull walks the dirs level by level, and with them side by side its ranged reads
//!    coalesce instead of picking one small frame out of each chunk pack.
//! 3. **Mark** the project packed ([`Catalog::set_packed`]): reads stop looking for loose keys.
//! 4. **Delete** the keys listed in step 1, every one of them now indexed.
//!
//! An object whose stored bytes are not the object its key names (or a key listed in step 1,
//! gone when read and not indexed) stops its project after step 2: it is not packed, the
//! project is not marked, nothing of it is deleted, and the command names the object and exits
//! non-zero. The project keeps reading as before; the other projects are still converted.
//! Once the object is repaired (see `StoreError::Integrity`), running the command again
//! finishes the project.
//!
//! # Running it again finishes the job
//!
//! Every step is idempotent, and each starts only once the one before it is complete and
//! durable, so a run stopped at any point (a crash, a kill, a lost connection) is finished by
//! running the command again:
//!
//! - **Stopped while packing**: the packs indexed so far stay, and the next run skips their
//!   objects. A pack written but not yet indexed is garbage (fsck counts it as an unindexed
//!   pack, not as damage) that `sync-server gc` deletes; the next run packs the same ids again
//!   into a new pack (pack names are salted).
//! - **Stopped after marking**: the project is packed but may still have loose keys. A run
//!   takes every project that has loose keys, marked or not, finds them all indexed and
//!   deletes them. A project that is marked and has no loose keys is done, and a run only
//!   lists its (empty) key prefix.
//! - A key is deleted only once its object is indexed and the project marked, so no object is
//!   ever readable neither way.
//!
//! # Beside running servers
//!
//! Nodes of this release may serve meanwhile: they read the index first, fall back to loose
//! keys only for what it lacks, look in the index again for a key found gone (so a deletion
//! racing a read does not make it miss), and never write loose keys. Nodes of a release from
//! before packs do write them: upgrade every node first. A key such a node writes after step 1
//! is not deleted, and the next run packs it.
//!
//! # Memory
//!
//! Besides the project's loose ids (listed up front, 32 bytes each), bounded whatever the
//! project's size: one batch of [`READ_BATCH`] objects read, at most two pending packs' frames
//! (trees and chunks, at most `MAX_PACK_LEN` each) and the one pack being written from them.

use std::fmt;

use anyhow::{Context, bail};
use sync_protocol::accept::{ObjectInfo, ToStore};
use sync_protocol::{ObjectId, ObjectKind};

use crate::cache::HotCache;
use crate::catalog::{Catalog, ProjectId};
use crate::objects::{Layouts, ProjectObjects};
use crate::store::pack::{MAX_PACK_LEN, packed_len};
use crate::store::{Inspected, ObjectStore, StoreError};

/// Ids looked up in the index per query.
const LOOKUP_BATCH: usize = 1024;
/// Loose objects read per batch (the backend runs the reads concurrently). Most are chunks of
/// tens of KiB; a frame is at most `MAX_FRAME_SIZE` (a dir of 65,536 long names).
pub const READ_BATCH: usize = 64;

/// What to convert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Only this project; every project when `None`.
    pub project: Option<ProjectId>,
    /// Read and verify everything, write nothing: the report says what a run would do.
    pub dry_run: bool,
}

/// What a run did to one project (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectReport {
    pub project: ProjectId,
    /// Whether the project was in the layout before packs when the run came to it (false: a
    /// run stopped after marking it, or keys an old node wrote later).
    pub legacy: bool,
    /// Loose keys found.
    pub loose: usize,
    /// Loose objects the index already had, left where the index says.
    pub already_indexed: usize,
    /// Objects packed and indexed.
    pub packed: u64,
    pub packs: u64,
    /// The packs' bytes.
    pub bytes: u64,
    /// Loose keys deleted.
    pub deleted: usize,
    /// Objects whose stored bytes are not the object their key names, and why: not packed.
    pub corrupt: Vec<(ObjectId, String)>,
    /// Keys listed, gone when read, and not in the index either.
    pub vanished: Vec<ObjectId>,
}

impl ProjectReport {
    fn new(project: ProjectId, legacy: bool, loose: usize) -> Self {
        Self {
            project,
            legacy,
            loose,
            already_indexed: 0,
            packed: 0,
            packs: 0,
            bytes: 0,
            deleted: 0,
            corrupt: Vec::new(),
            vanished: Vec::new(),
        }
    }

    /// Whether damage kept the project from being converted.
    pub fn is_damaged(&self) -> bool {
        !self.corrupt.is_empty() || !self.vanished.is_empty()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    /// The projects that had something to convert, in the order they were converted.
    pub projects: Vec<ProjectReport>,
    /// Projects already packed with no loose keys left: nothing to do.
    pub already_packed: usize,
}

impl Report {
    /// True when no project was held back by damage.
    pub fn is_clean(&self) -> bool {
        self.damaged_objects() == 0
    }

    /// Objects that kept their project from being converted.
    pub fn damaged_objects(&self) -> usize {
        self.projects
            .iter()
            .map(|project| project.corrupt.len() + project.vanished.len())
            .sum()
    }

    fn total(&self, count: impl Fn(&ProjectReport) -> u64) -> u64 {
        self.projects.iter().map(count).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "dry run: nothing was written; the counts are what a run would do"
            )?;
        }
        for project in &self.projects {
            let outcome = match (project.is_damaged(), self.dry_run) {
                (true, _) => "not converted (damaged objects; nothing deleted)",
                (false, true) => "would be converted",
                (false, false) => "converted",
            };
            writeln!(f, "project {}: {outcome}", project.project)?;
            writeln!(
                f,
                "  loose keys: {}\n  already indexed: {}\n  objects packed: {}\n  packs written: {}\n  bytes written: {}\n  loose keys deleted: {}",
                project.loose,
                project.already_indexed,
                project.packed,
                project.packs,
                project.bytes,
                project.deleted
            )?;
            for (id, why) in &project.corrupt {
                writeln!(f, "corrupt: project {} object {id}: {why}", project.project)?;
            }
            for id in &project.vanished {
                writeln!(
                    f,
                    "vanished: project {} object {id}: listed, gone when read, and not indexed",
                    project.project
                )?;
            }
        }
        let damaged = self
            .projects
            .iter()
            .filter(|project| project.is_damaged())
            .count();
        writeln!(
            f,
            "projects converted: {}\nprojects already packed: {}\nprojects not converted: {damaged}\nobjects packed: {}\npacks written: {}\nbytes written: {}\nloose keys deleted: {}\ndamaged objects: {}\nstatus: {}",
            self.projects.len() - damaged,
            self.already_packed,
            self.total(|project| project.packed),
            self.total(|project| project.packs),
            self.total(|project| project.bytes),
            self.total(|project| project.deleted as u64),
            self.damaged_objects(),
            match (self.is_clean(), self.dry_run) {
                (false, _) => "damaged",
                (true, true) => "dry run",
                (true, false) => "done",
            }
        )
    }
}

/// Converts one project or every project (see the module doc). An `Err` is a failure to reach
/// the stores (the run can be repeated); damaged objects are in the report.
pub async fn run(
    catalog: &dyn Catalog,
    store: &ObjectStore,
    options: Options,
) -> anyhow::Result<Report> {
    let projects = match options.project {
        Some(id) => {
            if catalog.project(id).await?.is_none() {
                bail!("no project {id}");
            }
            vec![id]
        }
        None => crate::fsck::select_projects(catalog, None).await?,
    };
    // This process reads each object once: nothing to keep.
    let cache = HotCache::new(0);
    let layouts = Layouts::default();
    let mut report = Report {
        dry_run: options.dry_run,
        ..Report::default()
    };
    for project in projects {
        let legacy = catalog.legacy_layout(project).await?.unwrap_or(false);
        let mut loose = store
            .list(&project)
            .await
            .with_context(|| format!("listing the loose keys of project {project}"))?;
        if !legacy && loose.is_empty() {
            report.already_packed += 1;
            continue;
        }
        // Sorted, so that a run after a crash packs the same batches again (see the module doc).
        loose.sort_unstable();
        loose.dedup();
        tracing::info!(%project, legacy, loose = loose.len(), "converting");
        let objects = ProjectObjects::open(catalog, store, &cache, &layouts, project).await?;
        let mut conversion = Conversion {
            catalog,
            store,
            objects,
            dry_run: options.dry_run,
            report: ProjectReport::new(project, legacy, loose.len()),
            trees: Pending::default(),
            chunks: Pending::default(),
        };
        conversion
            .run(&loose)
            .await
            .with_context(|| format!("converting project {project}"))?;
        let done = conversion.report;
        tracing::info!(
            %project,
            packed = done.packed,
            packs = done.packs,
            deleted = done.deleted,
            damaged = done.is_damaged(),
            "project done"
        );
        report.projects.push(done);
    }
    Ok(report)
}

/// Verified objects gathered for one pack.
#[derive(Debug, Default)]
struct Pending {
    objects: Vec<ToStore>,
    frames_len: usize,
}

impl Pending {
    /// Whether a frame of `frame_len` bytes would take the pack past `MAX_PACK_LEN` (a pack
    /// always takes its first frame, as `PackBuilder` does).
    fn would_overflow(&self, frame_len: usize) -> bool {
        !self.objects.is_empty()
            && packed_len(self.frames_len + frame_len, self.objects.len() + 1) > MAX_PACK_LEN
    }

    fn push(&mut self, object: ToStore) {
        self.frames_len += object.frame.len();
        self.objects.push(object);
    }
}

/// One project's conversion in progress.
struct Conversion<'a> {
    catalog: &'a dyn Catalog,
    store: &'a ObjectStore,
    objects: ProjectObjects<'a>,
    dry_run: bool,
    report: ProjectReport,
    /// Dirs and file objects, packed apart from chunks (see the module doc).
    trees: Pending,
    chunks: Pending,
}

impl Conversion<'_> {
    async fn run(&mut self, loose: &[ObjectId]) -> anyhow::Result<()> {
        let project = self.objects.project();
        // Keys listed but gone when read: packed and deleted by another run of this command
        // meanwhile if the index has them, lost if not.
        let mut gone = Vec::new();
        for lookup in loose.chunks(LOOKUP_BATCH) {
            let located = self.catalog.locate(project, lookup, false).await?;
            let unindexed: Vec<ObjectId> = lookup
                .iter()
                .zip(&located)
                .filter(|(_, row)| row.is_none())
                .map(|(id, _)| *id)
                .collect();
            self.report.already_indexed += lookup.len() - unindexed.len();
            for batch in unindexed.chunks(READ_BATCH) {
                for (id, inspected) in self.read_loose(batch).await? {
                    match inspected {
                        Inspected::Valid(verified) => {
                            let info = ObjectInfo::of(&verified.object);
                            self.add(ToStore {
                                id,
                                info,
                                frame: verified.frame,
                            })
                            .await?;
                        }
                        Inspected::Corrupt(error) => {
                            self.report.corrupt.push((id, error.to_string()));
                        }
                        Inspected::Missing => gone.push(id),
                    }
                }
            }
        }
        self.flush(ObjectKind::Dir).await?;
        self.flush(ObjectKind::Chunk).await?;
        for batch in gone.chunks(LOOKUP_BATCH) {
            let located = self.catalog.locate(project, batch, false).await?;
            self.report.vanished.extend(
                batch
                    .iter()
                    .zip(located)
                    .filter(|(_, row)| row.is_none())
                    .map(|(id, _)| *id),
            );
        }
        if self.report.is_damaged() {
            return Ok(());
        }
        if self.dry_run {
            self.report.deleted = loose.len();
            return Ok(());
        }
        // Marked first, deleted after: see the module doc.
        if self.report.legacy {
            self.catalog.set_packed(project).await?;
        }
        for batch in loose.chunks(LOOKUP_BATCH) {
            self.store
                .delete_many(&project, batch)
                .await
                .context("deleting loose keys")?;
            self.report.deleted += batch.len();
        }
        Ok(())
    }

    /// Reads and verifies `ids` under their own keys. A value too long to be any object is not
    /// read at all and fails the whole batch: it is reported corrupt and the rest read again.
    async fn read_loose(&mut self, ids: &[ObjectId]) -> anyhow::Result<Vec<(ObjectId, Inspected)>> {
        let project = self.objects.project();
        let mut ids = ids.to_vec();
        loop {
            match self.store.inspect_many(&project, &ids).await {
                Ok(inspected) => return Ok(ids.into_iter().zip(inspected).collect()),
                Err(StoreError::Oversized { id, len, .. }) if ids.contains(&id) => {
                    self.report
                        .corrupt
                        .push((id, format!("{len} bytes, more than any valid frame")));
                    ids.retain(|other| *other != id);
                }
                Err(error) => return Err(error).context("reading loose objects"),
            }
        }
    }

    /// Adds a verified object to its pending pack, storing that pack first if it is full.
    async fn add(&mut self, object: ToStore) -> anyhow::Result<()> {
        let kind = object.info.kind;
        if self.pending(kind).would_overflow(object.frame.len()) {
            self.flush(kind).await?;
        }
        self.pending(kind).push(object);
        Ok(())
    }

    fn pending(&mut self, kind: ObjectKind) -> &mut Pending {
        match kind {
            ObjectKind::Chunk => &mut self.chunks,
            ObjectKind::File | ObjectKind::Dir => &mut self.trees,
        }
    }

    /// Stores the pending pack of `kind`'s group as one pack, written then indexed (in a dry
    /// run, only counts it).
    async fn flush(&mut self, kind: ObjectKind) -> anyhow::Result<()> {
        let pending = std::mem::take(self.pending(kind));
        if pending.objects.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            self.report.packed += pending.objects.len() as u64;
            self.report.packs += 1;
            self.report.bytes += packed_len(pending.frames_len, pending.objects.len()) as u64;
            return Ok(());
        }
        let stored = self
            .objects
            .store(&pending.objects)
            .await
            .context("storing a pack")?;
        self.report.packed += stored.objects;
        self.report.packs += stored.packs;
        self.report.bytes += stored.bytes;
        // Progress, for long runs: a pack is at most 64 MiB.
        tracing::info!(
            project = %self.report.project,
            objects = stored.objects,
            bytes = stored.bytes,
            packed_so_far = self.report.packed,
            of = self.report.loose,
            "pack stored"
        );
        Ok(())
    }
}
