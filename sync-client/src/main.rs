//! `cairn`: the Cairn command-line client.
//!
//! This build works on the local working copy only (`init`, `status`); the commands that talk to
//! the server are listed so that `--help` shows the whole tool, and answer that they are not
//! implemented yet with their own exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use sync_client::ClientError;
use sync_client::scan::Skipped;
use sync_client::status::PathChange;
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};

/// Exit code: the command failed (I/O error, damaged `.cairn/` state, bad configuration).
const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line is invalid (clap's own code).
const EXIT_USAGE: u8 = 2;
/// Exit code: the folder is not inside a working copy.
const EXIT_NOT_A_WORKING_COPY: u8 = 3;
/// Exit code: the command is not implemented yet in this build.
const EXIT_NOT_IMPLEMENTED: u8 = 4;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  the command failed (I/O error, disk full, damaged .cairn/ state, bad configuration)
  2  invalid command line
  3  not inside a Cairn working copy (no .cairn/ folder here or above)
  4  not implemented yet: the command needs the server API, which this build does not speak

Environment:
  CAIRN_CONFIG     path of the user config file (access tokens)
  XDG_CONFIG_HOME  otherwise the config is $XDG_CONFIG_HOME/cairn/config.toml,
                   else ~/.config/cairn/config.toml";

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
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Log in to a server and store the access token [not implemented yet].
    Login {
        /// The server's URL.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// List the projects you can access [not implemented yet].
    Projects,
    /// Download a project into a new working copy [not implemented yet].
    Clone {
        #[arg(long, value_name = "URL")]
        server: String,
        #[arg(long, value_name = "ID")]
        project: String,
        dir: Option<PathBuf>,
    },
    /// Upload local changes as a new version [not implemented yet].
    Push {
        /// A message describing the version.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Bring in the server's latest version, merging local edits [not implemented yet].
    Pull,
    /// Pull, then push [not implemented yet].
    Sync,
    /// Sync continuously as files change here or on the server [not implemented yet].
    Watch,
    /// List the project's versions [not implemented yet].
    Log {
        /// Show at most N versions.
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Make an old version the latest one, as a new version [not implemented yet].
    Restore {
        /// The version to restore.
        version: u64,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Init { .. } => "init",
            Self::Status { .. } => "status",
            Self::Login { .. } => "login",
            Self::Projects => "projects",
            Self::Clone { .. } => "clone",
            Self::Push { .. } => "push",
            Self::Pull => "pull",
            Self::Sync => "sync",
            Self::Watch => "watch",
            Self::Log { .. } => "log",
            Self::Restore { .. } => "restore",
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("cairn: error: {error:#}");
            let code = match error.downcast_ref::<ClientError>() {
                Some(ClientError::NotAWorkingCopy { .. }) => EXIT_NOT_A_WORKING_COPY,
                _ => EXIT_FAILURE,
            };
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let start = match &cli.directory {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("could not read the current folder")?,
    };
    match cli.command {
        Command::Init {
            server,
            project,
            dir,
        } => {
            let root = match dir {
                Some(dir) if dir.is_absolute() => dir,
                Some(dir) => start.join(dir),
                None => start,
            };
            let config = WorkingCopyConfig::new(&server, &project)?;
            let copy = WorkingCopy::init(&root, config)?;
            println!(
                "Initialized a Cairn working copy of project {} on {} in {}",
                copy.config().project,
                copy.config().server,
                copy.root().display()
            );
            Ok(0)
        }
        Command::Status { json } => {
            let copy = WorkingCopy::discover(&start)?;
            status(&copy, json)?;
            Ok(0)
        }
        other => {
            eprintln!(
                "cairn {}: not implemented yet: needs the server API. \
                 This build of cairn works on the local working copy only (init, status).",
                other.name()
            );
            Ok(EXIT_NOT_IMPLEMENTED)
        }
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    root: String,
    server: &'a str,
    project: &'a str,
    base_version: Option<u64>,
    changes: &'a [PathChange],
    pending: Vec<&'a str>,
    skipped: Vec<SkippedJson>,
    files: u64,
    files_read: u64,
}

#[derive(Serialize)]
struct SkippedJson {
    path: String,
    reason: String,
}

impl From<&Skipped> for SkippedJson {
    fn from(skipped: &Skipped) -> Self {
        Self {
            path: skipped.path.to_string_lossy().into_owned(),
            reason: skipped.reason.to_string(),
        }
    }
}

fn status(copy: &WorkingCopy, json: bool) -> anyhow::Result<()> {
    let status = copy.status()?;
    if let Some(detail) = &status.stat_cache_discarded {
        eprintln!("cairn: warning: the stat cache was damaged ({detail}); every file was re-read");
    }
    if json {
        let out = StatusJson {
            root: copy.root().display().to_string(),
            server: &copy.config().server,
            project: &copy.config().project,
            base_version: status.base_version,
            changes: &status.changes,
            pending: status.pending.iter().map(|path| path.as_str()).collect(),
            skipped: status.scan.skipped.iter().map(SkippedJson::from).collect(),
            files: status.scan.counters.files,
            files_read: status.scan.counters.files_read,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match status.base_version {
        Some(version) => println!(
            "Project {} on {}, at version {version}.",
            copy.config().project,
            copy.config().server
        ),
        None => println!(
            "Project {} on {}, never synced.",
            copy.config().project,
            copy.config().server
        ),
    }
    if status.changes.is_empty() {
        println!("No changes.");
    } else {
        println!("Changes since the last sync:");
        for change in &status.changes {
            println!("  {}  {}", change.change.letter(), change.path);
        }
    }
    if !status.pending.is_empty() {
        println!("Not updated by the last pull (pull again once the cause is fixed):");
        for path in &status.pending {
            println!("  {path}");
        }
    }
    if !status.scan.skipped.is_empty() {
        println!("Not synced:");
        for skipped in &status.scan.skipped {
            println!("  {}: {}", skipped.path.display(), skipped.reason);
        }
    }
    Ok(())
}
