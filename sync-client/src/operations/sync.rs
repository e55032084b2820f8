//! Sync: pull and merge, then push, until the working copy and the server agree; and restore.

use sync_protocol::wire::{Committed, Restore};

use super::push::push_snapshot;
use super::{PullOutcome, PushOutcome, is_conflict, pull, push_once};
use crate::error::ClientError;
use crate::timing::timed;
use crate::transport::{Remote, new_push_id};
use crate::working_copy::WorkingCopy;

/// What a sync did: every pull (one per round) and the final push.
#[derive(Debug)]
pub struct SyncOutcome {
    pub pulls: Vec<PullOutcome>,
    pub push: PushOutcome,
}

/// Pulls (merging), then pushes, until the push commits or there is nothing to push; at most
/// `rounds` rounds. A push the server rebased onto other writers' versions is followed by one
/// more pull, which brings their changes, so the working copy ends at the head.
pub fn sync(
    copy: &WorkingCopy,
    remote: &Remote,
    message: Option<&str>,
    rounds: u32,
) -> Result<SyncOutcome, ClientError> {
    if let Some(outcome) = sync_at_head(copy, remote, message)? {
        return Ok(outcome);
    }
    let mut pulls = Vec::new();
    for _ in 0..rounds {
        pulls.push(pull(copy, remote)?);
        match push_once(copy, remote, message) {
            Ok(push) => {
                // Rebased on top of other writers' versions: their changes are in the head
                // but not yet here.
                if push.rebased() {
                    pulls.push(pull(copy, remote)?);
                }
                return Ok(SyncOutcome { pulls, push });
            }
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(ClientError::NotConverged { attempts: rounds })
}

/// The common sync in one small request: the head is asked for (`GET` of the project) while
/// the folder is scanned, and when it is still the working copy's base there is nothing to
/// pull, so the snapshot is pushed at once, or nothing is sent when nothing changed. A no-op
/// sync so costs one scan and one round trip that overlap, where the rounds cost a pull
/// request, then a second read of the base and the scan. `None` (nothing done) when the head
/// moved on, the base has pending paths, an earlier push's outcome is unknown, or the push
/// met a conflict: [`sync`]'s rounds then run as before.
fn sync_at_head(
    copy: &WorkingCopy,
    remote: &Remote,
    message: Option<&str>,
) -> Result<Option<SyncOutcome>, ClientError> {
    let lock = copy.lock()?;
    let index = copy.index()?;
    if index.has_pending() || copy.state().journal()?.is_some() {
        return Ok(None);
    }
    let project = &copy.config().project;
    let (head, snapshot) = std::thread::scope(|scope| {
        let head = scope.spawn(|| timed("head request", || remote.project(project)));
        let snapshot = copy.snapshot_with(&lock, &index);
        let head = head
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (head, snapshot)
    });
    let head = head?.head();
    let snapshot = snapshot?;
    if index.version() != Some(head.version) || index.root() != head.root {
        return Ok(None);
    }
    // What a pull finds at the head: nothing to bring.
    let at_head = PullOutcome {
        from: index.version(),
        version: head.version,
        root: head.root,
        objects: 0,
        bytes: 0,
        report: None,
    };
    let push = match push_snapshot(copy, &lock, remote, message, &index, snapshot) {
        Ok(push) => push,
        // Someone pushed since the head was read: the rounds pull and merge.
        Err(error) if is_conflict(&error) => return Ok(None),
        Err(error) => return Err(error),
    };
    drop(lock);
    let mut pulls = vec![at_head];
    // Rebased on top of a version pushed meanwhile: its changes are not here yet.
    if push.rebased() {
        pulls.push(pull(copy, remote)?);
    }
    Ok(Some(SyncOutcome { pulls, push }))
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
        // A push the server rebased left the other writers' paths pending: pull them first.
        Err(error) if is_conflict(&error) || matches!(error, ClientError::PendingPaths { .. }) => {
            sync(copy, remote, message, rounds)
        }
        Err(error) => Err(error),
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
        // Retried by the transport with the same push id while the outcome is unknown.
        match remote.restore(project, &restore).map_err(ClientError::from) {
            Err(error) if is_conflict(&error) => continue,
            other => return other,
        }
    }
    Err(ClientError::NotConverged { attempts: rounds })
}
