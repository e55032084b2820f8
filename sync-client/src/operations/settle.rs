//! A push that ended without an answer (the network failed, or the server did on every retry)
//! may have committed all the same. Its journal (push id, base, root, message) is kept, and
//! before the next push or pull builds on the base, the push is settled: its commit is sent
//! again under the same push id. The server answers as the push's first arrival was answered;
//! if the push never arrived, it commits it now, or, when the head has moved, records that it
//! lost. Either way the outcome is known, and if it committed, its version becomes the base.
//!
//! Without this, a push that did commit comes back on the next pull as somebody else's change:
//! the user's later edit of the same file conflicts with their own earlier edit, and a file
//! they deleted since comes back (found by the simulation in `sync-server`'s
//! `catalog::simulation`).

use sync_protocol::ObjectId;
use sync_protocol::tree::flatten;
use sync_protocol::wire::{Commit, Operation, ProblemCode};

use super::push::base_after_commit;
use crate::error::{AnswerError, ClientError, RemoteError};
use crate::stores::journal::PushJournal;
use crate::stores::state::Base;
use crate::transport::Remote;
use crate::working_copy::WorkingCopy;

/// Settles the push `journal` names and returns the base to work from: `base`, or the version
/// the push committed. A transient failure leaves the journal for next time and is returned.
pub(super) fn settle(
    copy: &WorkingCopy,
    remote: &Remote,
    journal: PushJournal,
    base: Base,
) -> Result<Base, ClientError> {
    let state = copy.state();
    // A damaged journal has no push id to settle: the push it was for resumes by negotiation.
    let Ok(root) = journal.root.parse::<ObjectId>() else {
        return Ok(base);
    };
    if journal.push_id.is_empty() {
        return Ok(base);
    }
    let commit = Commit {
        push_id: journal.push_id.clone(),
        base_version: journal.base_version,
        root: journal.root.clone(),
        message: journal.message.clone(),
    };
    let committed = match remote.commit(&copy.config().project, &commit) {
        Ok(committed) => committed,
        Err(error) => {
            return match error.code() {
                // It lost to another push, now or when it first arrived: it never commits.
                Some(ProblemCode::Conflict) => {
                    state.remove_journal()?;
                    Ok(base)
                }
                // It never arrived whole: some of its objects are not stored. It did not
                // commit; the next push of it asks the server what it lacks.
                Some(ProblemCode::MissingObject) => {
                    state.save_journal(&PushJournal {
                        push_id: String::new(),
                        ..journal
                    })?;
                    Ok(base)
                }
                _ => Err(error.into()),
            };
        }
    };
    if !committed.rebased && committed.root != root {
        state.remove_journal()?;
        return Err(RemoteError::BadAnswer {
            server: remote.server().to_owned(),
            operation: Operation::Commit,
            reason: AnswerError::WrongRoot {
                expected: root,
                committed: committed.root,
            },
        }
        .into());
    }
    // Its tree was built here, so it is in the object cache (unless cleaned since: then the
    // next pull brings it, as before).
    let listing = flatten(&copy.objects(), &root);
    let recorded = match listing {
        // The base is that version already, or later; or the last pull left paths behind,
        // which only a pull mends.
        _ if base
            .version
            .is_some_and(|version| version >= committed.version)
            || !base.pending.is_empty() =>
        {
            None
        }
        Err(_) => None,
        // A rebased push's base needs the rebased tree: if fetching it fails, the journal
        // stays, and the push is settled again next time.
        Ok(listing) => Some(base_after_commit(
            copy,
            remote,
            Operation::Commit,
            &committed,
            root,
            listing,
        )?),
    };
    let settled = match recorded {
        Some(settled) => {
            copy.set_base(&settled)?;
            settled
        }
        None => base,
    };
    state.remove_journal()?;
    Ok(settled)
}
