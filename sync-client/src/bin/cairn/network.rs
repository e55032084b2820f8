//! The commands that talk to the server without a working copy (login, projects, clone) and
//! the helpers that find the server and its token.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;
use sync_client::operations::PullOutcome;
use sync_client::stores::user_config::{self, ServerCredentials};
use sync_client::timing::timed;
use sync_client::transport::Remote;
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};
use sync_protocol::wire::{HistoryQuery, LogIn};

use crate::output::{print_json, pull_json};
use crate::progress::Bars;
use crate::{ProjectsAction, resolve};

/// The server a command without a working copy talks to: `--server`, else the working copy's
/// (when run inside one), else the user config's default.
pub(crate) fn pick_server(start: &FsPath, server: Option<String>) -> anyhow::Result<String> {
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

/// A client of `server` with the user's token for it, if any, drawing progress bars for long
/// transfers when they can be seen (not with `--json`).
pub(crate) fn remote_for(server: &str, json: bool) -> anyhow::Result<Remote> {
    let config = user_config::load(&user_config::config_path()?)?.unwrap_or_default();
    let token = config.token(server).map(str::to_owned);
    let mut remote = Remote::new(server, token)?;
    if std::env::var("CAIRN_REBASE").is_ok_and(|value| value == "off") {
        remote = remote.without_rebase();
    }
    Ok(match Bars::for_terminal(json) {
        Some(bars) => remote.with_progress(Arc::new(bars)),
        None => remote,
    })
}

pub(crate) fn open_copy(start: &FsPath, json: bool) -> anyhow::Result<(WorkingCopy, Remote)> {
    let copy = timed("open working copy", || WorkingCopy::discover(start))?;
    let remote = timed("http client", || remote_for(&copy.config().server, json))?;
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

pub(crate) fn login(
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
    let session = remote.log_in(&LogIn {
        login: user,
        password,
        label: Some(label),
    })?;
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
        let account = &session.account;
        print_json(&json!({
            "server": server,
            "account": {"id": account.id, "name": account.name, "email": account.email},
        }))?;
    } else {
        println!(
            "Logged in to {server} as {}; the token is saved in {}.",
            session.account.name,
            path.display()
        );
    }
    Ok(0)
}

pub(crate) fn projects(
    start: &FsPath,
    server: Option<String>,
    action: Option<ProjectsAction>,
    json: bool,
) -> anyhow::Result<u8> {
    let server = pick_server(start, server)?;
    let remote = remote_for(&server, json)?;
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

pub(crate) fn clone(
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
    let remote = remote_for(&server, json)?;
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
        let pulled = sync_client::operations::pull(&copy, &remote)?;
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

pub(crate) fn log(
    copy: &WorkingCopy,
    remote: &Remote,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let query = HistoryQuery {
        before: None,
        limit: Some(limit),
    };
    let versions = remote.versions(&copy.config().project, &query)?;
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
