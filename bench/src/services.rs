//! The services a benchmark runs the server on: PostgreSQL (found: `$DATABASE_URL`, else the
//! local server), a database per setting (created, dropped at the end), and the binaries of the
//! other services (s3s-fs, HAProxy) found on the machine. Shared by `storage` and `cluster`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::processes::run_command;

type Result<T> = std::result::Result<T, String>;

/// The local PostgreSQL server these machines run, used when `$DATABASE_URL` is unset.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Every variable `sync-server` or the AWS SDK reads: removed from the servers' environment,
/// so only the bench chooses their settings.
pub const SERVER_VARIABLES: &[&str] = &[
    "CAIRN_CONFIG",
    "CAIRN_SERVER_CONFIG",
    "CAIRN_DATA_DIR",
    "DATABASE_URL",
    "CAIRN_S3_ENDPOINT",
    "CAIRN_S3_BUCKET",
    "CAIRN_S3_REGION",
    "CAIRN_S3_PREFIX",
    "CAIRN_S3_PATH_STYLE",
    "CAIRN_LISTEN",
    "CAIRN_SITE_DIR",
    "CAIRN_SHUTDOWN_GRACE_SECS",
    "CAIRN_DRAIN_DELAY",
    "CAIRN_ADVERTISE",
    "CAIRN_MAX_UPLOAD_BYTES",
    "CAIRN_MAX_CONNECTIONS_PER_ADDRESS",
    "CAIRN_CACHE_BYTES",
    "CAIRN_GC_EVERY",
    "CAIRN_GC_GRACE",
    "CAIRN_GC_RETAIN",
    "CAIRN_LOG",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

/// `sync-server args...` from `bin`, run in `dir`, with none of the caller's server variables:
/// only `variables`, the benchmarks' admin password and a quiet log.
pub fn server_command(
    bin: &Path,
    dir: &Path,
    password: &str,
    variables: &[(&'static str, String)],
    args: &[&str],
) -> Command {
    let mut command = Command::new(bin.join("sync-server"));
    command.args(args).current_dir(dir);
    for variable in SERVER_VARIABLES {
        command.env_remove(variable);
    }
    command
        .env("CAIRN_PASSWORD", password)
        .env("CAIRN_LOG", "warn,sync_server::request=info")
        .envs(variables.iter().map(|(key, value)| (key, value)));
    command
}

/// A database a benchmark creates, dropped when this is (unless kept).
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    name: String,
    /// Its URL, for the servers.
    pub url: String,
    keep: bool,
}

pub fn psql(url: &str, sql: &str) -> Result<String> {
    run_command(
        Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(format!("--dbname={url}")),
    )
}

/// The administrative PostgreSQL URL: `$DATABASE_URL`, else the default local server if it
/// answers.
pub fn postgres_admin_url() -> Result<String> {
    Command::new("psql")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!("psql is needed on the PATH (apt-get install -y postgresql-client): {e}")
        })?;
    if let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        psql(&url, "SELECT 1").map_err(|e| format!("DATABASE_URL does not answer: {e}"))?;
        return Ok(url);
    }
    psql(DEFAULT_ADMIN_URL, "SELECT 1").map_err(|e| {
        format!(
            "no PostgreSQL: DATABASE_URL is unset and {DEFAULT_ADMIN_URL} does not answer \
             (start one, or set DATABASE_URL to an administrative URL): {e}"
        )
    })?;
    Ok(DEFAULT_ADMIN_URL.to_owned())
}

/// `url` naming the database `name` instead of its own.
fn with_database(url: &str, name: &str) -> Result<String> {
    let start = url
        .find("://")
        .ok_or_else(|| format!("{url:?} is not a URL"))?
        + 3;
    let rest = &url[start..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let query = path.find('?').map_or("", |index| &path[index..]);
    Ok(format!("{}{authority}/{name}{query}", &url[..start]))
}

impl Database {
    pub fn create(admin_url: &str, name: &str, keep: bool) -> Result<Database> {
        psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Database {
            admin_url: admin_url.to_owned(),
            name: name.to_owned(),
            url: with_database(admin_url, name)?,
            keep,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept database {}", self.name);
            return;
        }
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = psql(&self.admin_url, &sql) {
            eprintln!("could not drop database {}: {error}", self.name);
        }
    }
}

/// `name` from `$variable`, else the PATH, else `~/.cargo/bin`, else `fallback`.
pub fn find_binary(name: &str, variable: &str, fallback: &str, hint: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable).map(PathBuf::from)
        && path.is_file()
    {
        return Ok(path);
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin"));
    }
    candidates
        .into_iter()
        .map(|dir| dir.join(name))
        .chain([PathBuf::from(fallback)])
        .find(|path| path.is_file())
        .ok_or_else(|| format!("{name} not found (not on the PATH, {variable} unset): {hint}"))
}
