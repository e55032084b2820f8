//! `cairn`: the Cairn command-line client.
//!
//! `init`, `status` and `daemon` (the optional file-system monitor) work on the local
//! working copy; `login`, `projects`, `clone`, `pull`,
//! `push`, `sync`, `watch`, `log` and `restore` talk to the server (`sync_client::transport`,
//! `sync_client::operations`). `network.rs` holds the commands that need no working copy,
//! `output.rs` what every command prints (text, or JSON with `--json`), `errors.rs` how every
//! failure reads and which exit code it gets.

use std::path::{Path as FsPath, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use sync_client::operations::watch::WatchOptions;
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};

mod errors;
mod network;
mod output;
mod progress;

use errors::EXIT_USAGE;

use network::{clone, log, login, open_copy, projects};
use output::{
    print_json, print_pull, print_pull_text, print_sync, print_watch_event, pull_json, status,
};

/// Rounds of pull, merge and push before `sync` (or a conflicted `push`) gives up.
const SYNC_ROUNDS: u32 = 5;

const AFTER_HELP: &str = "\
Examples:
  cairn login --server https://cairn.example.com --user alice
  cairn projects create --team crew pet-store
  cairn clone --project pet-store             # a new folder ./pet-store, synced
  cd pet-store && cairn status                # what changed since the last sync
  cairn push -m \"list pets: add paging\"       # pulls and merges first if others pushed
  cairn sync                                  # pull, merge, push until both sides agree
  cairn watch                                 # keep syncing as files change, Ctrl-C stops
  cairn daemon &                              # faster status, push and sync: a file monitor
  cairn log -n 5 && cairn restore 3           # history; version 3 again as a new version
  cairn --json status                         # the same, as JSON for scripts

Exit codes:
  0  success
  1  the command failed (I/O error, disk full, damaged .cairn/ state, bad configuration,
     an answer the server refused)
  2  invalid command line
  3  not inside a Cairn working copy (no .cairn/ folder here or above)
  4  not implemented yet (no command answers this today; kept for future ones)
  5  not logged in, the token was refused, or your role is too low: run `cairn login`
  6  conflict: the project kept moving on while pushing or restoring; run `cairn sync` again
  7  network: the server could not be reached, the connection broke, or the server stayed
     unavailable (HTTP 502, 503, 504) through about 12 seconds of retries

Environment:
  CAIRN_CONFIG     path of the user config file (access tokens)
  XDG_CONFIG_HOME  otherwise the config is $XDG_CONFIG_HOME/cairn/config.toml,
                   else ~/.config/cairn/config.toml
  CAIRN_PASSWORD   the password for `cairn login` (else it is read from standard input)
  CAIRN_TIMINGS    print how long each local phase took to standard error
  CAIRN_REBASE     `off`: never let the server rebase a push onto others' changes (a
                   stale base is then always a conflict, merged here), as clients before the header";

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: team sync for API-development projects",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', long = "directory", value_name = "DIR", global = true)]
    directory: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a folder a working copy of a project (writes .cairn/; contacts no server).
    Init {
        /// The server's URL, e.g. `https://cairn.example.com`.
        #[arg(long, value_name = "URL")]
        server: String,
        /// The project's id on that server.
        #[arg(long, value_name = "ID")]
        project: String,
        /// The folder to initialize (default: the current folder).
        dir: Option<PathBuf>,
    },
    /// Show what changed since the last sync: added (A), modified (M), removed (D), unreadable (?).
    Status,
    /// Log in to a server and store the access token in the user config.
    Login {
        /// The server's URL (default: the working copy's server, else the last one logged in to).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Account name or email (asked on standard input when absent).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// List the projects you can access, or create one.
    Projects {
        /// The server's URL (default: the working copy's server, else the last one logged in to).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        #[command(subcommand)]
        action: Option<ProjectsAction>,
    },
    /// Download a project into a new working copy.
    Clone {
        /// The server's URL (default: the last one logged in to).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// The project's id, or its name if only one of your projects has it.
        #[arg(long, value_name = "ID")]
        project: String,
        /// The folder to create (default: the project's name); must not exist or be empty.
        dir: Option<PathBuf>,
    },
    /// Upload local changes as a new version; if others pushed first, pull, merge and retry.
    Push {
        /// A message describing the version.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Bring in the server's latest version, merging local edits (conflict copies keep both).
    Pull,
    /// Pull and merge, then push, until the working copy and the server agree.
    Sync {
        /// A message describing the version, if one is pushed.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Sync continuously as files change here or on the server (Ctrl-C stops it).
    ///
    /// Syncs at start, then whenever the server announces a new version (its event stream) or
    /// a check of the folder, every INTERVAL seconds, finds changes. While it runs it is also
    /// the working copy's file-system monitor (see `cairn daemon`), unless one runs already.
    Watch {
        /// Seconds between checks of the folder.
        #[arg(long, value_name = "INTERVAL", default_value_t = 2)]
        interval: u64,
    },
    /// Watch this working copy's files, so that commands need not look in every folder.
    ///
    /// The optional file-system monitor: while it runs, a command asks it which paths changed
    /// since the last scan instead of walking the whole folder (it walks everything whenever
    /// the monitor cannot vouch for the interval). Runs in the foreground and prints one line
    /// once it answers; Ctrl-C or `cairn daemon --stop` stops it, and so does removing
    /// `.cairn/`. One per working copy.
    Daemon {
        /// Stop the monitor running for this working copy, and wait until it has.
        #[arg(long)]
        stop: bool,
    },
    /// List the project's versions, newest first.
    Log {
        /// Show at most N versions.
        #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
        limit: u32,
    },
    /// Make an old version the latest one, as a new version, then pull it here.
    Restore {
        /// The version to restore.
        version: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectsAction {
    /// Create a project in a team (its id or name); you must be an editor of the team.
    Create {
        #[arg(long, value_name = "TEAM")]
        team: String,
        /// The project's name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    match sync_client::timing::timed("run", || run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("cairn: error: {}", errors::message(&error));
            ExitCode::from(errors::exit_code(&error))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let start = match &cli.directory {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("could not read the current folder")?,
    };
    let json = cli.json;
    match cli.command {
        Command::Init {
            server,
            project,
            dir,
        } => {
            let root = resolve(&start, dir);
            let config = WorkingCopyConfig::new(&server, &project)?;
            let copy = WorkingCopy::init(&root, config)?;
            if json {
                print_json(&json!({
                    "root": copy.root().display().to_string(),
                    "server": copy.config().server,
                    "project": copy.config().project,
                }))?;
            } else {
                println!(
                    "Initialized a Cairn working copy of project {} on {} in {}",
                    copy.config().project,
                    copy.config().server,
                    copy.root().display()
                );
            }
            Ok(0)
        }
        Command::Status => {
            let copy = WorkingCopy::discover(&start)?;
            let result = status(&copy, json);
            report_rebuilt(&copy);
            result?;
            Ok(0)
        }
        Command::Login { server, user } => login(&start, server, user, json),
        Command::Projects { server, action } => projects(&start, server, action, json),
        Command::Clone {
            server,
            project,
            dir,
        } => clone(&start, server, &project, dir, json),
        Command::Pull => {
            let (copy, remote) = open_copy(&start, json)?;
            let outcome = sync_client::operations::pull(&copy, &remote);
            report_rebuilt(&copy);
            print_pull(&outcome?, json)?;
            Ok(0)
        }
        Command::Push { message } => {
            let (copy, remote) = open_copy(&start, json)?;
            let outcome =
                sync_client::operations::push(&copy, &remote, message.as_deref(), SYNC_ROUNDS);
            report_rebuilt(&copy);
            print_sync(&outcome?, json)?;
            Ok(0)
        }
        Command::Sync { message } => {
            let (copy, remote) = open_copy(&start, json)?;
            let outcome =
                sync_client::operations::sync(&copy, &remote, message.as_deref(), SYNC_ROUNDS);
            report_rebuilt(&copy);
            print_sync(&outcome?, json)?;
            Ok(0)
        }
        Command::Daemon { stop } => {
            let copy = WorkingCopy::discover(&start)?;
            daemon(copy.root(), stop, json)
        }
        Command::Log { limit } => {
            let (copy, remote) = open_copy(&start, json)?;
            log(&copy, &remote, limit, json)?;
            Ok(0)
        }
        Command::Restore { version } => {
            let (copy, remote) = open_copy(&start, json)?;
            let committed = sync_client::operations::restore(
                &remote,
                &copy.config().project,
                version,
                SYNC_ROUNDS,
            )?;
            let pulled = sync_client::operations::pull(&copy, &remote);
            report_rebuilt(&copy);
            let pulled = pulled?;
            if json {
                print_json(&json!({
                    "restored": version,
                    "version": committed.version,
                    "root": committed.root.to_hex(),
                    "pull": pull_json(&pulled),
                }))?;
            } else {
                println!(
                    "Restored version {version} as version {}.",
                    committed.version
                );
                print_pull_text(&pulled);
            }
            Ok(0)
        }
        Command::Watch { interval } => {
            let (copy, remote) = open_copy(&start, json)?;
            let options = WatchOptions {
                interval: Duration::from_secs(interval.max(1)),
                rounds: SYNC_ROUNDS,
            };
            monitor_beside_watch(copy.root());
            sync_client::operations::watch::watch(&copy, &remote, options, |event| {
                print_watch_event(&event, json);
                true
            })?;
            Ok(0)
        }
    }
}

/// A watch is also the file-system monitor of its working copy, unless one runs already: a
/// thread that lives as long as the watch (a socket it leaves behind refuses connections and is
/// replaced by the next monitor).
fn monitor_beside_watch(root: &FsPath) {
    use sync_client::operations::daemon::{self, DaemonError};
    let root = root.to_path_buf();
    std::thread::spawn(move || match daemon::run(&root, |_| {}) {
        Ok(()) | Err(DaemonError::Running { .. }) => {}
        Err(error) => eprintln!(
            "cairn watch: no file-system monitor: {}",
            errors::message(&error.into())
        ),
    });
}

/// `cairn daemon`: runs the monitor in the foreground, or stops the running one.
fn daemon(root: &FsPath, stop: bool, json: bool) -> anyhow::Result<u8> {
    use sync_client::operations::daemon;
    if stop {
        if !sync_client::stores::monitor::request_stop(root) {
            if json {
                print_json(&json!({ "stopped": false, "running": false }))?;
            } else {
                println!("No file-system monitor answered for {}.", root.display());
            }
            return Ok(0);
        }
        let wait = Duration::from_secs(5);
        anyhow::ensure!(
            daemon::wait_stopped(root, wait),
            "the file-system monitor of {} was asked to stop but still runs after {} s",
            root.display(),
            wait.as_secs()
        );
        if json {
            print_json(&json!({ "stopped": true, "running": false }))?;
        } else {
            println!("Stopped the file-system monitor of {}.", root.display());
        }
        return Ok(0);
    }
    daemon::run(root, |socket| {
        if json {
            // One line, like the text.
            println!(
                "{}",
                json!({
                    "ready": true,
                    "root": root.display().to_string(),
                    "socket": socket.display().to_string(),
                })
            );
        } else {
            println!(
                "Monitoring {} (socket {}); Ctrl-C or `cairn daemon --stop` stops it.",
                root.display(),
                socket.display()
            );
        }
        // The line is the signal that queries are answered: out now, even into a pipe.
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })?;
    Ok(0)
}

/// One line on stderr when the command found the index damaged and rebuilt it.
fn report_rebuilt(copy: &WorkingCopy) {
    if let Some(why) = copy.take_index_rebuilt() {
        eprintln!(
            "cairn: the index .cairn/index was damaged ({why}) and was rebuilt from the base record, the object cache and the files; nothing was lost"
        );
    }
}

pub(crate) fn resolve(start: &FsPath, dir: Option<PathBuf>) -> PathBuf {
    match dir {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => start.join(dir),
        None => start.to_path_buf(),
    }
}
