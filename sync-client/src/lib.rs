//! The `cairn` client library: a Cairn working copy, on disk and over HTTP.
//!
//! A working copy is a folder with a `.cairn/` state folder ([`working_copy`]): its config
//! (server and project), the base it last synced ([`state::Base`]), a local object cache
//! ([`object_cache`]) and a stat cache ([`state::StatCache`]). [`scan`] turns the folder into a
//! `sync_protocol::tree::Listing`, reading only files whose stat changed and storing their
//! objects; [`status`] compares it with the base; [`apply`] writes a new tree into the folder
//! without ever losing a local edit; [`working_copy::WorkingCopy::snapshot`] adds the dir
//! objects, so `sync_protocol::plan::plan_push` can run over the cache. [`user_config`] keeps
//! access tokens in `~/.config/cairn/config.toml`.
//!
//! The network half: [`remote::Remote`] speaks the server's `/v1` API (docs-src
//! `protocol/http-api.md`) with blocking reqwest over rustls, keep-alive and `TCP_NODELAY`;
//! [`sync`] drives the working copy with it:
//!
//! - pull: `POST .../pull` with the base root as `have`; every frame of the answer is verified
//!   by `sync_protocol::stream::StreamDecoder` as it arrives and stored in the object cache,
//!   then `WorkingCopy::apply_root` merges the new tree into the folder;
//! - push: refuse while `Base::pending` is not empty (pull first), `WorkingCopy::snapshot`,
//!   `plan_push(objects, base.root, snapshot.root)`, then one `POST .../push` carrying every
//!   planned frame when they are small, or ([`upload`]) a journal, `POST .../objects` batches
//!   read on a second thread while the previous one is sent, and `POST .../commits` when they
//!   are large; a push that finds a journal left by an interrupted one asks `POST .../missing`
//!   first and sends only what the server lacks. Then `WorkingCopy::set_base` with the
//!   snapshot's listing and the new version;
//! - sync (and push after `409 conflict`): pull and merge, then push, at most a few rounds;
//! - watch ([`watch`]): sync at start, then whenever the project's event stream announces a
//!   head other than the base, or a status check finds local changes (after file-system
//!   notifications settle, and every `--interval` seconds in case some were lost).
//!
//! Long transfers report to a [`progress::Progress`] (the binary draws bars on a terminal).
//!
//! Working today, tested end to end against the real server (`tests/remote.rs`): `login`,
//! `projects` (list, create), `clone`, `pull`, `push` (including a large push cut off and
//! resumed), `sync`, `watch`, `log`, `restore`; and in the workspace's `tests/` crate against
//! PostgreSQL and S3.
//!
//! # Decisions the design left open
//!
//! - The base keeps its listing beside its root id, so `status` reads one file and the disk and
//!   never rebuilds the base tree from cached dir objects.
//! - The stat cache keeps only entries whose mtime is strictly older than the scan's start as
//!   the file system's clock tells it (a file touched in `.cairn/`), as git does for "racily
//!   clean" entries: an edit in the same timestamp tick as the hash cannot go unnoticed.
//! - Scanning stores the objects of every file it reads in the object cache (as `git add` does),
//!   so a push never has to re-read the working copy, and `status` and `push` agree.
//! - `.cairnignore` (gitignore syntax, in any folder, like `.gitignore`) applies to untracked
//!   paths only: a path in the base stays listed even if a rule matches it.
//! - A name that is valid only after NFC normalization is listed under its NFC form and written
//!   back under its on-disk form ([`scan::DiskNames`]); two disk names equal after NFC or case
//!   folding keep the first in byte order and report the other.
//! - Unreadable files and folders, and files that kept changing while read, are *unsettled*:
//!   neither listed nor removed, shown by `status` as `?`, never touched by an apply.
//! - An apply that cannot bring a path up to date (edited since the scan, an unlisted file in
//!   the way) leaves it and records it in `Base::pending`, with the previous base's entry, so the
//!   next pull merges it again.
//! - Local edits get their conflict-copy name by a hard link before the original name changes
//!   (no copy, and the content never exists nowhere); a file sharing its inode with a copy is
//!   then replaced, never chmod-ed in place.
//! - The executable bit is the owner's execute bit; a rewritten file keeps its other
//!   permission bits.
//! - `cairn` exit codes: 0 ok, 1 failure, 2 usage, 3 not a working copy, 4 not implemented yet,
//!   5 authentication (not logged in, token refused, role too low), 6 conflict not resolved,
//!   7 network (the URL that failed is named).
//! - Push ids are 32 random hex digits, new for each attempt at a version (a push after a merge
//!   gets a new one); the same id is sent again only when a network error or a 5xx left the
//!   outcome unknown, so a retry never commits twice.
//! - A never-synced working copy (`init` without `clone`) pushes as if based on version 0, the
//!   empty project; if the head has moved on the push conflicts and is merged like any other.
//! - A push of at most 8 MiB of frames is one request built in memory; a larger one goes in
//!   batches of at most 4 MiB, so memory stays bounded and a cut-off push keeps what arrived.
//! - A push whose base tree is no longer whole in the object cache rebuilds the new tree's dirs
//!   into the cache and asks the server what it lacks (the negotiation) instead of failing.
//! - `restore` asks the server for its head, restores on top of it, then pulls, so local edits
//!   are merged into the restored tree like any pull.

pub mod apply;
pub mod atomic;
mod codec;
pub mod error;
pub mod object_cache;
pub mod progress;
pub mod records;
pub mod remote;
pub mod scan;
pub mod state;
pub mod status;
pub mod sync;
pub mod timing;
pub mod upload;
pub mod user_config;
pub mod watch;
pub mod working_copy;

pub use error::ClientError;
pub use working_copy::WorkingCopy;
