//! Push: the working copy's changes as one new version on top of its base.

use std::collections::BTreeSet;

use sync_protocol::ObjectId;
use sync_protocol::diff::Change;
use sync_protocol::plan::{PushPlanError, plan_push};
use sync_protocol::tree::{Listing, build_dirs};
use sync_protocol::wire::{Commit, Committed, Operation, ProblemCode, PushQuery};

use super::rebased;
use super::records;
use super::settle;
use super::upload::{
    Batch, SINGLE_REQUEST_BYTES, Sent, negotiate_missing, single_stream, upload_batches,
};
use crate::error::{AnswerError, ClientError, RemoteError};
use crate::progress::{Totals, Transfer};
use crate::stores::index::Index;
use crate::stores::journal::PushJournal;
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::Base;
use crate::timing::{free_in_background, timed};
use crate::transport::{Remote, new_push_id};
use crate::working_copy::status::{listing_changes, scan_changes};
use crate::working_copy::{Snapshot, WorkingCopy, WorkingCopyLock};

/// What a push did.
#[derive(Debug, Clone, Copy)]
pub enum PushOutcome {
    /// The working copy equals its base: nothing was sent.
    NothingToPush { version: Option<u64> },
    Committed {
        committed: Committed,
        /// Objects and bytes of the stream sent.
        objects: u32,
        bytes: u64,
    },
}

impl PushOutcome {
    /// True when the server committed the push on top of other writers' versions: the head
    /// has their changes, which the working copy does not have yet.
    pub fn rebased(&self) -> bool {
        matches!(self, Self::Committed { committed, .. } if committed.rebased)
    }
}

/// Pushes the working copy's changes as one new version on top of its base, or rebased by the
/// server onto the head when the head changed none of its paths since the base. Fails with a
/// `conflict` refusal ([`RemoteError::conflict_head`]) when the base is no longer the head and
/// the push could not be rebased, and
/// with `ClientError::PendingPaths` while the last pull left paths un-updated.
pub fn push_once(
    copy: &WorkingCopy,
    remote: &Remote,
    message: Option<&str>,
) -> Result<PushOutcome, ClientError> {
    let lock = copy.lock()?;
    let index = copy.index()?;
    if index.has_pending() {
        return Err(ClientError::PendingPaths {
            paths: index.pending(),
        });
    }
    let snapshot = copy.snapshot_with(&lock, &index)?;
    push_snapshot(copy, &lock, remote, message, &index, snapshot)
}

/// [`push_once`] of a `snapshot` already taken from `index` (which has no pending paths) under
/// `_lock`.
pub(super) fn push_snapshot(
    copy: &WorkingCopy,
    _lock: &WorkingCopyLock,
    remote: &Remote,
    message: Option<&str>,
    index: &Index,
    mut snapshot: Snapshot,
) -> Result<PushOutcome, ClientError> {
    // An earlier push whose outcome is unknown, unless this is that push again: settling it
    // may record another base than the index's. Otherwise the base is the index's, and is
    // never decoded: its version and root are in the header, and the diff reads its records.
    let settled = match copy.state().journal()? {
        Some(journal) if !journal.is_for(index.version().unwrap_or(0), &snapshot.root) => {
            Some(settle::settle(copy, remote, journal, copy.base_of(index)?)?)
        }
        _ => None,
    };
    let (version, root) = settled
        .as_ref()
        .map_or((index.version(), index.root()), |base| {
            (base.version, base.root)
        });
    if snapshot.root == root {
        // The scan's listing and stats hold every path twice: freeing them is kept off the
        // end of a no-op sync, as a push's end does.
        free_in_background((settled, snapshot));
        return Ok(PushOutcome::NothingToPush { version });
    }
    let objects = copy.objects();
    // A never-synced copy is based on version 0, the empty project: if the head has moved on,
    // the server answers conflict and the caller merges.
    let base_version = version.unwrap_or(0);
    let project = &copy.config().project;
    let journal = copy.state().journal()?;
    let plan = match timed("plan", || plan_push(&objects, &root, &snapshot.root)) {
        Err(PushPlanError::BaseUnavailable { .. }) => None,
        planned => Some(planned?),
    };
    // The new index (the pushed tree as the base, with the scan's stats) is encoded from the
    // scan in place on another thread while the push is out, as if the server will commit it
    // unrebased: building the listing of 8,000 paths, the stats to keep and the encoding took
    // 5 ms of a one-line push after the server's answer. The diff reads the scan in place too.
    let (sent, pushed_index) = std::thread::scope(|scope| {
        let encoding = scope.spawn(|| copy.encode_pushed(&snapshot, index));
        let small = match (&plan, &journal) {
            (Some(plan), None) => {
                let changes = timed("diff", || match &settled {
                    Some(base) => listing_changes(&base.listing, snapshot.scan.listing()),
                    None => scan_changes(index, &snapshot.scan),
                });
                push_small(
                    copy,
                    remote,
                    &objects,
                    &changes,
                    &plan.objects,
                    PushTarget {
                        project,
                        base_version,
                        root: &snapshot.root,
                        message,
                    },
                )?
            }
            _ => None,
        };
        let sent = match small {
            Some(sent) => sent,
            None => {
                if plan.is_none() {
                    // Part of the base tree left the cache (cleaned or damaged): the server still
                    // knows what it has. Every dir of the new tree goes back into the cache, and
                    // the negotiation finds what to send.
                    let built =
                        build_dirs(snapshot.scan.listing()).map_err(ClientError::WorkingTree)?;
                    for (_, dir) in &built.dirs {
                        objects.put_object(dir)?;
                    }
                }
                let negotiate = journal.is_some() || plan.is_none();
                let planned = plan.map(|plan| plan.objects).unwrap_or_default();
                push_in_batches(
                    copy,
                    remote,
                    journal,
                    negotiate,
                    base_version,
                    &snapshot.root,
                    message,
                    &planned,
                )?
            }
        };
        let encoded = encoding
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok::<_, ClientError>((sent, encoded))
    })?;
    let committed = sent.committed;
    if committed.rebased {
        let listing = snapshot.scan.take_listing();
        let next = base_after_commit(
            copy,
            remote,
            Operation::Push,
            &committed,
            snapshot.root,
            listing,
        )?;
        timed("save index", || {
            copy.set_base_after(&next, &snapshot, index)
        })?;
        // A rebased push kept its journal until its base was recorded (see `rebased`).
        copy.state().remove_journal()?;
        free_in_background((settled, next, snapshot));
    } else {
        // The base is the pushed tree at the committed version: the index encoded meanwhile.
        check_committed_root(remote, Operation::Push, &committed, snapshot.root)?;
        timed("save index", || {
            copy.state()
                .write_sealed_index(pushed_index, committed.version, snapshot.root)
        })?;
        free_in_background((settled, snapshot));
    }
    Ok(PushOutcome::Committed {
        committed,
        objects: sent.objects,
        bytes: sent.bytes,
    })
}

/// The base a working copy records once its push of `root` (with `listing`) committed as
/// `committed`: that version, whose root must be `root`; or, rebased onto other writers'
/// versions, the rebased version with their paths pending ([`rebased::rebased_base`]).
pub(super) fn base_after_commit(
    copy: &WorkingCopy,
    remote: &Remote,
    operation: Operation,
    committed: &Committed,
    root: ObjectId,
    listing: Listing,
) -> Result<Base, ClientError> {
    if committed.rebased {
        return rebased::rebased_base(copy, remote, committed, root, &listing);
    }
    check_committed_root(remote, operation, committed, root)?;
    Ok(Base {
        version: Some(committed.version),
        root,
        listing,
        pending: BTreeSet::new(),
    })
}

/// Checks that a version committed unrebased has the root that was sent.
fn check_committed_root(
    remote: &Remote,
    operation: Operation,
    committed: &Committed,
    root: ObjectId,
) -> Result<(), ClientError> {
    if committed.root == root {
        return Ok(());
    }
    Err(RemoteError::BadAnswer {
        server: remote.server().to_owned(),
        operation,
        reason: AnswerError::WrongRoot {
            expected: root,
            committed: committed.root,
        },
    }
    .into())
}

/// Where a push goes: the project, the version it is based on, the new root, the message.
#[derive(Clone, Copy)]
struct PushTarget<'a> {
    project: &'a str,
    base_version: u64,
    root: &'a ObjectId,
    message: Option<&'a str>,
}

/// A push in one request: as change records when few paths changed (re-sent with dirs if the
/// server cannot use them), else the planned objects whole. `None` when they are too large for
/// one request.
fn push_small(
    copy: &WorkingCopy,
    remote: &Remote,
    objects: &ObjectCache,
    changes: &[Change],
    planned: &[ObjectId],
    target: PushTarget<'_>,
) -> Result<Option<Sent>, ClientError> {
    let send = |batch: Batch| {
        push_whole(
            copy,
            remote,
            target.project,
            target.base_version,
            target.root,
            target.message,
            batch,
        )
    };
    let records = timed("records", || {
        records::push_stream(objects, changes, planned, SINGLE_REQUEST_BYTES)
    });
    if let Some(batch) = records? {
        match send(batch) {
            // A server that cannot use the records (or finds they do not fit its copy of the
            // base) is sent the dirs instead.
            Err(ClientError::Remote(error))
                if matches!(
                    error.code(),
                    Some(ProblemCode::BadRecords | ProblemCode::BadStream)
                ) => {}
            other => return other.map(Some),
        }
    }
    match single_stream(objects, planned, SINGLE_REQUEST_BYTES)? {
        Some(batch) => send(batch).map(Some),
        None => Ok(None),
    }
}

/// The common case: one request carries the objects and the commit. When it ends without an
/// answer (the transport's retries spent), its journal is written, so that the next push or
/// pull settles its outcome first (`settle`).
fn push_whole(
    copy: &WorkingCopy,
    remote: &Remote,
    project: &str,
    base_version: u64,
    root: &ObjectId,
    message: Option<&str>,
    batch: Batch,
) -> Result<Sent, ClientError> {
    let push_id = new_push_id();
    let progress = remote.progress();
    progress.start(
        Transfer::Upload,
        Totals {
            objects: Some(u64::from(batch.objects)),
            bytes: Some(batch.stream.len() as u64),
        },
    );
    let query = PushQuery {
        push_id,
        base_version,
        root: root.to_hex(),
        message: message.unwrap_or_default().to_owned(),
    };
    let committed = timed("push request", || {
        remote.push(project, &query, &batch.stream)
    });
    // Also kept for a rebased answer, until the base it leads to is recorded.
    let keep_journal = match &committed {
        Ok(committed) => committed.rebased,
        Err(error) => error.is_transient(),
    };
    if keep_journal {
        copy.state().save_journal(&PushJournal {
            push_id: query.push_id.clone(),
            base_version,
            root: query.root.clone(),
            message: query.message.clone(),
        })?;
    }
    progress.advance(u64::from(batch.objects), 0);
    progress.finish();
    Ok(Sent {
        committed: committed?,
        objects: batch.objects,
        bytes: batch.stream.len() as u64,
    })
}

/// A large or resumed push: journal, negotiate what is missing if resuming, upload in batches,
/// commit, forget the journal (see [`super::upload`]).
#[allow(clippy::too_many_arguments)]
fn push_in_batches(
    copy: &WorkingCopy,
    remote: &Remote,
    journal: Option<PushJournal>,
    negotiate: bool,
    base_version: u64,
    root: &ObjectId,
    message: Option<&str>,
    planned: &[ObjectId],
) -> Result<Sent, ClientError> {
    let project = &copy.config().project;
    let objects = copy.objects();
    let push_id = match &journal {
        Some(journal) if journal.is_for(base_version, root) => journal.push_id.clone(),
        _ => new_push_id(),
    };
    copy.state().save_journal(&PushJournal {
        push_id: push_id.clone(),
        base_version,
        root: root.to_hex(),
        message: message.unwrap_or_default().to_owned(),
    })?;
    let missing;
    let ids = if negotiate {
        // Objects of an earlier attempt may be stored, or the base is not known well enough
        // to plan: ask before sending anything.
        missing = negotiate_missing(remote, project, &objects, *root)?;
        &missing
    } else {
        planned
    };
    let (sent_objects, sent_bytes) = upload_batches(remote, &objects, ids, |batch| {
        Ok(remote.upload(project, &batch.stream)?)
    })?;
    let commit = Commit {
        push_id,
        base_version,
        root: root.to_hex(),
        message: message.unwrap_or_default().to_owned(),
    };
    let committed = remote.commit(project, &commit)?;
    // A rebased answer keeps the journal until the base it leads to is recorded.
    if !committed.rebased {
        copy.state().remove_journal()?;
    }
    Ok(Sent {
        committed,
        objects: sent_objects,
        bytes: sent_bytes,
    })
}
