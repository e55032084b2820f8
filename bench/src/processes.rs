//! The processes a benchmark runs: the release binaries it builds first, daemons killed when it
//! ends, commands run to completion, free ports, and plain HTTP/1.1 GETs on loopback (no HTTP
//! client dependency for a health check or a metrics page).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

type Result<T> = std::result::Result<T, String>;

/// A background process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Daemon {
    what: String,
    child: Child,
}

impl Daemon {
    /// Starts `command` in the background: stdout discarded, stderr appended to the file `log`
    /// if given, else discarded.
    pub fn start(what: &str, command: &mut Command, log: Option<&Path>) -> Result<Daemon> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {what}: {e}"))?;
        Ok(Daemon {
            what: what.to_owned(),
            child,
        })
    }

    /// Kills the process now and waits for it to exit (so its port is free again).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An error if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status})", self.what)),
            Err(error) => Err(format!("{}: {error}", self.what)),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Daemons killed when the bench ends, however it ends.
#[derive(Debug, Default)]
pub struct Daemons(Vec<Daemon>);

impl Daemons {
    /// [`Daemon::start`], the daemon kept until this is dropped.
    pub fn start(&mut self, what: &str, command: &mut Command, log: Option<&Path>) -> Result<()> {
        self.0.push(Daemon::start(what, command, log)?);
        Ok(())
    }
}

/// An embedded `sync-server` over the data folder `data`, with the user `bench` (password
/// `password`), the team `benchteam` and a project per name in `projects`, made from the shell
/// before the server starts, kept in `daemons` with its log in `log`. Its port and the
/// projects' ids.
pub fn start_embedded_server(
    daemons: &mut Daemons,
    bin: &Path,
    data: &Path,
    password: &str,
    projects: &[String],
    log: &Path,
) -> Result<(u16, Vec<String>)> {
    // The embedded server gets none of the server's settings from this process's environment
    // (a `DATABASE_URL` set for the tests would make it a PostgreSQL server).
    let embedded = |command: &mut Command| {
        for variable in crate::services::SERVER_VARIABLES {
            command.env_remove(variable);
        }
    };
    let admin = |args: &[&str]| -> Result<String> {
        let mut command = Command::new(bin.join("sync-server"));
        embedded(&mut command);
        command
            .env("CAIRN_PASSWORD", password)
            .arg("admin")
            .arg("--data-dir")
            .arg(data)
            .args(args);
        run_command(&mut command)
    };
    create_bench_account(admin)?;
    let mut ids = Vec::new();
    for name in projects {
        let output = admin(&["create-project", "--team", "benchteam", "--name", name])?;
        ids.push(value_of(&output, "project")?);
    }
    let port = free_port()?;
    let mut serve = Command::new(bin.join("sync-server"));
    embedded(&mut serve);
    daemons.start(
        "sync-server",
        serve
            .env("RUST_LOG", "warn")
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}")),
        Some(log),
    )?;
    Ok((port, ids))
}

/// Creates the benchmarks' account `bench` and its team `benchteam` through `admin`, which runs
/// `sync-server admin` with the arguments it is given.
pub fn create_bench_account(mut admin: impl FnMut(&[&str]) -> Result<String>) -> Result<()> {
    admin(&[
        "create-user",
        "--name",
        "bench",
        "--email",
        "bench@example.com",
    ])?;
    admin(&["create-team", "--name", "benchteam", "--owner", "bench"])?;
    Ok(())
}

/// Starts `git daemon` on 127.0.0.1:`port` serving the bare repositories under `base` (push
/// allowed), with `home` as its `HOME` and its log in `log`. The `git-daemon` program itself,
/// not `git daemon`: the wrapper runs it as a child, which would outlive the kill at the end of
/// the bench and keep its port.
pub fn start_git_daemon(
    daemons: &mut Daemons,
    base: &Path,
    port: u16,
    home: &Path,
    log: &Path,
) -> Result<()> {
    let exec_path = run_command(Command::new("git").arg("--exec-path"))?;
    daemons.start(
        "git daemon",
        Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--enable=receive-pack")
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", home),
        Some(log),
    )
}

/// A port of 127.0.0.1 free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Waits up to 30 seconds until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what} did not listen on 127.0.0.1:{port} within 30 s"
    ))
}

/// Runs a command to completion; its stdout, or its whole output in the error on failure.
pub fn run_command(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The value of the line `key: value` in `output` (as `sync-server admin` prints them).
pub fn value_of(output: &str, key: &str) -> Result<String> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}: ")))
        .map(str::to_owned)
        .ok_or_else(|| format!("no {key:?} in {output:?}"))
}

/// Removes a folder and everything in it, if it exists.
pub fn remove(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Today's UTC date as YYYY-MM-DD.
pub fn today() -> String {
    let mut date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    date.truncate(10);
    date
}

/// The folder of `sync-server` and `cairn`: `$CAIRN_BIN_DIR`, else the running bench binary's
/// own (`target/release` under `cargo run --release`).
pub fn binary_dir() -> Result<PathBuf> {
    match std::env::var_os("CAIRN_BIN_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .ok_or("no folder of the bench binary")?
            .to_path_buf()),
    }
}

/// Runs `cargo build --release -p sync-server -p sync-client` into the target folder `bin` is
/// in (when `build`), then checks both binaries are in `bin`.
pub fn build_binaries(bin: &Path, build: bool) -> Result<()> {
    if build {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        eprintln!("building sync-server and cairn (release)...");
        let mut command = Command::new(env!("CARGO"));
        command.args([
            "build",
            "--release",
            "-p",
            "sync-server",
            "-p",
            "sync-client",
        ]);
        command.arg("--manifest-path").arg(&manifest);
        // `cargo run` gives this process the bench package's CARGO_PKG_* and CARGO_MANIFEST_*;
        // build scripts (ring's, cc's) rerun when those change, which would rebuild half the
        // dependency tree. The build gets the environment a shell would give it.
        for (key, _) in std::env::vars_os() {
            let Some(name) = key.to_str() else { continue };
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    name,
                    "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
                )
            {
                command.env_remove(&key);
            }
        }
        if std::env::var_os("CARGO_TARGET_DIR").is_none()
            && let Some(target) = bin.parent()
        {
            command.env("CARGO_TARGET_DIR", target);
        }
        let status = command
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build --release -p sync-server -p sync-client failed".into());
        }
    }
    for name in ["cairn", "sync-server"] {
        if !bin.join(name).exists() {
            return Err(format!(
                "{} is missing: run `cargo build --release -p sync-server -p sync-client` with the same target folder, or set CAIRN_BIN_DIR",
                bin.join(name).display()
            ));
        }
    }
    Ok(())
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.1 (`Connection: close`): the status and the
/// body ([`http_get_from`] on loopback).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    http_get_from(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// A port of `ip` (a loopback address such as 127.0.0.2, so that several servers can each have
/// an address of their own) free a moment ago.
pub fn free_port_on(ip: IpAddr) -> Result<u16> {
    let listener = TcpListener::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// [`http_get`] on any `address`, with a chunked body decoded (HAProxy chunks its statistics
/// page even to an HTTP/1.0 request).
pub fn http_get_from(address: SocketAddr, path: &str) -> Result<(u16, String)> {
    let failed = |e: std::io::Error| format!("GET http://{address}{path}: {e}");
    let mut stream = TcpStream::connect(address).map_err(failed)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(failed)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(failed)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(failed)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET http://{address}{path}: no HTTP status in the answer"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The content of a chunked HTTP/1.1 body (trailers ignored).
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..size), rest.get(size..)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        body = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}
