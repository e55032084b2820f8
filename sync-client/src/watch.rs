//! `cairn watch`: [`crate::sync::sync`] whenever the folder changes or the server announces a
//! new head.
//!
//! - The server side: a thread reads the project's event stream ([`Remote::events`]) and
//!   forwards every head; after the stream ends or fails it reconnects every few seconds (the
//!   first event after a reconnect is the current head, so nothing is missed).
//! - The local side: every `interval` without an event, `WorkingCopy::status` (a stat of every
//!   file, reading only those whose stat changed) says whether anything was added, modified or
//!   removed. Polling, not file-system notifications: simple and the same on every platform,
//!   at the cost of one stat per file per interval.
//! - A sync that fails is reported and tried again later; only a refused token ends the watch.

use std::sync::mpsc;
use std::time::Duration;

use crate::error::ClientError;
use crate::remote::{Head, Remote, RemoteError};
use crate::status::ChangeKind;
use crate::sync::{SyncOutcome, sync};
use crate::working_copy::WorkingCopy;

/// How long the event thread waits before reconnecting.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);
/// How long a watch waits after a failed sync before it looks again.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Settings of a watch.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How often the folder is checked for changes.
    pub interval: Duration,
    /// Rounds of pull, merge and push per sync.
    pub rounds: u32,
}

/// What a watch reports after each sync.
#[derive(Debug)]
pub enum WatchEvent<'a> {
    Synced(&'a SyncOutcome),
    /// The sync failed; it is tried again at the next change or event.
    Failed(&'a ClientError),
}

/// True when the folder has changes a push would send.
fn local_changes(copy: &WorkingCopy) -> Result<bool, ClientError> {
    let status = copy.status()?;
    Ok(status
        .changes
        .iter()
        .any(|change| change.change != ChangeKind::Unreadable))
}

/// Watches until `report` returns false or the server refuses the token.
pub fn watch(
    copy: &WorkingCopy,
    remote: &Remote,
    options: WatchOptions,
    mut report: impl FnMut(WatchEvent<'_>) -> bool,
) -> Result<(), ClientError> {
    let (heads, received) = mpsc::channel::<Result<Head, RemoteError>>();
    let events_remote = remote.clone();
    let project = copy.config().project.clone();
    // The thread ends when the receiver is gone (at its next event).
    std::thread::spawn(move || {
        loop {
            match events_remote.events(&project) {
                Ok(mut events) => {
                    while let Ok(Some(head)) = events.next_head() {
                        if heads.send(Ok(head)).is_err() {
                            return;
                        }
                    }
                }
                Err(error @ RemoteError::Unauthorized { .. }) => {
                    let _ = heads.send(Err(error));
                    return;
                }
                Err(_) => {}
            }
            std::thread::sleep(RECONNECT_PAUSE);
        }
    });
    let mut due = true;
    loop {
        if due {
            let keep_going = match sync(copy, remote, None, options.rounds) {
                Ok(outcome) => report(WatchEvent::Synced(&outcome)),
                Err(error @ ClientError::Remote(RemoteError::Unauthorized { .. })) => {
                    return Err(error);
                }
                Err(error) => {
                    let keep_going = report(WatchEvent::Failed(&error));
                    std::thread::sleep(RETRY_PAUSE);
                    keep_going
                }
            };
            if !keep_going {
                return Ok(());
            }
        }
        due = match received.recv_timeout(options.interval) {
            Ok(Ok(head)) => copy.base()?.version != Some(head.version),
            Ok(Err(error)) => return Err(error.into()),
            Err(mpsc::RecvTimeoutError::Timeout) => local_changes(copy)?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(options.interval);
                local_changes(copy)?
            }
        };
    }
}
