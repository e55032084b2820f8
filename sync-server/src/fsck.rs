//! `sync-server fsck [project] [--read-data [--sample FRACTION]]`: checks that every version of a
//! project is whole, that the object index and the stored packs agree, and (with
//! `--read-data`) that every stored object is what its id says.
//!
//! Per project:
//!
//! 1. **Packs and index**: every pack the index names is stored, with its length, and its own
//!    table of contents (read from its tail, two ranged reads) agrees with every index row that
//!    names it; a stored pack the index does not name is counted as garbage (a push that died
//!    between writing its pack and indexing it), not as damage.
//! 2. **Closure**: from each version's root, breadth-first, every referenced object must be
//!    indexed (the empty dir excepted: every node makes it). Dirs and file objects are read and
//!    verified to find their children; chunks are looked up, and read only with `--read-data`.
//!    Objects are visited once per project however many versions share them.
//! 3. With `--read-data`, every indexed object no version reaches is read and verified too.
//!    `--sample F` reads only a fraction of the chunks, chosen by id so a re-run reads the
//!    same ones; dirs and file objects are always read.
//!
//! A project still in the legacy layout (one stored value per object) is checked the old way
//! for what the index does not have: present under its key, and verified when read.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;
use std::fmt;

use anyhow::{Context, bail};
use sync_protocol::{Object, ObjectId, ObjectKind};

use crate::catalog::{Catalog, IndexedObject, ProjectId, VersionNumber, empty_root};
use crate::store::pack::PackId;
use crate::store::{Inspected, ObjectStore, PackLocation};

/// Objects looked up or read per call.
const BATCH: usize = 1024;
/// How many packs' tables of contents are read at once.
const PACKS_AT_ONCE: usize = 16;

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Read and verify the data of chunks too, not only dirs and file objects.
    pub read_data: bool,
    /// With `read_data`, the fraction of chunks read (1.0: all).
    pub sample: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            read_data: false,
            sample: 1.0,
        }
    }
}

impl Options {
    /// Whether the data of chunk `id` is read.
    fn reads_chunk(&self, id: &ObjectId) -> bool {
        if !self.read_data {
            return false;
        }
        // The id is a hash: its first bytes are uniform.
        let position = u16::from_be_bytes([id.as_bytes()[0], id.as_bytes()[1]]);
        f64::from(position) < self.sample * 65_536.0
    }
}

/// What fsck found.
#[derive(Debug, Default)]
pub struct Report {
    pub projects: usize,
    pub versions: usize,
    pub reachable: usize,
    /// Objects read and verified.
    pub verified: usize,
    pub packs: usize,
    pub indexed: usize,
    pub unreferenced: usize,
    /// Stored packs no index row names: garbage for collection.
    pub unindexed_packs: usize,
    /// (project, version, missing object)
    pub missing: Vec<(ProjectId, VersionNumber, ObjectId)>,
    /// (project, object, why)
    pub corrupt: Vec<(ProjectId, ObjectId, String)>,
    /// (project, pack, why): a pack that is gone, damaged or disagrees with the index.
    pub bad_packs: Vec<(ProjectId, PackId, String)>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.bad_packs.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (project, version, id) in &self.missing {
            writeln!(
                f,
                "missing: project {project} version {version} object {id}"
            )?;
        }
        for (project, id, why) in &self.corrupt {
            writeln!(f, "corrupt: project {project} object {id}: {why}")?;
        }
        for (project, pack, why) in &self.bad_packs {
            writeln!(f, "bad pack: project {project} pack {pack}: {why}")?;
        }
        writeln!(
            f,
            "projects: {}\nversions: {}\nreachable objects: {}\nverified objects: {}\npacks: {}\nindexed objects: {}\nunreferenced objects: {}\nunindexed packs: {}\nmissing: {}\ncorrupt: {}\nbad packs: {}\nstatus: {}",
            self.projects,
            self.versions,
            self.reachable,
            self.verified,
            self.packs,
            self.indexed,
            self.unreferenced,
            self.unindexed_packs,
            self.missing.len(),
            self.corrupt.len(),
            self.bad_packs.len(),
            if self.is_clean() { "clean" } else { "damaged" }
        )
    }
}

/// Checks one project (by id) or, when `project` is `None`, every project.
pub async fn run(
    catalog: &dyn Catalog,
    store: &ObjectStore,
    project: Option<&str>,
    options: Options,
) -> anyhow::Result<Report> {
    let projects = select_projects(catalog, project).await?;
    let mut report = Report::default();
    for project in projects {
        let mut check = ProjectCheck {
            catalog,
            store,
            project,
            options,
            legacy: catalog.legacy_layout(project).await?.unwrap_or(false),
            report: &mut report,
            seen: HashSet::from([empty_root()]),
        };
        check.run().await?;
    }
    Ok(report)
}

/// The project `project` names (its id, which must exist), or every project when `None`.
pub async fn select_projects(
    catalog: &dyn Catalog,
    project: Option<&str>,
) -> anyhow::Result<Vec<ProjectId>> {
    match project {
        Some(text) => {
            let id: ProjectId = text.parse().context("the project id")?;
            if catalog.project(id).await?.is_none() {
                bail!("no project {id}");
            }
            Ok(vec![id])
        }
        None => {
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = catalog
                    .all_projects(after, crate::catalog::limits::MAX_PROJECT_PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                all.extend(page.iter().map(|project| project.id));
            }
            Ok(all)
        }
    }
}

struct ProjectCheck<'a> {
    catalog: &'a dyn Catalog,
    store: &'a ObjectStore,
    project: ProjectId,
    options: Options,
    legacy: bool,
    report: &'a mut Report,
    seen: HashSet<ObjectId>,
}

/// An object as the walk found it.
enum Found {
    Missing,
    /// Stored; its children when it was read.
    Present(Vec<ObjectId>),
}

impl ProjectCheck<'_> {
    async fn run(&mut self) -> anyhow::Result<()> {
        self.report.projects += 1;
        let indexed = self.check_packs().await?;
        self.walk_versions().await?;
        // Everything indexed that no version reaches: garbage until collected, and read too
        // with --read-data.
        let unreferenced: Vec<IndexedObject> = indexed
            .into_iter()
            .filter(|row| !self.seen.contains(&row.id))
            .collect();
        self.report.unreferenced += unreferenced.len();
        if self.options.read_data {
            for batch in unreferenced.chunks(BATCH) {
                let rows: Vec<IndexedObject> = batch
                    .iter()
                    .filter(|row| {
                        row.kind != ObjectKind::Chunk || self.options.reads_chunk(&row.id)
                    })
                    .copied()
                    .collect();
                self.inspect(&rows).await?;
            }
        }
        if self.legacy && self.options.read_data {
            let loose = self.store.list(&self.project).await?;
            let unread: Vec<ObjectId> = loose
                .into_iter()
                .filter(|id| !self.seen.contains(id))
                .collect();
            self.report.unreferenced += unread.len();
            for batch in unread.chunks(BATCH) {
                self.inspect_loose(batch).await?;
            }
        }
        Ok(())
    }

    /// Packs against index: returns every index row of the project.
    async fn check_packs(&mut self) -> anyhow::Result<Vec<IndexedObject>> {
        let project = self.project;
        let records = self.catalog.packs(project).await?;
        let stored: HashMap<PackId, u64> = self
            .store
            .list_packs(&project)
            .await
            .context("listing packs")?
            .into_iter()
            .collect();
        let named: HashSet<PackId> = records.iter().map(|record| record.id).collect();
        self.report.packs += records.len();
        self.report.unindexed_packs += stored.keys().filter(|id| !named.contains(id)).count();
        // Each pack is a catalog query and a read of its table of contents: many at a time,
        // since a project pushed in many small steps has as many packs.
        let (catalog, store, sizes) = (self.catalog, self.store, &stored);
        let fetched: Vec<_> = futures_util::stream::iter(&records)
            .map(|record| async move {
                let rows = catalog.pack_objects(project, record.id).await;
                let contents = match sizes.get(&record.id) {
                    Some(&len) if len == record.length => {
                        Some(store.pack_contents(&project, record.id).await)
                    }
                    _ => None,
                };
                (rows, contents)
            })
            .buffered(PACKS_AT_ONCE)
            .collect()
            .await;
        let mut rows = Vec::new();
        for (record, (pack_rows, contents)) in records.iter().zip(fetched) {
            let pack_rows = pack_rows?;
            self.report.indexed += pack_rows.len();
            match (stored.get(&record.id), contents) {
                (None, _) => self.bad_pack(record.id, "the index names it, the store lacks it"),
                (Some(&len), None) => self.bad_pack(
                    record.id,
                    format!("{len} bytes stored, the index says {}", record.length),
                ),
                (Some(_), Some(contents)) => match contents {
                    Err(error) => self.bad_pack(record.id, error.to_string()),
                    Ok(entries) => {
                        let contents: HashSet<(ObjectId, u64, u32, ObjectKind, u64)> = entries
                            .iter()
                            .map(|e| (e.id, e.offset, e.length, e.kind, e.size))
                            .collect();
                        for row in &pack_rows {
                            let key = (row.id, row.offset, row.length, row.kind, row.size);
                            if !contents.contains(&key) {
                                self.bad_pack(
                                    record.id,
                                    format!("the index row of {} is not in its contents", row.id),
                                );
                            }
                        }
                    }
                },
            }
            rows.extend(pack_rows);
        }
        Ok(rows)
    }

    fn bad_pack(&mut self, pack: PackId, why: impl fmt::Display) {
        self.report
            .bad_packs
            .push((self.project, pack, why.to_string()));
    }

    /// Closure from every version's root, level by level across all versions at once, so a
    /// project of many small versions costs a few batched reads per level, not a few
    /// sequential reads per version. A missing object is reported with the first version
    /// found to reach it.
    async fn walk_versions(&mut self) -> anyhow::Result<()> {
        let versions = self.catalog.all_versions(self.project).await?;
        self.report.versions += versions.len();
        let mut level: Vec<(ObjectId, VersionNumber)> = versions
            .iter()
            .filter(|version| self.seen.insert(version.root))
            .map(|version| (version.root, version.number))
            .collect();
        while !level.is_empty() {
            let mut next = Vec::new();
            for batch in level.chunks(BATCH) {
                let ids: Vec<ObjectId> = batch.iter().map(|(id, _)| *id).collect();
                for ((id, number), found) in batch.iter().zip(self.look(&ids).await?) {
                    match found {
                        Found::Missing => self.report.missing.push((self.project, *number, *id)),
                        Found::Present(children) => {
                            self.report.reachable += 1;
                            for child in children {
                                if self.seen.insert(child) {
                                    next.push((child, *number));
                                }
                            }
                        }
                    }
                }
            }
            level = next;
        }
        Ok(())
    }

    /// Looks up a batch: present or missing, and the children of dirs and file objects (read
    /// and verified; a corrupt one is reported and has no children).
    async fn look(&mut self, ids: &[ObjectId]) -> anyhow::Result<Vec<Found>> {
        let located = self.catalog.locate(self.project, ids, false).await?;
        let mut to_read = Vec::new();
        let mut loose = Vec::new();
        for (id, row) in ids.iter().zip(&located) {
            match row {
                Some(row) if row.kind != ObjectKind::Chunk || self.options.reads_chunk(id) => {
                    to_read.push(*row);
                }
                Some(_) => {}
                None if self.legacy => loose.push(*id),
                None => {}
            }
        }
        let mut children: HashMap<ObjectId, Vec<ObjectId>> = self.inspect(&to_read).await?;
        let loose_found = self.inspect_loose(&loose).await?;
        children.extend(loose_found);
        Ok(ids
            .iter()
            .zip(located)
            .map(|(id, row)| match (row, children.remove(id)) {
                (_, Some(children)) => Found::Present(children),
                (Some(_), None) => Found::Present(Vec::new()),
                (None, None) => Found::Missing,
            })
            .collect())
    }

    /// Reads and verifies indexed objects, reporting each corrupt one; the children of those
    /// that read well.
    async fn inspect(
        &mut self,
        rows: &[IndexedObject],
    ) -> anyhow::Result<HashMap<ObjectId, Vec<ObjectId>>> {
        let locations: Vec<PackLocation> = rows.iter().map(PackLocation::from).collect();
        let mut children = HashMap::new();
        if locations.is_empty() {
            return Ok(children);
        }
        // A pack gone or cut short fails the whole read: report each of its objects.
        let inspected = match self.store.inspect_objects(&self.project, &locations).await {
            Ok(inspected) => inspected,
            Err(error) => {
                for row in rows {
                    self.report
                        .corrupt
                        .push((self.project, row.id, error.to_string()));
                }
                return Ok(children);
            }
        };
        for (row, inspected) in rows.iter().zip(inspected) {
            self.record(row.id, inspected, &mut children);
        }
        Ok(children)
    }

    /// The legacy layout: objects under their own keys.
    async fn inspect_loose(
        &mut self,
        ids: &[ObjectId],
    ) -> anyhow::Result<HashMap<ObjectId, Vec<ObjectId>>> {
        let mut children = HashMap::new();
        if ids.is_empty() {
            return Ok(children);
        }
        let inspected = self
            .store
            .inspect_many(&self.project, ids)
            .await
            .context("reading objects")?;
        for (id, inspected) in ids.iter().zip(inspected) {
            if !matches!(inspected, Inspected::Missing) {
                self.record(*id, inspected, &mut children);
            }
        }
        Ok(children)
    }

    fn record(
        &mut self,
        id: ObjectId,
        inspected: Inspected,
        children: &mut HashMap<ObjectId, Vec<ObjectId>>,
    ) {
        match inspected {
            Inspected::Valid(verified) => {
                self.report.verified += 1;
                children.insert(id, references(&verified.object));
            }
            Inspected::Corrupt(error) => {
                self.report
                    .corrupt
                    .push((self.project, id, error.to_string()));
                children.insert(id, Vec::new());
            }
            Inspected::Missing => {}
        }
    }
}

fn references(object: &Object) -> Vec<ObjectId> {
    sync_protocol::tree::references(object)
}
