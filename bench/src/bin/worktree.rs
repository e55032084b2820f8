//! The working copy against git's (issue 15): `status` with one change, a one-line edit pushed,
//! a no-op sync and that edit pulled, side by side in one run, on tmpfs and on the disk.
//!
//! ```text
//! cargo run --release -p cairn-bench --bin worktree [-- --runs 7 --corpus team|deep|both
//!     --on tmpfs|disk|both --monitor --production --rtt 20 --keep --no-build]
//! ```
//!
//! It first runs `cargo build --release -p sync-server -p sync-client` (skip with
//! `--no-build`), then, for each place (`/dev/shm` for tmpfs, the temporary folder for the
//! disk) and each corpus (`team`: issue 15's team project, `team_project_tree`, 8,000 files in
//! 514 folders; `deep`: `deep_project_tree`, 6,020 files in 2,048 folders up to 12 deep), in a
//! new folder there and only on 127.0.0.1:
//!
//! - writes the corpus once per tool and pushes it: to an embedded `sync-server` (and with
//!   `--production` to a second one on PostgreSQL and `s3s-fs`, whose S3 is a
//!   [`LatencyRelay`] `--rtt` ms away, as `storage` and `cluster` run it), and to two bare
//!   repositories of one `git daemon`; each gets a second copy by `cairn clone` / `git clone`;
//! - times, `--runs` times and each as whole client processes as a user runs them: a one-line
//!   edit pushed (`cairn push`; `git commit -a` + `git push`), that edit pulled by the second
//!   copy (`cairn pull`; `git pull --ff-only`), a no-op sync (`cairn sync`; `git pull
//!   --ff-only` and `git push`) and `status` with one file changed (`cairn status`; `git
//!   status`). Within a run each operation is timed for every tool in turn, a different tool
//!   first each run;
//! - prints the medians as a Markdown table with the ratios of cairn to git without
//!   delayed-ACK stalls and issue 15's targets, also written to `bench/out/worktree-<date>.md`.
//!
//! **git without delayed-ACK stalls.** `git daemon` and the git client leave Nagle's algorithm
//! on, and a push or fetch over git:// is a conversation of small writes: a side that writes
//! twice before reading waits for the other side's delayed ACK (up to 40 ms on Linux) before
//! its second write leaves. The second repository is reached through a [`LatencyRelay`] with
//! no added latency: it sets `TCP_NODELAY` on both of its legs and `TCP_QUICKACK` after every
//! read, so each of git's small writes is acknowledged at once and nothing waits for a timer.
//! The report shows both, so the stall's removal is visible as a time. That is git at its
//! best on loopback; the relay's extra hop costs it a thread handoff per chunk.
//!
//! `--monitor` starts `cairn daemon` (the optional file-system monitor) in each cairn working
//! copy before the timed runs and stops it with `cairn daemon --stop` after them; a `cairn`
//! without that subcommand stops the bench with a message saying so. The issue's targets are
//! then 0.5× git without stalls for every operation but the pull.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cairn_bench::latency_relay::LatencyRelay;
use cairn_bench::processes::{
    Daemon, Daemons, binary_dir, build_binaries, create_bench_account, free_port, http_get, remove,
    run_command, start_embedded_server, start_git_daemon, today, value_of, wait_for_port,
};
use cairn_bench::services::{Database, find_binary, postgres_admin_url, server_command};
use cairn_bench::{TreeFile, deep_project_tree, edited, median, team_project_tree, write_tree};

type Result<T> = std::result::Result<T, String>;

const TEAM_SEED: u64 = 0x0015_c10e;
const DEEP_SEED: u64 = 0x0015_dee9;
const PASSWORD: &str = "bench-password-1";
const S3_ACCESS_KEY: &str = "cairn-bench";
const S3_SECRET_KEY: &str = "cairn-bench-secret";
const S3_REGION: &str = "us-east-1";

fn main() {
    if let Err(error) = run() {
        eprintln!("worktree bench: error: {error}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Tmpfs,
    Disk,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Tmpfs => "tmpfs",
            Place::Disk => "disk",
        }
    }

    fn folder(self) -> PathBuf {
        match self {
            Place::Tmpfs => PathBuf::from("/dev/shm"),
            Place::Disk => std::env::temp_dir(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corpus {
    Team,
    Deep,
}

impl Corpus {
    fn name(self) -> &'static str {
        match self {
            Corpus::Team => "team",
            Corpus::Deep => "deep",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Corpus::Team => {
                "issue 15's team project: 8,000 files in 514 folders 2–4 deep (7,957 JSON documents \
                 of 0.5–4 KiB, 40 of 50–500 KiB, 3 recordings of 17–19 MiB)"
            }
            Corpus::Deep => {
                "a deep tree: 6,020 files in 2,048 folders up to 12 deep (6,000 JSON documents of \
                 0.2–6 KiB, two to four per folder, and 20 of 64–256 KiB)"
            }
        }
    }

    fn files(self) -> Vec<TreeFile> {
        match self {
            Corpus::Team => team_project_tree(TEAM_SEED),
            Corpus::Deep => deep_project_tree(DEEP_SEED),
        }
    }
}

#[derive(Debug)]
struct Options {
    runs: usize,
    corpora: Vec<Corpus>,
    places: Vec<Place>,
    monitor: bool,
    production: bool,
    round_trip_ms: u64,
    keep: bool,
    build: bool,
}

fn options() -> Result<Options> {
    let mut options = Options {
        runs: 7,
        corpora: vec![Corpus::Team, Corpus::Deep],
        places: vec![Place::Tmpfs, Place::Disk],
        monitor: false,
        production: false,
        round_trip_ms: 20,
        keep: false,
        build: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                options.runs = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .filter(|&value| value > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--rtt" => {
                options.round_trip_ms = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .ok_or("--rtt needs milliseconds")?;
            }
            "--corpus" => {
                options.corpora = match args.next().as_deref() {
                    Some("team") => vec![Corpus::Team],
                    // `other` as the brief names it: the shape that is not the team project.
                    Some("deep" | "other") => vec![Corpus::Deep],
                    Some("both") => vec![Corpus::Team, Corpus::Deep],
                    _ => return Err("--corpus needs team, deep (or other) or both".into()),
                };
            }
            "--on" => {
                options.places = match args.next().as_deref() {
                    Some("tmpfs") => vec![Place::Tmpfs],
                    Some("disk") => vec![Place::Disk],
                    Some("both") => vec![Place::Tmpfs, Place::Disk],
                    _ => return Err("--on needs tmpfs, disk or both".into()),
                };
            }
            "--monitor" => options.monitor = true,
            "--production" => options.production = true,
            "--keep" => options.keep = true,
            "--no-build" => options.build = false,
            "-h" | "--help" => {
                println!(
                    "usage: worktree [--runs N (default 7)] [--corpus team|deep|both (default both)] \
                     [--on tmpfs|disk|both (default both)] [--monitor] [--production] \
                     [--rtt MS (S3 round trip with --production, default 20)] [--keep] [--no-build]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// Tools and operations.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `cairn` against an embedded `sync-server`.
    Cairn,
    /// `cairn` against a `sync-server` on PostgreSQL and S3 (`--production`).
    CairnProduction,
    /// `git` over `git daemon`, directly.
    Git,
    /// `git` over `git daemon` through the relay that takes the delayed-ACK stalls away.
    GitFast,
}

impl Tool {
    fn name(self, options: &Options) -> String {
        match self {
            Tool::Cairn => "cairn".into(),
            Tool::CairnProduction => {
                format!("cairn, PostgreSQL + S3 {} ms away", options.round_trip_ms)
            }
            Tool::Git => "git (git daemon)".into(),
            Tool::GitFast => "git without delayed-ACK stalls".into(),
        }
    }

    fn is_git(self) -> bool {
        matches!(self, Tool::Git | Tool::GitFast)
    }
}

const OPERATIONS: [&str; 4] = [
    "status with one change",
    "one-line edit pushed",
    "no-op sync",
    "that edit pulled",
];
const STATUS: usize = 0;
const PUSH: usize = 1;
const SYNC: usize = 2;
const PULL: usize = 3;

/// Issue 15's ceiling for cairn/git-without-stalls of each operation, without and with the
/// monitor (`None`: the issue sets none).
fn target(operation: usize, monitor: bool) -> Option<f64> {
    match (operation, monitor) {
        (PULL, _) => None,
        (_, true) => Some(0.5),
        (STATUS, false) => Some(1.0),
        (_, false) => Some(0.8),
    }
}

/// One tool's two working copies (the one that edits and the one that pulls) and its
/// environment.
#[derive(Debug)]
struct Copies {
    tool: Tool,
    a: PathBuf,
    b: PathBuf,
}

#[derive(Debug)]
struct Bench<'a> {
    options: &'a Options,
    bin: PathBuf,
    root: PathBuf,
    files: Vec<TreeFile>,
}

impl Bench<'_> {
    fn cairn(&self, dir: &Path) -> Command {
        let mut command = Command::new(self.bin.join("cairn"));
        command
            .current_dir(dir)
            .env("CAIRN_CONFIG", self.root.join("cairn-client.toml"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env_remove("CAIRN_TIMINGS");
        command
    }

    fn git(&self, dir: &Path) -> Command {
        let mut command = Command::new("git");
        command
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.root.join("home"))
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.com")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.com");
        command
    }

    /// The commands of `operation` for `copies`, run one after the other as one timing.
    fn commands(&self, copies: &Copies, operation: usize) -> Vec<Command> {
        let with = |dir: &Path, args: &[&str]| {
            let mut command = if copies.tool.is_git() {
                self.git(dir)
            } else {
                self.cairn(dir)
            };
            command.args(args);
            command
        };
        let (a, b) = (&copies.a, &copies.b);
        if copies.tool.is_git() {
            match operation {
                STATUS => vec![with(a, &["status"])],
                PUSH => vec![
                    with(a, &["commit", "-q", "-a", "-m", "edit"]),
                    with(a, &["push", "-q"]),
                ],
                SYNC => vec![
                    with(a, &["pull", "-q", "--ff-only"]),
                    with(a, &["push", "-q"]),
                ],
                _ => vec![with(b, &["pull", "-q", "--ff-only"])],
            }
        } else {
            match operation {
                STATUS => vec![with(a, &["status"])],
                PUSH => vec![with(a, &["push", "-m", "edit"])],
                SYNC => vec![with(a, &["sync"])],
                _ => vec![with(b, &["pull"])],
            }
        }
    }
}

fn timed(commands: Vec<Command>) -> Result<Duration> {
    let start = Instant::now();
    for mut command in commands {
        run_command(&mut command)?;
    }
    Ok(start.elapsed())
}

/// The 1-minute load average now.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every timing of one place and corpus: `[operation][tool]`.
#[derive(Debug)]
struct Table {
    place: Place,
    corpus: Corpus,
    files: usize,
    bytes: usize,
    tools: Vec<Tool>,
    samples: Vec<Vec<Vec<Duration>>>,
    loads: Vec<f64>,
}

// ---------------------------------------------------------------------------------------------
// The monitor.

/// `cairn daemon` in one working copy: started, waited for until it says it is ready, and
/// stopped with `cairn daemon --stop` (killed if that fails) when dropped.
#[derive(Debug)]
struct Monitor {
    child: Child,
    stop: Command,
}

impl Monitor {
    fn start(bench: &Bench<'_>, dir: &Path) -> Result<Monitor> {
        let mut command = bench.cairn(dir);
        command
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting cairn daemon: {e}"))?;
        let stdout = child.stdout.take().ok_or("cairn daemon: no stdout")?;
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = sender.send(reader.read_line(&mut line).map(|_| line));
            // Keep reading so the daemon never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut stop = bench.cairn(dir);
        stop.args(["daemon", "--stop"]);
        let mut monitor = Monitor { child, stop };
        match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) if !line.is_empty() => Ok(monitor),
            Ok(_) => {
                let status = monitor.child.wait().map_err(|e| e.to_string())?;
                Err(format!(
                    "cairn daemon in {} exited ({status}) without saying it was ready",
                    dir.display()
                ))
            }
            Err(_) => Err(format!(
                "cairn daemon in {} said nothing within 60 s",
                dir.display()
            )),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let stopped = self
            .stop
            .output()
            .is_ok_and(|output| output.status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while stopped && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An error unless `cairn` has the `daemon` subcommand.
fn check_monitor(bin: &Path) -> Result<()> {
    let output = Command::new(bin.join("cairn"))
        .args(["daemon", "--help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running cairn: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "--monitor needs `cairn daemon` (issue 15's file-system monitor), and {} has no such \
         subcommand ({}): build a cairn that has it, or run without --monitor",
        bin.join("cairn").display(),
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
    ))
}

// ---------------------------------------------------------------------------------------------
// The production server.

/// `sync-server` on PostgreSQL and s3s-fs, its S3 behind a latency relay: the database, the
/// relay and the node, stopped in that order's reverse when dropped.
#[derive(Debug)]
struct Production {
    node: Daemon,
    port: u16,
    project: String,
    _relay: LatencyRelay,
    _s3s_fs: Daemon,
    _database: Database,
}

impl Production {
    fn start(bench: &Bench<'_>) -> Result<Production> {
        let s3s_fs = find_binary(
            "s3s-fs",
            "CAIRN_S3S_FS",
            "",
            "cargo install s3s-fs --version 0.14.1 --locked --features binary",
        )?;
        let dir = bench.root.join("production");
        let bucket = "cairn-bench";
        std::fs::create_dir_all(dir.join("s3").join(bucket)).map_err(|e| e.to_string())?;
        let s3_port = free_port()?;
        let s3s_fs = Daemon::start(
            "s3s-fs",
            Command::new(&s3s_fs)
                .args(["--host", "127.0.0.1", "--port", &s3_port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(dir.join("s3")),
            Some(&dir.join("s3s-fs.log")),
        )?;
        wait_for_port(s3_port, "s3s-fs")?;
        let database = Database::create(
            &postgres_admin_url()?,
            &format!("cairn_worktree_{}", std::process::id()),
            bench.options.keep,
        )?;
        let relay = LatencyRelay::start(
            SocketAddr::from(([127, 0, 0, 1], s3_port)),
            Duration::from_millis(bench.options.round_trip_ms),
        )
        .map_err(|e| format!("starting the latency relay: {e}"))?;
        let (aws_config, aws_credentials) = (dir.join("aws-config"), dir.join("aws-credentials"));
        for path in [&aws_config, &aws_credentials] {
            std::fs::write(path, "").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let variables = vec![
            ("DATABASE_URL", database.url.clone()),
            ("CAIRN_S3_ENDPOINT", relay.url()),
            ("CAIRN_S3_BUCKET", bucket.to_owned()),
            ("CAIRN_S3_REGION", S3_REGION.to_owned()),
            ("CAIRN_S3_PATH_STYLE", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
            ("AWS_REGION", S3_REGION.to_owned()),
            ("AWS_CONFIG_FILE", aws_config.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                aws_credentials.display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ];
        let admin = |args: &[&str]| {
            let mut full = vec!["admin"];
            full.extend_from_slice(args);
            run_command(&mut server_command(
                &bench.bin, &dir, PASSWORD, &variables, &full,
            ))
        };
        create_bench_account(admin)?;
        let output = admin(&["create-project", "--team", "benchteam", "--name", "corpus"])?;
        let project = value_of(&output, "project")?;
        let port = free_port()?;
        let log = dir.join("server.log");
        let mut node = Daemon::start(
            "sync-server (production)",
            &mut server_command(
                &bench.bin,
                &dir,
                PASSWORD,
                &variables,
                &["serve", "--listen", &format!("127.0.0.1:{port}")],
            ),
            Some(&log),
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(port, "/readyz"), Ok((200, _))) {
            node.check_running()
                .map_err(|e| format!("{e}; see {}", log.display()))?;
            if Instant::now() > deadline {
                return Err(format!(
                    "sync-server not ready in 30 s; see {}",
                    log.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Production {
            node,
            port,
            project,
            _relay: relay,
            _s3s_fs: s3s_fs,
            _database: database,
        })
    }
}

impl Drop for Production {
    fn drop(&mut self) {
        self.node.stop();
    }
}

// ---------------------------------------------------------------------------------------------

fn run() -> Result<()> {
    let options = options()?;
    let bin = binary_dir()?;
    build_binaries(&bin, options.build)?;
    Command::new("git")
        .arg("--version")
        .output()
        .map_err(|e| format!("git is needed on the PATH (apt-get install -y git): {e}"))?;
    if options.monitor {
        check_monitor(&bin)?;
    }
    let mut tables = Vec::new();
    for &corpus in &options.corpora {
        let mut files = corpus.files();
        for &place in &options.places {
            let root = place
                .folder()
                .join(format!("cairn-worktree-bench-{}", std::process::id()))
                .join(corpus.name());
            remove(&root)?;
            let bench = Bench {
                options: &options,
                bin: bin.clone(),
                root: root.clone(),
                files,
            };
            let outcome = bench_one(&bench, place, corpus);
            if options.keep {
                eprintln!("kept {}", root.display());
            } else {
                let _ = std::fs::remove_dir_all(&root);
                // The run's folder, once empty (another corpus may still come).
                if let Some(parent) = root.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
            }
            tables.push(outcome?);
            files = bench.files;
        }
    }
    let report = report(&options, &tables);
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let suffix = if options.monitor { "-monitor" } else { "" };
    let path = out.join(format!("worktree-{}{suffix}.md", today()));
    std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

fn bench_one(bench: &Bench<'_>, place: Place, corpus: Corpus) -> Result<Table> {
    let what = format!("{} on {}", corpus.name(), place.name());
    let root = &bench.root;
    eprintln!("{what}: writing the corpus into {}", root.display());
    std::fs::create_dir_all(root.join("home")).map_err(|e| e.to_string())?;
    let mut daemons = Daemons::default();

    // The servers: embedded sync-server, git daemon (two bare repositories, the second behind
    // the stall-free relay), and with --production the PostgreSQL + S3 one.
    let (cairn_port, projects) = start_embedded_server(
        &mut daemons,
        &bench.bin,
        &root.join("cairn-data"),
        PASSWORD,
        &["corpus".to_owned()],
        &root.join("server.log"),
    )?;
    let git_base = root.join("git-server");
    std::fs::create_dir_all(&git_base).map_err(|e| e.to_string())?;
    let git_port = free_port()?;
    start_git_daemon(
        &mut daemons,
        &git_base,
        git_port,
        &root.join("home"),
        &root.join("git-daemon.log"),
    )?;
    let git_relay =
        LatencyRelay::start(SocketAddr::from(([127, 0, 0, 1], git_port)), Duration::ZERO)
            .map_err(|e| format!("starting the git relay: {e}"))?;
    let production = if bench.options.production {
        Some(Production::start(bench)?)
    } else {
        None
    };
    wait_for_port(cairn_port, "sync-server")?;
    wait_for_port(git_port, "git daemon")?;

    let mut tools = vec![Tool::Cairn];
    if production.is_some() {
        tools.push(Tool::CairnProduction);
    }
    tools.extend([Tool::Git, Tool::GitFast]);
    let copies: Vec<Copies> = tools
        .iter()
        .map(|&tool| {
            let slug = format!("{tool:?}").to_lowercase();
            Copies {
                tool,
                a: root.join(format!("{slug}-a")),
                b: root.join(format!("{slug}-b")),
            }
        })
        .collect();

    // Each tool's first copy written and pushed, the second cloned from it.
    for copy in &copies {
        write_tree(&copy.a, &bench.files)?;
        eprintln!(
            "{what}: first push and clone, {}",
            copy.tool.name(bench.options)
        );
        match copy.tool {
            Tool::Cairn | Tool::CairnProduction => {
                let (url, project) = match (copy.tool, &production) {
                    (Tool::CairnProduction, Some(production)) => (
                        format!("http://127.0.0.1:{}", production.port),
                        production.project.clone(),
                    ),
                    _ => (
                        format!("http://127.0.0.1:{cairn_port}"),
                        projects[0].clone(),
                    ),
                };
                run_command(
                    bench
                        .cairn(root)
                        .args(["login", "--server", &url, "--user", "bench"]),
                )?;
                run_command(bench.cairn(&copy.a).args([
                    "init",
                    "--server",
                    &url,
                    "--project",
                    &project,
                ]))?;
                run_command(bench.cairn(&copy.a).args(["push", "-m", "initial"]))?;
                run_command(
                    bench
                        .cairn(root)
                        .args(["clone", "--server", &url, "--project", &project])
                        .arg(&copy.b),
                )?;
            }
            Tool::Git | Tool::GitFast => {
                let repo = format!(
                    "{}.git",
                    copy.a.file_name().unwrap_or_default().to_string_lossy()
                );
                let port = if copy.tool == Tool::Git {
                    git_port
                } else {
                    git_relay.port()
                };
                let url = format!("git://127.0.0.1:{port}/{repo}");
                run_command(
                    bench
                        .git(&git_base)
                        .args(["init", "-q", "--bare", "-b", "main", &repo]),
                )?;
                run_command(bench.git(&copy.a).args(["init", "-q", "-b", "main"]))?;
                run_command(bench.git(&copy.a).args(["add", "-A"]))?;
                run_command(bench.git(&copy.a).args(["commit", "-q", "-m", "initial"]))?;
                run_command(bench.git(&copy.a).args(["remote", "add", "origin", &url]))?;
                run_command(
                    bench
                        .git(&copy.a)
                        .args(["push", "-q", "-u", "origin", "main"]),
                )?;
                run_command(bench.git(root).args(["clone", "-q", &url]).arg(&copy.b))?;
            }
        }
    }

    let monitors = if bench.options.monitor {
        let mut monitors = Vec::new();
        for copy in copies.iter().filter(|copy| !copy.tool.is_git()) {
            monitors.push(Monitor::start(bench, &copy.a)?);
            monitors.push(Monitor::start(bench, &copy.b)?);
        }
        monitors
    } else {
        Vec::new()
    };

    // The files the edits change: a small request, and another that `status` finds changed.
    let edit = bench.files.len() / 6;
    let status_file = bench.files.len() / 2;
    let mut table = Table {
        place,
        corpus,
        files: bench.files.len(),
        bytes: bench.files.iter().map(|file| file.bytes.len()).sum(),
        tools: tools.clone(),
        samples: vec![vec![Vec::new(); tools.len()]; OPERATIONS.len()],
        loads: Vec::new(),
    };
    for run in 0..bench.options.runs {
        eprintln!("{what}: run {}/{}", run + 1, bench.options.runs);
        table.loads.extend(load_average());
        // A different tool first in each run.
        let order: Vec<usize> = (0..copies.len())
            .map(|index| (index + run) % copies.len())
            .collect();
        let new_bytes = edited(&bench.files[edit].bytes, run);
        for copy in &copies {
            std::fs::write(copy.a.join(&bench.files[edit].path), &new_bytes)
                .map_err(|e| e.to_string())?;
        }
        for operation in [PUSH, PULL, SYNC] {
            for &index in &order {
                let time = timed(bench.commands(&copies[index], operation))?;
                table.samples[operation][index].push(time);
            }
        }
        for copy in &copies {
            let path = copy.b.join(&bench.files[edit].path);
            if std::fs::read(&path).map_err(|e| e.to_string())? != new_bytes {
                return Err(format!(
                    "{}: the second copy did not receive the edit of run {run}",
                    copy.tool.name(bench.options)
                ));
            }
        }
        // Status with one change, changed back afterwards (modification time included), so
        // that the next run's push is one file again.
        let file = &bench.files[status_file];
        let changed = edited(&file.bytes, 1_000_000 + run);
        let mut mtimes = Vec::new();
        for copy in &copies {
            let path = copy.a.join(&file.path);
            let mtime = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(|e| e.to_string())?;
            mtimes.push(mtime);
            std::fs::write(&path, &changed).map_err(|e| e.to_string())?;
        }
        for &index in &order {
            let time = timed(bench.commands(&copies[index], STATUS))?;
            table.samples[STATUS][index].push(time);
        }
        for (copy, mtime) in copies.iter().zip(mtimes) {
            let path = copy.a.join(&file.path);
            std::fs::write(&path, &file.bytes).map_err(|e| e.to_string())?;
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_modified(mtime))
                .map_err(|e| e.to_string())?;
        }
    }
    table.loads.extend(load_average());
    drop(monitors);
    drop(production);
    drop(git_relay);
    drop(daemons);
    Ok(table)
}

// ---------------------------------------------------------------------------------------------
// The report.

fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

fn report(options: &Options, tables: &[Table]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The working copy: cairn vs git ({}{})\n",
        today(),
        if options.monitor {
            ", with cairn's monitor"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "Median of {} runs (min–max), each time one or more whole client processes, on \
         127.0.0.1 without a relay except for git without stalls (see below); within a run \
         every tool did each operation in turn, a different tool first each run. {}\n",
        options.runs,
        if options.monitor {
            "`cairn daemon` watched every cairn working copy during the timed runs."
        } else {
            "No file-system monitor."
        }
    );
    for table in tables {
        let load = if table.loads.is_empty() {
            "unknown".to_owned()
        } else {
            let mean = table.loads.iter().sum::<f64>() / table.loads.len() as f64;
            let high = table.loads.iter().copied().fold(0.0, f64::max);
            format!("{mean:.1} on average (up to {high:.1})")
        };
        let _ = writeln!(
            out,
            "## {} corpus on {}\n\n{}; {} files, {:.1} MB. Load average (1 min, 2 cores) during \
             the runs: {load}.\n",
            table.corpus.name(),
            table.place.name(),
            table.corpus.describe(),
            table.files,
            table.bytes as f64 / 1e6
        );
        let mut head = "| operation |".to_owned();
        let mut rule = "|---|".to_owned();
        for tool in &table.tools {
            let _ = write!(head, " {} ms |", tool.name(options));
            rule.push_str("---:|");
        }
        let fast = table.tools.iter().position(|&tool| tool == Tool::GitFast);
        let cairns: Vec<usize> = (0..table.tools.len())
            .filter(|&index| !table.tools[index].is_git())
            .collect();
        for &index in &cairns {
            let what = if table.tools[index] == Tool::Cairn {
                "cairn"
            } else {
                "production"
            };
            let _ = write!(head, " {what}/git w/o stalls |");
            rule.push_str("---:|");
        }
        head.push_str(" target |");
        rule.push_str("---:|");
        let _ = writeln!(out, "{head}\n{rule}");
        for (operation, name) in OPERATIONS.iter().enumerate() {
            let mut row = format!("| {name} |");
            let mut medians = Vec::new();
            for samples in &table.samples[operation] {
                let mut sorted = samples.clone();
                let middle = median(&mut sorted);
                let (low, high) = (sorted[0], sorted[sorted.len() - 1]);
                let _ = write!(row, " {} ({}–{}) |", ms(middle), ms(low), ms(high));
                medians.push(middle);
            }
            let target = target(operation, options.monitor);
            for &index in &cairns {
                let ratio =
                    fast.map(|fast| medians[index].as_secs_f64() / medians[fast].as_secs_f64());
                let mark = match (ratio, target) {
                    (Some(ratio), Some(target)) if ratio <= target => " ✓",
                    (Some(_), Some(_)) => " ✗",
                    _ => "",
                };
                let text = ratio.map_or("–".to_owned(), |ratio| format!("{ratio:.2}{mark}"));
                let _ = write!(row, " {text} |");
            }
            let _ = write!(
                row,
                " {} |",
                target.map_or("–".to_owned(), |target| format!("≤ {target:.1}"))
            );
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "## What each cell runs\n\n\
         - status with one change: one file of the first copy rewritten with one more line; \
         `cairn status`, `git status` (changed back, modification time included, afterwards).\n\
         - one-line edit pushed: one line added to a small JSON file of the first copy; \
         `cairn push`; `git commit -q -a` + `git push -q`.\n\
         - no-op sync: the first copy, up to date both ways; `cairn sync`; `git pull -q --ff-only` \
         + `git push -q`.\n\
         - that edit pulled: the second copy; `cairn pull`; `git pull -q --ff-only`, checked \
         against the edit afterwards.\n\n\
         git (git daemon) talks to `git daemon` directly. git without delayed-ACK stalls talks to \
         the same daemon (its own repository) through a relay that sets TCP_NODELAY on both legs \
         and TCP_QUICKACK after every read (`latency_relay` with no added latency): git's small \
         writes are acknowledged at once instead of after the receiver's delayed-ACK timer, so \
         the difference between the two columns is what the stalls cost. The ratios are cairn's \
         median over that column's; the targets are issue 15's{}.",
        if options.monitor {
            " with the monitor"
        } else {
            " without the monitor"
        }
    );
    if options.production {
        let _ = writeln!(
            out,
            "\ncairn, PostgreSQL + S3: `sync-server` on a fresh PostgreSQL database and an `s3s-fs` \
             bucket behind a latency relay adding {} ms to every exchange with S3.",
            options.round_trip_ms
        );
    }
    out
}
