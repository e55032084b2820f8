//! Sync: pull and merge, then push, until the working copy and the server agree; and restore.

use sync_protocol::wire::{Committed, Restore};

use super::{PullOutcome, PushOutcome, is_conflict, pull, push_once};
use crate::error::ClientError;
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
