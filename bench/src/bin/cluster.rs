//! A cluster behind HAProxy (issue 12): cache hit rate and pull latency with the shipped
//! affinity (a consistent hash of the project id) against round robin, and what the first
//! requests for a project cost on the node that inherits it when its owner dies. S3 is a
//! round trip of 20 ms away ([`LatencyRelay`], as in the storage benchmark).
//!
//! ```text
//! cargo run --release -p cairn-bench --bin cluster [-- --runs 5 --projects 12 --rounds 3 \
//!     --failovers 2 --rtt 20 --cache-bytes BYTES --keep --no-build]
//! ```
//!
//! It first runs `cargo build --release -p sync-server -p sync-client` (same target folder; skip
//! with `--no-build`), then, in a temporary folder (`$TMPDIR`, else /tmp) and only on loopback:
//!
//! - finds PostgreSQL (`$DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres;
//!   `psql` on the PATH) and creates one database, `cairn_cluster_bench_<pid>`, dropped at the
//!   end; starts `s3s-fs` (`$CAIRN_S3S_FS`, the PATH or ~/.cargo/bin) on a fresh folder with one
//!   bucket, behind a [`LatencyRelay`] adding `--rtt` ms (20) to every S3 round trip; finds
//!   HAProxy (`$CAIRN_HAPROXY`, the PATH or /usr/sbin/haproxy);
//! - runs three `sync-server serve` nodes in production mode at 127.0.0.2, .3 and .4 (one host
//!   each, as on three machines; ports picked once and reused, so the balancer's configuration
//!   and the working copies never change), all on that database and bucket;
//! - creates `--projects` projects (12), each a deterministic corpus of 482 files, about
//!   4.7 MiB (480 JSON documents of 0.5–24 KiB in nested folders and two 1 MB attachments, one
//!   JSON, one of random bytes; `project_tree` with a seed per project), and pushes each once
//!   through the balancer from its writer's working copy (setup, not timed);
//! - then, `--runs` times (5), both modes, taking turns at going first:
//!   - **affinity**: HAProxy with `deploy/haproxy.cfg` exactly as shipped (`-db -f`, with
//!     `CAIRN_HAPROXY_LISTEN`, `CAIRN_NODE1..3`, `CAIRN_HAPROXY_STATS`, and the names they had
//!     before, `CAIRN_LISTEN` and `CAIRN_STATS`);
//!   - **round robin**: the same file with `balance roundrobin` in place of `balance uri
//!     path-only depth 3`, and `hash-type consistent` and `hash-balance-factor 150` commented
//!     out, written to `haproxy-roundrobin.cfg` in the temporary folder (checks, retries and
//!     timeouts as shipped);
//!
//!   each mode on three fresh node processes (caches start cold and identical; the store and
//!   catalog are shared, so both modes serve the same projects):
//!   1. each project's reader clones it through the balancer (timed, reported as context);
//!   2. `--rounds` rounds (3): for each project, in one fixed shuffled order, the writer
//!      pushes a one-line edit of a random small file (`edited`), 0–2 other requests pass the
//!      balancer, the reader runs `cairn pull` (timed as a whole process; its content checked).
//!      Files and interleaved requests come from a generator seeded per run: both modes of a
//!      run do exactly the same work;
//!   3. in affinity mode, `--failovers` times (2): a failover (below);
//! - reads every node's `/metrics` before and after every `cairn` process, once the counters
//!   have stopped moving (the same twice 150 ms apart), and attributes the deltas to it:
//!   cache hits and misses (`cairn_cache_hits_total`, `cairn_cache_misses_total`), evictions,
//!   S3 requests by kind (`cairn_store_*_requests_total`), API requests and their time to the
//!   response head (`cairn_http_request*`, routes under `/v1/`), which also tells which node
//!   answered;
//! - prints a markdown table and writes it to `bench/out/cluster-<date>.md`: per mode, the
//!   median over runs of each run's pull median and p90, server time, push median, cache hit
//!   rate (pulls alone, and pushes and pulls), S3 GETs per pull and per push, the share of
//!   pulls that needed no S3 request and of pulls answered by the node that took the push;
//!   the ratio round robin / affinity computed within each run (side by side, so the machine's
//!   noise of the moment weighs on both), median over runs; every run's pull figures; and the
//!   failover table. It asserts nothing about timing.
//!
//! The failover, in affinity mode after the rounds: a node that owns at least two projects (A
//! and B; ownership seen in which node answered their pulls; the victim takes turns among the
//! nodes) is warmed (an edit of each pushed and pulled, a clone of A timed), an edit of B is
//! pushed to it and not pulled, then it is SIGKILLed. The bench polls HAProxy's statistics CSV
//! (`GET /;csv` on the statistics address, chunked) until the node is DOWN, then times: B's pull (the
//! inheriting node's first request for B, so everything it needs is cold), an edit of A pushed
//! (the inheritor's first request for A) and its pull, a second edit's pull (warm), a clone of
//! A (loads A's packs whole on the inheritor), pushes one more edit of A (to the inheritor);
//! then restarts the node at its address, waits for UP, and times the pull of that edit back
//! on it (its first request for A since the restart: its cache is empty again). Which node
//! answered is checked: no request may reach the killed node.
//!
//! Choices, and why:
//!
//! - **Cache size.** Both modes get the same cache per node: by default the stored bytes of
//!   all projects (counted by the nodes during setup, about 2 MiB a project) divided by 1.5,
//!   rounded up to a MiB (`--cache-bytes` to set it). That is the premise of affinity: a node
//!   caches its third of the projects, and all of them together would not fit in one node,
//!   as round robin would need. The reader clones at the start of a mode load whole projects
//!   (a clone on a node that never saw the project reads its packs whole when they take at
//!   most half the cache), so this is where the cache fills. A one-line edit's pull only reads
//!   the dirs on the edited path and the edited file's objects, a working set far smaller than
//!   the cache in either mode: what round robin loses here is not capacity but locality (the
//!   push wrote its new objects through the cache of the node that took it, and only that
//!   node's). Evictions are reported to show whether the cache size mattered at all.
//! - **Fresh nodes per mode** rather than one set of nodes for both: each mode starts cold,
//!   nothing one mode loaded helps the other, and a mode's order in the run (alternated) is
//!   the only asymmetry left.
//! - **Interleaved requests.** A push and a pull are one API request each; with a single
//!   client, round robin would send every pull to the node after the push's, never to the
//!   same one. With many clients the rotation is effectively random, so 0–2 `GET /healthz`
//!   (seeded, identical in both modes) pass the balancer between the push and the pull, and
//!   the pull lands on the pushing node about one time in three. The share is reported.
//! - **Timing whole `cairn` processes**, as a user waits for them (process start, reading the
//!   working copy's state, one HTTP exchange through HAProxy, writing the file); the server's
//!   own time is reported beside it. The clone warm-up is not part of the comparison.
//! - **Not timed**: the setup pushes, the metrics reads, the waits for HAProxy's states.
//!
//! What an S3 read costs here: s3s-fs writes a response's head and body separately and does
//! not set TCP_NODELAY, so had the relay acknowledged late (Linux's delayed ACK, up to 40 ms)
//! each ranged GET's body would arrive about 40 ms after its head, which no real S3 costs. The
//! relay sets TCP_QUICKACK after every read (see `latency_relay`), so a read costs the round
//! trip and the transfer, as it should.
//!
//! `--keep` keeps the temporary folder and the database: the working copies, `logs/` with each
//! node's log per mode and run (one line per HTTP request, with its time on the server), each
//! HAProxy's log, `haproxy-roundrobin.cfg`, and the relay's trace of every chunk to and from S3
//! (`s3-relay.log`, written only with `--keep`). `TMPDIR=/dev/shm` takes the local disk out of
//! the times.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use cairn_bench::latency_relay::LatencyRelay;
use cairn_bench::processes::{
    Daemon, binary_dir, build_binaries, create_bench_account, free_port, free_port_on,
    http_get_from, remove, run_command, today, value_of, wait_for_port,
};
use cairn_bench::services::{Database, find_binary, postgres_admin_url, server_command};
use cairn_bench::{Rng, TreeFile, edited, project_tree, write_tree};

type Result<T> = std::result::Result<T, String>;

const SEED: u64 = 0xc1_05_7e_12;
/// Per project: small JSON documents (0.5–24 KiB) in nested folders...
const SMALL_FILES: usize = 480;
/// ...and two 1 MB attachments, one JSON, one of random bytes.
const LARGE_FILES: usize = 2;
const LARGE_SIZE: usize = 1_000_000;
/// The nodes' loopback addresses: one host each, as on three machines (as the cluster test).
const NODE_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
];
/// With no `--cache-bytes`, each node's cache is the stored size of all projects divided by
/// this: the working set exceeds one node's cache and fits in three.
const CACHE_SHARE: f64 = 1.5;
/// The server's default cache size, used while setting up (before the bench picks its own).
const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
const PASSWORD: &str = "bench-password-1";
const S3_ACCESS_KEY: &str = "cairn-bench";
const S3_SECRET_KEY: &str = "cairn-bench-secret";
const S3_REGION: &str = "us-east-1";
const BUCKET: &str = "cairn-cluster-bench";
const MIB: f64 = 1024.0 * 1024.0;
/// How long a node, HAProxy or a state change gets before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(30);

fn main() {
    if let Err(error) = run() {
        eprintln!("cluster bench: error: {error}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone)]
struct Options {
    runs: usize,
    projects: usize,
    rounds: usize,
    failovers: usize,
    round_trip_ms: u64,
    cache_bytes: Option<u64>,
    keep: bool,
    build: bool,
}

const USAGE: &str = "usage: cluster [--runs N (default 5)] [--projects P (default 12)] \
[--rounds R (default 3)] [--failovers F per run (default 2)] [--rtt MS (default 20)] \
[--cache-bytes BYTES (default: all projects' stored bytes / 1.5)] [--keep] [--no-build]";

fn options() -> Result<Options> {
    let mut options = Options {
        runs: 5,
        projects: 12,
        rounds: 3,
        failovers: 2,
        round_trip_ms: 20,
        cache_bytes: None,
        keep: false,
        build: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str, zero: bool| -> Result<u64> {
            args.next()
                .and_then(|value| value.parse().ok())
                .filter(|&value| zero || value > 0)
                .ok_or_else(|| format!("{name} needs a number{}", if zero { "" } else { " > 0" }))
        };
        match arg.as_str() {
            "--runs" => options.runs = number("--runs", false)? as usize,
            "--projects" => options.projects = number("--projects", false)? as usize,
            "--rounds" => options.rounds = number("--rounds", false)? as usize,
            "--failovers" => options.failovers = number("--failovers", true)? as usize,
            "--rtt" => options.round_trip_ms = number("--rtt", true)?,
            "--cache-bytes" => options.cache_bytes = Some(number("--cache-bytes", false)?),
            "--keep" => options.keep = true,
            "--no-build" => options.build = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if options.projects < 3 {
        return Err("--projects needs at least 3 (a node to kill must own two)".into());
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// The services: PostgreSQL (found), s3s-fs and HAProxy (started).

/// The shipped balancer configuration.
fn shipped_haproxy_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg")
}

/// The shipped configuration with round robin in place of the hash on the project: the
/// `balance` line replaced, `hash-type` and `hash-balance-factor` commented out (they only
/// apply to hashing), everything else (health checks, retries, timeouts) as shipped.
fn round_robin_config(shipped: &str) -> Result<String> {
    let mut out = String::from(
        "# Written by the cluster benchmark: deploy/haproxy.cfg with `balance roundrobin` in place\n\
         # of the hash on the project id. Nothing else differs.\n",
    );
    let mut replaced = [0; 3];
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with("balance ") {
            replaced[0] += 1;
            let _ = writeln!(
                out,
                "{indent}balance roundrobin  # bench; shipped: {trimmed}"
            );
        } else if trimmed.starts_with("hash-type ") {
            replaced[1] += 1;
            let _ = writeln!(out, "{indent}# bench, removed: {trimmed}");
        } else if trimmed.starts_with("hash-balance-factor ") {
            replaced[2] += 1;
            let _ = writeln!(out, "{indent}# bench, removed: {trimmed}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    if replaced != [1, 1, 1] {
        return Err(format!(
            "deploy/haproxy.cfg changed: expected one balance, hash-type and hash-balance-factor \
             line each, found {replaced:?}"
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// One node's counters, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    get: u64,
    put: u64,
    head: u64,
    list: u64,
    delete: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    /// API requests answered (routes under `/v1/`; health checks and metrics left out).
    requests: u64,
    /// Time to the response head of those requests, summed, in microseconds.
    micros: u64,
    bytes_stored: u64,
}

impl Counters {
    fn parse(metrics: &str) -> Result<Counters> {
        let value = |name: &str| -> Result<u64> {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
                .ok_or_else(|| format!("no {name} in the metrics"))
        };
        let mut requests = 0u64;
        let mut seconds = 0.0f64;
        for line in metrics.lines() {
            if let Some(rest) = line.strip_prefix("cairn_http_requests_total{")
                && rest.contains("route=\"/v1/")
            {
                let count = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                requests += count.ok_or_else(|| format!("bad metrics line {line:?}"))?;
            }
            if let Some(rest) =
                line.strip_prefix("cairn_http_request_duration_seconds_sum{route=\"/v1/")
            {
                let sum = rest
                    .split_once("\"} ")
                    .and_then(|(_, v)| v.trim().parse::<f64>().ok());
                seconds += sum.ok_or_else(|| format!("bad metrics line {line:?}"))?;
            }
        }
        Ok(Counters {
            get: value("cairn_store_get_requests_total")?,
            put: value("cairn_store_put_requests_total")?,
            head: value("cairn_store_head_requests_total")?,
            list: value("cairn_store_list_requests_total")?,
            delete: value("cairn_store_delete_requests_total")?,
            hits: value("cairn_cache_hits_total")?,
            misses: value("cairn_cache_misses_total")?,
            evictions: value("cairn_cache_evictions_total")?,
            requests,
            micros: (seconds * 1e6).round() as u64,
            bytes_stored: value("cairn_object_bytes_stored_total")?,
        })
    }

    fn s3_requests(&self) -> u64 {
        self.get + self.put + self.head + self.list + self.delete
    }
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, before: Counters) -> Counters {
        Counters {
            get: self.get.saturating_sub(before.get),
            put: self.put.saturating_sub(before.put),
            head: self.head.saturating_sub(before.head),
            list: self.list.saturating_sub(before.list),
            delete: self.delete.saturating_sub(before.delete),
            hits: self.hits.saturating_sub(before.hits),
            misses: self.misses.saturating_sub(before.misses),
            evictions: self.evictions.saturating_sub(before.evictions),
            requests: self.requests.saturating_sub(before.requests),
            micros: self.micros.saturating_sub(before.micros),
            bytes_stored: self.bytes_stored.saturating_sub(before.bytes_stored),
        }
    }
}

impl std::ops::Add for Counters {
    type Output = Counters;
    fn add(self, other: Counters) -> Counters {
        Counters {
            get: self.get + other.get,
            put: self.put + other.put,
            head: self.head + other.head,
            list: self.list + other.list,
            delete: self.delete + other.delete,
            hits: self.hits + other.hits,
            misses: self.misses + other.misses,
            evictions: self.evictions + other.evictions,
            requests: self.requests + other.requests,
            micros: self.micros + other.micros,
            bytes_stored: self.bytes_stored + other.bytes_stored,
        }
    }
}

impl std::iter::Sum for Counters {
    fn sum<I: Iterator<Item = Counters>>(iter: I) -> Counters {
        iter.fold(Counters::default(), |a, b| a + b)
    }
}

/// One operation: a whole `cairn` process, and what each node did for it.
#[derive(Debug, Clone, Copy)]
struct Op {
    wall: Duration,
    /// Per node: the counters' change from before the process started until they settled
    /// after it exited (zero for a node that was down).
    nodes: [Counters; 3],
}

impl Op {
    fn total(&self) -> Counters {
        self.nodes.iter().copied().sum()
    }

    /// The node that answered most of its API requests.
    fn node(&self) -> Option<usize> {
        (0..3)
            .filter(|&i| self.nodes[i].requests > 0)
            .max_by_key(|&i| self.nodes[i].requests)
    }

    fn server(&self) -> Duration {
        Duration::from_micros(self.total().micros)
    }
}

/// How requests are spread over the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The shipped configuration: consistent hash of the project id, bounded load.
    Affinity,
    /// The same with `balance roundrobin`.
    RoundRobin,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Affinity => "affinity",
            Mode::RoundRobin => "round robin",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Mode::Affinity => "affinity",
            Mode::RoundRobin => "roundrobin",
        }
    }
}

/// One project: its corpus, the writer's working copy (made once) and the reader's (cloned
/// afresh in each mode).
#[derive(Debug)]
struct Project {
    id: String,
    files: Vec<TreeFile>,
    writer: PathBuf,
    reader: PathBuf,
}

/// What every mode shares: binaries, folders, addresses, the services.
#[derive(Debug)]
struct Bench {
    options: Options,
    bin: PathBuf,
    haproxy: PathBuf,
    root: PathBuf,
    client_config: PathBuf,
    variables: Vec<(&'static str, String)>,
    nodes: [SocketAddr; 3],
    balancer: SocketAddr,
    stats: SocketAddr,
    cache_bytes: u64,
    projects: Vec<Project>,
    /// Numbers the edits, so each one changes its file.
    edits: usize,
    /// Every operation, one line each (`ops.tsv`).
    ops_log: std::fs::File,
    // Dropped last: the relay and the database outlive every process.
    _relay: LatencyRelay,
    _database: Database,
}

impl Bench {
    fn cairn(&self, dir: &Path) -> Command {
        let mut command = Command::new(self.bin.join("cairn"));
        command
            .current_dir(dir)
            .env("CAIRN_CONFIG", &self.client_config);
        command
    }

    fn balancer_url(&self) -> String {
        format!("http://{}", self.balancer)
    }

    fn server(&self, args: &[&str]) -> Command {
        server_command(&self.bin, &self.root, PASSWORD, &self.variables, args)
    }

    fn admin(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["admin"];
        full.extend_from_slice(args);
        run_command(&mut self.server(&full))
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    /// Starts node `index` (`tag` names its log) with the bench's cache size; returns once it
    /// is ready.
    fn start_node(&self, index: usize, tag: &str) -> Result<Daemon> {
        let address = self.nodes[index];
        let log = self.log(&format!("node{}-{tag}", index + 1));
        let mut command = self.server(&[
            "serve",
            "--listen",
            &address.to_string(),
            "--cache-bytes",
            &self.cache_bytes.to_string(),
        ]);
        let mut daemon = Daemon::start(&format!("node{}", index + 1), &mut command, Some(&log))?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            daemon
                .check_running()
                .map_err(|e| format!("{e}; see {}", log.display()))?;
            if let Ok((200, _)) = http_get_from(address, "/readyz") {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node{} not ready within {PATIENCE:?}; see {}",
                    index + 1,
                    log.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Three fresh nodes (cold caches) and HAProxy in `mode` in front of them, all three UP.
    fn start_cluster(&self, mode: Mode, tag: &str) -> Result<Cluster> {
        let mut nodes = [None, None, None];
        for (index, node) in nodes.iter_mut().enumerate() {
            *node = Some(self.start_node(index, tag)?);
        }
        let config = match mode {
            Mode::Affinity => shipped_haproxy_config(),
            Mode::RoundRobin => self.root.join("haproxy-roundrobin.cfg"),
        };
        let mut command = Command::new(&self.haproxy);
        command
            .arg("-db")
            .arg("-f")
            .arg(&config)
            // Both spellings: the variables were CAIRN_LISTEN and CAIRN_STATS before they
            // were renamed to leave CAIRN_LISTEN to the nodes.
            .env("CAIRN_HAPROXY_LISTEN", self.balancer.to_string())
            .env("CAIRN_HAPROXY_STATS", self.stats.to_string())
            .env("CAIRN_LISTEN", self.balancer.to_string())
            .env("CAIRN_STATS", self.stats.to_string())
            .env("CAIRN_NODE1", self.nodes[0].to_string())
            .env("CAIRN_NODE2", self.nodes[1].to_string())
            .env("CAIRN_NODE3", self.nodes[2].to_string());
        let haproxy = Daemon::start(
            "haproxy",
            &mut command,
            Some(&self.log(&format!("haproxy-{tag}"))),
        )?;
        wait_for_port(self.balancer.port(), "haproxy")?;
        let mut cluster = Cluster {
            nodes,
            haproxy,
            addresses: self.nodes,
            stats: self.stats,
            settled: None,
        };
        cluster.wait_for_state(&|states| states.iter().all(|s| s == "UP"), "all UP")?;
        Ok(cluster)
    }

    /// Lets `cairn` use `token` on the balancer's URL: the user config file (mode 0600).
    fn authorize(&self, token: &str) -> Result<()> {
        let text = format!(
            "[servers.\"{}\"]\ntoken = \"{token}\"\n",
            self.balancer_url()
        );
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

    /// Writes a one-line edit of file `index` of project `project` into its writer's copy:
    /// the file's path and new bytes.
    fn edit(&mut self, project: usize, index: usize) -> Result<(String, Vec<u8>)> {
        self.edits += 1;
        let project = &self.projects[project];
        let file = &project.files[index];
        let bytes = edited(&file.bytes, self.edits);
        std::fs::write(project.writer.join(&file.path), &bytes).map_err(|e| e.to_string())?;
        Ok((file.path.clone(), bytes))
    }

    /// The writer pushes a one-line edit of file `index`; `between` requests of other clients
    /// pass through the balancer; the reader pulls. Both timed; the reader's copy is checked.
    fn edit_round_trip(
        &mut self,
        cluster: &mut Cluster,
        project: usize,
        index: usize,
        between: u64,
    ) -> Result<(Op, Op)> {
        let (path, bytes) = self.edit(project, index)?;
        let push = self.push(cluster, project)?;
        for _ in 0..between {
            let (status, _) = http_get_from(self.balancer, "/healthz")?;
            if status != 200 {
                return Err(format!("GET /healthz through HAProxy answered {status}"));
            }
        }
        let pull = self.pull_checked(cluster, project, &path, &bytes)?;
        Ok((push, pull))
    }

    /// The reader pulls, timed; its copy of `path` must then hold `bytes`.
    fn pull_checked(
        &self,
        cluster: &mut Cluster,
        project: usize,
        path: &str,
        bytes: &[u8],
    ) -> Result<Op> {
        let pull = self.pull(cluster, project)?;
        let reader = &self.projects[project].reader;
        if std::fs::read(reader.join(path)).map_err(|e| e.to_string())? != bytes {
            return Err(format!(
                "project {project}: the reader's copy did not receive the edit of {path}"
            ));
        }
        Ok(pull)
    }

    /// Appends one operation to `ops.tsv` in the temporary folder (kept with `--keep`).
    fn note(&self, context: &str, project: usize, op: &Op) {
        let total = op.total();
        let per_node: Vec<String> = op.nodes.iter().map(|c| c.requests.to_string()).collect();
        let _ = writeln!(
            &self.ops_log,
            "{context}\t{project}\t{:.1}\t{:.1}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            op.wall.as_secs_f64() * 1e3,
            op.server().as_secs_f64() * 1e3,
            op.node().map_or("-".into(), |n| format!("node{}", n + 1)),
            per_node.join("/"),
            total.get,
            total.put,
            total.hits,
            total.misses,
            total.evictions,
        );
    }

    fn push(&self, cluster: &mut Cluster, project: usize) -> Result<Op> {
        let mut push = self.cairn(&self.projects[project].writer);
        push.args(["push", "-m", "edit"]);
        cluster.measure(push)
    }

    fn pull(&self, cluster: &mut Cluster, project: usize) -> Result<Op> {
        let mut pull = self.cairn(&self.projects[project].reader);
        pull.arg("pull");
        cluster.measure(pull)
    }

    /// A clone of project `project` through the balancer into `dir` (replaced), timed.
    fn clone_into(&self, cluster: &mut Cluster, project: usize, dir: &Path) -> Result<Op> {
        remove(dir)?;
        let mut clone = self.cairn(&self.root);
        clone
            .args([
                "clone",
                "--server",
                &self.balancer_url(),
                "--project",
                &self.projects[project].id,
            ])
            .arg(dir);
        let op = cluster.measure(clone)?;
        // Edited files differ from the corpus by design; a missing one would be an error.
        if let Some(file) = self.projects[project]
            .files
            .iter()
            .find(|file| !dir.join(&file.path).is_file())
        {
            return Err(format!(
                "the clone of project {project} lacks {}",
                file.path
            ));
        }
        Ok(op)
    }
}

/// Three nodes (some may be down) and HAProxy in front of them.
#[derive(Debug)]
struct Cluster {
    // Fields drop in order: the nodes before HAProxy (either order is fine: both are killed).
    nodes: [Option<Daemon>; 3],
    haproxy: Daemon,
    addresses: [SocketAddr; 3],
    stats: SocketAddr,
    /// Every node's counters when they last settled, while no node has started or stopped
    /// since (what the next operation starts from).
    settled: Option<[Option<Counters>; 3]>,
}

impl Cluster {
    fn counters(&mut self) -> Result<[Option<Counters>; 3]> {
        let mut out = [None; 3];
        for (index, node) in self.nodes.iter_mut().enumerate() {
            let Some(node) = node else { continue };
            node.check_running()?;
            let (status, body) = http_get_from(self.addresses[index], "/metrics")?;
            if status != 200 {
                return Err(format!("node{}/metrics answered {status}", index + 1));
            }
            out[index] = Some(Counters::parse(&body)?);
        }
        Ok(out)
    }

    /// The counters once they have stopped moving (the same twice, 150 ms apart): whatever a
    /// node still does after the client exits belongs to the operation that caused it.
    fn settle(&mut self) -> Result<[Option<Counters>; 3]> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = self.counters()?;
        loop {
            thread::sleep(Duration::from_millis(150));
            let now = self.counters()?;
            if now == last {
                return Ok(now);
            }
            if Instant::now() > deadline {
                return Err("the nodes' counters still moving after 60 s".into());
            }
            last = now;
        }
    }

    /// Runs `command` (a whole `cairn` process) as one operation.
    fn measure(&mut self, mut command: Command) -> Result<Op> {
        let before = match self.settled.take() {
            Some(before) => before,
            None => self.settle()?,
        };
        let start = Instant::now();
        run_command(&mut command)?;
        let wall = start.elapsed();
        let after = self.settle()?;
        self.settled = Some(after);
        let mut nodes = [Counters::default(); 3];
        for index in 0..3 {
            if let (Some(before), Some(after)) = (before[index], after[index]) {
                nodes[index] = after - before;
            }
        }
        Ok(Op { wall, nodes })
    }

    /// Each node's state as HAProxy sees it (`UP`, `DOWN`, `UP 1/2`, ...), from its statistics
    /// page's CSV, in the configuration's order.
    fn states(&self) -> Result<Vec<String>> {
        let (status, body) = http_get_from(self.stats, "/;csv")?;
        if status != 200 {
            return Err(format!("HAProxy's statistics answered {status}"));
        }
        let mut lines = body.lines();
        let header = lines.next().ok_or("empty HAProxy statistics")?;
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| {
            columns
                .iter()
                .position(|column| *column == name)
                .ok_or_else(|| format!("no {name} column in HAProxy's statistics"))
        };
        let (proxy, server, state) = (column("pxname")?, column("svname")?, column("status")?);
        let mut states = BTreeMap::new();
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(proxy) == Some(&"nodes")
                && let (Some(name), Some(value)) = (fields.get(server), fields.get(state))
                && name.starts_with("node")
            {
                states.insert(name.to_string(), value.to_string());
            }
        }
        Ok(states.into_values().collect())
    }

    /// Waits until HAProxy's node states satisfy `done`; how long that took.
    fn wait_for_state(&mut self, done: &dyn Fn(&[String]) -> bool, what: &str) -> Result<Duration> {
        let start = Instant::now();
        loop {
            self.haproxy.check_running()?;
            let states = self.states().unwrap_or_default();
            if states.len() == 3 && done(&states) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > PATIENCE {
                return Err(format!(
                    "HAProxy's nodes are {states:?}, not {what}, after {PATIENCE:?}"
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILLs node `index`.
    fn kill(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.stop();
        }
        self.settled = None;
    }
}

// ---------------------------------------------------------------------------------------------
// The workload.

/// What one mode measured in one run.
#[derive(Debug)]
struct ModeRun {
    mode: Mode,
    /// Whether this mode went first in its run.
    first: bool,
    clones: Vec<Op>,
    pushes: Vec<Op>,
    pulls: Vec<Op>,
    /// Per pair: the pull was answered by the node that took the push.
    same_node: Vec<bool>,
    /// Projects whose pulls went to each node (affinity: their owners).
    owners: BTreeMap<usize, usize>,
    /// Each node's cache evictions over the whole mode (clones included).
    evictions: u64,
    failovers: Vec<Failover>,
}

/// One owner killed and what followed.
#[derive(Debug, Clone)]
struct Failover {
    victim: usize,
    /// Before the kill, on the owner: a pull of an edit, and a clone.
    owner_pull: Op,
    owner_clone: Op,
    /// SIGKILL to DOWN on HAProxy's statistics page.
    down_after: Duration,
    /// The first pull of project B on its inheriting node (the edit pushed before the kill, so
    /// the pull is the inheritor's first request for the project).
    cold_pull: Op,
    /// Project A: an edit pushed after the kill (the inheritor's first request for it), the
    /// pull of that edit, then a second edit's pull (warm), and a clone.
    first_push: Op,
    first_pull: Op,
    warm_pull: Op,
    cold_clone: Op,
    /// Project A again once the owner is back (restarted, UP): its first pull there.
    back_pull: Op,
    /// SIGKILL to the owner's return (restart, ready, UP again).
    back_after: Duration,
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
    let haproxy = find_binary(
        "haproxy",
        "CAIRN_HAPROXY",
        "/usr/sbin/haproxy",
        "apt-get install haproxy",
    )?;

    let keep = options.keep;
    let root = std::env::temp_dir().join(format!("cairn-cluster-bench-{}", std::process::id()));
    remove(&root)?;
    for dir in ["s3", "logs", "work"] {
        std::fs::create_dir_all(root.join(dir)).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(root.join("s3").join(BUCKET)).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let outcome = (|| -> Result<()> {
        let s3_port = free_port()?;
        let _s3s_fs = Daemon::start(
            "s3s-fs",
            Command::new(&s3s_fs)
                .args(["--host", "127.0.0.1", "--port", &s3_port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(root.join("s3")),
            Some(&root.join("logs").join("s3s-fs.log")),
        )?;
        wait_for_port(s3_port, "s3s-fs")?;
        let relay = LatencyRelay::start(
            SocketAddr::from(([127, 0, 0, 1], s3_port)),
            Duration::from_millis(options.round_trip_ms),
        )
        .map_err(|e| format!("starting the latency relay: {e}"))?;
        if keep {
            let trace = root.join("logs").join("s3-relay.log");
            relay
                .trace_to(&trace)
                .map_err(|e| format!("{}: {e}", trace.display()))?;
        }
        let database = Database::create(
            &postgres_admin_url,
            &format!("cairn_cluster_bench_{}", std::process::id()),
            keep,
        )?;
        // Empty AWS config and credentials files: nothing from the machine's own.
        let (aws_config, aws_credentials) = (root.join("aws-config"), root.join("aws-credentials"));
        for path in [&aws_config, &aws_credentials] {
            std::fs::write(path, "").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let variables = vec![
            ("DATABASE_URL", database.url.clone()),
            ("CAIRN_S3_ENDPOINT", relay.url()),
            ("CAIRN_S3_BUCKET", BUCKET.to_owned()),
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
        let mut nodes = [SocketAddr::from(([127, 0, 0, 1], 0)); 3];
        for (index, ip) in NODE_IPS.iter().enumerate() {
            let ip = IpAddr::V4(*ip);
            nodes[index] = SocketAddr::new(ip, free_port_on(ip)?);
        }
        let shipped = std::fs::read_to_string(shipped_haproxy_config())
            .map_err(|e| format!("deploy/haproxy.cfg: {e}"))?;
        let round_robin = root.join("haproxy-roundrobin.cfg");
        std::fs::write(&round_robin, round_robin_config(&shipped)?)
            .map_err(|e| format!("{}: {e}", round_robin.display()))?;
        let mut bench = Bench {
            cache_bytes: options.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES),
            options,
            bin,
            haproxy,
            root: root.clone(),
            client_config: root.join("cairn-client.toml"),
            variables,
            nodes,
            balancer: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            stats: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            projects: Vec::new(),
            edits: 0,
            ops_log: ops_log(&root)?,
            _relay: relay,
            _database: database,
        };
        bench_all(&mut bench, started)
    })();
    if keep {
        eprintln!("kept {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    outcome
}

fn ops_log(root: &Path) -> Result<std::fs::File> {
    let path = root.join("ops.tsv");
    let mut file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(
        file,
        "operation\tproject\twall ms\tserver ms\tnode\tAPI requests per node\tS3 GET\tS3 PUT\tcache hits\tcache misses\tevictions"
    )
    .map_err(|e| e.to_string())?;
    Ok(file)
}

/// Accounts, projects, the first push of every project through the balancer (not timed):
/// returns the stored bytes of all projects.
fn set_up(bench: &mut Bench) -> Result<u64> {
    create_bench_account(|args| bench.admin(args))?;
    let token = value_of(&bench.admin(&["create-token", "--user", "bench"])?, "token")?;
    bench.authorize(&token)?;
    let mut cluster = bench.start_cluster(Mode::Affinity, "setup")?;
    let mut stored = 0;
    for index in 0..bench.options.projects {
        let output = bench.admin(&[
            "create-project",
            "--team",
            "benchteam",
            "--name",
            &format!("project-{index:02}"),
        ])?;
        let id = value_of(&output, "project")?;
        let files = project_tree(SMALL_FILES, LARGE_FILES, LARGE_SIZE, SEED + index as u64);
        let writer = bench.root.join("work").join(format!("writer-{index:02}"));
        let reader = bench.root.join("work").join(format!("reader-{index:02}"));
        write_tree(&writer, &files)?;
        run_command(bench.cairn(&writer).args([
            "init",
            "--server",
            &bench.balancer_url(),
            "--project",
            &id,
        ]))?;
        let mut push = bench.cairn(&writer);
        push.args(["push", "-m", "initial"]);
        stored += cluster.measure(push)?.total().bytes_stored;
        bench.projects.push(Project {
            id,
            files,
            writer,
            reader,
        });
    }
    drop(cluster);
    Ok(stored)
}

fn bench_all(bench: &mut Bench, started: Instant) -> Result<()> {
    let load_before = load_average();
    let stored = set_up(bench)?;
    let corpus: usize = bench
        .projects
        .iter()
        .flat_map(|p| p.files.iter().map(|f| f.bytes.len()))
        .sum();
    bench.cache_bytes = match bench.options.cache_bytes {
        Some(bytes) => bytes,
        None => ((stored as f64 / CACHE_SHARE) / MIB).ceil() as u64 * (1 << 20),
    };
    eprintln!(
        "set up in {:.0} s: {} projects, {:.1} MiB of files, {:.1} MiB stored; cache {:.0} MiB per node",
        started.elapsed().as_secs_f64(),
        bench.projects.len(),
        corpus as f64 / MIB,
        stored as f64 / MIB,
        bench.cache_bytes as f64 / MIB
    );
    // One order of the projects for every round, mode and run.
    let mut order: Vec<usize> = (0..bench.projects.len()).collect();
    let mut shuffle = Rng::new(SEED);
    for i in (1..order.len()).rev() {
        order.swap(i, shuffle.below(i as u64 + 1) as usize);
    }
    let mut results: Vec<Vec<ModeRun>> = Vec::new();
    for run in 0..bench.options.runs {
        let modes = if run % 2 == 0 {
            [Mode::Affinity, Mode::RoundRobin]
        } else {
            [Mode::RoundRobin, Mode::Affinity]
        };
        let mut this_run = Vec::new();
        for (position, mode) in modes.into_iter().enumerate() {
            eprintln!(
                "run {}/{}: {} ({:.0} s so far)",
                run + 1,
                bench.options.runs,
                mode.label(),
                started.elapsed().as_secs_f64()
            );
            this_run.push(one_mode(bench, run, mode, position == 0, &order)?);
        }
        this_run.sort_by_key(|r| r.mode != Mode::Affinity);
        results.push(this_run);
    }
    let load_after = load_average();
    let report = report(
        bench,
        &results,
        corpus,
        stored,
        started.elapsed(),
        (load_before, load_after),
    );
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let path = out.join(format!("cluster-{}.md", today()));
    std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

/// One mode of one run, on fresh nodes: the readers clone, then `rounds` rounds of an edit
/// pushed and pulled per project, then (affinity) the failovers.
fn one_mode(
    bench: &mut Bench,
    run: usize,
    mode: Mode,
    first: bool,
    order: &[usize],
) -> Result<ModeRun> {
    let tag = format!("run{}-{}", run + 1, mode.slug());
    let mut cluster = bench.start_cluster(mode, &tag)?;
    let mut result = ModeRun {
        mode,
        first,
        clones: Vec::new(),
        pushes: Vec::new(),
        pulls: Vec::new(),
        same_node: Vec::new(),
        owners: BTreeMap::new(),
        evictions: 0,
        failovers: Vec::new(),
    };
    for &project in order {
        let reader = bench.projects[project].reader.clone();
        let op = bench.clone_into(&mut cluster, project, &reader)?;
        bench.note(&format!("{tag} clone"), project, &op);
        result.evictions += op.total().evictions;
        result.clones.push(op);
    }
    // The same files and the same interleaved traffic for both modes of a run.
    let mut rng = Rng::new(SEED ^ (run as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for round in 0..bench.options.rounds {
        for &project in order {
            let index = rng.below(SMALL_FILES as u64) as usize;
            let between = rng.below(3);
            let (push, pull) = bench.edit_round_trip(&mut cluster, project, index, between)?;
            bench.note(&format!("{tag} round{} push", round + 1), project, &push);
            bench.note(&format!("{tag} round{} pull", round + 1), project, &pull);
            result.evictions += push.total().evictions + pull.total().evictions;
            result
                .same_node
                .push(push.node().is_some() && push.node() == pull.node());
            if let Some(node) = pull.node() {
                result.owners.insert(project, node);
            }
            result.pushes.push(push);
            result.pulls.push(pull);
        }
    }
    if mode == Mode::Affinity {
        for index in 0..bench.options.failovers {
            let failover = failover(bench, &mut cluster, &result.owners, run, index, &tag)?;
            result.failovers.push(failover);
        }
    }
    Ok(result)
}

/// Kills the owner of two projects (A and B) and times what their inheriting nodes do first;
/// brings the owner back.
fn failover(
    bench: &mut Bench,
    cluster: &mut Cluster,
    owners: &BTreeMap<usize, usize>,
    run: usize,
    index: usize,
    tag: &str,
) -> Result<Failover> {
    let attempt = run * bench.options.failovers + index;
    let owned = |node: usize| -> Vec<usize> {
        owners
            .iter()
            .filter(|(_, owner)| **owner == node)
            .map(|(project, _)| *project)
            .collect()
    };
    // The victim takes turns among the nodes that own at least two projects.
    let candidates: Vec<usize> = (0..3).filter(|&node| owned(node).len() >= 2).collect();
    if candidates.is_empty() {
        return Err(format!("no node owns two projects: {owners:?}"));
    }
    let victim = candidates[attempt % candidates.len()];
    let projects = owned(victim);
    let a = projects[attempt % projects.len()];
    let b = projects[(attempt + 1) % projects.len()];
    let mut rng = Rng::new(SEED ^ 0xfa11 ^ attempt as u64);
    let mut file = || rng.below(SMALL_FILES as u64) as usize;
    eprintln!(
        "  failover {}: node{} owns projects {projects:?}; A = {a}, B = {b}",
        attempt + 1,
        victim + 1
    );
    // Before: warm pairs on the owner, a clone there, and B's edit pushed, not yet pulled.
    let (_, owner_pull) = bench.edit_round_trip(cluster, a, file(), 0)?;
    let (_, pull_b) = bench.edit_round_trip(cluster, b, file(), 0)?;
    for (project, op) in [(a, &owner_pull), (b, &pull_b)] {
        if op.node() != Some(victim) {
            return Err(format!(
                "project {project} went to node {:?}, not its owner node{}",
                op.node().map(|n| n + 1),
                victim + 1
            ));
        }
    }
    let clone_dir = bench.root.join("work").join("clone");
    let owner_clone = bench.clone_into(cluster, a, &clone_dir)?;
    bench.note(
        &format!("{tag} failover{} warm pull A", index + 1),
        a,
        &owner_pull,
    );
    bench.note(
        &format!("{tag} failover{} warm clone A", index + 1),
        a,
        &owner_clone,
    );
    let (path_b, bytes_b) = bench.edit(b, file())?;
    bench.push(cluster, b)?;

    let killed = Instant::now();
    cluster.kill(victim);
    let down_after = cluster.wait_for_state(&|states| states[victim] == "DOWN", "DOWN")?;
    let down_after = down_after.max(killed.elapsed());
    // B: the inheritor's first request for the project is this pull.
    let cold_pull = bench.pull_checked(cluster, b, &path_b, &bytes_b)?;
    // A: an edit pushed after the kill, then pulled; a second one; a clone.
    let (first_push, first_pull) = bench.edit_round_trip(cluster, a, file(), 0)?;
    let (_, warm_pull) = bench.edit_round_trip(cluster, a, file(), 0)?;
    let cold_clone = bench.clone_into(cluster, a, &clone_dir)?;
    // A's next edit, pushed while the owner is still down (to the inheritor).
    let (path_a, bytes_a) = bench.edit(a, file())?;
    let last_push = bench.push(cluster, a)?;
    let after_kill = [
        ("cold pull B", &cold_pull),
        ("first push A", &first_push),
        ("first pull A", &first_pull),
        ("warm pull A", &warm_pull),
        ("cold clone A", &cold_clone),
        ("push A while down", &last_push),
    ];
    for (what, op) in after_kill {
        bench.note(
            &format!("{tag} failover{} {what}", index + 1),
            if what.ends_with('B') { b } else { a },
            op,
        );
        if op.nodes[victim].requests > 0 || op.node().is_none() {
            return Err(format!(
                "a request reached node{} after it was killed",
                victim + 1
            ));
        }
    }
    // The owner back: restarted, ready, UP; A goes back to it, and the pull of that edit is
    // its first request for A since it restarted (an empty cache).
    cluster.nodes[victim] = Some(bench.start_node(victim, &format!("{tag}-restart{}", index + 1))?);
    cluster.settled = None;
    cluster.wait_for_state(&|states| states.iter().all(|s| s == "UP"), "all UP")?;
    let back_after = killed.elapsed();
    let back_pull = bench.pull_checked(cluster, a, &path_a, &bytes_a)?;
    bench.note(
        &format!("{tag} failover{} pull A back", index + 1),
        a,
        &back_pull,
    );
    if back_pull.node() != Some(victim) {
        return Err(format!(
            "project {a} went to node {:?}, not back to node{}",
            back_pull.node().map(|n| n + 1),
            victim + 1
        ));
    }
    Ok(Failover {
        victim,
        owner_pull,
        owner_clone,
        down_after,
        cold_pull,
        first_push,
        first_pull,
        warm_pull,
        cold_clone,
        back_pull,
        back_after,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// The report.

/// The value at quantile `q` (0.5 the median) of `values`, sorted in place.
fn quantile<T: Copy + PartialOrd>(values: &mut [T], q: f64) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let index = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[index]
}

fn median_f64(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

fn walls(ops: &[Op]) -> Vec<Duration> {
    ops.iter().map(|op| op.wall).collect()
}

fn hit_rate(ops: &[&Op]) -> f64 {
    let total: Counters = ops.iter().map(|op| op.total()).sum();
    let looked = total.hits + total.misses;
    if looked == 0 {
        f64::NAN
    } else {
        total.hits as f64 / looked as f64
    }
}

/// The figures of one mode in one run, in the summary's row order.
fn figures(result: &ModeRun) -> Vec<f64> {
    let pulls: Vec<&Op> = result.pulls.iter().collect();
    let phase: Vec<&Op> = result.pulls.iter().chain(&result.pushes).collect();
    let count = result.pulls.len() as f64;
    let pull_total: Counters = result.pulls.iter().map(Op::total).sum();
    let push_total: Counters = result.pushes.iter().map(Op::total).sum();
    let mut servers: Vec<Duration> = result.pulls.iter().map(Op::server).collect();
    vec![
        quantile(&mut walls(&result.pulls), 0.5).as_secs_f64() * 1e3,
        quantile(&mut walls(&result.pulls), 0.9).as_secs_f64() * 1e3,
        quantile(&mut servers, 0.5).as_secs_f64() * 1e3,
        quantile(&mut walls(&result.pushes), 0.5).as_secs_f64() * 1e3,
        hit_rate(&pulls) * 100.0,
        hit_rate(&phase) * 100.0,
        pull_total.get as f64 / count,
        result
            .pulls
            .iter()
            .filter(|op| op.total().s3_requests() == 0)
            .count() as f64
            / count
            * 100.0,
        push_total.get as f64 / result.pushes.len() as f64,
        result.same_node.iter().filter(|&&same| same).count() as f64 / count * 100.0,
        pull_total.requests as f64 / count,
        result.evictions as f64,
        quantile(&mut walls(&result.clones), 0.5).as_secs_f64() * 1e3,
    ]
}

/// Row names of [`figures`], with whether a ratio of the two modes means something.
const FIGURES: &[(&str, bool)] = &[
    ("pull, median ms (whole `cairn pull`)", true),
    ("pull, p90 ms", true),
    ("pull, server ms (median)", true),
    ("push, median ms", true),
    ("cache hit rate, pulls (%)", false),
    ("cache hit rate, pushes and pulls (%)", false),
    ("S3 GETs per pull", true),
    ("pulls with no S3 request (%)", false),
    ("S3 GETs per push", true),
    ("pull on the node that took the push (%)", false),
    ("API requests per pull", false),
    ("cache evictions (clones + rounds, 3 nodes)", false),
    ("reader's clone on cold nodes, median ms", true),
];

fn number(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The median of one figure over the runs, with the range when runs differ.
fn spread_cell(values: &[f64]) -> String {
    let median = median_f64(values);
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() == 1 || number(low) == number(high) {
        number(median)
    } else {
        format!("{} ({}–{})", number(median), number(low), number(high))
    }
}

fn report(
    bench: &Bench,
    results: &[Vec<ModeRun>],
    corpus: usize,
    stored: u64,
    took: Duration,
    load: (String, String),
) -> String {
    let options = &bench.options;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Cluster: affinity against round robin ({})\n",
        today()
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p cairn-bench --bin cluster --{}{}` (TMPDIR={}). \
         Took {:.0} s.\n",
        if args.is_empty() { "" } else { " " },
        args.join(" "),
        std::env::temp_dir().display(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "Machine: {} cores ({}), load average {} before and {} after; HAProxy {}; everything \
         on one host, nodes at 127.0.0.2–4, S3 (s3s-fs) behind a latency relay adding {} ms per \
         round trip; PostgreSQL local (no added latency).\n",
        thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        load.0,
        load.1,
        haproxy_version(&bench.haproxy),
        options.round_trip_ms,
    );
    let files_per_project = SMALL_FILES + LARGE_FILES;
    let _ = writeln!(
        out,
        "Workload: {} projects of {files_per_project} files ({SMALL_FILES} JSON documents of \
         0.5–24 KiB in nested folders, {LARGE_FILES} × {:.0} MB attachments), {:.1} MiB of files \
         in all, {:.1} MiB stored (zstd frames in packs). Cache per node: {:.0} MiB ({}), in both \
         modes. Per mode and run: fresh nodes, each project's reader clones it through the \
         balancer, then {} rounds of: the writer pushes a one-line edit of a random file, 0–2 \
         other requests pass the balancer, the reader pulls it ({} pulls per mode and run). \
         {} runs, the modes taking turns going first. Figures are the median over runs of each \
         run's figure (range in brackets); the ratio is round robin over affinity within each \
         run, median over runs.\n",
        bench.projects.len(),
        LARGE_SIZE as f64 / 1e6,
        corpus as f64 / MIB,
        stored as f64 / MIB,
        bench.cache_bytes as f64 / MIB,
        if options.cache_bytes.is_some() {
            "--cache-bytes".to_owned()
        } else {
            format!("stored bytes / {CACHE_SHARE}: all projects fit in three caches, not one")
        },
        options.rounds,
        options.rounds * bench.projects.len(),
        options.runs,
    );
    let per_run: Vec<[Vec<f64>; 2]> = results
        .iter()
        .map(|run| [figures(&run[0]), figures(&run[1])])
        .collect();
    let _ = writeln!(
        out,
        "| | affinity (shipped haproxy.cfg) | round robin | round robin / affinity |\n|---|---:|---:|---:|"
    );
    for (row, (name, ratio)) in FIGURES.iter().enumerate() {
        let affinity: Vec<f64> = per_run.iter().map(|f| f[0][row]).collect();
        let round_robin: Vec<f64> = per_run.iter().map(|f| f[1][row]).collect();
        let ratio_cell = if *ratio {
            let ratios: Vec<f64> = per_run.iter().map(|f| f[1][row] / f[0][row]).collect();
            if ratios.iter().all(|r| r.is_finite()) {
                format!("{}×", spread_cell(&ratios))
            } else {
                "–".into()
            }
        } else {
            "".into()
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {ratio_cell} |",
            spread_cell(&affinity),
            spread_cell(&round_robin)
        );
    }

    let _ = writeln!(
        out,
        "\n## Every run: pull median / p90 ms, cache hit rate of pulls\n\n\
         | run | first | affinity | round robin | ratio of medians | projects per node (affinity) |\n\
         |---:|---|---:|---:|---:|---|"
    );
    for (index, (run, figures)) in results.iter().zip(&per_run).enumerate() {
        let mut per_node = [0usize; 3];
        for node in run[0].owners.values() {
            per_node[*node] += 1;
        }
        let first = if run[0].first {
            "affinity"
        } else {
            "round robin"
        };
        let _ = writeln!(
            out,
            "| {} | {first} | {} / {} ms, {}% | {} / {} ms, {}% | {:.2}× | {} |",
            index + 1,
            number(figures[0][0]),
            number(figures[0][1]),
            number(figures[0][4]),
            number(figures[1][0]),
            number(figures[1][1]),
            number(figures[1][4]),
            figures[1][0] / figures[0][0],
            per_node.map(|n| n.to_string()).join(" / "),
        );
    }

    let _ = writeln!(
        out,
        "\n## Pulls that read S3 and pulls that did not (all runs pooled)\n\n\
         | mode | pulls | from the cache alone: share, median / p90 ms | read S3: share, median / p90 ms, \
         median S3 GETs, median server ms |\n|---|---:|---|---|"
    );
    for (index, mode) in [Mode::Affinity, Mode::RoundRobin].into_iter().enumerate() {
        let pulls: Vec<&Op> = results.iter().flat_map(|run| &run[index].pulls).collect();
        let (cached, read): (Vec<&Op>, Vec<&Op>) =
            pulls.iter().partition(|op| op.total().s3_requests() == 0);
        let class = |ops: &[&Op], detail: bool| -> String {
            if ops.is_empty() {
                return "0%".into();
            }
            let mut wall: Vec<Duration> = ops.iter().map(|op| op.wall).collect();
            let mut text = format!(
                "{:.0}%, {} / {} ms",
                ops.len() as f64 / pulls.len() as f64 * 100.0,
                number(quantile(&mut wall, 0.5).as_secs_f64() * 1e3),
                number(quantile(&mut wall, 0.9).as_secs_f64() * 1e3)
            );
            if detail {
                let mut gets: Vec<u64> = ops.iter().map(|op| op.total().get).collect();
                let mut server: Vec<Duration> = ops.iter().map(|op| op.server()).collect();
                let _ = write!(
                    text,
                    ", {} GETs, {} ms",
                    quantile(&mut gets, 0.5),
                    number(quantile(&mut server, 0.5).as_secs_f64() * 1e3)
                );
            }
            text
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            mode.label(),
            pulls.len(),
            class(&cached, false),
            class(&read, true)
        );
    }

    let failovers: Vec<&Failover> = results
        .iter()
        .flat_map(|run| run[0].failovers.iter())
        .collect();
    if !failovers.is_empty() {
        let _ = writeln!(
            out,
            "\n## Failover (affinity): the owner of two projects SIGKILLed\n\n\
             {} kills (node{} in turn). Medians (range) over kills. HAProxy checks every second and \
             takes a node out after two failures (`inter 1s fall 2`, as shipped).\n\n\
             | | wall ms | server ms | S3 GETs | cache misses | node |\n|---|---:|---:|---:|---:|---|",
            failovers.len(),
            failovers
                .iter()
                .map(|f| (f.victim + 1).to_string())
                .collect::<Vec<_>>()
                .join(", node"),
        );
        let row = |out: &mut String, name: &str, ops: Vec<Op>, node: &str| {
            if ops.is_empty() {
                let _ = writeln!(out, "| {name} | – | – | – | – | {node} |");
                return;
            }
            let wall: Vec<f64> = ops.iter().map(|op| op.wall.as_secs_f64() * 1e3).collect();
            let server: Vec<f64> = ops
                .iter()
                .map(|op| op.server().as_secs_f64() * 1e3)
                .collect();
            let gets: Vec<f64> = ops.iter().map(|op| op.total().get as f64).collect();
            let misses: Vec<f64> = ops.iter().map(|op| op.total().misses as f64).collect();
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {node} |",
                spread_cell(&wall),
                spread_cell(&server),
                spread_cell(&gets),
                spread_cell(&misses)
            );
        };
        let all = |pick: &dyn Fn(&Failover) -> Option<Op>| -> Vec<Op> {
            failovers.iter().filter_map(|f| pick(f)).collect()
        };
        row(
            &mut out,
            "pull of an edit, before the kill",
            all(&|f| Some(f.owner_pull)),
            "owner",
        );
        row(
            &mut out,
            "clone, before the kill",
            all(&|f| Some(f.owner_clone)),
            "owner",
        );
        let down: Vec<f64> = failovers
            .iter()
            .map(|f| f.down_after.as_secs_f64() * 1e3)
            .collect();
        let _ = writeln!(
            out,
            "| SIGKILL → DOWN in HAProxy | {} | | | | |",
            spread_cell(&down)
        );
        row(
            &mut out,
            "B: first pull, edit pushed before the kill",
            all(&|f| Some(f.cold_pull)),
            "inheritor",
        );
        row(
            &mut out,
            "A: first push after the kill",
            all(&|f| Some(f.first_push)),
            "inheritor",
        );
        row(
            &mut out,
            "A: pull of that edit",
            all(&|f| Some(f.first_pull)),
            "inheritor",
        );
        row(
            &mut out,
            "A: next edit's pull (warm)",
            all(&|f| Some(f.warm_pull)),
            "inheritor",
        );
        row(
            &mut out,
            "A: clone (cold)",
            all(&|f| Some(f.cold_clone)),
            "inheritor",
        );
        let back: Vec<f64> = failovers
            .iter()
            .map(|f| f.back_after.as_secs_f64() * 1e3)
            .collect();
        let _ = writeln!(
            out,
            "| SIGKILL → owner restarted and UP | {} | | | | |",
            spread_cell(&back)
        );
        row(
            &mut out,
            "A: pull of an edit pushed while it was down, on the restarted owner",
            all(&|f| Some(f.back_pull)),
            "owner (cold)",
        );
    }

    let _ = writeln!(
        out,
        "\n## Setup\n\n\
         - Three `sync-server serve` nodes (production mode: one PostgreSQL database, one S3 \
         bucket) at 127.0.0.2, .3 and .4, `--cache-bytes {}`. Each mode of each run gets fresh \
         node processes, so both start with cold caches; the database and the bucket are shared \
         by all.\n\
         - affinity: HAProxy 2.6 with `deploy/haproxy.cfg` as shipped (`balance uri path-only \
         depth 3`, `hash-type consistent`, `hash-balance-factor 150`). round robin: a copy \
         written to the temporary folder with `balance roundrobin` in place of those three \
         lines; health checks, retries and timeouts as shipped.\n\
         - pull: `cairn pull` in the reader's working copy, timed as a whole process; server ms \
         is the nodes' time to the response head of its API requests (`/metrics`); S3 and \
         cache figures are deltas of the nodes' `/metrics` from before the process started \
         until they settled after it exited, summed over nodes.\n\
         - other requests: 0–2 `GET /healthz` through the balancer between each push and its \
         pull, the count drawn from a seeded generator (the same in both modes). With a single \
         client, round robin would otherwise put each pull on a fixed node relative to its \
         push; in a cluster with many clients it is wherever the rotation happens to be.\n\
         - failover: in affinity mode, after the rounds, a node owning two projects (A, B) is \
         SIGKILLed; B's edit was pushed to it just before; the bench waits for HAProxy's \
         statistics to say DOWN, pulls B (the inheritor's first request for B), pushes and \
         pulls two edits of A and clones A (through the inheritor), pushes one more edit of A \
         (to the inheritor), restarts the node, waits for UP and pulls that edit on it (its \
         first request for A since the restart).\n\
         - S3 reads: the relay acknowledges what it receives at once (TCP_QUICKACK), so \
         s3s-fs's separate writes of a response's head and body (it does not set TCP_NODELAY) \
         do not wait on a delayed ACK; a read costs the added round trip and the transfer.",
        bench.cache_bytes
    );
    out
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn haproxy_version(binary: &Path) -> String {
    run_command(Command::new(binary).arg("-v"))
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .skip_while(|word| *word != "version")
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}
