//! S3 faults (issue 13): the real server in production mode, with a `FaultyS3` between it and
//! the test's s3s-fs injecting a fault into 20% of the S3 requests of every kind (`500`,
//! `503 SlowDown`, resets, truncated bodies, added latency, error documents in a `GET`'s body).
//!
//! 200 `cairn sync`s run at once (100 projects, two working copies each, every copy adding a
//! file of its own, so each sync pulls, merges and pushes), and all succeed within the client's
//! retry budget. Then every copy pulls and every project is cloned afresh, faults still on, and
//! every tree is the expected one byte for byte; the server answered no `500`, and
//! `fsck --read-data` over the real endpoint finds the store whole. Last, an outage: while every
//! `GET` breaks off, a clone is answered `503` with `Retry-After`, and the client's retries
//! carry it through once S3 is back. The test prints the syncs' p50 and p99 and the faults
//! injected, by kind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn_test_support::files::{FileState, tree_on_disk, write};
use cairn_test_support::s3_faults::RequestKind;
use cairn_test_support::{
    ClientHome, Fault, FaultPlan, FaultyS3, ServerEnvironment, Services, noise,
};
use serde_json::Value;

use crate::support::Setup;
use crate::support::server::{TEAM, USER};

/// Projects, each with two working copies: 200 syncs.
const PROJECTS: usize = 100;
/// The share of S3 requests of every kind that get a fault.
const FAULT_RATE: f64 = 0.2;
const SEED: u64 = 13;
/// Threads for setup and checking (the syncs themselves all run at once).
const POOL: usize = 8;
/// Small enough that most reads miss it and go to S3, large enough that a clone loads whole
/// packs (a clone warms the cache with a project's packs when they fit half of it).
const CACHE_BYTES: &str = "262144";

/// Turns the faults off when dropped, so the bucket is removed through a faithful proxy even
/// when the test fails.
struct FaultsOff<'a>(&'a FaultyS3);

impl Drop for FaultsOff<'_> {
    fn drop(&mut self) {
        self.0.set_plan(FaultPlan::none());
    }
}

/// One project: its id and its two working copies.
struct Project {
    id: String,
    copies: [PathBuf; 2],
}

/// The seed files of project `index`, pushed before the faults start.
fn seed_files(index: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "README.md".to_owned(),
            format!("project {index}\n").into_bytes(),
        ),
        ("data/seed.bin".to_owned(), noise(150_000, index as u64)),
    ]
}

/// The file copy `side` of project `index` adds: several chunks, its own bytes.
fn own_file(index: usize, side: usize) -> (String, Vec<u8>) {
    let seed = 1_000 + (index * 2 + side) as u64;
    (
        format!("from/{side}.bin"),
        noise(60_000 + 20_000 * side + index * 97, seed),
    )
}

/// What every copy of project `index` holds once both syncs are in.
fn expected_tree(index: usize) -> BTreeMap<String, FileState> {
    seed_files(index)
        .into_iter()
        .chain((0..2).map(|side| own_file(index, side)))
        .map(|(path, bytes)| {
            let state = FileState {
                bytes,
                executable: false,
            };
            (path, state)
        })
        .collect()
}

/// `work(item)` for every item, on `threads` threads; the results in order.
fn in_pool<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(index) else {
                            return done;
                        };
                        done.push((index, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a pool thread"))
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The value at `fraction` (0 to 1) of sorted `durations`.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Answers by status from the server's `/metrics`.
fn answers_by_status(url: &str) -> BTreeMap<u16, u64> {
    let text = reqwest::blocking::get(format!("{url}/metrics"))
        .and_then(|response| response.text())
        .expect("GET /metrics");
    let mut by_status = BTreeMap::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("cairn_http_requests_total{") else {
            continue;
        };
        let status = labels
            .split("status=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|status| status.parse::<u16>().ok());
        let count = line
            .rsplit(' ')
            .next()
            .and_then(|count| count.parse::<f64>().ok());
        if let (Some(status), Some(count)) = (status, count) {
            *by_status.entry(status).or_default() += count as u64;
        }
    }
    by_status
}

fn init(home: &ClientHome, server: &str, project: &str, name: &str) -> PathBuf {
    let root = home.path().join(name);
    let path = root.to_str().expect("a UTF-8 path");
    home.json(
        home.path(),
        &["init", "--server", server, "--project", project, path],
    );
    root
}

fn assert_tree(root: &Path, expected: &BTreeMap<String, FileState>) -> u64 {
    let found = tree_on_disk(root);
    assert!(
        found == *expected,
        "{} holds {found:#?}, expected {expected:#?}",
        root.display()
    );
    found.values().map(|file| file.bytes.len() as u64).sum()
}

#[test]
fn two_hundred_syncs_ride_out_s3_faults_at_20_percent() {
    // 200 clients at once: no other scenario of this binary runs meanwhile (the watch
    // scenario has a latency bound).
    let Some(_alone) = Setup::start_alone() else {
        return;
    };
    let Some(services) = Services::from_env() else {
        return;
    };
    let real_endpoint = services.s3.endpoint.clone();
    let proxy = FaultyS3::start(FaultyS3::target_of(&real_endpoint), FaultPlan::none());
    let mut through_proxy = services.clone();
    through_proxy.s3.endpoint = proxy.endpoint();
    // The bucket is created (and, at the end, removed) through the proxy, without faults.
    let env = ServerEnvironment::production(&through_proxy);
    let faults_off = FaultsOff(&proxy);
    env.create_user(USER);
    env.create_team(TEAM, USER);
    let server = env.serve(&[
        "--cache-bytes",
        CACHE_BYTES,
        "--max-connections-per-address",
        "0",
    ]);
    let url = server.url().to_owned();
    let home = ClientHome::new();
    home.login(&url, USER);

    // Setup, without faults: 100 projects at version 1, one copy at the version, one empty.
    let setting_up = Instant::now();
    let indexes: Vec<usize> = (0..PROJECTS).collect();
    let projects: Vec<Project> = in_pool(&indexes, POOL, |&index| {
        let created = home.json(
            home.path(),
            &["projects", "create", "--team", TEAM, &format!("p{index}")],
        );
        let id = created["id"].as_str().expect("a project id").to_owned();
        let first = init(&home, &url, &id, &format!("p{index}-0"));
        for (path, bytes) in seed_files(index) {
            write(&first, &path, &bytes);
        }
        let pushed = home.json(&first, &["push", "-m", "seed"]);
        assert_eq!(pushed["push"]["version"], 1, "{pushed}");
        let second = init(&home, &url, &id, &format!("p{index}-1"));
        Project {
            id,
            copies: [first, second],
        }
    });
    eprintln!("setup took {:?}", setting_up.elapsed());

    // 200 syncs at once, 20% of S3 requests faulty.
    proxy.set_plan(FaultPlan::uniform(SEED, FAULT_RATE));
    let before = answers_by_status(&url);
    let before_syncs = proxy.counts();
    let syncs: Vec<(usize, usize, &Path)> = projects
        .iter()
        .enumerate()
        .flat_map(|(index, project)| {
            project
                .copies
                .iter()
                .enumerate()
                .map(move |(side, copy)| (index, side, copy.as_path()))
        })
        .collect();
    let start = Barrier::new(syncs.len());
    let syncing = Instant::now();
    let outcomes: Vec<(Duration, std::process::Output)> = std::thread::scope(|scope| {
        let threads: Vec<_> = syncs
            .iter()
            .map(|&(index, side, copy)| {
                let (home, start) = (&home, &start);
                scope.spawn(move || {
                    let (path, bytes) = own_file(index, side);
                    write(copy, &path, &bytes);
                    start.wait();
                    let began = Instant::now();
                    let output = home.run(copy, &["--json", "sync", "-m", &path]);
                    (began.elapsed(), output)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a sync thread"))
            .collect()
    });
    let wall = syncing.elapsed();
    let failed: Vec<String> = syncs
        .iter()
        .zip(&outcomes)
        .filter(|(_, (_, output))| !output.status.success())
        .map(|((index, side, _), (took, output))| {
            format!(
                "p{index}-{side} after {took:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} syncs failed; the first: {:#?}\nfaults:\n{}",
        failed.len(),
        syncs.len(),
        &failed[..failed.len().min(3)],
        proxy.counts()
    );
    for (_, output) in &outcomes {
        let answer: Value = serde_json::from_slice(&output.stdout).expect("sync's JSON");
        assert!(answer.is_object(), "{answer}");
    }
    let mut took: Vec<Duration> = outcomes.iter().map(|(took, _)| *took).collect();
    took.sort();
    let after_syncs = proxy.counts();
    let during_syncs = after_syncs.since(&before_syncs);

    // Faults still on: every copy pulls, every project is cloned afresh, and each tree is
    // the expected one byte for byte.
    let checking = Instant::now();
    let compared: Vec<u64> = in_pool(&indexes, POOL, |&index| {
        let project = &projects[index];
        let expected = expected_tree(index);
        let mut bytes = 0;
        for copy in &project.copies {
            home.json(copy, &["pull"]);
            bytes += assert_tree(copy, &expected);
        }
        let clone = format!("p{index}-clone");
        home.json(home.path(), &["clone", "--project", &project.id, &clone]);
        bytes + assert_tree(&home.path().join(&clone), &expected)
    });
    let compared: u64 = compared.iter().sum();
    let after = answers_by_status(&url);
    let answered = |status: u16| {
        after.get(&status).copied().unwrap_or(0) - before.get(&status).copied().unwrap_or(0)
    };
    let during_checks = proxy.counts().since(&after_syncs);
    // Why the server answered 503, if it did (the log has the store's error).
    let unavailable: Vec<String> = env
        .log_text()
        .lines()
        .filter(|line| line.contains("unavailable"))
        .map(str::to_owned)
        .collect();

    // An outage: for two seconds every GET breaks off. A clone (a project is larger than the
    // cache, so it reads from S3) is answered 503 with Retry-After, retries, and succeeds once
    // S3 is back.
    proxy.set_plan(
        FaultPlan::uniform(SEED, 1.0)
            .with_faults(&[Fault::Truncate])
            .with_rate(RequestKind::Put, 0.0),
    );
    let outage = Instant::now();
    let cloned = std::thread::scope(|scope| {
        let clone = scope.spawn(|| {
            let args = ["--json", "clone", "--project", &projects[0].id, "outage"];
            home.run(home.path(), &args)
        });
        std::thread::sleep(Duration::from_secs(2));
        proxy.set_plan(FaultPlan::uniform(SEED, FAULT_RATE));
        clone.join().expect("the clone's thread")
    });
    assert!(
        cloned.status.success(),
        "the clone did not outlast the outage: {}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    assert_tree(&home.path().join("outage"), &expected_tree(0));
    let after_outage = answers_by_status(&url);
    let refused =
        after_outage.get(&503).copied().unwrap_or(0) - after.get(&503).copied().unwrap_or(0);
    eprintln!(
        "a clone through a 2 s outage of GETs took {:?}: {refused} answers 503, then success",
        outage.elapsed()
    );
    assert!(refused > 0, "the outage was not seen: {after_outage:?}");
    assert_eq!(after_outage.get(&500), after.get(&500), "{after_outage:?}");
    drop(faults_off);

    eprintln!(
        "{} syncs at once, all succeeded in {wall:?}: p50 {:?}, p99 {:?}, max {:?}",
        syncs.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        percentile(&took, 1.0),
    );
    eprintln!(
        "then {} pulls and {PROJECTS} clones under faults in {:?}: {compared} bytes compared, 0 \
         differ",
        PROJECTS * 2,
        checking.elapsed()
    );
    eprintln!(
        "server answers while faulty: {} 503 (retried by the clients), {} 500",
        answered(503),
        answered(500)
    );
    for line in unavailable.iter().take(5) {
        eprintln!("  {line}");
    }
    for (what, counts) in [
        ("the syncs", &during_syncs),
        ("the pulls and clones", &during_checks),
    ] {
        eprintln!(
            "S3 faults injected during {what}: {} of {} requests\n{counts}",
            counts.total_injected(),
            counts.total_requests(),
        );
    }
    assert_eq!(answered(500), 0, "a store fault answered 500: {after:?}");
    assert!(
        during_syncs.total_injected() as f64 > 0.15 * during_syncs.total_requests() as f64,
        "too few faults to show anything:\n{during_syncs}"
    );

    // The store is whole, read over the real endpoint.
    let output = env
        .command(&["fsck", "--read-data"])
        .env("CAIRN_S3_ENDPOINT", &real_endpoint)
        .output()
        .expect("running fsck");
    assert!(
        output.status.success(),
        "fsck --read-data: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
