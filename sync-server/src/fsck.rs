//! `sync-server fsck [project]`: checks that every version of a project is whole and every
//! stored object is what its key says.
//!
//! Two passes per project, both through the store's verified batch reads:
//!
//! 1. closure: from each version's root, breadth-first, every referenced object must be stored
//!    (the empty dir excepted: every node can make it). Objects are read once per project however
//!    many versions share them.
//! 2. integrity: every stored object (the store's listing) must hash to its key and be canonical;
//!    each bad one is named.
//!
//! Stored objects no version references are counted (garbage from conflicts and interrupted
//! uploads), not reported as errors.

use std::collections::HashSet;
use std::fmt;

use anyhow::{Context, bail};
use sync_protocol::{Object, ObjectId};

use crate::catalog::{Catalog, ProjectId, VersionNumber, VersionPage, empty_root};
use crate::store::{Inspected, ObjectStore};

/// Objects read per store call.
const BATCH: usize = 256;

/// What fsck found.
#[derive(Debug, Default)]
pub struct Report {
    pub projects: usize,
    pub versions: usize,
    pub reachable: usize,
    pub stored: usize,
    pub unreferenced: usize,
    /// (project, version, missing object)
    pub missing: Vec<(ProjectId, VersionNumber, ObjectId)>,
    /// (project, object, why)
    pub corrupt: Vec<(ProjectId, ObjectId, String)>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
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
        writeln!(
            f,
            "projects: {}\nversions: {}\nreachable objects: {}\nstored objects: {}\nunreferenced objects: {}\nmissing: {}\ncorrupt: {}\nstatus: {}",
            self.projects,
            self.versions,
            self.reachable,
            self.stored,
            self.unreferenced,
            self.missing.len(),
            self.corrupt.len(),
            if self.is_clean() { "clean" } else { "damaged" }
        )
    }
}

/// Checks one project (by id) or, when `project` is `None`, every project.
pub async fn run(
    catalog: &dyn Catalog,
    store: &ObjectStore,
    project: Option<&str>,
) -> anyhow::Result<Report> {
    let projects: Vec<ProjectId> = match project {
        Some(text) => {
            let id: ProjectId = text.parse().context("the project id")?;
            if catalog.project(id).await?.is_none() {
                bail!("no project {id}");
            }
            vec![id]
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
            all
        }
    };
    let mut report = Report::default();
    for project in projects {
        check_project(catalog, store, project, &mut report).await?;
    }
    Ok(report)
}

async fn check_project(
    catalog: &dyn Catalog,
    store: &ObjectStore,
    project: ProjectId,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.projects += 1;
    let empty = empty_root();
    let mut seen: HashSet<ObjectId> = HashSet::from([empty]);
    let mut before = None;
    loop {
        let page = catalog
            .versions(
                project,
                VersionPage {
                    before,
                    limit: crate::catalog::limits::MAX_VERSION_PAGE,
                },
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.number);
        for version in &page {
            report.versions += 1;
            let mut level: Vec<ObjectId> = Vec::new();
            if seen.insert(version.root) {
                level.push(version.root);
            }
            while !level.is_empty() {
                let mut next = Vec::new();
                for batch in level.chunks(BATCH) {
                    let objects = read_batch(store, project, batch, report).await?;
                    for (id, object) in batch.iter().zip(objects) {
                        match object {
                            Read::Missing => report.missing.push((project, version.number, *id)),
                            Read::Corrupt => {}
                            Read::Object(object) => {
                                report.reachable += 1;
                                for child in children(&object) {
                                    if seen.insert(child) {
                                        next.push(child);
                                    }
                                }
                            }
                        }
                    }
                }
                level = next;
            }
        }
        if before == Some(0) {
            break;
        }
    }
    // Integrity of everything stored, referenced or not.
    let stored = store.list(&project).await?;
    report.stored += stored.len();
    report.unreferenced += stored.iter().filter(|id| !seen.contains(id)).count();
    let already_corrupt: HashSet<ObjectId> = report
        .corrupt
        .iter()
        .filter(|(p, _, _)| *p == project)
        .map(|(_, id, _)| *id)
        .collect();
    let unread: Vec<ObjectId> = stored
        .into_iter()
        .filter(|id| !seen.contains(id) && !already_corrupt.contains(id))
        .collect();
    for batch in unread.chunks(BATCH) {
        read_batch(store, project, batch, report).await?;
    }
    Ok(())
}

enum Read {
    Missing,
    Corrupt,
    Object(Object),
}

/// Reads a batch through the verifying store, recording each corrupt object.
async fn read_batch(
    store: &ObjectStore,
    project: ProjectId,
    ids: &[ObjectId],
    report: &mut Report,
) -> anyhow::Result<Vec<Read>> {
    let inspected = store
        .inspect_many(&project, ids)
        .await
        .context("reading objects")?;
    Ok(ids
        .iter()
        .zip(inspected)
        .map(|(id, inspected)| match inspected {
            Inspected::Missing => Read::Missing,
            Inspected::Valid(verified) => Read::Object(verified.object),
            Inspected::Corrupt(error) => {
                report.corrupt.push((project, *id, error.to_string()));
                Read::Corrupt
            }
        })
        .collect())
}

fn children(object: &Object) -> Vec<ObjectId> {
    match object {
        Object::Chunk(_) => Vec::new(),
        Object::File(file) => file.chunks().iter().map(|chunk| chunk.id).collect(),
        Object::Dir(dir) => dir.entries().iter().map(|entry| entry.id).collect(),
    }
}
