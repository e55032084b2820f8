//! The operations: pull, push and sync of a working copy over a
//! [`Remote`](crate::transport::Remote), change records, large and resumed uploads, and
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
//!   unknown (or the journal says the same push was under way), so a retry can never commit
//!   twice. A `409 conflict` comes back as a refusal with that problem code.
//! - [`sync()`]: pull, then push, until a push commits or there is nothing to push, at most
//!   `rounds` times. This is also what [`push()`] does after a conflict.
//! - [`restore`]: a version again as a new version on top of the head.
//! - [`watch()`](watch::watch): sync whenever the folder or the server changes.

use std::time::Duration;

use sync_protocol::wire::ProblemCode;

use crate::error::ClientError;

mod pull;
mod push;
pub mod records;
mod sync;
pub mod upload;
pub mod watch;

pub use pull::{PullOutcome, pull};
pub use push::{PushOutcome, push_once};
pub use sync::{SyncOutcome, push, restore, sync};

/// How many times a request with an unknown outcome is sent again (with the same push id).
const TRANSIENT_RETRIES: u32 = 3;

/// True for the server's `conflict` answer: the base is no longer the head.
pub(crate) fn is_conflict(error: &ClientError) -> bool {
    error
        .remote()
        .is_some_and(|remote| remote.code() == Some(ProblemCode::Conflict))
}

/// Runs `attempt` again (up to [`TRANSIENT_RETRIES`] more times, with a growing pause) while it
/// fails with a transient remote error.
pub(crate) fn retry_transient<T>(
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
