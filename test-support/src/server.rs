//! The real `sync-server` binary as a process: `admin` and `fsck` commands, and `serve` on a
//! free port, waited for until `/readyz` answers and killed when dropped.
//!
//! A [`ServerEnvironment`] is the state one or more processes run on, one after the other (a
//! crash test restarts the server on the same state): a temp folder as working directory, and in
//! production mode a fresh database and bucket. Nothing from the developer's shell chooses the
//! server's state; the environment's own settings are the only ones.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries::server_binary;
use crate::bucket::TestBucket;
use crate::database::TestDatabase;
use crate::services::Services;

/// The password of every account the tests create (`CAIRN_PASSWORD` of `admin create-user`).
pub const PASSWORD: &str = "correct horse battery";

/// How long a server may take to print its address and to answer `/readyz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Every setting `sync-server` reads from the environment, and the AWS SDK's variables it
/// honours. All are removed from a server's environment before the environment's own are set.
const SERVER_VARIABLES: &[&str] = &[
    // The client's token file; older servers read it as their settings file.
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
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

/// Where a test server keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SQLite and a folder of objects, in a temp folder.
    Embedded,
    /// PostgreSQL and S3: a fresh database and bucket on the test services.
    Production,
}

/// The state `sync-server` processes run on, and the commands that run them.
#[derive(Debug)]
pub struct ServerEnvironment {
    mode: Mode,
    /// `None`: [`server_binary`], looked up when first needed.
    binary: Option<PathBuf>,
    variables: Vec<(&'static str, String)>,
    /// Every process's standard error, appended.
    log: PathBuf,
    // Removed with the environment; a test drops its processes first (see `ServerProcess`).
    database: Option<TestDatabase>,
    bucket: Option<TestBucket>,
    dir: TempDir,
}

impl ServerEnvironment {
    /// `mode`'s environment; in production mode on the services of the `CAIRN_TEST_*`
    /// variables, and `None` (skipped) when they are unset.
    pub fn new(mode: Mode) -> Option<ServerEnvironment> {
        match mode {
            Mode::Embedded => Some(ServerEnvironment::embedded()),
            Mode::Production => Some(ServerEnvironment::production(&Services::from_env()?)),
        }
    }

    /// The embedded default: no storage settings at all, so the server keeps its state in
    /// `./.cairn-data` under a fresh temp folder, its working directory.
    pub fn embedded() -> ServerEnvironment {
        ServerEnvironment::with_storage(Mode::Embedded, Vec::new(), None, None)
    }

    /// Production: a fresh database and a fresh bucket on `services`.
    pub fn production(services: &Services) -> ServerEnvironment {
        let database = TestDatabase::create(&services.postgres);
        let bucket = TestBucket::create(&services.s3);
        let s3 = &services.s3;
        let variables = vec![
            ("DATABASE_URL", database.url().to_owned()),
            ("CAIRN_S3_ENDPOINT", s3.endpoint.clone()),
            ("CAIRN_S3_BUCKET", bucket.name().to_owned()),
            ("CAIRN_S3_REGION", s3.region.clone()),
            ("CAIRN_S3_PATH_STYLE", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
            ("AWS_REGION", s3.region.clone()),
        ];
        ServerEnvironment::with_storage(Mode::Production, variables, Some(database), Some(bucket))
    }

    fn with_storage(
        mode: Mode,
        variables: Vec<(&'static str, String)>,
        database: Option<TestDatabase>,
        bucket: Option<TestBucket>,
    ) -> ServerEnvironment {
        let dir = tempfile::tempdir().expect("a temp folder");
        ServerEnvironment {
            mode,
            binary: None,
            variables,
            log: dir.path().join("sync-server.log"),
            database,
            bucket,
            dir,
        }
    }

    /// Runs `binary` rather than [`server_binary`]: sync-server's own tests pass
    /// `env!("CARGO_BIN_EXE_sync-server")`, which cargo builds for them.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> ServerEnvironment {
        self.binary = Some(binary.into());
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The processes' working directory (embedded mode keeps `.cairn-data` here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Production mode's database.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }

    /// Production mode's bucket.
    pub fn bucket(&self) -> Option<&TestBucket> {
        self.bucket.as_ref()
    }

    /// `sync-server args...` in [`ServerEnvironment::dir`], not yet started, with this
    /// environment's settings, `CAIRN_LOG=warn` and `CAIRN_PASSWORD` set to [`PASSWORD`].
    pub fn command(&self, args: &[&str]) -> Command {
        let binary = self.binary.as_deref().unwrap_or_else(|| server_binary());
        let mut command = Command::new(binary);
        command
            .args(args)
            .current_dir(self.dir())
            .env("CAIRN_LOG", "warn")
            .env("CAIRN_PASSWORD", PASSWORD);
        for variable in SERVER_VARIABLES {
            command.env_remove(variable);
        }
        command.envs(self.variables.iter().map(|(key, value)| (key, value)));
        command
    }

    /// Runs `sync-server admin args...`, which must succeed; its standard output.
    pub fn admin(&self, args: &[&str]) -> String {
        let mut full = vec!["admin"];
        full.extend_from_slice(args);
        let output = self
            .command(&full)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("running sync-server {full:?}: {error}"));
        assert!(
            output.status.success(),
            "sync-server {full:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Creates the account `name` (`<name>@example.com`, password [`PASSWORD`]).
    pub fn create_user(&self, name: &str) {
        let email = format!("{name}@example.com");
        self.admin(&["create-user", "--name", name, "--email", &email]);
    }

    /// Creates `team`, owned by `owner`.
    pub fn create_team(&self, team: &str, owner: &str) {
        self.admin(&["create-team", "--name", team, "--owner", owner]);
    }

    /// Makes `user` a member of `team` with `role` (`viewer`, `editor` or `owner`).
    pub fn add_member(&self, team: &str, user: &str, role: &str) {
        self.admin(&["add-member", "--team", team, "--user", user, "--role", role]);
    }

    /// Starts `sync-server serve --listen 127.0.0.1:0 extra...`: the server picks a free port
    /// and prints it. Returns once `/readyz` answers 200.
    pub fn serve(&self, extra: &[&str]) -> ServerProcess {
        self.serve_at("127.0.0.1:0", extra)
    }

    /// Starts `sync-server serve --listen <listen> extra...` (a cluster's node, at an address
    /// a load balancer is configured with). Returns once `/readyz` answers 200.
    pub fn serve_at(&self, listen: &str, extra: &[&str]) -> ServerProcess {
        let mut args = vec!["serve", "--listen", listen];
        args.extend_from_slice(extra);
        self.spawn_serve(self.command(&args))
    }

    /// Starts `sync-server serve --listen 127.0.0.1:0 extra...` with its open-file limit at
    /// `files` (through util-linux's `prlimit`), like [`ServerEnvironment::serve`].
    pub fn serve_with_file_limit(&self, files: u64, extra: &[&str]) -> ServerProcess {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let direct = self.command(&args);
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={files}:{files}"))
            .arg(direct.get_program())
            .args(direct.get_args())
            .current_dir(self.dir());
        for (key, value) in direct.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        self.spawn_serve(command)
    }

    fn spawn_serve(&self, mut command: Command) -> ServerProcess {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the server log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting sync-server serve");
        // From here on the process is killed however this returns.
        let mut process = ServerProcess {
            child,
            url: String::new(),
            log: self.log.clone(),
        };
        process.url = process.read_address();
        process.wait_until_ready();
        process
    }

    /// Every process's standard error so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The value of `key: value` in the output of an `admin` command (`project`, `token`, ...).
pub fn admin_field(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {output}"))
        .to_owned()
}

/// A running `sync-server serve`, killed (SIGKILL) when dropped; its log is printed then if the
/// test is failing. Drop it before its [`ServerEnvironment`], whose database and bucket go away
/// with it (fields drop in declaration order: declare the process first).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    url: String,
    log: PathBuf,
}

impl ServerProcess {
    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (the process drains, then stops); does not wait.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(status.success(), "kill -TERM {}: {status}", self.child.id());
    }

    /// Waits up to `timeout` for the process to exit by itself; its status, or `None` if it is
    /// still running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The standard error of every process of its environment so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads `listening on <url>` from standard output; the rest of it is drained on a thread,
    /// so the server never blocks on a full pipe.
    fn read_address(&mut self) -> String {
        let stdout = self.child.stdout.take().expect("the server's stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let read = stdout.read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let line = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            other => panic!(
                "sync-server serve printed no line within {START_TIMEOUT:?} ({other:?}); its \
                 log:\n{}",
                self.log_text()
            ),
        };
        match line.trim().strip_prefix("listening on ") {
            Some(url) => url.to_owned(),
            None => panic!(
                "sync-server serve printed {line:?}, not its address; its log:\n{}",
                self.log_text()
            ),
        }
    }

    /// Polls `GET /readyz` until it answers 200 (the catalog answers).
    fn wait_until_ready(&mut self) {
        let address = self.url.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if readyz_answers_ok(&address) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sync-server exited ({status}) before it was ready; its log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sync-server at {} was not ready within {START_TIMEOUT:?}; its log:\n{}",
                self.url,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- sync-server log ---\n{}", self.log_text());
        }
    }
}

/// One `GET /readyz` over a plain socket: whether it answered 200. Blocking and runtime-free,
/// so it works from sync and async tests alike.
fn readyz_answers_ok(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}
