//! The crash campaign (issue "Reliability under faults"): nodes of a cluster SIGKILLed at
//! random moments, many times over, while clients push and pull, garbage collection runs and
//! S3 misbehaves; then the history is checked.
//!
//! - Three `sync-server` nodes behind HAProxy (the shipped `deploy/haproxy.cfg`, as in
//!   `cluster.rs`), their S3 through one `FaultyS3` that injects a fault into 15% of the
//!   requests of every kind (500, `SlowDown`, resets, cut bodies, latency, error bodies).
//! - Garbage collection inside the nodes (`--gc-every 5s`) and from the test, `sync-server gc`
//!   in a loop, every other run SIGKILLed at a random moment. The grace period is 60 s, not
//!   the default 24 h: far above the client's 12 s retry budget (plus the pause before a
//!   client's next command), so a push that is retried or resumed never loses what it sent,
//!   yet short enough that during a long campaign the collections really drop the objects and
//!   delete the packs that interrupted pushes left behind (a pack written but never indexed,
//!   objects indexed but never committed), and run while nodes die.
//! - Projects, each with two pushers (the real `cairn push`: a small JSON file every round, a
//!   blob of a few chunks every 4th, now and then a 9 MiB file, sent in batches with a journal)
//!   and one puller, every command's outcome recorded.
//! - The killer, on the test's thread: after a random pause (0 to 1,500 ms, so kills land
//!   mid-push, mid-commit, mid-collection), SIGKILLs a random running node, never the last
//!   one, and restarts it at once or after a random pause of up to 3 s. The choices come from
//!   a seeded generator; the seed is printed, and `CAIRN_CRASH_SEED` repeats them (the load's
//!   timing is not repeatable).
//!
//! After the last kill the load stops, every node comes back and the faults are turned off;
//! then every acknowledged push must be in its project's history at its version with its root,
//! the versions must run 0..=head with each one's parent the one before (one winner per base)
//! and each push id at most once, every node must read the same heads, a fresh `cairn clone` of
//! each project must reach the head with every byte as written, each puller's copy must pull to
//! the same tree, a last `sync-server gc` must succeed and `sync-server fsck --read-data` must
//! find nothing missing, corrupt or bad; and, with nothing in flight any more, two collections
//! without grace must succeed and leave fsck as clean (every version still whole; the figures
//! show what was left of the crashes' garbage). A client command may fail only as the client reports a
//! server it could not reach through its retries (exit 7), or a push outpaced by the project's
//! other pusher on each of its attempts (exit 6, "still behind the head": contention, which
//! thousands of pushes meet now and then whatever the nodes do); those are counted and printed,
//! any other failure fails the test. The summary line gives kills, pushes, commands, failures by
//! kind, push latency, the collections, fsck's figures and the time taken; the kills are
//! counted also by whether a `cairn push` or the test's `sync-server gc` was running.
//!
//! `CAIRN_CRASHES` sets the number of kills (default 15, about a minute). The long campaign:
//!
//! ```text
//! CAIRN_CRASHES=1000 cargo test -p cairn-tests --test e2e crash_campaign -- --nocapture
//! ```
//!
//! `CAIRN_CRASH_SPACING_MS` sets the longest pause between two kills (default 1500).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_test_support::files::{FileState, tree_on_disk, write};
use cairn_test_support::s3_faults::SplitMix64;
use cairn_test_support::{ClientHome, FaultPlan, FaultyS3, Services, noise};
use serde_json::Value;

use crate::support::cluster::{Cluster, head};
use crate::support::machine_alone;
use crate::support::server::USER;

/// Kills when `CAIRN_CRASHES` is unset: a campaign of about a minute.
const DEFAULT_CRASHES: u64 = 15;
/// The longest pause before a kill when `CAIRN_CRASH_SPACING_MS` is unset.
const DEFAULT_SPACING_MS: u64 = 1500;
/// The longest a killed node stays down when it is not restarted at once.
const MAX_DOWN_MS: u64 = 3000;
/// The share of S3 requests of every kind that get a fault.
const FAULT_RATE: f64 = 0.15;
/// Projects, each with two pushers and a puller.
const PROJECTS: usize = 3;
/// The garbage collections' grace period (see the module doc).
const GRACE: &str = "60s";
/// How often each node collects, when it lives that long.
const GC_EVERY: &str = "5s";
/// A 9 MiB file, past the client's single-request limit (8 MiB): a push in batches with a
/// journal. The first pusher of each project writes one in round 10 and every 50th after.
const BIG_FILE: usize = 9 << 20;
const BIG_EVERY: u64 = 50;

/// The campaign's seeded choices.
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64(seed))
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0.below(bound)
    }

    fn millis_below(&mut self, bound: u64) -> Duration {
        Duration::from_millis(self.below(bound))
    }
}

/// A whole-number setting from the environment, else `default`.
fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
        _ => default,
    }
}

/// A failed (or suspicious) `cairn` command.
#[derive(Debug, Clone)]
struct Failure {
    /// `exit 7`, `exit 6, outpaced`, `exit 1`, `signal`, `printed an error`, `not JSON`.
    kind: String,
    text: String,
}

/// The one failure a crash may cause: the client could not reach a working server through its
/// retries.
const UNAVAILABLE: &str = "exit 7";
/// `cairn push` lost the race for the head to the project's other pusher on every one of its
/// attempts (each pulls and merges first), and says so: "nothing was lost, run the command
/// again". Contention, not a crash: the two pushers of a project can keep beating each other
/// however the nodes fare, and a campaign of thousands of pushes meets it now and then.
const OUTPACED: &str = "exit 6, outpaced";

impl Failure {
    /// Whether the client reported the failure as one to try again: unavailable, or outpaced.
    fn allowed(&self) -> bool {
        self.kind == UNAVAILABLE || self.kind == OUTPACED
    }
}

/// `cairn --json args...` in `dir`: its JSON answer, or what went wrong.
fn cairn(home: &ClientHome, dir: &Path, args: &[&str]) -> Result<Value, Failure> {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let output = home.run(dir, &full);
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let failure = |kind: String| Failure {
        kind,
        text: format!("cairn {args:?} in {}: {stderr}", dir.display()),
    };
    if !output.status.success() {
        return Err(failure(match output.status.code() {
            Some(6) if stderr.contains("still behind the head after") => OUTPACED.to_owned(),
            Some(code) => format!("exit {code}"),
            None => "signal".to_owned(),
        }));
    }
    let lowered = stderr.to_lowercase();
    if lowered.contains("error") || lowered.contains("warning") {
        return Err(failure("printed an error".to_owned()));
    }
    serde_json::from_slice(&output.stdout).map_err(|_| failure("not JSON".to_owned()))
}

/// A push the client was told committed.
#[derive(Debug, Clone)]
struct Ack {
    project: String,
    version: u64,
    root: String,
}

/// One client's record.
#[derive(Default)]
struct Record {
    acks: Vec<Ack>,
    /// How long each acknowledged push took.
    latencies: Vec<Duration>,
    commands: u64,
    failures: Vec<Failure>,
}

/// What the killer's progress lines read while the campaign runs.
#[derive(Default)]
struct Progress {
    acks: AtomicU64,
    commands: AtomicU64,
    failures: AtomicU64,
    /// `cairn push` commands running now.
    pushing: AtomicU64,
    /// Whether the test's `sync-server gc` is running now.
    collecting: AtomicBool,
}

/// A self-describing file: a header line naming it, then noise seeded by it, so any copy of it
/// can be checked byte for byte.
fn blob(kind: &str, who: usize, round: u64, len: usize) -> Vec<u8> {
    let mut bytes = format!("{kind} {who} {round} {len}\n").into_bytes();
    bytes.extend(noise(len, blob_seed(who, round)));
    bytes
}

fn blob_seed(who: usize, round: u64) -> u64 {
    ((who as u64 + 1) << 40) ^ round
}

/// A merge with conflict markers resolved to its `ours` side; `None` without a whole block.
fn ours_side(marked: &[u8]) -> Option<Vec<u8>> {
    let (mut out, mut blocks, mut state) = (Vec::new(), 0, 0);
    for line in marked.split_inclusive(|byte| *byte == b'\n') {
        match (state, line) {
            (0, b"<<<<<<< ours\n") => state = 1,
            (1, b"||||||| base\n") => state = 2,
            (2, b">>>>>>> theirs\n") => {
                state = 0;
                blocks += 1;
            }
            (0 | 1, line) => out.extend_from_slice(line),
            _ => {}
        }
    }
    (state == 0 && blocks > 0).then_some(out)
}

/// Checks a file of a project's tree against what some pusher wrote: `None` when it is one.
fn check_file(path: &str, file: &FileState) -> Option<String> {
    // A conflict copy (`name.conflict-<tag>`, see sync-protocol's merge) holds what its
    // original did.
    let original = path.split(".conflict-").next().unwrap_or(path);
    // The merge with markers beside a copy (`<copy>.merge`, see sync-client's content_merge):
    // its `ours` side is the copy's version, checked like the copy.
    if path.contains(".conflict-") && path.ends_with(".merge") {
        let Some(ours) = ours_side(&file.bytes) else {
            return Some(format!("{path}: not a merge with conflict markers"));
        };
        let ours = FileState {
            bytes: ours,
            executable: file.executable,
        };
        return check_file(original, &ours).map(|problem| format!("{path} (ours): {problem}"));
    }
    if let Some(name) = original.strip_prefix("clients/") {
        let who = name.strip_suffix(".json")?;
        let parsed: Value = match serde_json::from_slice(&file.bytes) {
            Ok(parsed) => parsed,
            Err(error) => return Some(format!("{path}: not JSON: {error}")),
        };
        let written_by_who = who.parse::<u64>().is_ok_and(|who| parsed["client"] == who);
        return (!written_by_who).then(|| format!("{path}: holds {parsed}"));
    }
    let header_end = file.bytes.iter().position(|byte| *byte == b'\n');
    let header = header_end.map(|end| String::from_utf8_lossy(&file.bytes[..end]).into_owned());
    let fields: Vec<&str> = header.as_deref().unwrap_or("").split(' ').collect();
    let parsed = match fields.as_slice() {
        [kind, who, round, len] => (|| {
            Some((
                *kind,
                who.parse::<usize>().ok()?,
                round.parse::<u64>().ok()?,
                len.parse::<usize>().ok()?,
            ))
        })(),
        _ => None,
    };
    let Some((kind, who, round, len)) = parsed else {
        return Some(format!("{path}: no header ({} bytes)", file.bytes.len()));
    };
    if original != format!("{kind}s/{who}.bin") {
        return Some(format!("{path}: header names {kind} of client {who}"));
    }
    (file.bytes != blob(kind, who, round, len)).then(|| {
        format!(
            "{path}: {} bytes differ from {kind} {who} round {round}",
            file.bytes.len()
        )
    })
}

/// Pushes changes to `copy` of `project` until `stop`, recording every outcome.
#[allow(clippy::too_many_arguments)]
fn pusher(
    home: &ClientHome,
    copy: &Path,
    project: &str,
    who: usize,
    big: bool,
    seed: u64,
    stop: &AtomicBool,
    progress: &Progress,
) -> Record {
    let mut rng = Rng::new(seed);
    let mut record = Record::default();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        write(
            copy,
            &format!("clients/{who}.json"),
            format!("{{\"client\": {who}, \"round\": {round}}}").as_bytes(),
        );
        if round.is_multiple_of(4) {
            let len = 20_000 + rng.below(300_000) as usize;
            write(
                copy,
                &format!("blobs/{who}.bin"),
                &blob("blob", who, round, len),
            );
        }
        if big && round % BIG_EVERY == 10 {
            write(
                copy,
                &format!("bigs/{who}.bin"),
                &blob("big", who, round, BIG_FILE),
            );
        }
        record.commands += 1;
        progress.commands.fetch_add(1, Ordering::Relaxed);
        let message = format!("client {who} round {round}");
        let began = Instant::now();
        progress.pushing.fetch_add(1, Ordering::SeqCst);
        let pushed = cairn(home, copy, &["push", "-m", &message]);
        progress.pushing.fetch_sub(1, Ordering::SeqCst);
        match pushed {
            Ok(answer) => {
                let push = &answer["push"];
                if push["pushed"] == true {
                    record.latencies.push(began.elapsed());
                    record.acks.push(Ack {
                        project: project.to_owned(),
                        version: push["version"].as_u64().expect("a version"),
                        root: push["root"].as_str().expect("a root").to_owned(),
                    });
                    progress.acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(failure) => {
                progress.failures.fetch_add(1, Ordering::Relaxed);
                record.failures.push(failure);
            }
        }
        // People edit between pushes; two clients of one project pushing back to back would
        // only measure contention.
        std::thread::sleep(Duration::from_millis(200) + rng.millis_below(1000));
    }
    record
}

/// Pulls `copy` until `stop`.
fn puller(
    home: &ClientHome,
    copy: &Path,
    seed: u64,
    stop: &AtomicBool,
    progress: &Progress,
) -> Record {
    let mut rng = Rng::new(seed);
    let mut record = Record::default();
    while !stop.load(Ordering::Relaxed) {
        record.commands += 1;
        progress.commands.fetch_add(1, Ordering::Relaxed);
        if let Err(failure) = cairn(home, copy, &["pull"]) {
            progress.failures.fetch_add(1, Ordering::Relaxed);
            record.failures.push(failure);
        }
        std::thread::sleep(Duration::from_millis(100) + rng.millis_below(300));
    }
    record
}

/// A command line to run many times from another thread: program, arguments, environment and
/// working directory of a prototype `Command`.
struct CommandLine {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
}

impl CommandLine {
    fn of(prototype: &Command) -> CommandLine {
        CommandLine {
            program: prototype.get_program().to_owned(),
            args: prototype.get_args().map(ToOwned::to_owned).collect(),
            envs: prototype
                .get_envs()
                .map(|(key, value)| (key.to_owned(), value.map(ToOwned::to_owned)))
                .collect(),
            dir: prototype.get_current_dir().map(ToOwned::to_owned),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }
}

/// The collections the test ran.
#[derive(Default)]
struct Collections {
    completed: u64,
    killed: u64,
    failed: Vec<String>,
}

/// Runs `sync-server gc` until `stop`, SIGKILLing every other run at a random moment.
fn collector(gc: &CommandLine, seed: u64, stop: &AtomicBool, progress: &Progress) -> Collections {
    let mut rng = Rng::new(seed);
    let mut collections = Collections::default();
    while !stop.load(Ordering::Relaxed) {
        let mut child = gc
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sync-server gc");
        progress.collecting.store(true, Ordering::SeqCst);
        let kill_at = (rng.below(2) == 0).then(|| Instant::now() + rng.millis_below(3000));
        loop {
            if child.try_wait().expect("waiting for gc").is_some() {
                let output = child.wait_with_output().expect("gc's output");
                if output.status.success() {
                    collections.completed += 1;
                } else {
                    collections.failed.push(format!(
                        "{}: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
                break;
            }
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                let _ = child.kill();
                let _ = child.wait();
                collections.killed += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        progress.collecting.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500) + rng.millis_below(1500));
    }
    collections
}

/// The value at `fraction` (0 to 1) of sorted `durations`.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Every version of `project`, oldest first, through `base`.
fn history(cluster: &Cluster, base: &str, project: &str) -> Vec<Value> {
    let mut versions: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let query = match before {
            Some(before) => format!("?limit=1000&before={before}"),
            None => "?limit=1000".to_owned(),
        };
        let page = cluster.get(base, &format!("/v1/projects/{project}/versions{query}"));
        let page = page["versions"].as_array().expect("versions").clone();
        let Some(last) = page.last() else { break };
        before = Some(last["number"].as_u64().expect("a number"));
        versions.extend(page);
        if before == Some(0) {
            break;
        }
    }
    versions.reverse();
    versions
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Turns the faults off when dropped, so the bucket is removed through a faithful proxy even
/// when the test fails.
struct FaultsOff<'a>(&'a FaultyS3);

impl Drop for FaultsOff<'_> {
    fn drop(&mut self) {
        self.0.set_plan(FaultPlan::none());
    }
}

#[test]
fn nodes_killed_at_random_lose_no_acknowledged_push() {
    let Some(services) = Services::from_env() else {
        return;
    };
    // Three nodes, nine clients and the collections at once: no other scenario that takes
    // the lock runs meanwhile.
    let _alone = machine_alone();
    let crashes = setting("CAIRN_CRASHES", DEFAULT_CRASHES);
    let spacing = setting("CAIRN_CRASH_SPACING_MS", DEFAULT_SPACING_MS);
    let seed = match std::env::var("CAIRN_CRASH_SEED") {
        Ok(value) => value.trim().parse().expect("CAIRN_CRASH_SEED: a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64),
    };
    eprintln!(
        "crash campaign: seed {seed} (CAIRN_CRASH_SEED={seed} repeats its choices), {crashes} \
         kills, pauses up to {spacing} ms, S3 faults at {FAULT_RATE}"
    );
    let real_endpoint = services.s3.endpoint.clone();
    let proxy = FaultyS3::start(FaultyS3::target_of(&real_endpoint), FaultPlan::none());
    let mut through_proxy = services.clone();
    through_proxy.s3.endpoint = proxy.endpoint();
    let gc_args = ["--gc-every", GC_EVERY, "--gc-grace", GRACE];
    let Some(mut cluster) = Cluster::start_on(&through_proxy, true, &gc_args) else {
        return;
    };
    // Declared after the cluster: the faults go off before its bucket is removed.
    let faults_off = FaultsOff(&proxy);
    let url = cluster.haproxy().url();
    let home = ClientHome::new();
    home.login(&url, USER);

    // Setup, without faults: the projects and their working copies.
    let projects: Vec<String> = (0..PROJECTS)
        .map(|index| cluster.create_project(&format!("crash{index}")))
        .collect();
    let clone = |project: &str, name: &str| -> PathBuf {
        let answer = home.json(home.path(), &["clone", "--project", project, name]);
        assert_eq!(answer["pull"]["version"], 0, "{answer}");
        home.path().join(name)
    };
    // (copy, project index, pusher number or None for a puller)
    let mut copies: Vec<(PathBuf, usize, Option<usize>)> = Vec::new();
    for (index, project) in projects.iter().enumerate() {
        for side in 0..2 {
            let who = index * 2 + side;
            copies.push((clone(project, &format!("push{who}")), index, Some(who)));
        }
        copies.push((clone(project, &format!("pull{index}")), index, None));
    }
    let gc = CommandLine::of(&cluster.env.command(&["gc", "--grace", GRACE]));

    proxy.set_plan(FaultPlan::uniform(seed, FAULT_RATE));
    let faults_before = proxy.counts();
    let progress = Progress::default();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut kills = 0u64;
    let mut restarts: Vec<Duration> = Vec::new();
    let mut most_down = 0usize;
    // Kills while a push command ran, and while the test's `sync-server gc` ran.
    let (mut kills_mid_push, mut kills_mid_gc) = (0u64, 0u64);
    let (records, collections) = std::thread::scope(|scope| {
        let clients: Vec<_> = copies
            .iter()
            .enumerate()
            .map(|(number, (copy, index, pushing))| {
                let (home, stop, progress) = (&home, &stop, &progress);
                let project = &projects[*index];
                let client_seed = seed ^ ((number as u64 + 1) << 32);
                scope.spawn(move || match pushing {
                    Some(who) => pusher(
                        home,
                        copy,
                        project,
                        *who,
                        who % 2 == 0,
                        client_seed,
                        stop,
                        progress,
                    ),
                    None => puller(home, copy, client_seed, stop, progress),
                })
            })
            .collect();
        let collecting = {
            let (gc, stop, progress) = (&gc, &stop, &progress);
            scope.spawn(move || collector(gc, seed ^ 0xC011_EC70, stop, progress))
        };

        // The killer. Should it panic, the clients stop too, or the scope would wait forever.
        let _stop_on_panic = StopOnDrop(&stop);
        let mut down: Vec<(usize, Instant)> = Vec::new();
        let mut restart = |cluster: &mut Cluster, index: usize| {
            let began = Instant::now();
            cluster.restart(index);
            restarts.push(began.elapsed());
        };
        let report_every = (crashes / 20).max(10);
        while kills < crashes {
            std::thread::sleep(rng.millis_below(spacing + 1));
            let now = Instant::now();
            for (index, _) in down.iter().filter(|(_, at)| *at <= now) {
                restart(&mut cluster, *index);
            }
            down.retain(|(_, at)| *at > now);
            let up: Vec<usize> = (0..3).filter(|&i| cluster.nodes[i].is_some()).collect();
            if up.len() < 2 {
                continue;
            }
            let victim = up[rng.below(up.len() as u64) as usize];
            if progress.pushing.load(Ordering::SeqCst) > 0 {
                kills_mid_push += 1;
            }
            if progress.collecting.load(Ordering::SeqCst) {
                kills_mid_gc += 1;
            }
            cluster.kill(victim);
            kills += 1;
            let pause = rng.below(2 * MAX_DOWN_MS);
            if pause >= MAX_DOWN_MS {
                restart(&mut cluster, victim);
            } else {
                down.push((victim, Instant::now() + Duration::from_millis(pause)));
            }
            most_down = most_down.max(down.len());
            if kills.is_multiple_of(report_every) {
                eprintln!(
                    "after {:?}: {kills} kills, {} pushes acknowledged, {} commands, {} failed",
                    started.elapsed(),
                    progress.acks.load(Ordering::Relaxed),
                    progress.commands.load(Ordering::Relaxed),
                    progress.failures.load(Ordering::Relaxed),
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        let records: Vec<Record> = clients
            .into_iter()
            .map(|client| client.join().expect("a client thread"))
            .collect();
        let collections = collecting.join().expect("the collector's thread");
        for (index, _) in down {
            restart(&mut cluster, index);
        }
        (records, collections)
    });
    let campaign = started.elapsed();
    let faults = proxy.counts().since(&faults_before);

    // The checks, every node up and S3 faithful.
    proxy.set_plan(FaultPlan::none());
    cluster
        .haproxy()
        .wait_for_states(&["UP", "UP", "UP"], Duration::from_secs(30));
    let mut acks: Vec<Ack> = Vec::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut failures: Vec<Failure> = Vec::new();
    let mut commands = 0;
    for record in records.iter() {
        acks.extend(record.acks.iter().cloned());
        latencies.extend(&record.latencies);
        failures.extend(record.failures.iter().cloned());
        commands += record.commands;
    }
    latencies.sort();
    let mut problems: Vec<String> = Vec::new();
    let mut lost = 0u64;
    let mut versions_total = 0u64;
    for (index, project) in projects.iter().enumerate() {
        // Every node reads the same head.
        let heads: Vec<(u64, String)> = (0..3)
            .map(|node| {
                head(&cluster.get(&cluster.node_url(node), &format!("/v1/projects/{project}")))
            })
            .collect();
        if heads.windows(2).any(|pair| pair[0] != pair[1]) {
            problems.push(format!("project {index}: the nodes read heads {heads:?}"));
        }
        let (head_version, head_root) = heads[0].clone();
        // The history: 0..=head, each on the one before, each push id once.
        let versions = history(&cluster, &url, project);
        versions_total += versions.len() as u64;
        let numbers: Vec<u64> = versions
            .iter()
            .map(|version| version["number"].as_u64().expect("a number"))
            .collect();
        if numbers != (0..=head_version).collect::<Vec<u64>>() {
            problems.push(format!(
                "project {index}: versions are not 0..={head_version}: {} of them, first {:?}",
                numbers.len(),
                &numbers[..numbers.len().min(10)]
            ));
        }
        for version in &versions {
            let number = version["number"].as_u64().expect("a number");
            let expected = if number == 0 {
                Value::Null
            } else {
                Value::from(number - 1)
            };
            if version["parent"] != expected {
                problems.push(format!(
                    "project {index}: version {number} has parent {}",
                    version["parent"]
                ));
            }
        }
        if versions.last().map(|last| last["root"].as_str()) != Some(Some(head_root.as_str())) {
            problems.push(format!(
                "project {index}: the head's root is not the last version's"
            ));
        }
        let mut push_ids = HashSet::new();
        for version in &versions {
            if let Some(push_id) = version["push_id"].as_str()
                && !push_ids.insert(push_id.to_owned())
            {
                problems.push(format!(
                    "project {index}: push id {push_id} committed twice"
                ));
            }
        }
        // Every acknowledged push is there, at its version, with its root.
        let by_number: BTreeMap<u64, &str> = versions
            .iter()
            .map(|version| {
                (
                    version["number"].as_u64().expect("a number"),
                    version["root"].as_str().expect("a root"),
                )
            })
            .collect();
        let mut acknowledged = BTreeSet::new();
        for ack in acks.iter().filter(|ack| &ack.project == project) {
            if by_number.get(&ack.version) != Some(&ack.root.as_str())
                || !acknowledged.insert(ack.version)
            {
                lost += 1;
                problems.push(format!(
                    "project {index}: acknowledged push lost: version {} root {}, history has {:?}",
                    ack.version,
                    ack.root,
                    by_number.get(&ack.version)
                ));
            }
        }
        // A fresh clone reaches the head, every byte as some pusher wrote it.
        let name = format!("fresh{index}");
        let cloned = cairn(&home, home.path(), &["clone", "--project", project, &name])
            .unwrap_or_else(|failure| panic!("a fresh clone failed: {failure:?}"));
        if cloned["pull"]["version"] != head_version {
            problems.push(format!(
                "project {index}: the clone is at {cloned}, the head at {head_version}"
            ));
        }
        let tree = tree_on_disk(&home.path().join(&name));
        for (path, file) in &tree {
            if let Some(problem) = check_file(path, file) {
                problems.push(format!("project {index}: {problem}"));
            }
        }
        // Each puller's copy pulls to the same tree.
        for (copy, _, _) in copies
            .iter()
            .filter(|(_, of, pushing)| *of == index && pushing.is_none())
        {
            let pulled = cairn(&home, copy, &["pull"])
                .unwrap_or_else(|failure| panic!("the last pull failed: {failure:?}"));
            if pulled["version"] != head_version || tree_on_disk(copy) != tree {
                problems.push(format!(
                    "project {index}: {} pulled {pulled}, not the clone's tree at {head_version}",
                    copy.display()
                ));
            }
        }
    }
    let failed_gc = collections.failed.len();

    // A last collection, which must succeed, then fsck over the real endpoint.
    let collect = |grace: &str, problems: &mut Vec<String>| -> String {
        let output = cluster
            .env
            .command(&["gc", "--grace", grace])
            .output()
            .expect("running sync-server gc");
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            problems.push(format!(
                "sync-server gc --grace {grace} after the campaign: {report}{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        report
    };
    let fsck = |problems: &mut Vec<String>| -> (String, Duration) {
        let checking = Instant::now();
        let output = cluster
            .env
            .command(&["fsck", "--read-data"])
            .env("CAIRN_S3_ENDPOINT", &real_endpoint)
            .output()
            .expect("running fsck");
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            problems.push(format!(
                "fsck --read-data: {report}{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        (report, checking.elapsed())
    };
    let last_gc_report = collect(GRACE, &mut problems);
    let (fsck_report, fsck_took) = fsck(&mut problems);
    // With no push in flight any more, every unreferenced object and stored pack can go: two
    // collections without grace (the second deletes the packs the first found never indexed),
    // then fsck again. The versions must still be whole, and what the crashes left is gone.
    let swept_report = [collect("0s", &mut problems), collect("0s", &mut problems)].join("");
    let (swept_fsck_report, _) = fsck(&mut problems);
    let field = |report: &str, name: &str| -> String {
        report
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("{name}: ")))
            .next_back()
            .unwrap_or("?")
            .to_owned()
    };
    let fsck_field = |name: &str| field(&fsck_report, name);

    // What the server logged that no test expects.
    let log = cluster.env.log_text();
    let panics = log.lines().filter(|line| line.contains("panicked")).count();
    let gc_warnings = log
        .lines()
        .filter(|line| line.contains("garbage collection failed"))
        .count();
    // The nodes log at `warn`: each kind of line (its message, without its fields), counted.
    let mut logged: BTreeMap<String, u64> = BTreeMap::new();
    for line in log.lines() {
        let Some(at) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
            continue;
        };
        let text = &line[at + 1..];
        let message = text.find('=').map_or(text, |equals| {
            text[..equals]
                .rsplit_once(' ')
                .map_or(text, |(message, _)| message)
        });
        *logged
            .entry(message.chars().take(120).collect())
            .or_default() += 1;
    }

    let mut by_kind: BTreeMap<&str, Vec<&Failure>> = BTreeMap::new();
    for failure in &failures {
        by_kind
            .entry(failure.kind.as_str())
            .or_default()
            .push(failure);
    }
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(kind, failures)| format!("{kind}: {}", failures.len()))
        .collect();
    for (kind, failures) in &by_kind {
        eprintln!("failures {kind} ({}), the first:", failures.len());
        for failure in failures.iter().take(5) {
            eprintln!("  {}", failure.text);
        }
    }
    for failure in collections.failed.iter().take(5) {
        eprintln!("sync-server gc failed: {failure}");
    }
    restarts.sort();
    eprintln!(
        "S3 faults injected: {} of {} requests\n{faults}",
        faults.total_injected(),
        faults.total_requests()
    );
    eprintln!("the last gc:\n{last_gc_report}fsck --read-data ({fsck_took:?}):\n{fsck_report}");
    eprintln!("two gc --grace 0s:\n{swept_report}then fsck --read-data:\n{swept_fsck_report}");
    for (message, count) in &logged {
        eprintln!("server log: {count} x {message}");
    }
    if panics > 0 {
        eprintln!("the server log has {panics} lines with \"panicked\"");
    }
    eprintln!(
        "crash campaign, seed {seed}: {kills} kills ({kills_mid_push} during a push, \
         {kills_mid_gc} during the test's gc; at most {} nodes down at once; restarts p50 {:?}, \
         max {:?}) in {campaign:?}; {} pushes acknowledged, {lost} lost; {commands} \
         commands, {} failed [{}]; push latency p50 {:?}, p99 {:?}, max {:?}; {versions_total} \
         versions; collections: {} by the test ({} completed, {} killed, {failed_gc} failed), \
         {gc_warnings} failed in the nodes; fsck: missing {}, corrupt {}, bad packs {}, \
         {} objects verified, {} packs, {} stored packs unindexed, {} objects unreferenced \
         (after two collections without grace: {} packs, {} unindexed, {} unreferenced, fsck \
         {}); {} problems; {:?} in all",
        most_down.max(1),
        percentile(&restarts, 0.5),
        percentile(&restarts, 1.0),
        acks.len(),
        failures.len(),
        kinds.join(", "),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        collections.completed + collections.killed + failed_gc as u64,
        collections.completed,
        collections.killed,
        fsck_field("missing"),
        fsck_field("corrupt"),
        fsck_field("bad packs"),
        fsck_field("verified objects"),
        fsck_field("packs"),
        fsck_field("unindexed packs"),
        fsck_field("unreferenced objects"),
        field(&swept_fsck_report, "packs"),
        field(&swept_fsck_report, "unindexed packs"),
        field(&swept_fsck_report, "unreferenced objects"),
        field(&swept_fsck_report, "status"),
        problems.len(),
        started.elapsed(),
    );
    drop(faults_off);
    assert!(
        problems.is_empty(),
        "{} problems; the first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    let refused: Vec<&Failure> = failures
        .iter()
        .filter(|failure| !failure.allowed())
        .collect();
    assert!(
        refused.is_empty(),
        "{} commands failed other than as unavailable (exit 7) or outpaced (exit 6); the first: \
         {:#?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    assert!(
        acks.len() as u64 >= kills.min(20),
        "too few pushes to show anything: {}",
        acks.len()
    );
}

#[test]
fn a_merge_with_markers_is_checked_by_its_ours_side() {
    let marked = b"<<<<<<< ours\n{\"client\": 3, \"round\": 7}\n||||||| base\n{\"client\": 3, \"round\": 6}\n=======\n{\"client\": 3, \"round\": 8}\n>>>>>>> theirs\n";
    let state = |bytes: &[u8]| FileState {
        bytes: bytes.to_vec(),
        executable: false,
    };
    let path = "clients/3.json.conflict-0123abcd.merge";
    assert_eq!(check_file(path, &state(marked)), None);
    let foreign = String::from_utf8_lossy(marked)
        .replace("\"client\": 3, \"round\": 7", "\"client\": 4, \"round\": 7");
    assert!(check_file(path, &state(foreign.as_bytes())).is_some());
    assert!(check_file(path, &state(b"{\"client\": 3}\n")).is_some());
}
