//! Pull, push and sync: the working copy driven over a [`Remote`].
//!
//! - [`pull`]: asks for the head with the base root as `have`, stores the verified frames, then
//!   merges the new tree into the folder ([`WorkingCopy::apply_root`]).
//! - [`push_once`]: snapshot, `plan_push` from the base, then one `push` request when the
//!   objects are small (as change records when few paths changed, [`crate::records`]), or
//!   journaled, resumable batches when they are large or an earlier push was cut off
//!   ([`crate::upload`]). When part of the base is no longer in the object cache, the dirs of
//!   the new tree are rebuilt into it and the server is asked what it lacks (the negotiation).
//!   The push id is random per attempt and reused when a network error or a 5xx leaves the
//!   outcome unknown (or the journal says the same push was under way), so a retry can never
//!   commit twice. A `409 conflict` comes back as a refusal with that problem code.
//! - [`sync`]: pull, then push, until a push commits or there is nothing to push, at most
//!   `rounds` times. This is also what `push` does after a conflict.

use std::collections::BTreeSet;
use std::time::Duration;

use sync_protocol::ObjectId;
use sync_protocol::plan::{PushPlanError, plan_push};
use sync_protocol::stream::Item;
use sync_protocol::tree::{Listing, build_dirs, empty_dir_id};
use sync_protocol::wire::{
    Commit, Committed, Operation, ProblemCode, PullRequest, PushQuery, Restore, Want,
};

use crate::apply::ApplyReport;
use crate::error::{AnswerError, ClientError, RemoteError};
use crate::progress::{Totals, Transfer};
use crate::records;
use crate::remote::{Pulled, Remote, new_push_id};
use crate::state::Base;
use crate::status::listing_changes;
use crate::timing::{free_in_background, timed};
use crate::upload::{
    Batch, PushJournal, SINGLE_REQUEST_BYTES, Sent, negotiate_missing, single_stream,
    upload_batches,
};
use crate::working_copy::WorkingCopy;

/// How many times a request with an unknown outcome is sent again (with the same push id).
const TRANSIENT_RETRIES: u32 = 3;

/// What a pull did.
#[derive(Debug)]
pub struct PullOutcome {
    /// The base version before the pull (`None`: never synced).
    pub from: Option<u64>,
    pub version: u64,
    pub root: ObjectId,
    pub objects: u32,
    pub bytes: u64,
    /// `None` when the working copy was already at the head (nothing to apply).
    pub report: Option<ApplyReport>,
}

/// Pulls the head into `copy`, merging local edits.
pub fn pull(copy: &WorkingCopy, remote: &Remote) -> Result<PullOutcome, ClientError> {
    // Locked from the base read to the apply, so the base the pull starts from is the one the
    // apply merges against.
    let lock = copy.lock()?;
    let (base, stat_cache) = copy.base_and_stat_cache()?;
    // Change records need the listing of the base root, which pending paths make differ.
    let listing = base.pending.is_empty().then_some(&base.listing);
    // One pull request (retried while the outcome is unknown) of `want`, from `have`.
    let attempt = |want: Option<u64>, have: &ObjectId, listing: Option<&Listing>| {
        retry_transient(|| pull_attempt(copy, remote, want, have, listing))
    };
    let pulled = match timed("pull request", || attempt(None, &base.root, listing)) {
        // Records that do not fit the base (a cache that lost a base chunk), or a server that
        // does not know the `records` field: ask for dirs.
        Err(ClientError::PulledRecords(_)) if listing.is_some() => attempt(None, &base.root, None)?,
        Err(ClientError::Remote(error))
            if listing.is_some() && error.code() == Some(ProblemCode::BadJson) =>
        {
            attempt(None, &base.root, None)?
        }
        other => other?,
    };
    let up_to_date =
        pulled.root == base.root && base.version == Some(pulled.version) && base.pending.is_empty();
    let report = if up_to_date {
        None
    } else {
        match copy.apply_root_locked(&lock, &base, stat_cache, pulled.version, pulled.root) {
            // The object cache lost part of the base (cleaned, damaged), so the difference the
            // server sent is not enough: fetch the whole tree and apply again.
            Err(ClientError::ObjectMissing { .. }) => {
                attempt(Some(pulled.version), &empty_dir_id(), None)?;
                let stat_cache = copy.stat_cache()?;
                Some(copy.apply_root_locked(
                    &lock,
                    &base,
                    stat_cache,
                    pulled.version,
                    pulled.root,
                )?)
            }
            other => Some(other?),
        }
    };
    let from = base.version;
    free_in_background(base);
    Ok(PullOutcome {
        from,
        version: pulled.version,
        root: pulled.root,
        objects: pulled.objects,
        bytes: pulled.bytes,
        report,
    })
}

/// One pull request of `want` (the head when `None`) from `have`: every verified frame goes
/// into the object cache as it arrives (so an interrupted pull keeps what it got), and change
/// records, asked for when `have_listing` (the listing of `have`) is given, are applied to it
/// ([`records::apply_pulled`]).
fn pull_attempt(
    copy: &WorkingCopy,
    remote: &Remote,
    want: Option<u64>,
    have: &ObjectId,
    have_listing: Option<&Listing>,
) -> Result<Pulled, ClientError> {
    let request = PullRequest {
        want: want.map(Want::Version),
        have: Some(have.to_hex()),
        records: have_listing.is_some(),
    };
    let objects = copy.objects();
    let mut stream = remote.pull(&copy.config().project, &request)?;
    let mut records = Vec::new();
    while let Some(item) = stream.next_item()? {
        match item {
            // The decoder verified the frame against its id and kind.
            Item::Object(frame) => {
                objects.put_encoded(&frame.id, &frame.compressed)?;
            }
            Item::Record(item) => records.push(item.record),
        }
    }
    let pulled = stream.finish()?;
    if !records.is_empty() {
        let Some(listing) = have_listing else {
            return Err(RemoteError::BadAnswer {
                server: remote.server().to_owned(),
                operation: Operation::Pull,
                reason: AnswerError::UnaskedRecords,
            }
            .into());
        };
        records::apply_pulled(&objects, have, listing, &records, &pulled.root)?;
    }
    Ok(pulled)
}

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

/// Pushes the working copy's changes as one new version on top of its base. Fails with a
/// `conflict` refusal ([`RemoteError::conflict_head`]) when the base is no longer the head, and
/// with `ClientError::PendingPaths` while the last pull left paths un-updated.
pub fn push_once(
    copy: &WorkingCopy,
    remote: &Remote,
    message: Option<&str>,
) -> Result<PushOutcome, ClientError> {
    let _lock = copy.lock()?;
    let (base, stat_cache) = copy.base_and_stat_cache()?;
    if !base.pending.is_empty() {
        return Err(ClientError::PendingPaths {
            paths: base.pending.iter().cloned().collect(),
        });
    }
    let mut snapshot = copy.snapshot_with(&base, stat_cache)?;
    if snapshot.root == base.root {
        return Ok(PushOutcome::NothingToPush {
            version: base.version,
        });
    }
    let objects = copy.objects();
    // A never-synced copy is based on version 0, the empty project: if the head has moved on,
    // the server answers conflict and the caller merges.
    let base_version = base.version.unwrap_or(0);
    let project = &copy.config().project;
    let journal = PushJournal::load(copy)?;
    let plan = match timed("plan", || plan_push(&objects, &base.root, &snapshot.root)) {
        Err(PushPlanError::BaseUnavailable { .. }) => None,
        planned => Some(planned?),
    };
    let small = match (&plan, &journal) {
        (Some(plan), None) => {
            let changes = timed("diff", || {
                listing_changes(&base.listing, &snapshot.scan.listing)
            });
            push_small(
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
                let built = build_dirs(&snapshot.scan.listing).map_err(ClientError::WorkingTree)?;
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
    let committed = sent.committed;
    if committed.root != snapshot.root {
        return Err(RemoteError::BadAnswer {
            server: remote.server().to_owned(),
            operation: Operation::Push,
            reason: AnswerError::WrongRoot {
                expected: snapshot.root,
                committed: committed.root,
            },
        }
        .into());
    }
    let next = Base {
        version: Some(committed.version),
        root: snapshot.root,
        listing: std::mem::take(&mut snapshot.scan.listing),
        pending: BTreeSet::new(),
    };
    timed("save base", || copy.set_base(&next))?;
    free_in_background((base, next, snapshot));
    Ok(PushOutcome::Committed {
        committed,
        objects: sent.objects,
        bytes: sent.bytes,
    })
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
    remote: &Remote,
    objects: &crate::object_cache::ObjectCache,
    changes: &[sync_protocol::diff::Change],
    planned: &[ObjectId],
    target: PushTarget<'_>,
) -> Result<Option<Sent>, ClientError> {
    let send = |batch: Batch| {
        push_whole(
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

/// The common case: one request carries the objects and the commit.
fn push_whole(
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
        retry_transient(|| Ok(remote.push(project, &query, batch.stream.clone())?))
    });
    progress.advance(u64::from(batch.objects), 0);
    progress.finish();
    Ok(Sent {
        committed: committed?,
        objects: batch.objects,
        bytes: batch.stream.len() as u64,
    })
}

/// A large or resumed push: journal, negotiate what is missing if resuming, upload in batches,
/// commit, forget the journal (see [`crate::upload`]).
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
    PushJournal {
        push_id: push_id.clone(),
        base_version,
        root: root.to_hex(),
    }
    .save(copy)?;
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
        retry_transient(|| Ok(remote.upload(project, batch.stream.clone())?))
    })?;
    let commit = Commit {
        push_id,
        base_version,
        root: root.to_hex(),
        message: message.unwrap_or_default().to_owned(),
    };
    let committed = retry_transient(|| Ok(remote.commit(project, &commit)?))?;
    PushJournal::remove(copy)?;
    Ok(Sent {
        committed,
        objects: sent_objects,
        bytes: sent_bytes,
    })
}

/// What a sync did: every pull (one per round) and the final push.
#[derive(Debug)]
pub struct SyncOutcome {
    pub pulls: Vec<PullOutcome>,
    pub push: PushOutcome,
}

/// Pulls (merging), then pushes, until the push commits or there is nothing to push; at most
/// `rounds` rounds.
pub fn sync(
    copy: &WorkingCopy,
    remote: &Remote,
    message: Option<&str>,
    rounds: u32,
) -> Result<SyncOutcome, ClientError> {
    let mut pulls = Vec::new();
    for _ in 0..rounds {
        pulls.push(pull(copy, remote)?);
        match push_once(copy, remote, message) {
            Ok(push) => return Ok(SyncOutcome { pulls, push }),
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(ClientError::NotConverged { attempts: rounds })
}

/// Pushes; after a conflict, does what [`sync`] does.
pub fn push(
    copy: &WorkingCopy,
    remote: &Remote,
    message: Option<&str>,
    rounds: u32,
) -> Result<SyncOutcome, ClientError> {
    match push_once(copy, remote, message) {
        Ok(push) => Ok(SyncOutcome {
            pulls: Vec::new(),
            push,
        }),
        Err(error) if is_conflict(&error) => sync(copy, remote, message, rounds),
        Err(error) => Err(error),
    }
}

/// True for the server's `conflict` answer: the base is no longer the head.
fn is_conflict(error: &ClientError) -> bool {
    error
        .remote()
        .is_some_and(|remote| remote.code() == Some(ProblemCode::Conflict))
}

/// Runs `attempt` again (up to [`TRANSIENT_RETRIES`] more times, with a growing pause) while it
/// fails with a transient remote error.
fn retry_transient<T>(
    mut attempt: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let mut retries = 0;
    loop {
        match attempt() {
            Err(ClientError::Remote(error))
                if error.is_transient() && retries < TRANSIENT_RETRIES =>
            {
                retries += 1;
                std::thread::sleep(Duration::from_millis(200 * u64::from(retries)));
            }
            other => return other,
        }
    }
}

/// Restores `version` as a new version on top of the head (read just before), with one push
/// id per attempt, retried like a push; if another push lands in between, the head is read
/// again, at most `rounds` times.
pub fn restore(
    remote: &Remote,
    project: &str,
    version: u64,
    rounds: u32,
) -> Result<Committed, ClientError> {
    for _ in 0..rounds {
        let head = remote.project(project)?.head();
        let restore = Restore {
            version,
            base_version: head.version,
            push_id: Some(new_push_id()),
            message: None,
        };
        match retry_transient(|| Ok(remote.restore(project, &restore)?)) {
            Err(error) if is_conflict(&error) => continue,
            other => return other,
        }
    }
    Err(ClientError::NotConverged { attempts: rounds })
}
