//! `cairn`: the Cairn command-line client.
//!
//! `init` and `status` work on the local working copy; `login`, `projects`, `clone`, `pull`,
//! `push`, `sync`, `log` and `restore` talk to the server (see `sync_client::sync`). `watch` is
//! listed so that `--help` shows the whole tool, and answers that it is not implemented yet with
//! its own exit code.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path as FsPath, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::json;
use sync_client::ClientError;
use sync_client::apply::{ApplyReport, ConflictSummary, summary};
use sync_client::remote::{Remote, RemoteError};
use sync_client::scan::Skipped;
use sync_client::status::PathChange;
use sync_client::sync::{PullOutcome, PushOutcome, SyncOutcome};
use sync_client::user_config::{self, ServerCredentials};
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};

/// Exit code: the command failed (I/O error, damaged `.cairn/` state, bad configuration).
const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line is invalid (clap's own code).
const EXIT_USAGE: u8 = 2;
/// Exit code: the folder is not inside a working copy.
const EXIT_NOT_A_WORKING_COPY: u8 = 3;
/// Exit code: the command is not implemented yet in this build.
const EXIT_NOT_IMPLEMENTED: u8 = 4;
/// Exit code: not logged in, the token was refused, or the role is too low.
const EXIT_AUTH: u8 = 5;
/// Exit code: the project moved on and the push or restore could not be brought up to date.
const EXIT_CONFLICT: u8 = 6;
/// Exit code: the server could not be reached or the connection broke.
const EXIT_NETWORK: u8 = 7;

/// Rounds of pull, merge and push before `sync` (or a conflicted `push`) gives up.
const SYNC_ROUNDS: u32 = 5;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  the command failed (I/O error, disk full, damaged .cairn/ state, bad configuration,
     an answer the server refused)
  2  invalid command line
  3  not inside a Cairn working copy (no .cairn/ folder here or above)
  4  not implemented yet (watch)
  5  not logged in, the token was refused, or your role is too low: run `cairn login`
  6  conflict: the project kept moving on while pushing or restoring; run `cairn sync` again
  7  network: the server could not be reached or the connection broke; the URL is named

Environment:
  CAIRN_CONFIG     path of the user config file (access tokens)
  XDG_CONFIG_HOME  otherwise the config is $XDG_CONFIG_HOME/cairn/config.toml,
                   else ~/.config/cairn/config.toml
  CAIRN_PASSWORD   the password for `cairn login` (else it is read from standard input)";

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
    /// Sync continuously as files change here or on the server [not implemented yet].
    Watch,
    /// List the project's versions, newest first.
    Log {
        /// Show at most N versions.
        #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
        limit: u64,
    },
    /// Make an old version the latest one, as a new version, then pull it here.
    Restore {
        /// The version to restore.
        version: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectsAction {
    /// Create a project in a team (its id or name); you must be an editor of the team.
    Create {
        #[arg(long, value_name = "TEAM")]
        team: String,
        /// The project's name.
        name: String,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Init { .. } => "init",
            Self::Status => "status",
            Self::Login { .. } => "login",
            Self::Projects { .. } => "projects",
            Self::Clone { .. } => "clone",
            Self::Push { .. } => "push",
            Self::Pull => "pull",
            Self::Sync { .. } => "sync",
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
            ExitCode::from(exit_code(&error))
        }
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    let remote = match error.downcast_ref::<ClientError>() {
        Some(ClientError::NotAWorkingCopy { .. }) => return EXIT_NOT_A_WORKING_COPY,
        Some(ClientError::NotConverged { .. }) => return EXIT_CONFLICT,
        Some(ClientError::Remote(remote)) => Some(remote),
        _ => error.downcast_ref::<RemoteError>(),
    };
    match remote {
        Some(RemoteError::Unauthorized { .. }) => EXIT_AUTH,
        Some(RemoteError::Problem { status: 403, .. }) => EXIT_AUTH,
        Some(RemoteError::Conflict { .. }) => EXIT_CONFLICT,
        Some(RemoteError::Network { .. }) => EXIT_NETWORK,
        _ => EXIT_FAILURE,
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
            status(&copy, json)?;
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
            let (copy, remote) = open_copy(&start)?;
            let outcome = sync_client::sync::pull(&copy, &remote)?;
            print_pull(&outcome, json)?;
            Ok(0)
        }
        Command::Push { message } => {
            let (copy, remote) = open_copy(&start)?;
            let outcome = sync_client::sync::push(&copy, &remote, message.as_deref(), SYNC_ROUNDS)?;
            print_sync(&outcome, json)?;
            Ok(0)
        }
        Command::Sync { message } => {
            let (copy, remote) = open_copy(&start)?;
            let outcome = sync_client::sync::sync(&copy, &remote, message.as_deref(), SYNC_ROUNDS)?;
            print_sync(&outcome, json)?;
            Ok(0)
        }
        Command::Log { limit } => {
            let (copy, remote) = open_copy(&start)?;
            log(&copy, &remote, limit, json)?;
            Ok(0)
        }
        Command::Restore { version } => {
            let (copy, remote) = open_copy(&start)?;
            let head = remote.project(&copy.config().project)?.head();
            let committed =
                sync_client::sync::restore(&remote, &copy.config().project, version, head.version)?;
            let pulled = sync_client::sync::pull(&copy, &remote)?;
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
        other @ Command::Watch => {
            eprintln!(
                "cairn {}: not implemented yet; run `cairn sync` to sync once.",
                other.name()
            );
            Ok(EXIT_NOT_IMPLEMENTED)
        }
    }
}

fn resolve(start: &FsPath, dir: Option<PathBuf>) -> PathBuf {
    match dir {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => start.join(dir),
        None => start.to_path_buf(),
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The server a command without a working copy talks to: `--server`, else the working copy's
/// (when run inside one), else the user config's default.
fn pick_server(start: &FsPath, server: Option<String>) -> anyhow::Result<String> {
    if let Some(server) = server {
        return Ok(WorkingCopyConfig::new(&server, "x")?.server);
    }
    if let Ok(copy) = WorkingCopy::discover(start) {
        return Ok(copy.config().server.clone());
    }
    let config = user_config::load(&user_config::config_path()?)?.unwrap_or_default();
    match config.default_server {
        Some(server) => Ok(server),
        None => bail!("no server given and none logged in to; pass --server URL"),
    }
}

/// A client of `server` with the user's token for it, if any.
fn remote_for(server: &str) -> anyhow::Result<Remote> {
    let config = user_config::load(&user_config::config_path()?)?.unwrap_or_default();
    let token = config.token(server).map(str::to_owned);
    Ok(Remote::new(server, token)?)
}

fn open_copy(start: &FsPath) -> anyhow::Result<(WorkingCopy, Remote)> {
    let copy = WorkingCopy::discover(start)?;
    let remote = remote_for(&copy.config().server)?;
    Ok((copy, remote))
}

fn prompt_line(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("could not read standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_password(user: &str) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("CAIRN_PASSWORD") {
        return Ok(password);
    }
    let terminal = std::io::stdin().is_terminal();
    // Hide the password as it is typed; `stty` is on every Unix the client supports.
    let set_echo = |on: bool| {
        if terminal {
            let _ = std::process::Command::new("stty")
                .arg(if on { "echo" } else { "-echo" })
                .status();
        }
    };
    set_echo(false);
    let password = prompt_line(&format!("Password for {user}: "));
    set_echo(true);
    if terminal {
        eprintln!();
    }
    password
}

fn login(
    start: &FsPath,
    server: Option<String>,
    user: Option<String>,
    json: bool,
) -> anyhow::Result<u8> {
    let server = pick_server(start, server)?;
    let user = match user {
        Some(user) => user,
        None => prompt_line("Account name or email: ")?,
    };
    let password = read_password(&user)?;
    let remote = Remote::new(&server, None)?;
    let label = format!(
        "cairn on {}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "this computer".to_owned())
    );
    let session = remote.log_in(&user, &password, &label)?;
    let path = user_config::config_path()?;
    let mut config = user_config::load(&path)?.unwrap_or_default();
    config.servers.insert(
        server.clone(),
        ServerCredentials {
            token: session.token,
            account: Some(session.account.name.clone()),
        },
    );
    config.default_server = Some(server.clone());
    user_config::save(&path, &config)?;
    if json {
        print_json(&json!({"server": server, "account": session.account}))?;
    } else {
        println!(
            "Logged in to {server} as {}; the token is saved in {}.",
            session.account.name,
            path.display()
        );
    }
    Ok(0)
}

fn projects(
    start: &FsPath,
    server: Option<String>,
    action: Option<ProjectsAction>,
    json: bool,
) -> anyhow::Result<u8> {
    let server = pick_server(start, server)?;
    let remote = remote_for(&server)?;
    match action {
        None => {
            let projects = remote.projects()?;
            if json {
                print_json(&json!({"projects": projects}))?;
            } else if projects.is_empty() {
                println!("No projects on {server}; create one with `cairn projects create`.");
            } else {
                let teams = remote.teams()?;
                for project in &projects {
                    let team = teams
                        .iter()
                        .find(|team| team.id == project.team)
                        .map_or(project.team.as_str(), |team| team.name.as_str());
                    println!(
                        "{}  {}/{}  version {}  ({})",
                        project.id, team, project.name, project.version, project.role
                    );
                }
            }
        }
        Some(ProjectsAction::Create { team, name }) => {
            let teams = remote.teams()?;
            let team_id = match teams.iter().find(|candidate| {
                candidate.id == team || candidate.name.eq_ignore_ascii_case(&team)
            }) {
                Some(found) => found.id.clone(),
                None => bail!("you are in no team {team:?} on {server}"),
            };
            let project = remote.create_project(&team_id, &name)?;
            if json {
                print_json(&project)?;
            } else {
                println!(
                    "Created project {} ({}); clone it with `cairn clone --server {server} --project {}`.",
                    project.name, project.id, project.id
                );
            }
        }
    }
    Ok(0)
}

fn clone(
    start: &FsPath,
    server: Option<String>,
    project: &str,
    dir: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<u8> {
    let server = match server {
        Some(server) => WorkingCopyConfig::new(&server, "x")?.server,
        None => pick_server(start, None)?,
    };
    let remote = remote_for(&server)?;
    let is_id = project.len() == 32 && project.bytes().all(|byte| byte.is_ascii_hexdigit());
    let found = if is_id {
        remote.project(project)?
    } else {
        let mut matches: Vec<_> = remote
            .projects()?
            .into_iter()
            .filter(|candidate| candidate.name == project)
            .collect();
        match matches.len() {
            1 => matches.remove(0),
            0 => bail!("you have no project named {project:?} on {server}; see `cairn projects`"),
            _ => bail!(
                "several of your projects are named {project:?}; clone by id (see `cairn projects`)"
            ),
        }
    };
    let root = resolve(
        start,
        Some(dir.unwrap_or_else(|| PathBuf::from(&found.name))),
    );
    let existed = root.exists();
    if existed
        && std::fs::read_dir(&root)
            .with_context(|| format!("could not read {}", root.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; clone into a new folder",
            root.display()
        );
    }
    let cloned = (|| -> anyhow::Result<(WorkingCopy, PullOutcome)> {
        let copy = WorkingCopy::init(&root, WorkingCopyConfig::new(&server, &found.id)?)?;
        let pulled = sync_client::sync::pull(&copy, &remote)?;
        Ok((copy, pulled))
    })();
    let (copy, pulled) = match cloned {
        Ok(done) => done,
        Err(error) => {
            // Leave nothing half-made behind: the folder was empty or absent.
            if existed {
                let _ = std::fs::remove_dir_all(root.join(".cairn"));
            } else {
                let _ = std::fs::remove_dir_all(&root);
            }
            return Err(error);
        }
    };
    if json {
        print_json(&json!({
            "root": copy.root().display().to_string(),
            "server": server,
            "project": found.id,
            "name": found.name,
            "pull": pull_json(&pulled),
        }))?;
    } else {
        println!(
            "Cloned {} ({}) at version {} into {}.",
            found.name,
            found.id,
            pulled.version,
            copy.root().display()
        );
    }
    Ok(0)
}

fn log(copy: &WorkingCopy, remote: &Remote, limit: u64, json: bool) -> anyhow::Result<()> {
    let versions = remote.versions(&copy.config().project, limit)?;
    if json {
        return print_json(&json!({"versions": versions}));
    }
    let base = copy.base()?.version;
    for version in &versions {
        let here = if Some(version.number) == base {
            "  (this working copy)"
        } else {
            ""
        };
        println!(
            "version {}  {}  {}{here}",
            version.number, version.time, version.author.name
        );
        if !version.message.is_empty() {
            println!("    {}", version.message);
        }
    }
    Ok(())
}

fn report_json(report: &ApplyReport) -> serde_json::Value {
    json!({
        "summary": summary(report),
        "written": report.written.iter().map(|path| path.as_str()).collect::<Vec<_>>(),
        "removed": report.removed.iter().map(|path| path.as_str()).collect::<Vec<_>>(),
        "conflict_copies": report
            .copied
            .iter()
            .map(|(from, to)| json!({"path": from.as_str(), "copy": to.as_str()}))
            .collect::<Vec<_>>(),
        "conflicts": report.conflicts.iter().map(ConflictSummary::from).collect::<Vec<_>>(),
        "held_back": report.held_back,
    })
}

fn pull_json(outcome: &PullOutcome) -> serde_json::Value {
    json!({
        "from": outcome.from,
        "version": outcome.version,
        "root": outcome.root.to_hex(),
        "objects": outcome.objects,
        "bytes": outcome.bytes,
        "applied": outcome.report.as_ref().map(report_json),
    })
}

fn push_json(outcome: &PushOutcome) -> serde_json::Value {
    match outcome {
        PushOutcome::NothingToPush { version } => json!({"pushed": false, "version": version}),
        PushOutcome::Committed {
            committed,
            objects,
            bytes,
        } => json!({
            "pushed": true,
            "version": committed.version,
            "root": committed.root.to_hex(),
            "replayed": committed.replayed,
            "objects": objects,
            "bytes": bytes,
        }),
    }
}

fn print_pull(outcome: &PullOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&pull_json(outcome));
    }
    print_pull_text(outcome);
    Ok(())
}

fn print_pull_text(outcome: &PullOutcome) {
    let Some(report) = &outcome.report else {
        println!("Already at version {}.", outcome.version);
        return;
    };
    match outcome.from {
        Some(from) => println!("Pulled version {} (from {from}).", outcome.version),
        None => println!("Pulled version {}.", outcome.version),
    }
    for path in &report.written {
        println!("  U  {path}");
    }
    for path in &report.removed {
        println!("  D  {path}");
    }
    for (from, to) in &report.copied {
        println!("  C  {from}: both sides changed it; your version is kept as {to}");
    }
    for held in &report.held_back {
        println!(
            "  !  {}: not updated ({:?}); pull again once that is fixed",
            held.path, held.reason
        );
    }
}

fn print_sync(outcome: &SyncOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({
            "pulls": outcome.pulls.iter().map(pull_json).collect::<Vec<_>>(),
            "push": push_json(&outcome.push),
        }));
    }
    for pull in &outcome.pulls {
        print_pull_text(pull);
    }
    match &outcome.push {
        PushOutcome::NothingToPush { version } => match version {
            Some(version) => println!("Nothing to push; at version {version}."),
            None => println!("Nothing to push."),
        },
        PushOutcome::Committed {
            committed,
            objects,
            bytes,
        } => println!(
            "Pushed version {} ({objects} objects, {bytes} bytes{}).",
            committed.version,
            if committed.replayed {
                ", already committed by an earlier attempt"
            } else {
                ""
            }
        ),
    }
    Ok(())
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
