//! Cairn against git (over `git daemon`) and rsync (over an rsync daemon) on loopback, side by
//! side in one run (issue 4).
//!
//! ```text
//! cargo run --release -p cairn-bench --bin sync [-- --runs 5 --small-runs 9 --direct --keep]
//! ```
//!
//! It first runs `cargo build --release -p sync-server -p sync-client` (same target folder; skip
//! with `--no-build`), then, in a temporary folder and only on 127.0.0.1:
//!
//! - generates a deterministic corpus (10,000 files, about 104 MB: 9,997 small JSON documents in
//!   nested folders and 3 × 15 MB files), one copy per tool;
//! - starts `sync-server serve` (embedded mode), `git daemon --enable=receive-pack` and
//!   `rsync --daemon`, each behind a byte-counting TCP relay of its own, and points every client
//!   at its relay, so the three are measured the same way: bytes both ways, TCP connections, and
//!   request/response turns (how many times data flowed server → client after client → server);
//! - times each operation as a whole client process (fork and exec included, as a user runs it),
//!   `--runs` times for the 100 MB uploads and downloads, `--small-runs` times for the small ones,
//!   and prints medians as a Markdown table, also written to `bench/out/sync-<date>.md`.
//!
//! `--direct` points the clients at the daemons themselves (no relay: times without the extra
//! hop, no byte counts; written to `bench/out/sync-<date>-direct.md`). Needs `git` and `rsync`
//! on the PATH.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cairn_bench::processes::{
    Daemons, binary_dir, build_binaries, free_port, remove, run_command, start_embedded_server,
    start_git_daemon, today, wait_for_port,
};
use cairn_bench::{edited, project_tree, write_tree};

type Result<T> = std::result::Result<T, String>;

const SEED: u64 = 0x0ca1_4b3e;
const SMALL_FILES: usize = 9_997;
const LARGE_FILES: usize = 3;
const LARGE_SIZE: usize = 15_000_000;
const PASSWORD: &str = "bench-password-1";

fn main() {
    if let Err(error) = run() {
        eprintln!("sync bench: error: {error}");
        std::process::exit(1);
    }
}

#[derive(Debug)]
struct Options {
    runs: usize,
    small_runs: usize,
    direct: bool,
    keep: bool,
    build: bool,
}

fn options() -> Result<Options> {
    let mut options = Options {
        runs: 5,
        small_runs: 9,
        direct: false,
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
            "--small-runs" => options.small_runs = number("--small-runs")?,
            "--direct" => options.direct = true,
            "--keep" => options.keep = true,
            "--no-build" => options.build = false,
            "-h" | "--help" => {
                println!(
                    "usage: sync [--runs N (default 5)] [--small-runs N (default 9)] [--direct] [--keep] [--no-build]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// The byte-counting relay.

/// What a relay saw, summed over its connections.
#[derive(Debug, Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    turns: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Wire {
    up: u64,
    down: u64,
    turns: u64,
    connections: u64,
}

impl Counters {
    fn snapshot(&self) -> Wire {
        Wire {
            up: self.up.load(Ordering::SeqCst),
            down: self.down.load(Ordering::SeqCst),
            turns: self.turns.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
        }
    }

    /// Waits (up to two seconds) until every relayed connection has closed, so a snapshot taken
    /// after a client exits holds all of its bytes.
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl std::ops::Sub for Wire {
    type Output = Wire;
    fn sub(self, before: Wire) -> Wire {
        Wire {
            up: self.up - before.up,
            down: self.down - before.down,
            turns: self.turns - before.turns,
            connections: self.connections - before.connections,
        }
    }
}

const NOBODY: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Listens on a free loopback port and forwards every connection to `target`, counting bytes
/// both ways. TCP_NODELAY on both legs, so the relay adds a hop but never holds data back.
fn start_relay(target: u16) -> Result<(u16, Arc<Counters>)> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("relay bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let counters = Arc::new(Counters::default());
    let shared = Arc::clone(&counters);
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            shared.connections.fetch_add(1, Ordering::SeqCst);
            shared.open.fetch_add(2, Ordering::SeqCst);
            let last = Arc::new(AtomicU8::new(NOBODY));
            for (from, to, direction) in [(&client, &server, UP), (&server, &client, DOWN)] {
                let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                    continue;
                };
                let counters = Arc::clone(&shared);
                let last = Arc::clone(&last);
                thread::spawn(move || {
                    pump(from, to, direction, &counters, &last);
                    counters.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    });
    Ok((port, counters))
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    direction: u8,
    counters: &Counters,
    last: &AtomicU8,
) {
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let counter = if direction == UP {
            &counters.up
        } else {
            &counters.down
        };
        counter.fetch_add(read as u64, Ordering::SeqCst);
        // Marked before forwarding: the answer to these bytes cannot arrive before they leave.
        if last.swap(direction, Ordering::SeqCst) == UP && direction == DOWN {
            counters.turns.fetch_add(1, Ordering::SeqCst);
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A new folder `root/name` for a daemon to serve, and a free port for it.
fn daemon_folder(root: &Path, name: &str) -> Result<(PathBuf, u16)> {
    let folder = root.join(name);
    std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    Ok((folder, free_port()?))
}

// ---------------------------------------------------------------------------------------------
// The three tools.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Cairn,
    Git,
    Rsync,
}

const TOOLS: [Tool; 3] = [Tool::Cairn, Tool::Git, Tool::Rsync];

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Cairn => "cairn",
            Tool::Git => "git",
            Tool::Rsync => "rsync",
        }
    }
}

#[derive(Debug)]
struct Bench {
    root: PathBuf,
    bin: PathBuf,
    client_config: PathBuf,
    cairn_url: String,
    git_url: String,
    rsync_url: String,
    counters: [Arc<Counters>; 3],
    /// Projects made for the initial uploads, one per run.
    projects: Vec<String>,
}

impl Bench {
    fn counters(&self, tool: Tool) -> &Counters {
        &self.counters[tool as usize]
    }

    fn cairn(&self, dir: &Path) -> Command {
        let mut command = Command::new(self.bin.join("cairn"));
        command
            .current_dir(dir)
            .env("CAIRN_CONFIG", &self.client_config)
            .env("CAIRN_PASSWORD", PASSWORD);
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

    fn rsync(&self, dir: &Path) -> Command {
        let mut command = Command::new("rsync");
        command.current_dir(dir);
        command
    }

    /// Runs `commands` one after the other as one timed operation: wall time from the first
    /// start to the last exit, and what crossed `tool`'s relay meanwhile.
    fn measure(&self, tool: Tool, commands: Vec<Command>) -> Result<Sample> {
        let counters = self.counters(tool);
        counters.settle();
        let before = counters.snapshot();
        let start = Instant::now();
        for mut command in commands {
            run_command(&mut command)?;
        }
        let wall = start.elapsed();
        counters.settle();
        Ok(Sample {
            wall,
            wire: counters.snapshot() - before,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    wire: Wire,
}

impl Sample {
    /// A local step (`self`) followed by `transfer`, as one operation: both wall times, and
    /// the transfer's use of the wire (a local step has none).
    fn then(self, transfer: Sample) -> Sample {
        Sample {
            wall: self.wall + transfer.wall,
            wire: transfer.wire,
        }
    }
}

/// Every sample of one operation by one tool.
#[derive(Debug, Default, Clone)]
struct Samples(Vec<Sample>);

impl Samples {
    fn median_wall(&self) -> Duration {
        let mut walls: Vec<Duration> = self.0.iter().map(|s| s.wall).collect();
        walls.sort_unstable();
        walls[walls.len() / 2]
    }

    fn range(&self) -> (Duration, Duration) {
        let walls = self.0.iter().map(|s| s.wall);
        (
            walls.clone().min().unwrap_or_default(),
            walls.max().unwrap_or_default(),
        )
    }

    fn median_wire(&self) -> Wire {
        let mut wires: Vec<Wire> = self.0.iter().map(|s| s.wire).collect();
        wires.sort_unstable_by_key(|w| w.up + w.down);
        wires[wires.len() / 2]
    }
}

/// The operations, in table order; the cell of a tool that has no such step stays empty.
const OPERATIONS: [&str; 8] = [
    "initial upload (100 MB)",
    "initial upload, transfer only",
    "initial download (clone)",
    "one-line edit pushed",
    "one-line edit pushed, transfer only",
    "that edit pulled by a second copy",
    "no-op sync",
    "status with one change",
];

#[derive(Debug, Default)]
struct Results {
    /// [operation][tool]
    cells: Vec<[Samples; 3]>,
}

impl Results {
    fn new() -> Self {
        Self {
            cells: vec![Default::default(); OPERATIONS.len()],
        }
    }

    fn add(&mut self, operation: usize, tool: Tool, sample: Sample) {
        self.cells[operation][tool as usize].0.push(sample);
    }
}

// ---------------------------------------------------------------------------------------------

fn run() -> Result<()> {
    let options = options()?;
    let bin = binary_dir()?;
    build_binaries(&bin, options.build)?;
    for tool in ["git", "rsync"] {
        Command::new(tool).arg("--version").output().map_err(|e| {
            format!("{tool} is needed on the PATH (apt-get install -y {tool}): {e}")
        })?;
    }

    let root = std::env::temp_dir().join(format!("cairn-sync-bench-{}", std::process::id()));
    remove(&root)?;
    std::fs::create_dir_all(root.join("home")).map_err(|e| e.to_string())?;
    let outcome = bench(&options, &bin, &root);
    if options.keep {
        eprintln!("kept {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    outcome
}

fn bench(options: &Options, bin: &Path, root: &Path) -> Result<()> {
    // The corpus, one copy per tool (each tool keeps its own metadata folder in it).
    let started = Instant::now();
    let files = project_tree(SMALL_FILES, LARGE_FILES, LARGE_SIZE, SEED);
    let total: usize = files.iter().map(|f| f.bytes.len()).sum();
    for tool in TOOLS {
        write_tree(&root.join(format!("{}-a", tool.name())), &files)?;
    }
    eprintln!(
        "corpus: {} files, {:.1} MB, written 3 times in {:.1} s",
        files.len(),
        total as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    // The file the edits change (a small request in a nested folder) and the one `status` finds
    // changed.
    let edit_index = 1234;
    let status_index = 4321;

    let mut daemons = Daemons::default();
    let projects_needed = options.runs;

    // Cairn: an account, a team and one project per initial-upload run, made from the shell
    // before the server starts; then the server.
    let names: Vec<String> = (0..projects_needed)
        .map(|run| format!("corpus-{run}"))
        .collect();
    let (cairn_port, projects) = start_embedded_server(
        &mut daemons,
        bin,
        &root.join("cairn-data"),
        PASSWORD,
        &names,
        &root.join("server.log"),
    )?;

    // git daemon over a folder of bare repositories.
    let (git_base, git_port) = daemon_folder(root, "git-server")?;
    start_git_daemon(
        &mut daemons,
        &git_base,
        git_port,
        &root.join("home"),
        &root.join("git-daemon.log"),
    )?;

    // rsync daemon with one read-write module.
    let (rsync_base, rsync_port) = daemon_folder(root, "rsync-server")?;
    let is_root = run_command(Command::new("id").arg("-u"))
        .map(|out| out.trim() == "0")
        .unwrap_or(false);
    let conf = format!(
        "use chroot = no\n{}pid file = {}\nlog file = {}\n[bench]\n  path = {}\n  read only = no\n",
        if is_root {
            "uid = root\ngid = root\n"
        } else {
            ""
        },
        root.join("rsyncd.pid").display(),
        root.join("rsyncd.log").display(),
        rsync_base.display()
    );
    let conf_path = root.join("rsyncd.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    daemons.start(
        "rsync --daemon",
        Command::new("rsync")
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", conf_path.display()))
            .arg("--address=127.0.0.1")
            .arg(format!("--port={rsync_port}")),
        None,
    )?;

    wait_for_port(cairn_port, "sync-server")?;
    wait_for_port(git_port, "git daemon")?;
    wait_for_port(rsync_port, "rsync --daemon")?;

    let mut counters = Vec::new();
    let mut ports = Vec::new();
    for port in [cairn_port, git_port, rsync_port] {
        let (relay, counter) = start_relay(port)?;
        ports.push(if options.direct { port } else { relay });
        counters.push(counter);
    }
    let counters: [Arc<Counters>; 3] = [
        Arc::clone(&counters[0]),
        Arc::clone(&counters[1]),
        Arc::clone(&counters[2]),
    ];
    let bench = Bench {
        root: root.to_path_buf(),
        bin: bin.to_path_buf(),
        client_config: root.join("cairn-client.toml"),
        cairn_url: format!("http://127.0.0.1:{}", ports[0]),
        git_url: format!("git://127.0.0.1:{}", ports[1]),
        rsync_url: format!("rsync://127.0.0.1:{}/bench", ports[2]),
        counters,
        projects,
    };
    run_command(bench.cairn(root).args([
        "login",
        "--server",
        &bench.cairn_url,
        "--user",
        "bench",
    ]))?;

    let mut results = Results::new();
    let copy_a = |tool: Tool| root.join(format!("{}-a", tool.name()));
    let copy_b = |tool: Tool| root.join(format!("{}-b", tool.name()));
    let last = options.runs - 1;

    // 1. Initial upload: each run into a fresh project / bare repository / module folder; the
    // last run's becomes the shared one.
    for run in 0..options.runs {
        eprintln!("initial upload, run {}/{}", run + 1, options.runs);
        // Cairn: a fresh working copy of an empty project (no stat cache), then `cairn push`.
        let dir = copy_a(Tool::Cairn);
        remove(&dir.join(".cairn"))?;
        run_command(bench.cairn(&dir).args([
            "init",
            "--server",
            &bench.cairn_url,
            "--project",
            &bench.projects[run],
        ]))?;
        let mut push = bench.cairn(&dir);
        push.args(["push", "-m", "initial"]);
        let sample = bench.measure(Tool::Cairn, vec![push])?;
        results.add(0, Tool::Cairn, sample);
        results.add(1, Tool::Cairn, sample);

        // git: `git add -A && git commit` (local), then `git push` (the transfer).
        let dir = copy_a(Tool::Git);
        remove(&dir.join(".git"))?;
        let repo = format!("corpus-{run}.git");
        run_command(
            bench
                .git(&git_base)
                .args(["init", "-q", "--bare", "-b", "main", &repo]),
        )?;
        run_command(bench.git(&dir).args(["init", "-q", "-b", "main"]))?;
        run_command(bench.git(&dir).args([
            "remote",
            "add",
            "origin",
            &format!("{}/{repo}", bench.git_url),
        ]))?;
        let mut add = bench.git(&dir);
        add.args(["add", "-A"]);
        let mut commit = bench.git(&dir);
        commit.args(["commit", "-q", "-m", "initial"]);
        let local = bench.measure(Tool::Git, vec![add, commit])?;
        let mut push = bench.git(&dir);
        push.args(["push", "-q", "-u", "origin", "main"]);
        let transfer = bench.measure(Tool::Git, vec![push])?;
        results.add(0, Tool::Git, local.then(transfer));
        results.add(1, Tool::Git, transfer);

        // rsync: `rsync -a` of the folder into a fresh module folder.
        let dir = copy_a(Tool::Rsync);
        let mut upload = bench.rsync(&dir);
        upload
            .arg("-a")
            .arg("./")
            .arg(format!("{}/corpus-{run}/", bench.rsync_url));
        let sample = bench.measure(Tool::Rsync, vec![upload])?;
        results.add(0, Tool::Rsync, sample);
        results.add(1, Tool::Rsync, sample);

        // Earlier runs' server-side copies are not needed again.
        if run < last {
            remove(&git_base.join(&repo))?;
            remove(&rsync_base.join(format!("corpus-{run}")))?;
        }
    }
    let project = bench.projects[last].clone();
    let git_remote = format!("{}/corpus-{last}.git", bench.git_url);
    let rsync_remote = format!("{}/corpus-{last}/", bench.rsync_url);

    // 2. Initial download into a fresh second copy; the last run's copy is kept.
    for run in 0..options.runs {
        eprintln!("initial download, run {}/{}", run + 1, options.runs);
        for tool in TOOLS {
            remove(&copy_b(tool))?;
        }
        let mut clone = bench.cairn(root);
        clone
            .args(["clone", "--server", &bench.cairn_url, "--project", &project])
            .arg(copy_b(Tool::Cairn));
        results.add(2, Tool::Cairn, bench.measure(Tool::Cairn, vec![clone])?);
        let mut clone = bench.git(root);
        clone
            .args(["clone", "-q", &git_remote])
            .arg(copy_b(Tool::Git));
        results.add(2, Tool::Git, bench.measure(Tool::Git, vec![clone])?);
        let mut download = bench.rsync(root);
        download
            .arg("-a")
            .arg(&rsync_remote)
            .arg(copy_b(Tool::Rsync));
        results.add(2, Tool::Rsync, bench.measure(Tool::Rsync, vec![download])?);
    }
    for tool in TOOLS {
        let path = copy_b(tool).join(&files[edit_index].path);
        if std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?
            != files[edit_index].bytes
        {
            return Err(format!("{} clone differs from the corpus", tool.name()));
        }
    }

    // 3. The small operations, interleaved per run: edit in A and push it, pull it into B,
    // a no-op sync of A, then `status` in A with one file changed (changed back afterwards).
    for run in 0..options.small_runs {
        eprintln!("small operations, run {}/{}", run + 1, options.small_runs);
        let new_bytes = edited(&files[edit_index].bytes, run);
        for tool in TOOLS {
            let path = copy_a(tool).join(&files[edit_index].path);
            std::fs::write(&path, &new_bytes).map_err(|e| e.to_string())?;
        }

        // Edit pushed.
        let mut push = bench.cairn(&copy_a(Tool::Cairn));
        push.args(["push", "-m", "edit"]);
        let sample = bench.measure(Tool::Cairn, vec![push])?;
        results.add(3, Tool::Cairn, sample);
        results.add(4, Tool::Cairn, sample);

        let mut commit = bench.git(&copy_a(Tool::Git));
        commit.args(["commit", "-q", "-a", "-m", "edit"]);
        let local = bench.measure(Tool::Git, vec![commit])?;
        let mut push = bench.git(&copy_a(Tool::Git));
        push.args(["push", "-q"]);
        let transfer = bench.measure(Tool::Git, vec![push])?;
        results.add(3, Tool::Git, local.then(transfer));
        results.add(4, Tool::Git, transfer);

        let mut upload = bench.rsync(&copy_a(Tool::Rsync));
        upload.args(["-a", "./", &rsync_remote]);
        let sample = bench.measure(Tool::Rsync, vec![upload])?;
        results.add(3, Tool::Rsync, sample);
        results.add(4, Tool::Rsync, sample);

        // That edit pulled by the second copy.
        let mut pull = bench.cairn(&copy_b(Tool::Cairn));
        pull.arg("pull");
        results.add(5, Tool::Cairn, bench.measure(Tool::Cairn, vec![pull])?);
        let mut pull = bench.git(&copy_b(Tool::Git));
        pull.args(["pull", "-q", "--ff-only"]);
        results.add(5, Tool::Git, bench.measure(Tool::Git, vec![pull])?);
        let mut download = bench.rsync(&copy_b(Tool::Rsync));
        download.args(["-a", &rsync_remote, "./"]);
        results.add(5, Tool::Rsync, bench.measure(Tool::Rsync, vec![download])?);
        for tool in TOOLS {
            let path = copy_b(tool).join(&files[edit_index].path);
            if std::fs::read(&path).map_err(|e| e.to_string())? != new_bytes {
                return Err(format!(
                    "{}: the second copy did not receive the edit of run {run}",
                    tool.name()
                ));
            }
        }

        // No-op sync of A (up to date both ways).
        let mut sync = bench.cairn(&copy_a(Tool::Cairn));
        sync.arg("sync");
        results.add(6, Tool::Cairn, bench.measure(Tool::Cairn, vec![sync])?);
        let mut pull = bench.git(&copy_a(Tool::Git));
        pull.args(["pull", "-q", "--ff-only"]);
        let mut push = bench.git(&copy_a(Tool::Git));
        push.args(["push", "-q"]);
        results.add(6, Tool::Git, bench.measure(Tool::Git, vec![pull, push])?);
        let mut download = bench.rsync(&copy_a(Tool::Rsync));
        download.args(["-a", &rsync_remote, "./"]);
        let mut upload = bench.rsync(&copy_a(Tool::Rsync));
        upload.args(["-a", "./", &rsync_remote]);
        results.add(
            6,
            Tool::Rsync,
            bench.measure(Tool::Rsync, vec![download, upload])?,
        );

        // Status with one change.
        let status_file = &files[status_index];
        let changed = edited(&status_file.bytes, 1_000_000 + run);
        let mut mtimes = Vec::new();
        for tool in TOOLS {
            let path = copy_a(tool).join(&status_file.path);
            let mtime = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(|e| e.to_string())?;
            mtimes.push(mtime);
            std::fs::write(&path, &changed).map_err(|e| e.to_string())?;
        }
        let mut status = bench.cairn(&copy_a(Tool::Cairn));
        status.arg("status");
        results.add(7, Tool::Cairn, bench.measure(Tool::Cairn, vec![status])?);
        let mut status = bench.git(&copy_a(Tool::Git));
        status.arg("status");
        results.add(7, Tool::Git, bench.measure(Tool::Git, vec![status])?);
        let mut dry_run = bench.rsync(&copy_a(Tool::Rsync));
        dry_run.args(["-an", "--itemize-changes", "./", &rsync_remote]);
        results.add(7, Tool::Rsync, bench.measure(Tool::Rsync, vec![dry_run])?);
        // Changed back, modification time included, so the next run's upload is one file again.
        for (tool, mtime) in TOOLS.into_iter().zip(mtimes) {
            let path = copy_a(tool).join(&status_file.path);
            std::fs::write(&path, &status_file.bytes).map_err(|e| e.to_string())?;
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_modified(mtime))
                .map_err(|e| e.to_string())?;
        }
    }
    drop(daemons);

    let report = report(options, &results, files.len(), total);
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let suffix = if options.direct { "-direct" } else { "" };
    let path = out.join(format!("sync-{}{suffix}.md", today()));
    std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
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

fn bytes(count: u64) -> String {
    if count >= 10_000_000 {
        format!("{:.1} MB", count as f64 / 1e6)
    } else if count >= 10_000 {
        format!("{:.1} kB", count as f64 / 1e3)
    } else {
        format!("{count} B")
    }
}

fn ratio(cairn: f64, other: f64) -> String {
    if other == 0.0 {
        if cairn == 0.0 {
            "=".into()
        } else {
            "–".into()
        }
    } else {
        format!("{:.2}", cairn / other)
    }
}

/// A Markdown table with a row per operation: each tool's cell as `cell` writes it, then
/// cairn's ratio to git and to rsync of the number `cell` gives beside the text.
fn table(out: &mut String, results: &Results, cell: impl Fn(&Samples) -> (String, f64)) {
    let _ = writeln!(
        out,
        "| operation | cairn | git | rsync | cairn/git | cairn/rsync |\n|---|---:|---:|---:|---:|---:|"
    );
    for (index, operation) in OPERATIONS.iter().enumerate() {
        let cells: Vec<(String, f64)> = results.cells[index].iter().map(&cell).collect();
        let mut row = format!("| {operation} |");
        for (text, _) in &cells {
            let _ = write!(row, " {text} |");
        }
        let _ = write!(
            row,
            " {} | {} |",
            ratio(cells[0].1, cells[1].1),
            ratio(cells[0].1, cells[2].1)
        );
        let _ = writeln!(out, "{row}");
    }
}

fn report(options: &Options, results: &Results, files: usize, total: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Cairn vs git vs rsync on loopback ({})\n", today());
    let _ = writeln!(
        out,
        "Corpus: {files} files, {:.1} MB ({SMALL_FILES} JSON documents of 0.5–24 KiB in nested folders, {LARGE_FILES} × {} MB). \
         Median of {} runs for the initial upload and download, {} runs for the small operations; \
         each time is one or more whole client processes. {}\n",
        total as f64 / 1e6,
        LARGE_SIZE / 1_000_000,
        options.runs,
        options.small_runs,
        if options.direct {
            "Clients talked to the daemons directly (--direct): no byte counts."
        } else {
            "Every client went through the same byte-counting TCP relay (TCP_NODELAY) in front of its daemon."
        }
    );
    let _ = writeln!(out, "## Wall time, median ms (min–max)\n");
    table(&mut out, results, |samples| {
        let (low, high) = samples.range();
        let median = samples.median_wall();
        let text = format!("{} ({}–{})", ms(median), ms(low), ms(high));
        (text, median.as_secs_f64())
    });
    if !options.direct {
        let _ = writeln!(
            out,
            "\n## Bytes on the wire (median run; both directions, TCP payload), round trips, connections\n"
        );
        table(&mut out, results, |samples| {
            let wire = samples.median_wire();
            let text = format!(
                "{} (↑{} ↓{}; {} rt, {} conn)",
                bytes(wire.up + wire.down),
                bytes(wire.up),
                bytes(wire.down),
                wire.turns,
                wire.connections
            );
            (text, (wire.up + wire.down) as f64)
        });
    }
    let _ = writeln!(
        out,
        "\n## What each cell runs\n\n\
         - initial upload: cairn `init` of a fresh working copy of an empty project (not timed), then `cairn push` (hashing, chunking, compression and upload); \
         git `git add -A` + `git commit` + `git push` to a fresh bare repository over git://; rsync `rsync -a` into a fresh module folder.\n\
         - initial upload, transfer only: the same, but git's `add` and `commit` left out (only `git push`).\n\
         - initial download: `cairn clone`, `git clone`, `rsync -a` from the module into an empty folder.\n\
         - one-line edit pushed: one line of a 4 KiB JSON file changed, then `cairn push`; `git commit -a` + `git push`; `rsync -a` upload of the folder.\n\
         - …, transfer only: git's `commit -a` left out.\n\
         - that edit pulled: `cairn pull`; `git pull --ff-only` (fetch + merge); `rsync -a` download of the module, in the second copy.\n\
         - no-op sync: `cairn sync`; `git pull --ff-only` + `git push`; `rsync -a` down then up.\n\
         - status with one change: `cairn status`; `git status`; `rsync -an --itemize-changes` (a dry-run upload, the only way rsync can tell).\n\n\
         rt = request/response turns: times data flowed server → client after client → server, summed over connections."
    );
    out
}
