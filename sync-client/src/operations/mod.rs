//! The operations: pull, push and sync of a working copy over a
//! [`Remote`], change records, large and resumed uploads, and
//! `watch`. The top layer of the library: it drives the working copy (`working_copy`) and the
//! stores with what the transport brings.
//!
//! - [`pull`]: asks for the head with the base root as `have`, stores the verified frames, then
//!   merges the new tree into the folder (`WorkingCopy::apply_root`).
//! - [`push_once`]: snapshot, `plan_push` from the base, then one `push` request when the
//!   objects are small (as change records when few paths changed, [`records`]), or
//!   journaled, resumable batches when they are large or an earlier push was cut off
//!   ([`upload`]). When part of the base is no longer in the object cache, the dirs of the new
//!   tree are rebuilt into it and the server is asked what it lacks (the negotiation). The push
//!   id is random per attempt and reused when a network error or a 5xx leaves the outcome
//!   unknown (the transport retries each request with the same body, see
//!   `transport::retry`), or the journal says the same push was under way, so a retry can
//!   never commit twice. A `409 conflict` comes back as a refusal with that problem code.
//! - [`sync()`]: pull, then push, until a push commits or there is nothing to push, at most
//!   `rounds` times. This is also what [`push()`] does after a conflict.
//! - [`restore`]: a version again as a new version on top of the head.
//! - [`watch()`](watch::watch): sync whenever the folder or the server changes.
//! - [`daemon`]: the optional file-system monitor (`cairn daemon`) that tells a command which
//!   paths changed since its last scan (`stores::monitor` asks it).

use sync_protocol::wire::ProblemCode;

use crate::error::ClientError;
use crate::transport::Remote;
use crate::transport::retry::retry;

pub mod daemon;
mod pull;
mod push;
mod rebased;
pub mod records;
mod settle;
mod sync;
pub mod upload;
pub mod watch;

pub use pull::{PullOutcome, pull};
pub use push::{PushOutcome, push_once};
pub use sync::{SyncOutcome, push, restore, sync};

/// True for the server's `conflict` answer: the base is no longer the head.
pub(crate) fn is_conflict(error: &ClientError) -> bool {
    error
        .remote()
        .is_some_and(|remote| remote.code() == Some(ProblemCode::Conflict))
}

/// Runs `attempt`, a pull with the reading of its answer, again while it fails with a
/// transient remote error (a node that died mid-answer, say), pausing as `remote`'s backoff
/// says. The requests that are answered whole retry by themselves, in the transport.
pub(crate) fn retry_pull<T>(
    remote: &Remote,
    attempt: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    retry(remote.backoff(), true, std::thread::sleep, attempt)
}
