//! Storage that stays fast on real S3 (issue 11): the `cairn` CLI against `sync-server` in
//! production mode (PostgreSQL and an S3 a round trip away) and in embedded mode, on an 8,000-file
//! project.
//!
//! ```text
//! cargo run --release -p cairn-bench --bin storage [-- --runs 5 --big-runs 3 --rtt 0,20 --keep --no-build]
//! ```
//!
//! It first runs `cargo build --release -p sync-server -p sync-client` (same target folder; skip
//! with `--no-build`), then, in a temporary folder and only on 127.0.0.1:
//!
//! - generates a deterministic corpus: 8,000 files, about 80 MiB (7,996 JSON documents of
//!   0.5–24 KiB in nested folders and 4 × 8.6 MB attachments, one JSON, three of random bytes);
//! - finds PostgreSQL (`$DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres if it
//!   answers; `psql` must be on the PATH) and creates a database `cairn_bench_<pid>_<setting>`
//!   per setting, dropped at the end; starts `s3s-fs` (on the PATH, or `$CAIRN_S3S_FS`) on a
//!   fresh folder, with a bucket per setting;
//! - for each setting (embedded mode, then production mode with every `--rtt` in milliseconds,
//!   0 and 20 by default) starts node A (`sync-server serve`; in production mode its S3 endpoint
//!   is a [`LatencyRelay`] in front of s3s-fs adding that round-trip time), and times as whole
//!   `cairn` processes:
//!   1. the first push of the corpus into a fresh project, `--big-runs` times (3 by default);
//!   2. a clone of it from node B, a node started fresh for each run that never saw the project
//!      (in embedded mode: node A restarted), `--big-runs` times;
//!   3. a one-line edit of one file pushed to A, and that edit pulled from A by a teammate's
//!      working copy, `--runs` times (5 by default);
//!
//!   the settings taking turns within each run (a different one first each time), so that
//!   whatever else the machine does weighs on all of them alike;
//! - reads each node's `/metrics` before and after every operation (once its counters have
//!   stopped moving, so nothing in the background escapes the count) and reports the object
//!   store's requests by kind, with the wall times (medians), the ratios to embedded mode and
//!   issue 11's targets with whether they are met. It asserts nothing about timing.
//!
//! The table is printed and written to `bench/out/storage-<date>.md`. `--keep` keeps the
//! temporary folder and the databases: working copies, and per setting in `logs/` each node's
//! log (one line per HTTP request, with its time on the server) and the relay's trace of every
//! chunk to and from S3 (`s3-relay.log`, with the request and status lines).
//!
//! Everything lives under `$TMPDIR` (or /tmp): the working copies, the embedded data folder and
//! s3s-fs's folder. `TMPDIR=/dev/shm` takes the local disk out of the times; on a busy disk a
//! clone's time is mostly the client writing and fsyncing 8,000 files, the same in every
//! setting (the `server ms` column leaves the client out either way).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use cairn_bench::latency_relay::LatencyRelay;
use cairn_bench::processes::{
    Daemon, binary_dir, build_binaries, create_bench_account, free_port, http_get, remove,
    run_command, today, value_of, wait_for_port,
};
use cairn_bench::services::{Database, find_binary, postgres_admin_url, server_command};
use cairn_bench::{TreeFile, edited, first_difference, project_tree, write_tree};

type Result<T> = std::result::Result<T, String>;

const SEED: u64 = 0x57_0a_9e_11;
const SMALL_FILES: usize = 7_996;
const LARGE_FILES: usize = 4;
const LARGE_SIZE: usize = 8_600_000;
/// The file the one-line edits change: a small request in a nested folder.
const EDIT_INDEX: usize = 1234;
const PASSWORD: &str = "bench-password-1";
const S3_ACCESS_KEY: &str = "cairn-bench";
const S3_SECRET_KEY: &str = "cairn-bench-secret";
const S3_REGION: &str = "us-east-1";
const MIB: f64 = 1024.0 * 1024.0;
/// The largest pack the server writes (`store::pack::MAX_PACK_LEN`), the unit of the first
/// push's target.
const PACK_BYTES: u64 = 64 << 20;

fn main() {
    if let Err(error) = run() {
        eprintln!("storage bench: error: {error}");
        std::process::exit(1);
    }
}

#[derive(Debug)]
struct Options {
    runs: usize,
    big_runs: usize,
    round_trips: Vec<u64>,
    keep: bool,
    build: bool,
}

fn options() -> Result<Options> {
    let mut options = Options {
        runs: 5,
        big_runs: 3,
        round_trips: vec![0, 20],
        keep: false,
        build: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize> {
            args.next()
                .and_then(|value| value.parse().ok())
                .filter(|&value| value > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--runs" => options.runs = number("--runs")?,
            "--big-runs" => options.big_runs = number("--big-runs")?,
            "--rtt" => {
                options.round_trips = args
                    .next()
                    .ok_or("--rtt needs milliseconds, e.g. 0,20")?
                    .split(',')
                    .map(|ms| ms.trim().parse::<u64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| "--rtt needs milliseconds, e.g. 0,20".to_owned())?;
            }
            "--keep" => options.keep = true,
            "--no-build" => options.build = false,
            "-h" | "--help" => {
                println!(
                    "usage: storage [--runs N (default 5)] [--big-runs N (default 3)] [--rtt MS,MS (default 0,20)] [--keep] [--no-build]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// The services: PostgreSQL (found) and s3s-fs (started).

// ---------------------------------------------------------------------------------------------
// Measuring.

/// The object store's counters of one node, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StoreCounts {
    get: u64,
    put: u64,
    head: u64,
    list: u64,
    delete: u64,
    /// Compressed bytes of the objects received and stored.
    bytes_stored: u64,
    /// Time the server spent answering API requests (to each response's head), summed over
    /// requests, in microseconds.
    server_micros: u64,
}

impl StoreCounts {
    fn parse(metrics: &str) -> Result<StoreCounts> {
        let value = |name: &str| -> Result<u64> {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
                .ok_or_else(|| format!("no {name} in the metrics"))
        };
        Ok(StoreCounts {
            get: value("cairn_store_get_requests_total")?,
            put: value("cairn_store_put_requests_total")?,
            head: value("cairn_store_head_requests_total")?,
            list: value("cairn_store_list_requests_total")?,
            delete: value("cairn_store_delete_requests_total")?,
            bytes_stored: value("cairn_object_bytes_stored_total")?,
            server_micros: api_seconds(metrics)
                .map(|seconds| (seconds * 1e6).round() as u64)
                .ok_or("no request durations in the metrics")?,
        })
    }

    fn requests(&self) -> u64 {
        self.get + self.put + self.head + self.list + self.delete
    }
}

/// The sum of `cairn_http_request_duration_seconds_sum` over the API's routes (the bench's own
/// `/metrics` and `/readyz` requests left out).
fn api_seconds(metrics: &str) -> Option<f64> {
    let mut total = 0.0;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("cairn_http_request_duration_seconds_sum{route=\"")
        else {
            continue;
        };
        let (route, value) = rest.split_once("\"} ")?;
        if route.starts_with("/v1/") {
            total += value.trim().parse::<f64>().ok()?;
        }
    }
    Some(total)
}

impl std::ops::Sub for StoreCounts {
    type Output = StoreCounts;
    fn sub(self, before: StoreCounts) -> StoreCounts {
        StoreCounts {
            get: self.get - before.get,
            put: self.put - before.put,
            head: self.head - before.head,
            list: self.list - before.list,
            delete: self.delete - before.delete,
            bytes_stored: self.bytes_stored - before.bytes_stored,
            server_micros: self.server_micros - before.server_micros,
        }
    }
}

/// A running `sync-server serve`.
#[derive(Debug)]
struct Node {
    daemon: Daemon,
    port: u16,
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn counts(&mut self) -> Result<StoreCounts> {
        self.daemon.check_running()?;
        let (status, body) = http_get(self.port, "/metrics")?;
        if status != 200 {
            return Err(format!("{}/metrics answered {status}", self.url()));
        }
        StoreCounts::parse(&body)
    }

    /// The counts once they have stopped moving (the same twice, 150 ms apart): whatever the
    /// server still does after the client exits belongs to the operation that caused it.
    fn settled_counts(&mut self) -> Result<StoreCounts> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = self.counts()?;
        loop {
            thread::sleep(Duration::from_millis(150));
            let now = self.counts()?;
            if now == last {
                return Ok(now);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: store requests still going after 60 s",
                    self.url()
                ));
            }
            last = now;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    store: StoreCounts,
    /// New connections to S3 (through the relay) during the operation.
    connections: Option<u64>,
}

/// One storage setting: embedded mode, or PostgreSQL and S3 with a round-trip time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Embedded,
    S3 { round_trip_ms: u64 },
}

impl Setting {
    fn label(self) -> String {
        match self {
            Setting::Embedded => "embedded (SQLite + folder)".to_owned(),
            Setting::S3 { round_trip_ms } => format!("PostgreSQL + S3, {round_trip_ms} ms RTT"),
        }
    }

    fn slug(self) -> String {
        match self {
            Setting::Embedded => "embedded".to_owned(),
            Setting::S3 { round_trip_ms } => format!("s3-{round_trip_ms}ms"),
        }
    }
}

/// The operations, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    FirstPush,
    EditPush,
    EditPull,
    Clone,
}

const OPERATIONS: [Operation; 4] = [
    Operation::FirstPush,
    Operation::EditPush,
    Operation::EditPull,
    Operation::Clone,
];

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::FirstPush => "first push (8,000 files)",
            Operation::EditPush => "one-line edit pushed (to A)",
            Operation::EditPull => "that edit pulled (from A)",
            Operation::Clone => "clone (from fresh node B)",
        }
    }
}

#[derive(Debug)]
struct SettingResults {
    setting: Setting,
    /// Indexed like [`OPERATIONS`].
    samples: [Vec<Sample>; 4],
}

/// What every setting shares: binaries, folders, the client's token file, the services.
#[derive(Debug)]
struct Bench {
    options: Options,
    bin: PathBuf,
    root: PathBuf,
    client_config: PathBuf,
    /// Server URL → token, as written to `client_config`.
    tokens: BTreeMap<String, String>,
    postgres_admin_url: String,
    s3_address: SocketAddr,
}

impl Bench {
    fn cairn(&self, dir: &Path) -> Command {
        let mut command = Command::new(self.bin.join("cairn"));
        command
            .current_dir(dir)
            .env("CAIRN_CONFIG", &self.client_config);
        command
    }

    /// Lets `cairn` use `token` on `url`: the user config file, rewritten (mode 0600).
    fn authorize(&mut self, url: &str, token: &str) -> Result<()> {
        self.tokens.insert(url.to_owned(), token.to_owned());
        let mut text = String::new();
        for (url, token) in &self.tokens {
            let _ = writeln!(text, "[servers.\"{url}\"]\ntoken = \"{token}\"\n");
        }
        let path = &self.client_config;
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where one setting's servers keep their state, and how to start them.
#[derive(Debug)]
struct Deployment {
    bin: PathBuf,
    dir: PathBuf,
    variables: Vec<(&'static str, String)>,
    // The relay and the database outlive the nodes: node A is declared before the deployment
    // in `SettingRun`, and node B is a local of one clone.
    relay: Option<LatencyRelay>,
    _database: Option<Database>,
}

impl Deployment {
    fn new(bench: &Bench, setting: Setting) -> Result<Deployment> {
        let dir = bench.root.join(setting.slug());
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
        let mut deployment = Deployment {
            bin: bench.bin.clone(),
            dir: dir.clone(),
            variables: Vec::new(),
            relay: None,
            _database: None,
        };
        match setting {
            Setting::Embedded => {
                let data = dir.join("data").display().to_string();
                deployment.variables.push(("CAIRN_DATA_DIR", data));
            }
            Setting::S3 { round_trip_ms } => {
                let name = format!("cairn_bench_{}_{round_trip_ms}ms", std::process::id());
                let database =
                    Database::create(&bench.postgres_admin_url, &name, bench.options.keep)?;
                // s3s-fs serves each folder of its root as a bucket.
                let bucket = format!("cairn-bench-{round_trip_ms}ms");
                let bucket_dir = bench.root.join("s3").join(&bucket);
                std::fs::create_dir_all(&bucket_dir)
                    .map_err(|e| format!("{}: {e}", bucket_dir.display()))?;
                let relay =
                    LatencyRelay::start(bench.s3_address, Duration::from_millis(round_trip_ms))
                        .map_err(|e| format!("starting the latency relay: {e}"))?;
                let trace = dir.join("logs").join("s3-relay.log");
                relay
                    .trace_to(&trace)
                    .map_err(|e| format!("{}: {e}", trace.display()))?;
                // Empty AWS config and credentials files: nothing from the machine's own.
                let (aws_config, aws_credentials) =
                    (dir.join("aws-config"), dir.join("aws-credentials"));
                for path in [&aws_config, &aws_credentials] {
                    std::fs::write(path, "").map_err(|e| format!("{}: {e}", path.display()))?;
                }
                deployment.variables.extend([
                    ("DATABASE_URL", database.url.clone()),
                    ("CAIRN_S3_ENDPOINT", relay.url()),
                    ("CAIRN_S3_BUCKET", bucket),
                    ("CAIRN_S3_REGION", S3_REGION.to_owned()),
                    ("CAIRN_S3_PATH_STYLE", "true".to_owned()),
                    ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
                    ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
                    ("AWS_REGION", S3_REGION.to_owned()),
                    // No profile files or instance metadata: the keys above are the only ones.
                    ("AWS_CONFIG_FILE", aws_config.display().to_string()),
                    (
                        "AWS_SHARED_CREDENTIALS_FILE",
                        aws_credentials.display().to_string(),
                    ),
                    ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
                ]);
                deployment.relay = Some(relay);
                deployment._database = Some(database);
            }
        }
        Ok(deployment)
    }

    fn server(&self, args: &[&str]) -> Command {
        server_command(&self.bin, &self.dir, PASSWORD, &self.variables, args)
    }

    fn admin(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["admin"];
        full.extend_from_slice(args);
        run_command(&mut self.server(&full))
    }

    /// Starts `sync-server serve` on `port` (a free one when `None`), logging to
    /// `logs/<name>.log`, and waits until `/readyz` answers.
    fn start_node(&self, name: &str, port: Option<u16>) -> Result<Node> {
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let mut command = self.server(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
        let mut node = Node {
            daemon: Daemon::start(&format!("sync-server {name}"), &mut command, Some(&log))?,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            node.daemon
                .check_running()
                .map_err(|e| format!("{e}; see {}", log.display()))?;
            if let Ok((200, _)) = http_get(port, "/readyz") {
                return Ok(node);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "sync-server {name} not ready within 30 s; see {}",
                    log.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `command` (a whole `cairn` process) as one operation on `node`: its wall time, and
    /// the node's store requests and the relay's new connections from before it started until
    /// they settled after it exited.
    fn measure(&self, node: &mut Node, mut command: Command) -> Result<Sample> {
        let before = node.settled_counts()?;
        let connections_before = self.relay.as_ref().map(|r| r.traffic().connections);
        let start = Instant::now();
        run_command(&mut command)?;
        let wall = start.elapsed();
        let after = node.settled_counts()?;
        let connections = self
            .relay
            .as_ref()
            .zip(connections_before)
            .map(|(relay, before)| relay.traffic().connections - before);
        Ok(Sample {
            wall,
            store: after - before,
            connections,
        })
    }
}

/// One setting under test: its deployment, node A, projects and samples so far.
#[derive(Debug)]
struct SettingRun {
    // Declared first, so dropped before the deployment's relay and database.
    node_a: Node,
    deployment: Deployment,
    setting: Setting,
    token: String,
    /// One per first push; the last one is cloned, edited and pulled.
    projects: Vec<String>,
    results: SettingResults,
}

impl SettingRun {
    /// The deployment, an account, a team, a project per first push and a token (made from the
    /// shell), node A, and the corpus written as the working copy that pushes.
    fn prepare(bench: &mut Bench, setting: Setting, files: &[TreeFile]) -> Result<SettingRun> {
        let deployment = Deployment::new(bench, setting)?;
        create_bench_account(|args| deployment.admin(args))?;
        let mut projects = Vec::new();
        for run in 0..bench.options.big_runs {
            let output = deployment.admin(&[
                "create-project",
                "--team",
                "benchteam",
                "--name",
                &format!("corpus-{run}"),
            ])?;
            projects.push(value_of(&output, "project")?);
        }
        let token = value_of(
            &deployment.admin(&["create-token", "--user", "bench"])?,
            "token",
        )?;
        let node_a = deployment.start_node("a", None)?;
        bench.authorize(&node_a.url(), &token)?;
        write_tree(&deployment.dir.join("work-a"), files)?;
        Ok(SettingRun {
            node_a,
            deployment,
            setting,
            token,
            projects,
            results: SettingResults {
                setting,
                samples: Default::default(),
            },
        })
    }

    fn work_a(&self) -> PathBuf {
        self.deployment.dir.join("work-a")
    }

    fn work_b(&self) -> PathBuf {
        self.deployment.dir.join("work-b")
    }

    fn clone_dir(&self) -> PathBuf {
        self.deployment.dir.join("clone")
    }

    fn project(&self) -> &str {
        self.projects.last().map_or("", String::as_str)
    }

    /// Step 1, the first push of run `run`: into a fresh project, from a fresh working copy
    /// (no stat cache).
    fn first_push(&mut self, bench: &Bench, run: usize) -> Result<()> {
        let work_a = self.work_a();
        remove(&work_a.join(".cairn"))?;
        run_command(bench.cairn(&work_a).args([
            "init",
            "--server",
            &self.node_a.url(),
            "--project",
            &self.projects[run],
        ]))?;
        let mut push = bench.cairn(&work_a);
        push.args(["push", "-m", "initial"]);
        let sample = self.deployment.measure(&mut self.node_a, push)?;
        self.results.samples[Operation::FirstPush as usize].push(sample);
        Ok(())
    }

    /// Step 2, a clone from a node that never saw the project: a new node B per run. Embedded
    /// mode has one node per data folder, so node A restarted stands in for it.
    fn clone_from_fresh_node(&mut self, bench: &mut Bench, run: usize) -> Result<()> {
        let clone_dir = self.clone_dir();
        remove(&clone_dir)?;
        let mut node_b = match self.setting {
            Setting::Embedded => {
                let port = self.node_a.port;
                self.node_a.daemon.stop();
                self.node_a = self
                    .deployment
                    .start_node(&format!("a-restart-{run}"), Some(port))?;
                None
            }
            Setting::S3 { .. } => Some(self.deployment.start_node(&format!("b-{run}"), None)?),
        };
        let project = self.project().to_owned();
        let node = node_b.as_mut().unwrap_or(&mut self.node_a);
        bench.authorize(&node.url(), &self.token)?;
        let mut clone = bench.cairn(&self.deployment.dir);
        clone
            .args(["clone", "--server", &node.url(), "--project", &project])
            .arg(&clone_dir);
        let sample = self.deployment.measure(node, clone)?;
        self.results.samples[Operation::Clone as usize].push(sample);
        Ok(())
    }

    /// A teammate's working copy, cloned from A (not measured).
    fn teammate_copy(&self, bench: &Bench) -> Result<()> {
        run_command(
            bench
                .cairn(&self.deployment.dir)
                .args([
                    "clone",
                    "--server",
                    &self.node_a.url(),
                    "--project",
                    self.project(),
                ])
                .arg(self.work_b()),
        )?;
        Ok(())
    }

    /// Step 3, edit `run`: one line of one file changed and pushed to A, then pulled from A by
    /// the teammate's copy.
    fn edit_pushed_and_pulled(
        &mut self,
        bench: &Bench,
        run: usize,
        files: &[TreeFile],
    ) -> Result<()> {
        let edit_path = &files[EDIT_INDEX].path;
        let new_bytes = edited(&files[EDIT_INDEX].bytes, run);
        std::fs::write(self.work_a().join(edit_path), &new_bytes).map_err(|e| e.to_string())?;
        let mut push = bench.cairn(&self.work_a());
        push.args(["push", "-m", "edit"]);
        let sample = self.deployment.measure(&mut self.node_a, push)?;
        self.results.samples[Operation::EditPush as usize].push(sample);
        let mut pull = bench.cairn(&self.work_b());
        pull.arg("pull");
        let sample = self.deployment.measure(&mut self.node_a, pull)?;
        self.results.samples[Operation::EditPull as usize].push(sample);
        if std::fs::read(self.work_b().join(edit_path)).map_err(|e| e.to_string())? != new_bytes {
            return Err(format!(
                "{}: the teammate's copy did not receive edit {run}",
                self.setting.label()
            ));
        }
        Ok(())
    }
}

/// Runs `step` on every setting, starting with a different one each run, so that whatever
/// else the machine does weighs on every setting alike.
fn each_setting(
    settings: &mut [SettingRun],
    run: usize,
    mut step: impl FnMut(&mut SettingRun) -> Result<()>,
) -> Result<()> {
    let count = settings.len();
    for index in 0..count {
        step(&mut settings[(index + run) % count])?;
    }
    Ok(())
}

fn run() -> Result<()> {
    let options = options()?;
    let bin = binary_dir()?;
    build_binaries(&bin, options.build)?;
    let postgres_admin_url = postgres_admin_url()?;
    let s3s_fs = find_binary(
        "s3s-fs",
        "CAIRN_S3S_FS",
        "",
        "cargo install s3s-fs --version 0.14.1 --locked --features binary",
    )?;

    let keep = options.keep;
    let root = std::env::temp_dir().join(format!("cairn-storage-bench-{}", std::process::id()));
    remove(&root)?;
    std::fs::create_dir_all(root.join("s3")).map_err(|e| e.to_string())?;
    let outcome = (|| -> Result<()> {
        let s3_port = free_port()?;
        let _s3s_fs = Daemon::start(
            "s3s-fs",
            Command::new(&s3s_fs)
                .args(["--host", "127.0.0.1", "--port", &s3_port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(root.join("s3")),
            Some(&root.join("s3s-fs.log")),
        )?;
        wait_for_port(s3_port, "s3s-fs")?;
        let mut bench = Bench {
            options,
            bin,
            root: root.clone(),
            client_config: root.join("cairn-client.toml"),
            tokens: BTreeMap::new(),
            postgres_admin_url,
            s3_address: SocketAddr::from(([127, 0, 0, 1], s3_port)),
        };
        bench_all(&mut bench)
    })();
    if keep {
        eprintln!("kept {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    outcome
}

fn bench_all(bench: &mut Bench) -> Result<()> {
    let started = Instant::now();
    let files = project_tree(SMALL_FILES, LARGE_FILES, LARGE_SIZE, SEED);
    let total: usize = files.iter().map(|f| f.bytes.len()).sum();
    eprintln!(
        "corpus: {} files, {:.1} MiB, generated in {:.1} s",
        files.len(),
        total as f64 / MIB,
        started.elapsed().as_secs_f64()
    );
    let mut settings = vec![Setting::Embedded];
    settings.extend(
        bench
            .options
            .round_trips
            .iter()
            .map(|&round_trip_ms| Setting::S3 { round_trip_ms }),
    );
    let mut runs = Vec::new();
    for setting in settings {
        eprintln!("{}: setting up", setting.label());
        runs.push(SettingRun::prepare(bench, setting, &files)?);
    }
    let (big_runs, small_runs) = (bench.options.big_runs, bench.options.runs);
    for run in 0..big_runs {
        eprintln!("first push, run {}/{big_runs}", run + 1);
        each_setting(&mut runs, run, |setting| setting.first_push(bench, run))?;
    }
    for run in 0..big_runs {
        eprintln!("clone from a fresh node, run {}/{big_runs}", run + 1);
        each_setting(&mut runs, run, |setting| {
            setting.clone_from_fresh_node(bench, run)
        })?;
    }
    for setting in &runs {
        if let Some(file) = first_difference(&setting.clone_dir(), &files) {
            return Err(format!(
                "{}: the clone's {} differs from the corpus",
                setting.setting.label(),
                file.path
            ));
        }
        setting.teammate_copy(bench)?;
    }
    for run in 0..small_runs {
        eprintln!("edit pushed and pulled, run {}/{small_runs}", run + 1);
        each_setting(&mut runs, run, |setting| {
            setting.edit_pushed_and_pulled(bench, run, &files)
        })?;
    }
    let results: Vec<SettingResults> = runs.into_iter().map(|run| run.results).collect();
    let report = report(&bench.options, &results, files.len(), total);
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let path = out.join(format!("storage-{}.md", today()));
    std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report.

fn median_duration(samples: &[Sample]) -> Duration {
    let mut walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    walls.sort_unstable();
    walls[walls.len() / 2]
}

/// The median time the server spent answering the operation's requests.
fn median_server(samples: &[Sample]) -> Duration {
    let micros = spread(samples.iter().map(|s| s.store.server_micros).collect()).0;
    Duration::from_micros(micros)
}

/// The median, min and max of `values`.
fn spread(mut values: Vec<u64>) -> (u64, u64, u64) {
    values.sort_unstable();
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// A count as its median, with the range when runs differ.
fn count_cell(samples: &[Sample], count: impl Fn(&Sample) -> Option<u64>) -> String {
    let values: Option<Vec<u64>> = samples.iter().map(count).collect();
    let Some(values) = values else {
        return "–".to_owned();
    };
    let (median, low, high) = spread(values);
    if low == high {
        median.to_string()
    } else {
        format!("{median} ({low}–{high})")
    }
}

fn worst(samples: &[Sample], count: impl Fn(&StoreCounts) -> u64) -> u64 {
    samples.iter().map(|s| count(&s.store)).max().unwrap_or(0)
}

fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

/// Issue 11's target for `operation` on S3, given the embedded-mode median of the same
/// operation: the target's text and what of it was missed (empty when met).
fn target(operation: Operation, samples: &[Sample], embedded: Duration) -> (String, Vec<String>) {
    let wall = median_duration(samples);
    let mut missed = Vec::new();
    let text = match operation {
        Operation::FirstPush => {
            let stored = spread(samples.iter().map(|s| s.store.bytes_stored).collect()).0;
            let allowed = 2 * stored.div_ceil(PACK_BYTES).max(1);
            let limit = embedded.mul_f64(1.3);
            if worst(samples, |c| c.put) > allowed {
                missed.push("PUT".to_owned());
            }
            if wall > limit {
                missed.push(format!("time ({:.2}×)", ratio(wall, embedded)));
            }
            format!(
                "≤ {allowed} PUT (2 per 64 MiB; {:.1} MiB stored), ≤ 1.3× embedded ({} ms)",
                stored as f64 / MIB,
                ms(limit)
            )
        }
        Operation::EditPush => {
            let limit = embedded + Duration::from_millis(30);
            if worst(samples, |c| c.put) > 1 {
                missed.push("PUT".to_owned());
            }
            if worst(samples, |c| c.head) > 0 {
                missed.push("HEAD".to_owned());
            }
            if wall > limit {
                missed.push(format!("time (+{} ms)", ms(wall.saturating_sub(embedded))));
            }
            format!("≤ 1 PUT, 0 HEAD, ≤ embedded + 30 ms ({} ms)", ms(limit))
        }
        Operation::EditPull => {
            if worst(samples, StoreCounts::requests) > 0 {
                missed.push("S3 requests".to_owned());
            }
            "0 S3 requests".to_owned()
        }
        Operation::Clone => {
            let limit = embedded.mul_f64(1.5);
            if worst(samples, |c| c.get) > 8 {
                missed.push("GET".to_owned());
            }
            if wall > limit {
                missed.push(format!("time ({:.2}×)", ratio(wall, embedded)));
            }
            format!("≤ 8 GET, ≤ 1.5× embedded ({} ms)", ms(limit))
        }
    };
    (text, missed)
}

fn ratio(value: Duration, base: Duration) -> f64 {
    value.as_secs_f64() / base.as_secs_f64()
}

fn report(options: &Options, results: &[SettingResults], files: usize, total: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Storage on S3 with latency ({})\n", today());
    let _ = writeln!(
        out,
        "Corpus: {files} files, {:.1} MiB ({SMALL_FILES} JSON documents of 0.5–24 KiB in nested folders, \
         {LARGE_FILES} × {:.1} MB attachments). Wall time of whole `cairn` processes: median (min–max) of \
         {} runs for the first push and the clone, {} runs for the edit pushed and pulled. Counts are the \
         node's object-store requests (`/metrics`, every SDK attempt), median (range when runs differ); \
         targets on counts are checked against the worst run, targets on time against the median.\n",
        total as f64 / MIB,
        LARGE_SIZE as f64 / 1e6,
        options.big_runs,
        options.runs,
    );
    let _ = writeln!(
        out,
        "| operation | storage | wall ms | × embedded | server ms | GET | PUT | HEAD | LIST | DELETE | new S3 conns | target (issue 11, at 20 ms) | met? |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    let embedded_result = results.iter().find(|r| r.setting == Setting::Embedded);
    let embedded =
        embedded_result.map(|r| r.samples.each_ref().map(|samples| median_duration(samples)));
    let embedded_server =
        embedded_result.map(|r| r.samples.each_ref().map(|samples| median_server(samples)));
    for (index, operation) in OPERATIONS.into_iter().enumerate() {
        for result in results {
            let samples = &result.samples[index];
            let wall = median_duration(samples);
            let low = samples.iter().map(|s| s.wall).min().unwrap_or_default();
            let high = samples.iter().map(|s| s.wall).max().unwrap_or_default();
            let base = embedded.map(|medians| medians[index]);
            let server = median_server(samples);
            let server_cell = match (result.setting, embedded_server) {
                (Setting::S3 { .. }, Some(medians)) => {
                    format!("{} (×{:.2})", ms(server), ratio(server, medians[index]))
                }
                _ => ms(server),
            };
            let (times, target_text, met) = match (result.setting, base) {
                (Setting::S3 { .. }, Some(base)) => {
                    let (text, missed) = target(operation, samples, base);
                    let met = if missed.is_empty() {
                        "yes".to_owned()
                    } else {
                        format!("**no**: {}", missed.join(", "))
                    };
                    (format!("{:.2}", ratio(wall, base)), text, met)
                }
                _ => ("–".to_owned(), "baseline".to_owned(), "–".to_owned()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} ({}–{}) | {times} | {server_cell} | {} | {} | {} | {} | {} | {} | {target_text} | {met} |",
                operation.name(),
                result.setting.label(),
                ms(wall),
                ms(low),
                ms(high),
                count_cell(samples, |s| Some(s.store.get)),
                count_cell(samples, |s| Some(s.store.put)),
                count_cell(samples, |s| Some(s.store.head)),
                count_cell(samples, |s| Some(s.store.list)),
                count_cell(samples, |s| Some(s.store.delete)),
                count_cell(samples, |s| s.connections),
            );
        }
    }
    let _ = writeln!(out, "\n## Every run: wall ms / server ms\n");
    let most = results
        .iter()
        .flat_map(|r| r.samples.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    let _ = write!(out, "| operation | storage |");
    for run in 1..=most {
        let _ = write!(out, " {run} |");
    }
    let _ = writeln!(out, "\n|---|---|{}", "---:|".repeat(most));
    for (index, operation) in OPERATIONS.into_iter().enumerate() {
        for result in results {
            let _ = write!(out, "| {} | {} |", operation.name(), result.setting.label());
            for sample in &result.samples[index] {
                let server = Duration::from_micros(sample.store.server_micros);
                let _ = write!(out, " {} / {} |", ms(sample.wall), ms(server));
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(
        out,
        "\n## Setup\n\n\
         - Embedded: `sync-server serve` with a data folder (SQLite catalog, objects in a folder); its \
         counts are the folder store's operations, not S3 requests.\n\
         - PostgreSQL + S3: a fresh database and bucket per setting; `s3s-fs` on loopback behind a \
         latency relay that forwards every chunk RTT/2 late in each direction (no serialization, no \
         bandwidth limit, TCP_NODELAY) and holds a new connection's first bytes one more RTT (the TCP \
         handshake; TLS not modelled). Node A takes the pushes and answers the teammate's pull; each \
         clone runs against node B, started fresh for it on the same database and bucket (cold cache). \
         In embedded mode node A is restarted before each clone instead.\n\
         - first push: `cairn init` of a fresh working copy of a fresh project (not timed), then `cairn \
         push`. one-line edit: a line inserted in a 5 KiB JSON file, `cairn push`. pulled: `cairn pull` \
         in a second working copy (cloned from A). clone: `cairn clone` into an empty folder.\n\
         - server ms: the time the node spent on the operation's API requests (to each response's head, \
         summed; from `cairn_http_request_duration_seconds`), which leaves out the client's own work on \
         the local disk (hashing, and on a clone writing and fsyncing 8,000 files).\n\
         - new S3 conns: connections the node opened to S3 during the operation (each costs an RTT more)."
    );
    out
}
