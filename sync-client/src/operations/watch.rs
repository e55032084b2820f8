//! `cairn watch`: [`super::sync()`] whenever the folder changes or the server announces a
//! new head.
//!
//! - The server side: a thread reads the project's event stream ([`Remote::events`]) and
//!   forwards every head (the first event after a reconnect is the current head, so nothing is
//!   missed). After the stream ends or fails it reconnects after the pause the server asked
//!   for (SSE `retry:`, which a stopping node sends, already jittered so that its watchers do
//!   not all come back at once; followed up to [`MAX_RECONNECT_HINT`]), else after
//!   [`RECONNECT_PAUSE`] with jitter of its own. While it cannot connect at all it backs off as
//!   the remote's [`Backoff`] says, with no end. None of this is reported: a lost stream only
//!   delays hearing of a new head, and the interval check still runs.
//! - The local side: file-system notifications (inotify, FSEvents, ... through `notify`) for the
//!   whole folder, `.cairn/` and our own temp files excepted. A burst of them is debounced
//!   ([`DEBOUNCE`]), then `WorkingCopy::status` (a stat of every file, reading only those whose
//!   stat changed) says whether anything a push would send changed, so the watch's own writes
//!   during a pull cause no push. Notifications can be lost (overflow, network file systems), so
//!   the same check also runs every `interval` without any event.
//! - A sync that fails is reported and tried again later; only a refused token ends the watch.
//!   A run of failures the network or an unavailable server explains (each one already
//!   retried, see `transport::retry`) is reported once, and once more when a sync succeeds
//!   again ([`WatchEvent::Reconnected`]), not at every attempt.

use std::path::Path as FsPath;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sync_protocol::wire::Head;

use super::{SyncOutcome, sync};
use crate::error::{ClientError, RemoteError};
use crate::stores::META_DIR;
use crate::stores::atomic::is_temp_name;
use crate::transport::retry::{Backoff, equal_jitter};
use crate::transport::{Events, Remote};
use crate::working_copy::WorkingCopy;
use crate::working_copy::status::ChangeKind;

/// How long the event thread waits before reconnecting when the server did not say (the
/// ceiling of the jitter).
pub const RECONNECT_PAUSE: Duration = Duration::from_secs(2);
/// The longest reconnection pause a server's `retry:` may ask for: a hint of an hour must
/// not leave the watch deaf for an hour.
pub const MAX_RECONNECT_HINT: Duration = Duration::from_secs(5);
/// How long a watch waits after a failed sync before it looks again.
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How long the folder must stay quiet after a change before the watch looks at it: an editor's
/// save (temp file, rename, chmod) or a copied folder is one sync, not many.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// What wakes the watch up.
enum Signal {
    /// The server announced a head (or refused the token).
    Head(Result<Head, RemoteError>),
    /// Something changed in the folder.
    Local,
}

/// True for a notification about a path a push could send: not in `.cairn/` and not one of
/// our own temp files.
fn is_relevant(root: &FsPath, path: &FsPath) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return true;
    };
    let mut components = relative.components();
    if components
        .next()
        .is_some_and(|first| first.as_os_str() == META_DIR)
    {
        return false;
    }
    !path.file_name().is_some_and(is_temp_name)
}

/// Starts notifications for `root`, sending [`Signal::Local`]. `None` when the platform or the
/// folder does not allow it; the interval check still runs.
fn watch_folder(
    root: &FsPath,
    signals: mpsc::Sender<Signal>,
) -> Option<notify::RecommendedWatcher> {
    let owned_root = root.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            Ok(event) => {
                !matches!(event.kind, notify::EventKind::Access(_))
                    && (event.paths.is_empty()
                        || event
                            .paths
                            .iter()
                            .any(|path| is_relevant(&owned_root, path)))
            }
            // A lost notification (queue overflow): better look.
            Err(_) => true,
        };
        if relevant {
            let _ = signals.send(Signal::Local);
        }
    })
    .ok()?;
    notify::Watcher::watch(&mut watcher, root, notify::RecursiveMode::Recursive).ok()?;
    Some(watcher)
}

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
    /// The sync failed; it is tried again at the next change or event. Of a run of transient
    /// failures (network, unavailable server) only the first is reported.
    Failed(&'a ClientError),
    /// A sync succeeded after a reported run of transient failures.
    Reconnected,
}

/// True for a sync failure that the network or an unavailable server explains.
fn is_transient(error: &ClientError) -> bool {
    error.remote().is_some_and(RemoteError::is_transient)
}

/// The pause before reopening an event stream that ended or failed: the server's `retry:`
/// hint as it is (the server spreads its watchers itself), at most [`MAX_RECONNECT_HINT`];
/// without one, [`RECONNECT_PAUSE`] with equal jitter (`unit` in `[0, 1]`: between half of it
/// and all of it).
pub fn reconnect_pause(hint: Option<Duration>, unit: f64) -> Duration {
    match hint {
        Some(hint) => hint.min(MAX_RECONNECT_HINT),
        None => equal_jitter(RECONNECT_PAUSE, unit),
    }
}

/// The event thread: follows `project`'s event stream, sending every head to `heads`, until
/// the receiver is gone (noticed at the next event) or the server refuses the token (sent
/// on, then the thread ends).
fn follow_events(remote: &Remote, project: &str, heads: &mpsc::Sender<Signal>) {
    let backoff: Backoff = remote.backoff().endless();
    let mut failures = backoff.pauses();
    loop {
        let pause = match remote.events(project) {
            Ok(mut events) => {
                failures.reset();
                if !forward_heads(&mut events, heads) {
                    return;
                }
                reconnect_pause(events.retry(), rand::random())
            }
            Err(error) if error.is_unauthorized() => {
                let _ = heads.send(Signal::Head(Err(error)));
                return;
            }
            Err(error) => failures
                .next_pause(error.retry_after())
                .unwrap_or(backoff.max_pause),
        };
        std::thread::sleep(pause);
    }
}

/// Sends every head of `events` until the stream ends or fails; false when the receiver is
/// gone.
fn forward_heads(events: &mut Events, heads: &mpsc::Sender<Signal>) -> bool {
    while let Ok(Some(head)) = events.next_head() {
        if heads.send(Signal::Head(Ok(head))).is_err() {
            return false;
        }
    }
    true
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
    let (signals, received) = mpsc::channel::<Signal>();
    let heads = signals.clone();
    let events_remote = remote.clone();
    let project = copy.config().project.clone();
    // The thread ends when the receiver is gone (at its next event).
    std::thread::spawn(move || follow_events(&events_remote, &project, &heads));
    // Dropped (and stopped) when the watch returns.
    let _watcher = watch_folder(copy.root(), signals);
    let mut due = true;
    // A run of transient sync failures was reported and has not ended yet.
    let mut offline = false;
    loop {
        if due {
            let keep_going = match sync(copy, remote, None, options.rounds) {
                Ok(outcome) => {
                    let mut keep_going = true;
                    if std::mem::take(&mut offline) {
                        keep_going = report(WatchEvent::Reconnected);
                    }
                    keep_going && report(WatchEvent::Synced(&outcome))
                }
                Err(error) if error.remote().is_some_and(RemoteError::is_unauthorized) => {
                    return Err(error);
                }
                Err(error) => {
                    // Of a run of transient failures only the first is reported.
                    let repeated = offline && is_transient(&error);
                    offline = is_transient(&error);
                    let keep_going = repeated || report(WatchEvent::Failed(&error));
                    std::thread::sleep(RETRY_PAUSE);
                    keep_going
                }
            };
            if !keep_going {
                return Ok(());
            }
        }
        due = match received.recv_timeout(options.interval) {
            Ok(Signal::Head(Ok(head))) => copy.base()?.version != Some(head.version),
            Ok(Signal::Head(Err(error))) => return Err(error.into()),
            Ok(Signal::Local) => {
                // Let the burst end; a head announced meanwhile makes the sync due as well.
                let mut head_moved = false;
                let mut quiet_since = Instant::now();
                while quiet_since.elapsed() < DEBOUNCE {
                    match received.recv_timeout(DEBOUNCE.saturating_sub(quiet_since.elapsed())) {
                        Ok(Signal::Local) => quiet_since = Instant::now(),
                        Ok(Signal::Head(Ok(head))) => {
                            head_moved |= copy.base()?.version != Some(head.version);
                        }
                        Ok(Signal::Head(Err(error))) => return Err(error.into()),
                        Err(_) => break,
                    }
                }
                head_moved || local_changes(copy)?
            }
            Err(mpsc::RecvTimeoutError::Timeout) => local_changes(copy)?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(options.interval);
                local_changes(copy)?
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reconnect_pause_follows_the_hint_within_bounds_with_jitter() {
        let ms = Duration::from_millis;
        assert_eq!(reconnect_pause(None, 1.0), RECONNECT_PAUSE);
        assert_eq!(reconnect_pause(None, 0.0), RECONNECT_PAUSE / 2);
        for unit in [0.1, 0.25, 0.9] {
            let pause = reconnect_pause(None, unit);
            assert!(
                pause > RECONNECT_PAUSE / 2 && pause < RECONNECT_PAUSE,
                "{pause:?}"
            );
        }
        // The server's hint is followed as it is: the server jittered it already.
        assert_eq!(reconnect_pause(Some(ms(380)), 0.0), ms(380));
        assert_eq!(reconnect_pause(Some(ms(380)), 1.0), ms(380));
        assert_eq!(reconnect_pause(Some(ms(0)), 0.7), ms(0));
        // An hour is not: the watch would be deaf for that long.
        assert_eq!(
            reconnect_pause(Some(Duration::from_secs(3600)), 1.0),
            MAX_RECONNECT_HINT
        );
    }
}
