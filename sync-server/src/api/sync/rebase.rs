//! The commit of a push whose client allows a server-side rebase (the `cairn-rebase: allowed`
//! header): when its base is no longer the head, its changes are committed on top of the head
//! if the head has not touched the same paths since the base (`sync_protocol::rebase`).
//!
//! In order, each step durable before the next, so a crash between any two leaves nothing
//! visible that is not whole:
//!
//! 1. the push is accepted against its own base's tree (change records applied to it), and its
//!    objects stored, as any push's;
//! 2. the head is read; if it is still the base, the push commits as usual. Otherwise the base,
//!    the pushed tree and the head are diffed ([`Rebase`]); on an overlap the push gets the
//!    conflict answer as without rebasing, else the head's dirs along the push's paths are
//!    rebuilt and stored (their children are the head's objects and the push's, all stored);
//! 3. the head's compare-and-swap, from the head the rebase read (`CommitRequest::onto`). The
//!    receipt records the push as the client sent it, so a retry of the push id replays the
//!    rebased version. If another push moved the head meanwhile, no receipt is written and the
//!    rebase runs again on the new head, up to [`MAX_REBASE_ATTEMPTS`] times, after which the
//!    push's conflict is recorded.
//!
//! A base whose tree the server no longer has (its version deleted by retention, or a base past
//! the head) cannot be rebased: such a push takes the path of a client without the header.

use sync_protocol::accept::{ObjectInfo, ToStore};
use sync_protocol::compress_object;
use sync_protocol::rebase::{Rebase, RebaseError, RebaseOutcome, RebaseStep};
use sync_protocol::wire::ProblemCode;
use sync_protocol::{Object, ObjectId};
use warp::reply::Response;

use super::off_the_workers;
use crate::api::answer::commit_answer;
use crate::app::App;
use crate::catalog::{CommitOutcome, CommitRequest, Onto, Project, ProjectId, empty_root};
use crate::metrics::Metrics;
use crate::problem::Problem;

/// How many times a push is rebased onto a head that moved again before the compare-and-swap,
/// before it gets the conflict answer. Each attempt that loses means another push committed,
/// so the project as a whole always progresses.
pub const MAX_REBASE_ATTEMPTS: usize = 8;

/// The root of the push's base version, if the server can still rebase onto it: the version
/// exists and its root is stored (touched, so a collection keeps it while the push runs).
pub async fn base_root(
    app: &App,
    project: ProjectId,
    base_version: u64,
) -> Result<Option<ObjectId>, Problem> {
    let Some(version) = app.catalog.version(project, base_version).await? else {
        return Ok(None);
    };
    if version.root == empty_root() {
        return Ok(Some(version.root));
    }
    let objects = app.objects(project).await?;
    let stored = objects.info(&[version.root], true).await?;
    Ok(stored.first().copied().flatten().map(|_| version.root))
}

/// Commits an accepted push (its objects stored) whose base's root is `base_root`: as it is
/// when the head is its base, else rebased onto the head, and answers.
pub async fn commit_rebasing(
    app: &App,
    project: &Project,
    commit: CommitRequest,
    base_root: ObjectId,
    mut head: Project,
) -> Result<Response, Problem> {
    for attempt in 0..MAX_REBASE_ATTEMPTS {
        if attempt > 0 {
            head = app
                .catalog
                .project(project.id)
                .await?
                .ok_or_else(Problem::not_found)?;
        }
        let onto = if head.head_version == commit.base_version {
            Onto {
                head_version: commit.base_version,
                root: commit.root,
            }
        } else {
            match rebase(app, project.id, base_root, commit.root, head.head_root).await? {
                Some(root) => Onto {
                    head_version: head.head_version,
                    root,
                },
                None => break,
            }
        };
        let outcome = app
            .catalog
            .commit(CommitRequest {
                onto: Some(onto),
                ..commit.clone()
            })
            .await?;
        if let CommitOutcome::Committed {
            rebased, replayed, ..
        } = outcome
        {
            if rebased && !replayed {
                Metrics::add(&app.metrics.pushes_rebased, 1);
            }
            return commit_answer(app, project.id, outcome);
        }
        // A conflict on the head this attempt rebased onto is this push id's recorded
        // conflict, replayed; one on a newer head means another push won the race.
        if let CommitOutcome::Conflict { head_version, .. } = outcome
            && head_version == onto.head_version
        {
            return commit_answer(app, project.id, outcome);
        }
    }
    // An overlap, or a head that kept moving: the conflict is recorded under the push id (or,
    // for a retry, the first outcome answered).
    let outcome = app.catalog.commit(commit).await?;
    commit_answer(app, project.id, outcome)
}

/// Rebases the push from `base_root` to `pushed_root` onto `head_root`: the new root, its new
/// dirs stored, or `None` when the push and the head overlap.
async fn rebase(
    app: &App,
    project: ProjectId,
    base_root: ObjectId,
    pushed_root: ObjectId,
    head_root: ObjectId,
) -> Result<Option<ObjectId>, Problem> {
    let objects = app.objects(project).await?;
    let mut rebase = Rebase::new(base_root, pushed_root, head_root);
    let integrity = |error: RebaseError| {
        tracing::error!(%project, %error, "rebase of a push over stored versions");
        Problem::new(ProblemCode::IntegrityError).with_detail(error)
    };
    let patched = loop {
        match rebase.step().map_err(integrity)? {
            RebaseStep::Read(ids) => {
                // Through the index, touched: the rebased tree will reference what it reads.
                let read = objects.read_referenced(&ids).await?;
                for (id, object) in ids.into_iter().zip(read) {
                    let object = object.ok_or_else(|| integrity(rebase.missing(&id)))?;
                    rebase.provide(id, object.object).map_err(integrity)?;
                }
            }
            RebaseStep::Done(RebaseOutcome::Overlap(path)) => {
                tracing::debug!(%project, %path, "push overlaps the head: not rebased");
                return Ok(None);
            }
            RebaseStep::Done(RebaseOutcome::Rebased(patched)) => break patched,
        }
    };
    let root = patched.root;
    if !patched.dirs.is_empty() {
        let dirs = patched.dirs;
        let stored: Vec<ToStore> = off_the_workers(move || {
            dirs.into_iter()
                .map(|(id, object)| to_store(id, &object))
                .collect()
        })
        .await?;
        // One pack, indexed once durable: every child of these dirs is already indexed.
        let written = objects.store(&stored).await?;
        Metrics::add(&app.metrics.objects_stored, written.objects);
        Metrics::add(&app.metrics.object_bytes_stored, written.bytes);
    }
    Ok(Some(root))
}

fn to_store(id: ObjectId, object: &Object) -> ToStore {
    ToStore {
        id,
        info: ObjectInfo::of(object),
        frame: compress_object(&object.encode()).into(),
    }
}
