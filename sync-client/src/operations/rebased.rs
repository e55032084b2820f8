//! The base after a push the server rebased: committed on top of other writers' versions, so the
//! head's tree is the pushed tree plus their changes, which are not in the folder yet.
//!
//! The base becomes the rebased version, its root and listing, except at the paths the other
//! writers changed: those keep the pushed tree's entries and are pending (`Base::pending`), as
//! paths a pull had to leave are. So `status` compares the folder with what it pushed and
//! names those paths as not yet updated; a push first pulls; and the next pull merges them into
//! the folder from the pushed tree's entries, never taking their absence for a local deletion.
//!
//! Recording it needs the rebased tree, fetched here with one pull of that version from the
//! pushed tree. Until the base is saved, the push's journal stays (see `settle`): a command
//! that dies in between settles the push again, gets the same rebased answer, and records it
//! then.
//!
//! (Keeping the pushed tree as the base, on the push's base version, is not enough: a later
//! push from it that undoes one of its own changes, say deletes a file it had added, looks
//! like no change against that version, and the rebase would keep the file. The simulation in
//! `sync-server`'s `catalog::simulation` found that.)

use std::collections::BTreeSet;

use sync_protocol::ObjectId;
use sync_protocol::diff::diff_listings;
use sync_protocol::tree::{Listing, TreeError, empty_dir_id, flatten};
use sync_protocol::wire::{Committed, Operation};

use super::pull::pull_attempt;
use super::retry_pull;
use crate::error::{AnswerError, ClientError, RemoteError};
use crate::stores::state::Base;
use crate::transport::Remote;
use crate::working_copy::WorkingCopy;

/// Fetches the tree of the rebased version `committed` from `pushed_root` (the tree pushed, with
/// `pushed`, its listing) and returns the base to record. See the module doc.
pub(super) fn rebased_base(
    copy: &WorkingCopy,
    remote: &Remote,
    committed: &Committed,
    pushed_root: ObjectId,
    pushed: &Listing,
) -> Result<Base, ClientError> {
    let fetch = |have: &ObjectId, listing: Option<&Listing>| {
        retry_pull(remote, || {
            pull_attempt(copy, remote, Some(committed.version), have, listing)
        })
    };
    let pulled = match fetch(&pushed_root, Some(pushed)) {
        // Records that do not fit the pushed tree: ask for dirs.
        Err(ClientError::PulledRecords(_)) => fetch(&pushed_root, None)?,
        other => other?,
    };
    if pulled.root != committed.root {
        return Err(RemoteError::BadAnswer {
            server: remote.server().to_owned(),
            operation: Operation::Pull,
            reason: AnswerError::WrongRoot {
                expected: committed.root,
                committed: pulled.root,
            },
        }
        .into());
    }
    let objects = copy.objects();
    let rebased = match flatten(&objects, &committed.root) {
        Ok(listing) => listing,
        // Part of the pushed tree left the cache: fetch the rebased tree whole.
        Err(_) => {
            fetch(&empty_dir_id(), None)?;
            flatten(&objects, &committed.root).map_err(|error| match error {
                TreeError::Missing { id, .. } => ClientError::ObjectMissing { id },
                other => ClientError::WorkingTree(other),
            })?
        }
    };
    let mut listing = rebased.clone();
    let mut pending = BTreeSet::new();
    for change in diff_listings(pushed, &rebased) {
        let path = change.path().clone();
        match pushed.get(&path) {
            Some(entry) => listing.insert(path.clone(), *entry),
            None => listing.remove(&path),
        };
        pending.insert(path);
    }
    Ok(Base {
        version: Some(committed.version),
        root: committed.root,
        listing,
        pending,
    })
}
