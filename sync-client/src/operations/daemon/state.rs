//! The daemon's rules, free of I/O but for one `stat`: what a notification means
//! ([`classify`]) and what the daemon answers for a token ([`MonitorState`]). Tested here with
//! made-up notifications, including the ones `notify` sends for a queue overflow and an error.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path as FsPath, PathBuf};
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};

use super::{COOKIE_DIR, SETTLE};
use crate::stores::META_DIR;
use crate::stores::atomic::is_temp_name;
use crate::stores::monitor::AnswerBody;

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
