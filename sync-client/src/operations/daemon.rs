//! `cairn daemon`: the optional file-system monitor of one working copy, the side that answers
//! `stores::monitor::changes_since` (the wire format and the socket's place are there).
//!
//! - It watches the whole folder (`notify`: inotify, FSEvents, ...) and numbers every
//!   notification it receives. A path of the working copy (not `.cairn/`, not our temp files)
//!   that a notification names is recorded with that number. A token is the daemon's random
//!   instance id and a number; the answer for a token is every path recorded after it,
//!   deduplicated ([`MonitorState`]).
//! - "Since" is exact thanks to git fsmonitor's cookie files: notifications arrive
//!   asynchronously, so for each query the daemon creates a file in `.cairn/monitor-cookies/`
//!   and answers only once the notification of that file has arrived. Notifications come in the
//!   order of the changes, so by then every change made before the query was sent has been
//!   recorded: an edit finished before the command started is always in its answer. If the
//!   cookie's notification does not come within [`COOKIE_TIMEOUT`], the answer is "walk
//!   everything".
//! - A new folder is recorded as itself (a folder path means "walk it all"), since files made
//!   in it before its own watch was added have no notifications. The watch on it is added a
//!   little after its notification (by `notify`'s thread, after the batch it came in), so for
//!   [`SETTLE`] after a folder appears every answer records it once more after its token: a
//!   file made in it in that gap is found by the next command's walk of the folder.
//! - The daemon answers "everything" for no token, another instance's token, a token from
//!   before a lost notification (inotify's queue overflowed: `notify`'s rescan flag), and once
//!   more than [`MAX_PATHS`] paths are recorded (they are forgotten: memory stays bounded). An
//!   error of the watcher itself (a folder it could not watch) makes every later answer
//!   "everything": the daemon can no longer vouch for any interval.
//! - One daemon per working copy (`.cairn/monitor.lock`, flock). It stops on a `stop` request
//!   (`cairn daemon --stop`) and by itself once `.cairn/` is gone. A socket left by a killed
//!   daemon refuses connections (the client then walks everything) and is replaced by the
//!   next daemon.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};

use crate::error::{ClientError, io_error};
use crate::stores::META_DIR;
use crate::stores::atomic::is_temp_name;
use crate::stores::monitor::{
    Answer, AnswerBody, MAX_REQUEST, PROTOCOL, Request, RequestBody, canonical_root, socket_path,
};

/// The folder in `.cairn/` where the daemon makes its cookie files.
pub const COOKIE_DIR: &str = "monitor-cookies";
/// The daemon's lock file in `.cairn/`.
pub const LOCK_NAME: &str = "monitor.lock";
/// The most paths the daemon keeps; past it it forgets them and answers "everything" for the
/// tokens it gave before (a bulk change is walked faster than listed anyway).
pub const MAX_PATHS: usize = 100_000;
/// How long a query waits for the notification of its cookie before answering "everything".
/// Below the client's own timeout (`stores::monitor::QUERY_TIMEOUT`, 1 s).
pub const COOKIE_TIMEOUT: Duration = Duration::from_millis(600);
/// How long after a folder appears answers keep naming it again (see the module docs).
pub const SETTLE: Duration = Duration::from_secs(2);
/// How often the daemon checks that `.cairn/` still exists (and its stop flag, when no
/// connection wakes it).
const GUARD_INTERVAL: Duration = Duration::from_millis(250);
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a file-system monitor already runs for {} (it holds {})", root.display(), lock.display())]
    Running { root: PathBuf, lock: PathBuf },
    #[error("could not watch {} for changes", root.display())]
    Watch {
        root: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error(
        "no socket path fits in a socket address for {} (neither in .cairn/ nor in \
         $XDG_RUNTIME_DIR or the temp folder)",
        root.display()
    )]
    NoSocketPath { root: PathBuf },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What one notification means to the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A path of the working copy (relative to the root) changed; `new_folder` when it is a
    /// folder that appeared (created or moved in).
    Changed { path: PathBuf, new_folder: bool },
    /// A cookie file of that name appeared.
    Cookie(OsString),
    /// Notifications were lost (a queue overflowed): no interval before now can be vouched for.
    Lost,
    /// The watch itself failed or the root moved: nothing can be vouched for any more.
    Broken,
}

/// What a notification from `notify` means for the working copy at `root` (canonical).
/// Reads and opens mean nothing (a scan reads files); `.cairn/` and temp files are left out.
pub fn classify(root: &FsPath, event: &notify::Result<notify::Event>) -> Vec<Observed> {
    let event = match event {
        Ok(event) => event,
        Err(_) => return vec![Observed::Broken],
    };
    if event.need_rescan() {
        return vec![Observed::Lost];
    }
    let may_be_new_folder = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        EventKind::Access(_) => return Vec::new(),
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) => true,
        _ => false,
    };
    if event.paths.is_empty() {
        // A change we cannot place.
        return vec![Observed::Lost];
    }
    let mut observed = Vec::new();
    for path in &event.paths {
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let mut components = relative.components();
        let Some(first) = components.next() else {
            // The root itself: its own metadata is no file's, but a root moved or removed
            // leaves every later path of `notify`'s wrong.
            if matches!(
                event.kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
            ) {
                observed.push(Observed::Broken);
            }
            continue;
        };
        if first.as_os_str() == META_DIR {
            if let (Some(folder), Some(name), None) =
                (components.next(), components.next(), components.next())
                && folder.as_os_str() == COOKIE_DIR
                && matches!(event.kind, EventKind::Create(_))
            {
                observed.push(Observed::Cookie(name.as_os_str().to_owned()));
            }
            continue;
        }
        let plain = relative
            .components()
            .all(|component| matches!(component, Component::Normal(name) if !is_temp_name(name)));
        if !plain {
            continue;
        }
        let new_folder =
            may_be_new_folder && fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir());
        observed.push(Observed::Changed {
            path: relative.to_path_buf(),
            new_folder,
        });
    }
    observed
}

/// The daemon's memory: numbered notifications, the paths they named, and what it can vouch
/// for. Pure (time is passed in), so its rules are tested with made-up notifications.
#[derive(Debug)]
pub struct MonitorState {
    instance: String,
    /// The number of the last thing recorded; a token names one.
    sequence: u64,
    /// Tokens below this were given before notifications were lost or paths forgotten.
    horizon: u64,
    /// The watch failed: every answer is "everything".
    broken: bool,
    max_paths: usize,
    /// Each path and the number of its last notification.
    changed: HashMap<PathBuf, u64>,
    /// Folders that appeared less than [`SETTLE`] ago, and when.
    settling: Vec<(PathBuf, Instant)>,
}

impl MonitorState {
    /// A fresh state for the instance `instance` (letters and digits), keeping at most
    /// `max_paths` paths.
    pub fn new(instance: String, max_paths: usize) -> Self {
        Self {
            instance,
            sequence: 0,
            horizon: 0,
            broken: false,
            max_paths,
            changed: HashMap::new(),
            settling: Vec::new(),
        }
    }

    /// A new random instance id: 32 hex digits.
    pub fn random_instance() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// Records one observation at `now`; a cookie's name is handed back.
    pub fn observe(&mut self, observed: Observed, now: Instant) -> Option<OsString> {
        match observed {
            Observed::Changed { path, new_folder } => {
                if new_folder {
                    self.settling.push((path.clone(), now));
                }
                self.record(path);
            }
            Observed::Cookie(name) => return Some(name),
            Observed::Lost => self.forget(),
            Observed::Broken => {
                self.broken = true;
                self.changed = HashMap::new();
                self.settling = Vec::new();
            }
        }
        None
    }

    fn record(&mut self, path: PathBuf) {
        self.sequence += 1;
        self.changed.insert(path, self.sequence);
        if self.changed.len() > self.max_paths {
            self.forget();
        }
    }

    /// Forgets every path: tokens given so far get "everything".
    fn forget(&mut self) {
        self.sequence += 1;
        self.horizon = self.sequence;
        self.changed = HashMap::new();
    }

    /// True once the watch failed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The answer at `now` for a query since `since`. `synced`: every notification of a
    /// change made before the query has arrived (its cookie did); else the answer is
    /// "everything", with a token that is still right (a notification that arrives later gets
    /// a later number).
    pub fn answer(&mut self, since: Option<&str>, synced: bool, now: Instant) -> AnswerBody {
        let token = format!("{}-{}", self.instance, self.sequence);
        let since = since.and_then(|since| self.sequence_of(since));
        let body = match since {
            Some(since) if synced && !self.broken => {
                let mut paths = Vec::new();
                let mut all_utf8 = true;
                for (path, &sequence) in &self.changed {
                    if sequence > since {
                        match path.to_str() {
                            Some(path) => paths.push(path.to_owned()),
                            None => all_utf8 = false,
                        }
                    }
                }
                paths.sort_unstable();
                if all_utf8 {
                    AnswerBody::Paths { token, paths }
                } else {
                    AnswerBody::Everything { token }
                }
            }
            _ => AnswerBody::Everything { token },
        };
        // A folder that appeared lately may have had files made in it before its watch was in
        // place, even after this answer: it changes again after this token.
        self.settling
            .retain(|(_, appeared)| now.saturating_duration_since(*appeared) < SETTLE);
        let settling: Vec<PathBuf> = self.settling.iter().map(|(path, _)| path.clone()).collect();
        for path in settling {
            self.record(path);
        }
        body
    }

    /// The number in `token` if this instance gave it and it is still vouched for.
    fn sequence_of(&self, token: &str) -> Option<u64> {
        let (instance, sequence) = token.rsplit_once('-')?;
        let sequence: u64 = sequence.parse().ok()?;
        (instance == self.instance && sequence >= self.horizon && sequence <= self.sequence)
            .then_some(sequence)
    }
}

/// What the notification thread and the connections share.
struct Shared {
    state: MonitorState,
    /// Queries waiting for their cookie, by cookie name.
    waiting: HashMap<OsString, mpsc::Sender<()>>,
}

/// A running daemon's handles, for its connections.
struct Daemon {
    socket: PathBuf,
    cookies: PathBuf,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    next_cookie: AtomicU64,
}

/// Runs the monitor of the working copy at `root` until it is asked to stop or `.cairn/`
/// disappears. `ready` is called with the socket's path once queries are answered.
pub fn run(root: &FsPath, ready: impl FnOnce(&FsPath)) -> Result<(), DaemonError> {
    run_with(root, MAX_PATHS, ready)
}

/// [`run`], keeping at most `max_paths` paths.
pub fn run_with(
    root: &FsPath,
    max_paths: usize,
    ready: impl FnOnce(&FsPath),
) -> Result<(), DaemonError> {
    let root = canonical_root(root);
    let state_dir = root.join(META_DIR);
    let _lock = lock(&root)?;
    let socket =
        socket_path(&root).ok_or_else(|| DaemonError::NoSocketPath { root: root.clone() })?;
    let cookies = state_dir.join(COOKIE_DIR);
    match fs::remove_dir_all(&cookies) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(ClientError::io("remove", &cookies, error).into());
        }
        _ => {}
    }
    fs::create_dir(&cookies).map_err(io_error("create folder", &cookies))?;
    let shared = Arc::new(Mutex::new(Shared {
        state: MonitorState::new(MonitorState::random_instance(), max_paths),
        waiting: HashMap::new(),
    }));
    let _watcher = watch(&root, &shared)?;
    // A socket left by a daemon that was killed: ours now (the lock says no daemon runs).
    match fs::remove_file(&socket) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(ClientError::io("remove", &socket, error).into());
        }
        _ => {}
    }
    let listener = UnixListener::bind(&socket).map_err(io_error("listen on", &socket))?;
    // Only the owner may ask (it matters in a shared temp folder).
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
        .map_err(io_error("set the permissions of", &socket))?;
    let daemon = Arc::new(Daemon {
        socket: socket.clone(),
        cookies: cookies.clone(),
        shared,
        stop: Arc::new(AtomicBool::new(false)),
        next_cookie: AtomicU64::new(0),
    });
    // Accept waits at most this long, so the loop sees a removed `.cairn/` (whose socket
    // may be gone with it: no connection could wake it up).
    rustix::net::sockopt::set_socket_timeout(
        &listener,
        rustix::net::sockopt::Timeout::Recv,
        Some(GUARD_INTERVAL),
    )
    .map_err(|error| ClientError::io("set a timeout on", &socket, error.into()))?;
    ready(&socket);
    while !daemon.stop.load(Ordering::SeqCst) && state_dir.is_dir() {
        match listener.accept() {
            Ok((connection, _)) => {
                let daemon = Arc::clone(&daemon);
                std::thread::spawn(move || daemon.serve(connection));
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A failed accept (out of files, say): that query is lost, and its client walks
            // the whole folder. A pause, so that a lasting failure does not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let _ = fs::remove_file(&socket);
    let _ = fs::remove_dir_all(&cookies);
    Ok(())
}

/// Takes the daemon's lock of the working copy at `root`.
fn lock(root: &FsPath) -> Result<fs::File, DaemonError> {
    let path = root.join(META_DIR).join(LOCK_NAME);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(DaemonError::Running {
            root: root.to_path_buf(),
            lock: path,
        }),
        Err(fs::TryLockError::Error(error)) => Err(ClientError::io("lock", &path, error).into()),
    }
}

/// Waits up to `timeout` for the daemon of `root` to end (its lock to be free). True when
/// none runs.
pub fn wait_stopped(root: &FsPath, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match lock(&canonical_root(root)) {
            Ok(_) => return true,
            Err(DaemonError::Running { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return false,
        }
    }
}

/// Starts the recursive watch of `root`, feeding `shared`.
fn watch(
    root: &FsPath,
    shared: &Arc<Mutex<Shared>>,
) -> Result<notify::RecommendedWatcher, DaemonError> {
    let watch_error = |source| DaemonError::Watch {
        root: root.to_path_buf(),
        source,
    };
    let owned_root = root.to_path_buf();
    let shared = Arc::clone(shared);
    let handler = move |event: notify::Result<notify::Event>| {
        let now = Instant::now();
        let observed = classify(&owned_root, &event);
        if observed.is_empty() {
            // Reads and opens (a scan makes many), and paths of no interest.
            return;
        }
        let mut shared = shared.lock().unwrap_or_else(|poison| poison.into_inner());
        let was_broken = shared.state.is_broken();
        for observed in observed {
            if let Some(cookie) = shared.state.observe(observed, now)
                && let Some(waiter) = shared.waiting.remove(&cookie)
            {
                let _ = waiter.send(());
            }
        }
        if shared.state.is_broken() && !was_broken {
            let why = event
                .err()
                .map_or("the folder moved".to_owned(), |e| e.to_string());
            eprintln!(
                "cairn daemon: lost track of {} ({why}); every command walks the whole folder \
                 until the daemon is restarted",
                owned_root.display()
            );
        }
    };
    // Symbolic links are not followed: the scan skips them, and one to `/` would have the
    // daemon watch the whole machine.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = <notify::RecommendedWatcher as notify::Watcher>::new(handler, config)
        .map_err(watch_error)?;
    notify::Watcher::watch(&mut watcher, root, notify::RecursiveMode::Recursive)
        .map_err(watch_error)?;
    Ok(watcher)
}

impl Daemon {
    /// Stops the accept loop (it is woken by a connection of our own).
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
    }

    /// Answers one connection: one request line, one answer line.
    fn serve(&self, mut connection: UnixStream) {
        let _ = connection.set_read_timeout(Some(REQUEST_TIMEOUT));
        let _ = connection.set_write_timeout(Some(REQUEST_TIMEOUT));
        let mut line = Vec::new();
        let read = connection.try_clone().map(|reader| {
            BufReader::new(reader)
                .take(MAX_REQUEST)
                .read_until(b'\n', &mut line)
        });
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let body = match read {
            Ok(Ok(_)) => self.answer(&line),
            Ok(Err(error)) | Err(error) => AnswerBody::Error {
                message: format!("could not read the request: {error}"),
            },
        };
        let stopping = body == AnswerBody::Stopping;
        if let Ok(mut text) = serde_json::to_vec(&Answer {
            version: PROTOCOL,
            body,
        }) {
            text.push(b'\n');
            let _ = connection.write_all(&text);
        }
        drop(connection);
        if stopping {
            self.request_stop();
        }
    }

    /// The answer to one request line.
    fn answer(&self, line: &[u8]) -> AnswerBody {
        if !line.ends_with(b"\n") {
            return AnswerBody::Error {
                message: format!("a request is one line of at most {MAX_REQUEST} bytes"),
            };
        }
        let request: Request = match serde_json::from_slice(line) {
            Ok(request) => request,
            Err(error) => {
                return AnswerBody::Error {
                    message: format!("not a request: {error}"),
                };
            }
        };
        if request.version != PROTOCOL {
            return AnswerBody::Error {
                message: format!(
                    "protocol version {} is not spoken here (version {PROTOCOL} is)",
                    request.version
                ),
            };
        }
        match request.body {
            RequestBody::Changes { since } => self.changes(since.as_deref()),
            RequestBody::Stop => AnswerBody::Stopping,
        }
    }

    /// What changed since `since`, once the cookie made now has come through.
    fn changes(&self, since: Option<&str>) -> AnswerBody {
        let name = OsString::from(format!(
            "{}-{}",
            std::process::id(),
            self.next_cookie.fetch_add(1, Ordering::Relaxed)
        ));
        let (sender, arrived) = mpsc::channel();
        self.lock_shared().waiting.insert(name.clone(), sender);
        let cookie = self.cookies.join(&name);
        let synced =
            fs::File::create(&cookie).is_ok() && arrived.recv_timeout(COOKIE_TIMEOUT).is_ok();
        let _ = fs::remove_file(&cookie);
        let mut shared = self.lock_shared();
        shared.waiting.remove(&name);
        shared.state.answer(since, synced, Instant::now())
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, Flag, RemoveKind, RenameMode};

    fn changed(path: &str) -> Observed {
        Observed::Changed {
            path: PathBuf::from(path),
            new_folder: false,
        }
    }

    fn paths(body: &AnswerBody) -> Vec<&str> {
        match body {
            AnswerBody::Paths { paths, .. } => paths.iter().map(String::as_str).collect(),
            other => panic!("not paths: {other:?}"),
        }
    }

    fn token(body: &AnswerBody) -> String {
        match body {
            AnswerBody::Paths { token, .. } | AnswerBody::Everything { token } => token.clone(),
            other => panic!("no token: {other:?}"),
        }
    }

    fn is_everything(body: &AnswerBody) -> bool {
        matches!(body, AnswerBody::Everything { .. })
    }

    #[test]
    fn paths_since_a_token_deduplicated_and_only_after_it() {
        let now = Instant::now();
        let mut state = MonitorState::new("a1".into(), 10);
        state.observe(changed("before.json"), now);
        let first = state.answer(None, true, now);
        assert!(is_everything(&first));
        let first = token(&first);
        let unchanged = state.answer(Some(&first), true, now);
        assert_eq!(paths(&unchanged), Vec::<&str>::new());
        for path in ["b.json", "a/x.json", "b.json", "a/x.json", "b.json"] {
            state.observe(changed(path), now);
        }
        let answer = state.answer(Some(&first), true, now);
        assert_eq!(paths(&answer), ["a/x.json", "b.json"]);
        // The same token asked again: the same paths; the new token: none.
        assert_eq!(
            paths(&state.answer(Some(&first), true, now)),
            ["a/x.json", "b.json"]
        );
        assert_eq!(
            paths(&state.answer(Some(&token(&answer)), true, now)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn tokens_it_cannot_vouch_for_get_everything() {
        let now = Instant::now();
        let mut state = MonitorState::new("a1".into(), 10);
        state.observe(changed("x"), now);
        let good = token(&state.answer(None, true, now));
        for bad in ["b2-1", "a1", "a1-x", "", "a1-999", "-1"] {
            assert!(is_everything(&state.answer(Some(bad), true, now)), "{bad}");
        }
        // A query whose cookie never came: everything, and its token still works.
        let unsynced = state.answer(Some(&good), false, now);
        assert!(is_everything(&unsynced));
        state.observe(changed("y"), now);
        assert_eq!(
            paths(&state.answer(Some(&token(&unsynced)), true, now)),
            ["y"]
        );
    }

    #[test]
    fn a_lost_notification_makes_older_tokens_everything() {
        let now = Instant::now();
        let mut state = MonitorState::new("a1".into(), 10);
        let before = token(&state.answer(None, true, now));
        state.observe(changed("x"), now);
        // The synthetic rescan event, as classified from what `notify` sends on an overflow.
        let rescan = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        let observed = classify(FsPath::new("/root"), &Ok(rescan));
        assert_eq!(observed, [Observed::Lost]);
        for observed in observed {
            state.observe(observed, now);
        }
        assert!(is_everything(&state.answer(Some(&before), true, now)));
        let after = token(&state.answer(Some(&before), true, now));
        state.observe(changed("z"), now);
        assert_eq!(paths(&state.answer(Some(&after), true, now)), ["z"]);
    }

    #[test]
    fn a_watcher_error_makes_every_answer_everything() {
        let now = Instant::now();
        let mut state = MonitorState::new("a1".into(), 10);
        let before = token(&state.answer(None, true, now));
        let observed = classify(
            FsPath::new("/root"),
            &Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch)),
        );
        assert_eq!(observed, [Observed::Broken]);
        state.observe(Observed::Broken, now);
        let after = token(&state.answer(Some(&before), true, now));
        assert!(is_everything(&state.answer(Some(&after), true, now)));
        state.observe(changed("z"), now);
        assert!(is_everything(&state.answer(Some(&after), true, now)));
    }

    #[test]
    fn paths_are_bounded_at_max_paths() {
        let now = Instant::now();
        let mut state = MonitorState::new("a1".into(), 3);
        let start = token(&state.answer(None, true, now));
        for path in ["a", "b", "c", "a"] {
            state.observe(changed(path), now);
        }
        // At the bound: still listed.
        assert_eq!(
            paths(&state.answer(Some(&start), true, now)),
            ["a", "b", "c"]
        );
        let at_bound = token(&state.answer(Some(&start), true, now));
        // One past it: forgotten, everything, for the tokens given before.
        state.observe(changed("d"), now);
        assert!(is_everything(&state.answer(Some(&start), true, now)));
        assert!(is_everything(&state.answer(Some(&at_bound), true, now)));
        let fresh = token(&state.answer(Some(&start), true, now));
        state.observe(changed("e"), now);
        assert_eq!(paths(&state.answer(Some(&fresh), true, now)), ["e"]);
    }

    #[test]
    fn a_path_that_is_not_utf8_makes_the_answer_everything() {
        use std::os::unix::ffi::OsStrExt;
        let now = Instant::now();
        let mut state = MonitorState::new("a1".into(), 10);
        let start = token(&state.answer(None, true, now));
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"caf\xe9.json"));
        state.observe(
            Observed::Changed {
                path: odd,
                new_folder: false,
            },
            now,
        );
        assert!(is_everything(&state.answer(Some(&start), true, now)));
    }

    #[test]
    fn a_new_folder_is_named_again_until_it_settles() {
        let start = Instant::now();
        let mut state = MonitorState::new("a1".into(), 10);
        let t0 = token(&state.answer(None, true, start));
        state.observe(
            Observed::Changed {
                path: PathBuf::from("new"),
                new_folder: true,
            },
            start,
        );
        let first = state.answer(Some(&t0), true, start);
        assert_eq!(paths(&first), ["new"]);
        // Its watch may not have been in place at that answer: named again after its token.
        let second = state.answer(Some(&token(&first)), true, start + SETTLE / 2);
        assert_eq!(paths(&second), ["new"]);
        // The answer given at SETTLE still names it once more (its token came before).
        let third = state.answer(Some(&token(&second)), true, start + SETTLE);
        assert_eq!(paths(&third), ["new"]);
        let settled = state.answer(Some(&token(&third)), true, start + SETTLE);
        assert_eq!(paths(&settled), Vec::<&str>::new());
    }

    #[test]
    fn classification_leaves_out_state_temp_files_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("folder")).unwrap();
        let event =
            |kind: EventKind, path: &str| Ok(notify::Event::new(kind).add_path(root.join(path)));
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(
            classify(root, &event(data, "a/b.json")),
            [changed("a/b.json")]
        );
        assert_eq!(classify(root, &event(data, ".cairn/base")), []);
        assert_eq!(classify(root, &event(data, "a/.x.cairn-tmp-1")), []);
        assert_eq!(classify(root, &event(data, ".x.cairn-tmp-1/inside")), []);
        assert_eq!(
            classify(
                root,
                &event(EventKind::Access(AccessKind::Open(AccessMode::Any)), "a")
            ),
            []
        );
        assert_eq!(
            classify(
                root,
                &event(EventKind::Access(AccessKind::Close(AccessMode::Write)), "a")
            ),
            [changed("a")]
        );
        // A folder moved in is new as well (its kind is found on disk).
        assert_eq!(
            classify(
                root,
                &event(
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                    "folder"
                )
            ),
            [Observed::Changed {
                path: PathBuf::from("folder"),
                new_folder: true
            }]
        );
        assert_eq!(
            classify(
                root,
                &event(EventKind::Create(CreateKind::Folder), "folder")
            ),
            [Observed::Changed {
                path: PathBuf::from("folder"),
                new_folder: true
            }]
        );
        assert_eq!(
            classify(
                root,
                &event(
                    EventKind::Create(CreateKind::File),
                    ".cairn/monitor-cookies/c1"
                )
            ),
            [Observed::Cookie(OsString::from("c1"))]
        );
        assert_eq!(
            classify(
                root,
                &event(
                    EventKind::Remove(RemoveKind::File),
                    ".cairn/monitor-cookies/c1"
                )
            ),
            []
        );
        // A rename names both sides.
        let both = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(root.join("old"))
            .add_path(root.join("new"));
        assert_eq!(classify(root, &Ok(both)), [changed("old"), changed("new")]);
        // The root moved or removed: nothing is right any more.
        assert_eq!(
            classify(root, &event(EventKind::Remove(RemoveKind::Folder), "")),
            [Observed::Broken]
        );
        assert_eq!(
            classify(root, &Ok(notify::Event::new(data))),
            [Observed::Lost]
        );
    }
}
