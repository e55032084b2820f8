//! The `cairn` client library: a Cairn working copy, on disk and over HTTP.
//!
//! A working copy is a folder with a `.cairn/` state folder ([`stores::StateFolder`]): its
//! config (server and project), the index ([`stores::index`]: the base it last synced,
//! [`stores::state::Base`], and each file's stat data in one file), a local object cache
//! ([`stores::object_cache`]) and the head record a damaged index is rebuilt from
//! ([`stores::head`]).
//! [`working_copy::scan`] turns the folder into a `sync_protocol::tree::Listing`, reading only
//! files whose stat changed and storing their objects; [`working_copy::status`] compares it with
//! the base; [`working_copy::apply`] writes a new tree into the folder without ever losing a
//! local edit; [`WorkingCopy::snapshot`] adds the dir objects, so
//! `sync_protocol::plan::plan_push` can run over the cache. [`stores::user_config`] keeps access
//! tokens in `~/.config/cairn/config.toml`.
//!
//! The network half: [`transport::Remote`] speaks the server's `/v1` API as
//! `sync_protocol::wire` writes it (routes, bodies, problem documents) with blocking reqwest over
//! rustls, keep-alive and `TCP_NODELAY`; [`operations`] drives the working copy with it (pull,
//! push, sync, restore, watch; see there).
//!
//! Long transfers report to a [`progress::Progress`] (the binary draws bars on a terminal).
//! Failures are [`ClientError`] and [`RemoteError`], data the binary words (see [`error`]).
//!
//! # Layers
//!
//! The modules form layers; a module imports only from layers below its own, never from its
//! own layer or above, so there is no cycle. The `cairn` binary (`src/bin/cairn/`) sits on top.
//! `tests/layers.rs` reads every `crate::` path in `src/` and holds the code to this table:
//!
//! ```text
//! layer 3: operations
//! layer 2: working_copy
//! layer 1: transport stores
//! layer 0: error progress timing
//! ```
//!
//! - `operations`: pull, push, sync, restore, watch, change records, batched uploads: the
//!   working copy driven with what the transport brings; and `cairn daemon`, the optional
//!   file-system monitor.
//! - `working_copy`: the files of the folder: scanning, status, applying a tree, snapshots,
//!   and [`WorkingCopy`], which ties them to the state folder.
//! - `transport`: HTTP. Hands a pull's verified items to its caller; knows nothing of `.cairn/`.
//! - `stores`: the `.cairn/` files (config, index, head, object cache, lock, push journal,
//!   atomic writes), the user's token file, and asking the file-system monitor over its
//!   socket. Knows nothing of HTTP.
//! - `error`, `progress`, `timing`: the error types, the progress sink, `CAIRN_TIMINGS`.
//!
//! Working today, tested end to end against the real server (`tests/remote.rs`): `login`,
//! `projects` (list, create), `clone`, `pull`, `push` (including a large push cut off and
//! resumed), `sync`, `watch`, `log`, `restore`; and in the workspace's `tests/` crate against
//! PostgreSQL and S3.
//!
//! # Decisions the design left open
//!
//! - The base listing lives in the index beside the stat data, so `status` reads one file and
//!   the disk, never rebuilds the base tree from cached dir objects, and decodes nothing: the
//!   records are fixed-width, sorted by path, looked up by binary search in the buffer read.
//! - The index is never trusted when damaged (checksum, lengths, version, order): it is rebuilt
//!   from `.cairn/head` (version, root, pending entries; fsynced after each new base) and the
//!   base tree in the object cache, every file hashed again; without the tree the command
//!   fails with `IndexUnrecoverable` and changes nothing. The stat data is fsynced only with a
//!   new base: losing a stat-only write costs a rehash.
//! - With a monitor, the index keeps its token; `Changes::Paths` walks the folders holding the
//!   named paths (a file's folder, a removed folder's nearest listed parent), never less, and
//!   anything it cannot reproduce exactly walks everything.
//! - The stat data keeps only entries whose mtime is strictly older than the scan's start as
//!   the file system's clock tells it (a file touched in `.cairn/`), as git does for "racily
//!   clean" entries: an edit in the same timestamp tick as the hash cannot go unnoticed.
//! - Scanning stores the objects of every file it reads in the object cache (as `git add` does),
//!   so a push never has to re-read the working copy, and `status` and `push` agree.
//! - `.cairnignore` (gitignore syntax, in any folder, like `.gitignore`) applies to untracked
//!   paths only: a path in the base stays listed even if a rule matches it.
//! - A name that is valid only after NFC normalization is listed under its NFC form and written
//!   back under its on-disk form ([`working_copy::scan::DiskNames`]); two disk names equal after NFC or case
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
//! - `cairn` exit codes (chosen by the binary from the typed errors): 0 ok, 1 failure, 2 usage,
//!   3 not a working copy, 4 not implemented yet, 5 authentication (not logged in, token
//!   refused, role too low), 6 conflict not resolved, 7 network (the URL that failed is named).
//! - Push ids are 32 random hex digits, new for each attempt at a version (a push after a merge
//!   gets a new one); the same id is sent again only when a network error or a 5xx left the
//!   outcome unknown, so a retry never commits twice.
//! - A request that fails the way a server node's death or drain looks (refused or reset
//!   connection, an answer cut off mid-body, `502`, `503`, `504`) is sent again with
//!   exponential backoff and jitter, honoring `Retry-After`, for at most about 12 seconds of
//!   pausing, and without a word unless it fails for good ([`transport::retry`]). Requests
//!   that are not safe to repeat (log in, create a project) are sent again only when no
//!   connection was made.
//! - A never-synced working copy (`init` without `clone`) pushes as if based on version 0, the
//!   empty project; if the head has moved on the push conflicts and is merged like any other.
//! - A push of at most 8 MiB of frames is one request built in memory; a larger one goes in
//!   batches of at most 32 MiB, so memory stays bounded and a cut-off push keeps what arrived.
//! - A push whose base tree is no longer whole in the object cache rebuilds the new tree's dirs
//!   into the cache and asks the server what it lacks (the negotiation) instead of failing.
//! - `restore` asks the server for its head, restores on top of it, then pulls, so local edits
//!   are merged into the restored tree like any pull.
//! - The file-system monitor (`cairn daemon`, [`operations::daemon`]) answers only once the
//!   notification of a cookie file it made for the query has arrived, so an edit finished
//!   before a command started is in that command's answer; anything it cannot vouch for is
//!   "walk everything", and a client gives up on it after 1 s.

pub mod error;
pub mod operations;
pub mod progress;
pub mod stores;
pub mod timing;
pub mod transport;
pub mod working_copy;

pub use error::{ClientError, RemoteError};
// The path the test suites' shared helpers (`tests/util.rs`) name the object cache by.
pub use stores::object_cache;
pub use working_copy::WorkingCopy;
