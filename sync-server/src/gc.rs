//! `sync-server gc [project] [--grace DURATION] [--dry-run]`, and the same on a schedule inside
//! `serve` (`--gc-every`): drops from the index the objects no version references, rewrites
//! packs that are mostly garbage (or too many small ones) and deletes dead packs.
//!
//! Per project, with `cut` = the start time minus the grace period:
//!
//! 0. **Retention** (when configured): versions older than the retention period are deleted,
//!    the head always excepted; a restore touches the root it restores, so a restore racing
//!    the deletion keeps its objects or is refused as an unknown version.
//! 1. **Keep**: every object reachable from a version's root, or from an object touched at or
//!    after `cut` (a push indexed or referenced it since: it may be about to commit a version
//!    that names it, so it and everything it reaches stay).
//! 2. **Drop** the other indexed objects, parents before children: one level of the garbage's
//!    own graph at a time, each with [`Catalog::unindex`], which keeps any row touched since
//!    `cut` (atomically, in the statement that deletes). Whatever survived a level (a push
//!    referenced it meanwhile) keeps its descendants too, so the index never holds an object
//!    whose children it lost: the closure invariant holds during and after a collection. The
//!    only push that can lose an object is one that took longer than the grace period between
//!    looking the object up and committing, hence a default grace far longer than any upload.
//! 3. **Compact**: a pack whose live frames are less than [`LIVE_THRESHOLD`] of its frames is
//!    rewritten (a pack's header and contents are not garbage), and when a project has more
//!    than [`MAX_SMALL_PACKS`] packs under [`SMALL_PACK_LEN`] the smallest of them are merged
//!    (geometrically: see [`geometric_merge`]), so a cold load stays a few reads. Live frames are
//!    read (and verified), written as new packs, and their rows moved in one transaction each
//!    ([`Catalog::relocate`]); the old pack is then forgotten, which records it as dead.
//! 4. **Delete** dead packs once dead for the grace period (a reader that located an object in
//!    one just before it was compacted still finds it), and record packs found stored but
//!    never indexed (a node died between writing a pack and indexing it) as dead from now.
//!
//! Every step commits as it goes and repeats harmlessly, so a collection that is killed is
//! resumed by running it again. Projects still in the legacy layout are skipped: convert them
//! first (`sync-server admin convert-layout`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use anyhow::Context;
use sync_protocol::{ObjectId, ObjectKind};

use crate::catalog::{
    Catalog, IndexedObject, PackId, PackRecord, ProjectId, Timestamp, empty_root,
};
use crate::store::pack::{ENTRY_LEN, FOOTER_LEN, HEADER_LEN, MAX_PACK_LEN, PackBuilder};
use crate::store::{ObjectStore, PackLocation};

/// How long an object nobody references stays indexed, and a dead pack stored, by default:
/// longer than any upload, so an interrupted push resumed the same day keeps what it sent.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// A pack whose live frames are less than this fraction of its length is rewritten.
pub const LIVE_THRESHOLD: f64 = 0.5;
/// Packs under this length count as small.
pub const SMALL_PACK_LEN: u64 = 4 * 1024 * 1024;
/// More small packs than this in one project are merged.
pub const MAX_SMALL_PACKS: usize = 8;
/// Objects looked up or read per call.
const BATCH: usize = 1024;

/// How to collect.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub grace: Duration,
    /// Retention: versions older than this (the head excepted) are deleted, and what only they
    /// referenced becomes garbage. Every version is kept when `None`.
    pub retain: Option<Duration>,
    /// Count what would go, change nothing.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            retain: None,
            dry_run: false,
        }
    }
}

/// What a collection found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub projects: usize,
    /// Projects skipped because they are still in the legacy layout.
    pub legacy_skipped: usize,
    pub versions: usize,
    /// Versions past the retention period, deleted (or, in a dry run, that would be).
    pub versions_dropped: u64,
    /// Indexed objects kept because a version or a recent object reaches them.
    pub kept: usize,
    /// Indexed objects nothing reaches.
    pub garbage: usize,
    /// Garbage dropped from the index, and the bytes of their frames.
    pub unindexed: u64,
    pub unindexed_bytes: u64,
    /// Garbage kept because a push touched it during the collection (with what it reaches).
    pub rescued: usize,
    /// Packs rewritten, the live objects moved out of them, and the packs written for them.
    pub packs_rewritten: usize,
    pub objects_moved: u64,
    pub packs_written: usize,
    /// Packs that lost their last object and were recorded dead.
    pub packs_forgotten: usize,
    /// Stored packs found never indexed, recorded dead.
    pub orphans_found: u64,
    /// Dead packs deleted from the store, and their bytes.
    pub packs_deleted: usize,
    pub bytes_deleted: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "projects: {} ({} skipped: legacy layout, convert them first)",
            self.projects, self.legacy_skipped
        )?;
        writeln!(
            f,
            "versions: {} kept, {} past the retention period dropped",
            self.versions, self.versions_dropped
        )?;
        writeln!(
            f,
            "objects: {} kept, {} unreferenced, {} dropped from the index ({} bytes), {} kept because a push referenced them meanwhile",
            self.kept, self.garbage, self.unindexed, self.unindexed_bytes, self.rescued
        )?;
        writeln!(
            f,
            "packs: {} rewritten into {} ({} objects moved), {} emptied, {} found never indexed",
            self.packs_rewritten,
            self.packs_written,
            self.objects_moved,
            self.packs_forgotten,
            self.orphans_found
        )?;
        writeln!(
            f,
            "deleted: {} dead packs, {} bytes",
            self.packs_deleted, self.bytes_deleted
        )
    }
}

/// Collects one project or, when `project` is `None`, every project.
pub async fn run(
    catalog: &dyn Catalog,
    store: &ObjectStore,
    project: Option<&str>,
    options: Options,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for project in crate::fsck::select_projects(catalog, project).await? {
        collect(catalog, store, project, options, &mut report)
            .await
            .with_context(|| format!("collecting project {project}"))?;
    }
    Ok(report)
}

/// Collects one project, adding to `report`.
pub async fn collect(
    catalog: &dyn Catalog,
    store: &ObjectStore,
    project: ProjectId,
    options: Options,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.projects += 1;
    if catalog.legacy_layout(project).await?.unwrap_or(false) {
        report.legacy_skipped += 1;
        return Ok(());
    }
    let start = Timestamp::now();
    let cut = before(start, options.grace);
    let retained_since = options.retain.map(|retain| before(start, retain));
    if let Some(since) = retained_since
        && !options.dry_run
    {
        report.versions_dropped += catalog.drop_versions(project, since).await?;
    }
    let mut collection = Collection {
        catalog,
        store,
        project,
        options,
        cut,
        retained_since,
        report,
        rows: HashMap::new(),
    };
    collection.snapshot().await?;
    let kept = collection.reachable().await?;
    collection.drop_garbage(&kept).await?;
    if !options.dry_run {
        collection.compact().await?;
    }
    collection.delete_dead_packs().await?;
    Ok(())
}

struct Collection<'a> {
    catalog: &'a dyn Catalog,
    store: &'a ObjectStore,
    project: ProjectId,
    options: Options,
    cut: Timestamp,
    /// With retention, in a dry run: the versions before this would have been deleted.
    retained_since: Option<Timestamp>,
    report: &'a mut Report,
    /// The index as it was when the collection started.
    rows: HashMap<ObjectId, IndexedObject>,
}

impl Collection<'_> {
    async fn snapshot(&mut self) -> anyhow::Result<()> {
        for pack in self.catalog.packs(self.project).await? {
            for row in self.catalog.pack_objects(self.project, pack.id).await? {
                self.rows.insert(row.id, row);
            }
        }
        Ok(())
    }

    /// Everything a version's root or a recently touched object reaches.
    async fn reachable(&mut self) -> anyhow::Result<HashSet<ObjectId>> {
        let mut seen: HashSet<ObjectId> = HashSet::from([empty_root()]);
        let mut level: Vec<ObjectId> = Vec::new();
        let recent = self.catalog.touched_since(self.project, self.cut).await?;
        level.extend(recent.into_iter().filter(|id| seen.insert(*id)));
        let head = self
            .catalog
            .project(self.project)
            .await?
            .map(|project| project.head_version);
        for version in self.catalog.all_versions(self.project).await? {
            // Only a dry run still finds versions past the retention period.
            let expired = self.retained_since.is_some_and(|since| {
                version.time < since && head.is_some_and(|head| version.number < head)
            });
            if expired {
                self.report.versions_dropped += 1;
                continue;
            }
            self.report.versions += 1;
            if seen.insert(version.root) {
                level.push(version.root);
            }
        }
        while !level.is_empty() {
            let mut next = Vec::new();
            for batch in level.chunks(BATCH) {
                for children in self.children(batch).await?.into_values() {
                    next.extend(children.into_iter().filter(|child| seen.insert(*child)));
                }
            }
            level = next;
        }
        Ok(seen)
    }

    /// The references of each dir and file object among `ids` (read and verified; a damaged
    /// one stops the collection, which must not guess what it reaches). Objects the snapshot
    /// lacks are looked up: a push may have indexed them since.
    async fn children(&self, ids: &[ObjectId]) -> anyhow::Result<HashMap<ObjectId, Vec<ObjectId>>> {
        let unknown: Vec<ObjectId> = ids
            .iter()
            .filter(|id| !self.rows.contains_key(id))
            .copied()
            .collect();
        let located = if unknown.is_empty() {
            Vec::new()
        } else {
            self.catalog.locate(self.project, &unknown, false).await?
        };
        let rows: Vec<IndexedObject> = ids
            .iter()
            .filter_map(|id| self.rows.get(id).copied())
            .chain(located.into_iter().flatten())
            .filter(|row| row.kind != ObjectKind::Chunk)
            .collect();
        let locations: Vec<PackLocation> = rows.iter().map(PackLocation::from).collect();
        let objects = self.store.read_objects(&self.project, &locations).await?;
        Ok(rows
            .iter()
            .zip(objects)
            .map(|(row, object)| (row.id, sync_protocol::tree::references(&object.object)))
            .collect())
    }

    /// Drops the indexed objects `kept` lacks, parents before children, keeping whatever a
    /// push touches meanwhile and all it reaches.
    async fn drop_garbage(&mut self, kept: &HashSet<ObjectId>) -> anyhow::Result<()> {
        let garbage: HashSet<ObjectId> = self
            .rows
            .keys()
            .filter(|id| !kept.contains(id))
            .copied()
            .collect();
        self.report.kept += self.rows.len() - garbage.len();
        self.report.garbage += garbage.len();
        if garbage.is_empty() {
            return Ok(());
        }
        if self.options.dry_run {
            self.report.unindexed_bytes += garbage
                .iter()
                .map(|id| u64::from(self.rows[id].length))
                .sum::<u64>();
            return Ok(());
        }
        // The garbage's own graph: each object's children among the garbage.
        let ids: Vec<ObjectId> = garbage.iter().copied().collect();
        let mut edges: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
        for batch in ids.chunks(BATCH) {
            for (id, children) in self.children(batch).await? {
                let inside: Vec<ObjectId> = children
                    .into_iter()
                    .filter(|child| garbage.contains(child))
                    .collect();
                if !inside.is_empty() {
                    edges.insert(id, inside);
                }
            }
        }
        let mut parents: HashMap<ObjectId, usize> = ids.iter().map(|id| (*id, 0)).collect();
        for child in edges.values().flatten() {
            if let Some(count) = parents.get_mut(child) {
                *count += 1;
            }
        }
        // Level by level (Kahn's order): an object is dropped only after all its parents were.
        let mut level: Vec<ObjectId> = ids.iter().filter(|id| parents[*id] == 0).copied().collect();
        let mut rescued: HashSet<ObjectId> = HashSet::new();
        while !level.is_empty() {
            let doomed: Vec<ObjectId> = level
                .iter()
                .filter(|id| !rescued.contains(*id))
                .copied()
                .collect();
            for batch in doomed.chunks(BATCH) {
                self.unindex(batch, &edges, &mut rescued).await?;
            }
            let mut next = Vec::new();
            for id in &level {
                for child in edges.get(id).into_iter().flatten() {
                    if let Some(count) = parents.get_mut(child) {
                        *count -= 1;
                        if *count == 0 {
                            next.push(*child);
                        }
                    }
                }
            }
            level = next;
        }
        self.report.rescued += rescued.len();
        Ok(())
    }

    /// Unindexes one batch of a level; the rows that stayed (touched since the cut) are
    /// rescued with everything they reach among the garbage.
    async fn unindex(
        &mut self,
        batch: &[ObjectId],
        edges: &HashMap<ObjectId, Vec<ObjectId>>,
        rescued: &mut HashSet<ObjectId>,
    ) -> anyhow::Result<()> {
        self.report.unindexed += self.catalog.unindex(self.project, batch, self.cut).await?;
        let after = self.catalog.locate(self.project, batch, false).await?;
        for (id, row) in batch.iter().zip(after) {
            if row.is_some() {
                let mut stack = vec![*id];
                while let Some(id) = stack.pop() {
                    if rescued.insert(id) {
                        stack.extend(edges.get(&id).into_iter().flatten().copied());
                    }
                }
            } else {
                self.report.unindexed_bytes += u64::from(self.rows[id].length);
            }
        }
        Ok(())
    }

    /// Rewrites the packs that are mostly garbage, and the small ones when there are too many.
    async fn compact(&mut self) -> anyhow::Result<()> {
        let packs = self.catalog.packs(self.project).await?;
        let mut rewrite: Vec<(PackRecord, Vec<IndexedObject>)> = Vec::new();
        let mut small: Vec<(PackRecord, Vec<IndexedObject>)> = Vec::new();
        for pack in packs {
            let rows = self.catalog.pack_objects(self.project, pack.id).await?;
            let live: u64 = rows.iter().map(|row| u64::from(row.length)).sum();
            if rows.is_empty() {
                if self.catalog.forget_pack(self.project, pack.id).await? {
                    self.report.packs_forgotten += 1;
                }
            } else if (live as f64) < LIVE_THRESHOLD * frames_len(&pack) as f64 {
                rewrite.push((pack, rows));
            } else if pack.length < SMALL_PACK_LEN {
                small.push((pack, rows));
            }
        }
        if small.len() > MAX_SMALL_PACKS {
            rewrite.extend(geometric_merge(small));
        }
        if rewrite.is_empty() {
            return Ok(());
        }
        let mut builder = PackBuilder::new();
        for (_, rows) in &rewrite {
            for batch in rows.chunks(BATCH) {
                let locations: Vec<PackLocation> = batch.iter().map(PackLocation::from).collect();
                let objects = self.store.read_objects(&self.project, &locations).await?;
                for (row, object) in batch.iter().zip(objects) {
                    if builder.would_overflow(object.frame.len()) {
                        let full = std::mem::take(&mut builder);
                        self.write_pack(full).await?;
                    }
                    builder.add(row.id, row.kind, row.size, &object.frame);
                }
            }
        }
        self.write_pack(builder).await?;
        for (pack, _) in &rewrite {
            self.report.packs_rewritten += 1;
            if self.catalog.forget_pack(self.project, pack.id).await? {
                self.report.packs_forgotten += 1;
            }
        }
        Ok(())
    }

    /// Writes a compacted pack and moves the rows of its objects into it.
    async fn write_pack(&mut self, builder: PackBuilder) -> anyhow::Result<()> {
        if builder.is_empty() {
            return Ok(());
        }
        let pack = builder.finish();
        debug_assert!(pack.bytes.len() <= MAX_PACK_LEN || pack.entries.len() == 1);
        self.store.put_pack(&self.project, &pack).await?;
        let count = self
            .catalog
            .relocate(self.project, &pack.record(), &pack.index_rows())
            .await?;
        self.report.objects_moved += count;
        self.report.packs_written += 1;
        if count == 0 && self.catalog.forget_pack(self.project, pack.id).await? {
            // Everything it took was collected meanwhile.
            self.report.packs_forgotten += 1;
        }
        Ok(())
    }

    /// Deletes the packs dead for the grace period; records stored packs never indexed.
    async fn delete_dead_packs(&mut self) -> anyhow::Result<()> {
        let stored: HashMap<PackId, u64> = self
            .store
            .list_packs(&self.project)
            .await
            .context("listing packs")?
            .into_iter()
            .collect();
        let indexed: HashSet<PackId> = self
            .catalog
            .packs(self.project)
            .await?
            .into_iter()
            .map(|pack| pack.id)
            .collect();
        let dead = self.catalog.dead_packs(self.project).await?;
        let known: HashSet<PackId> = dead.iter().map(|(id, _)| *id).collect();
        let orphans: Vec<PackId> = stored
            .keys()
            .filter(|id| !indexed.contains(id) && !known.contains(id))
            .copied()
            .collect();
        if self.options.dry_run {
            self.report.orphans_found += orphans.len() as u64;
        } else {
            self.report.orphans_found += self
                .catalog
                .note_dead_packs(self.project, &orphans, Timestamp::now())
                .await?;
        }
        // A pack recorded dead while its push was between writing and indexing it, indexed
        // since: not dead after all.
        let revived: Vec<PackId> = known.intersection(&indexed).copied().collect();
        if !self.options.dry_run && !revived.is_empty() {
            self.catalog.drop_dead_packs(self.project, &revived).await?;
        }
        let due: Vec<PackId> = dead
            .iter()
            .filter(|(id, since)| *since < self.cut && !indexed.contains(id))
            .map(|(id, _)| *id)
            .collect();
        self.report.packs_deleted += due.len();
        self.report.bytes_deleted += due.iter().filter_map(|id| stored.get(id)).sum::<u64>();
        if self.options.dry_run || due.is_empty() {
            return Ok(());
        }
        let present: Vec<PackId> = due
            .iter()
            .filter(|id| stored.contains_key(id))
            .copied()
            .collect();
        self.store.delete_packs(&self.project, &present).await?;
        self.catalog.drop_dead_packs(self.project, &due).await?;
        Ok(())
    }
}

/// Which of the small packs to merge: the smallest ones, up to the last pack that is less than
/// twice all the smaller ones together (git's geometric repack, factor 2). Merging everything
/// each time would rewrite the project's largest small pack on every collection; this way a
/// pack is rewritten only once the newer ones add up to half its size, so each byte is
/// rewritten a logarithmic number of times.
fn geometric_merge<T>(mut small: Vec<(PackRecord, T)>) -> Vec<(PackRecord, T)> {
    small.sort_by_key(|(pack, _)| pack.length);
    let mut smaller = 0u64;
    let mut split = 0;
    for (index, (pack, _)) in small.iter().enumerate() {
        if pack.length < 2 * smaller {
            split = index + 1;
        }
        smaller += pack.length;
    }
    small.truncate(if split >= 2 { split } else { 0 });
    small
}

/// `at` minus `span`, in the catalog's milliseconds.
fn before(at: Timestamp, span: Duration) -> Timestamp {
    let span = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(at.unix_millis().saturating_sub(span))
}

/// The bytes of a pack's frames: its length without header, contents and footer (which, in a
/// pack of a few small objects, are most of it and say nothing of how much is garbage).
fn frames_len(pack: &PackRecord) -> u64 {
    let overhead = (HEADER_LEN + FOOTER_LEN) as u64 + u64::from(pack.objects) * ENTRY_LEN as u64;
    pack.length.saturating_sub(overhead)
}

/// The serve loop's collection: every `every`, all projects, logging what it freed. Errors are
/// logged and retried at the next turn; the loop ends with the node.
pub async fn schedule(
    catalog: std::sync::Arc<dyn Catalog>,
    store: ObjectStore,
    every: Duration,
    options: Options,
    shutdown: crate::shutdown::Shutdown,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
        match run(catalog.as_ref(), &store, None, options).await {
            Ok(report) => tracing::info!(
                projects = report.projects,
                unindexed = report.unindexed,
                unindexed_bytes = report.unindexed_bytes,
                packs_rewritten = report.packs_rewritten,
                packs_deleted = report.packs_deleted,
                bytes_deleted = report.bytes_deleted,
                "garbage collection done"
            ),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "garbage collection failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs(lengths: &[u64]) -> Vec<(PackRecord, ())> {
        lengths
            .iter()
            .enumerate()
            .map(|(index, length)| {
                let record = PackRecord {
                    id: PackId::from_bytes([index as u8; 32]),
                    length: *length,
                    objects: 1,
                    created: Timestamp::from_unix_millis(0),
                };
                (record, ())
            })
            .collect()
    }

    fn merged(lengths: &[u64]) -> Vec<u64> {
        geometric_merge(packs(lengths))
            .iter()
            .map(|(pack, _)| pack.length)
            .collect()
    }

    #[test]
    fn packs_of_one_size_merge_all() {
        assert_eq!(merged(&[10; 9]), [10; 9]);
    }

    #[test]
    fn a_big_merged_pack_is_left_until_the_new_ones_reach_half_of_it() {
        // A merged pack of 1,000 and nine new ones of 10: only the new ones merge.
        let mut lengths = vec![1_000];
        lengths.extend([10; 9]);
        assert_eq!(merged(&lengths), [10; 9]);
        // Once the smaller ones add up to more than half of it, it goes too.
        let mut lengths = vec![1_000];
        lengths.extend([60; 9]);
        assert_eq!(merged(&lengths).len(), 10);
    }

    #[test]
    fn a_geometric_series_is_left_alone() {
        // Each at least twice all the smaller ones together.
        assert!(merged(&[1, 3, 9, 27, 81, 243, 729, 2187, 6561]).is_empty());
        assert!(merged(&[5]).is_empty());
    }
}
