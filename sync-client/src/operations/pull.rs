//! Pull: the head into the working copy, local edits merged.

use sync_protocol::ObjectId;
use sync_protocol::stream::Item;
use sync_protocol::tree::{Listing, empty_dir_id};
use sync_protocol::wire::{Operation, ProblemCode, PullRequest, Want};

use super::{records, retry_pull};
use crate::error::{AnswerError, ClientError, RemoteError};
use crate::timing::{free_in_background, timed};
use crate::transport::{Pulled, Remote};
use crate::working_copy::WorkingCopy;
use crate::working_copy::apply::ApplyReport;

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
    let index = copy.index()?;
    let base = copy.base_of(&index)?;
    // A push whose outcome is unknown is settled first: had it committed, its version would
    // otherwise come back as someone else's edit.
    let base = match copy.state().journal()? {
        Some(journal) => super::settle::settle(copy, remote, journal, base)?,
        None => base,
    };
    // Change records need the listing of the base root, which pending paths make differ.
    let listing = base.pending.is_empty().then_some(&base.listing);
    // One pull request (retried while the outcome is unknown) of `want`, from `have`.
    let attempt = |want: Option<u64>, have: &ObjectId, listing: Option<&Listing>| {
        retry_pull(remote, || pull_attempt(copy, remote, want, have, listing))
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
        match copy.apply_root_locked(&lock, &base, &index, pulled.version, pulled.root) {
            // The object cache lost part of the base (cleaned, damaged), so the difference the
            // server sent is not enough: fetch the whole tree and apply again.
            Err(ClientError::ObjectMissing { .. }) => {
                attempt(Some(pulled.version), &empty_dir_id(), None)?;
                let index = copy.index()?;
                Some(copy.apply_root_locked(&lock, &base, &index, pulled.version, pulled.root)?)
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
/// into the object cache (one pack for a large answer, see `ObjectCache::pulled_objects`; an
/// interrupted pull keeps what it got), and change
/// records, asked for when `have_listing` (the listing of `have`) is given, are applied to it
/// ([`records::apply_pulled`]).
pub(super) fn pull_attempt(
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
    let mut pulled_objects = objects.pulled_objects();
    let read = (|| {
        while let Some(item) = stream.next_item()? {
            match item {
                // The decoder verified the frame against its id and kind.
                Item::Object(frame) => pulled_objects.add(&frame.id, frame.compressed)?,
                Item::Record(item) => records.push(item.record),
            }
        }
        Ok::<_, ClientError>(())
    })();
    // Kept even when the answer broke off: a retry then finds them in the cache.
    let stored = timed("store pulled objects", || pulled_objects.finish());
    read?;
    stored?;
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
