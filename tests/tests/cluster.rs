//! A cluster on real parts: three `sync-server` nodes on 127.0.0.2, .3 and .4 over one
//! PostgreSQL database and one S3 bucket, behind HAProxy started with the shipped
//! `deploy/haproxy.cfg`; clients are the real `cairn` binary and plain HTTP.
//!
//! - A watcher on one node hears a push made through another (PostgreSQL `LISTEN`/`NOTIFY`),
//!   and a stream on one node ends when its token is revoked through another.
//! - A node drained with SIGTERM under load: no request through HAProxy fails, and the node
//!   leaves the registry.
//! - `cairn watch` through HAProxy rides through the drain, then the death, of the node that
//!   holds its event stream: each later push still reaches it, and it prints no error.
//! - Clients pushing and pulling while one node is killed (SIGKILL), another restarted and the
//!   first brought back: every acknowledged push is in the history with its root, every node
//!   reads the same heads, `fsck` is clean, and every `cairn` command succeeded without an
//!   error message.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use cairn_test_support::files::write;
use cairn_test_support::{ClientHome, Tree, admin_field};
use serde_json::Value;

use crate::support::client::{Cairn, Running};
use crate::support::cluster::{Cluster, head};
use crate::support::server::USER;

#[test]
fn a_watcher_on_one_node_hears_a_push_through_another() {
    let Some(cluster) = Cluster::start(false) else {
        return;
    };
    let project = cluster.create_project("api");
    // The watcher, on node A (the first), reads the raw event stream on a thread.
    let events = cluster
        .http
        .get(format!(
            "{}/v1/projects/{project}/events",
            cluster.node_url(0)
        ))
        .bearer_auth(&cluster.token)
        .timeout(Duration::from_secs(600))
        .send()
        .expect("GET events");
    assert_eq!(events.status(), 200);
    let (heads, heard) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(events).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data:") {
                let event: Value = serde_json::from_str(data.trim()).expect("a JSON event");
                if heads.send(event["version"].as_u64().unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    assert_eq!(heard.recv_timeout(Duration::from_secs(10)), Ok(0));
    // The push, through node C (the third), with the real client.
    let home = ClientHome::new();
    home.login(&cluster.node_url(2), USER);
    let copy = home.path().join("copy");
    let cloned = home.json(home.path(), &["clone", "--project", &project, "copy"]);
    assert_eq!(cloned["pull"]["version"], 0, "{cloned}");
    write(&copy, "requests/login.json", br#"{"method": "POST"}"#);
    let pushed = home.json(&copy, &["push"]);
    assert_eq!(pushed["push"]["version"], 1, "{pushed}");
    let after = Instant::now();
    // The issue's bound: node A's watcher hears it within 2 seconds.
    let version = heard.recv_timeout(Duration::from_secs(2));
    assert_eq!(
        version,
        Ok(1),
        "node A's watcher did not hear the push through node C within 2 s"
    );
    eprintln!(
        "heard on node A {:?} after the push returned",
        after.elapsed()
    );
}

#[test]
fn a_token_revoked_through_one_node_ends_its_stream_on_another() {
    let Some(cluster) = Cluster::start(false) else {
        return;
    };
    let project = cluster.create_project("api");
    let created = cluster
        .env
        .admin(&["create-token", "--user", USER, "--name", "laptop"]);
    let (token_id, token) = (
        admin_field(&created, "token_id"),
        admin_field(&created, "token"),
    );
    let events = cluster
        .http
        .get(format!(
            "{}/v1/projects/{project}/events",
            cluster.node_url(0)
        ))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(600))
        .send()
        .expect("GET events");
    assert_eq!(events.status(), 200);
    let (ended, end) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut events = events;
        let mut buffer = [0u8; 1024];
        while matches!(events.read(&mut buffer), Ok(read) if read > 0) {}
        let _ = ended.send(());
    });
    let revoked = cluster
        .http
        .delete(format!("{}/v1/tokens/{token_id}", cluster.node_url(2)))
        .bearer_auth(&cluster.token)
        .send()
        .expect("DELETE token");
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        end.recv_timeout(Duration::from_secs(5)),
        Ok(()),
        "the stream on node A outlived its token, revoked through node C, by 5 s"
    );
}

/// Requests of every kind a client sends for reading, through HAProxy, without retrying:
/// counts what was sent and what failed (with the first failures' descriptions).
#[derive(Default)]
struct Load {
    sent: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn run(&self, cluster_url: &str, token: &str, projects: &[String], stop: &AtomicBool) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut turn = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let project = &projects[turn % projects.len()];
            let base = format!("{cluster_url}/v1/projects/{project}");
            let request = match turn % 3 {
                0 => http.get(&base),
                1 => http.get(format!("{base}/versions")),
                _ => http
                    .post(format!("{base}/pull"))
                    .header("content-type", "application/json")
                    .body("{}"),
            };
            turn += 1;
            self.sent.fetch_add(1, Ordering::Relaxed);
            let outcome = request
                .bearer_auth(token)
                .send()
                .and_then(|response| {
                    let status = response.status();
                    response.bytes().map(|body| (status, body.len()))
                })
                .map_err(|error| format!("{error:?}"))
                .and_then(|(status, _)| {
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("status {status}"))
                    }
                });
            if let Err(failure) = outcome {
                self.failures
                    .lock()
                    .unwrap()
                    .push(format!("{base} (turn {turn}): {failure}"));
            }
        }
    }
}

/// Pushes new versions of `project` through `cluster_url` with plain HTTP until `stop`, each
/// with a 64 KiB file of noise: a body larger than HAProxy's buffer, which HAProxy cannot send
/// again, so only the node's drain keeps it from failing. Counts into `load` as `Load::run`.
fn push_load(load: &Load, cluster_url: &str, token: &str, project: &str, stop: &AtomicBool) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut version = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let noise = cairn_test_support::noise(64 * 1024, version + 1);
        let tree = Tree::build(&[
            ("blob.bin", noise.as_slice(), false),
            ("version.txt", version.to_string().as_bytes(), false),
        ]);
        let push_id = cairn_test_support::unique_name("drain-");
        let url = format!(
            "{cluster_url}/v1/projects/{project}/push?push_id={push_id}&base_version={version}&root={}",
            tree.root
        );
        load.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = http
            .post(&url)
            .bearer_auth(token)
            .header("content-type", sync_protocol::wire::OBJECTS_MEDIA_TYPE)
            .body(tree.stream())
            .send()
            .map_err(|error| format!("{error:?}"))
            .and_then(|response| match response.status().as_u16() {
                200 => Ok(()),
                status => Err(format!("status {status}: {:?}", response.text())),
            });
        match outcome {
            Ok(()) => version += 1,
            Err(failure) => {
                load.failures
                    .lock()
                    .unwrap()
                    .push(format!("push {project} v{}: {failure}", version + 1));
                return;
            }
        }
    }
}

#[test]
fn a_node_drained_under_load_fails_no_request() {
    let Some(mut cluster) = Cluster::start(true) else {
        return;
    };
    // Projects with content, so pulls stream objects; enough of them that every node owns some.
    let home = ClientHome::new();
    home.login(&cluster.haproxy().url(), USER);
    let mut projects = Vec::new();
    for index in 0..6 {
        let project = cluster.create_project(&format!("p{index}"));
        let name = format!("copy{index}");
        home.json(home.path(), &["clone", "--project", &project, &name]);
        let copy = home.path().join(&name);
        for file in 0..20 {
            write(
                &copy,
                &format!("requests/r{file}.json"),
                format!("{{\"n\": {file}, \"project\": {index}}}").as_bytes(),
            );
        }
        home.json(&copy, &["push"]);
        projects.push(project);
    }
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<_> = (0..3)
        .map(|_| {
            let (load, stop, projects) = (load.clone(), stop.clone(), projects.clone());
            let url = cluster.haproxy().url();
            let token = cluster.token.clone();
            std::thread::spawn(move || load.run(&url, &token, &projects, &stop))
        })
        .collect();
    for index in 0..3 {
        let project = cluster.create_project(&format!("pushed{index}"));
        let (load, stop) = (load.clone(), stop.clone());
        let url = cluster.haproxy().url();
        let token = cluster.token.clone();
        workers.push(std::thread::spawn(move || {
            push_load(&load, &url, &token, &project, &stop)
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = load.sent.load(Ordering::Relaxed);
    let drained_id = cluster
        .registry()
        .into_iter()
        .find(|node| node["address"] == cluster.addresses[1].as_str())
        .expect("node 2 in the registry")["id"]
        .clone();
    cluster.node(1).terminate();
    // Draining: not ready at once, but alive, and still serving what reaches it directly,
    // asking the client to close the connection.
    let node = cluster.node_url(1);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let ready = cluster.http.get(format!("{node}/readyz")).send().unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {}",
            ready.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let healthy = cluster.http.get(format!("{node}/healthz")).send().unwrap();
    assert_eq!(healthy.status(), 200);
    let served = cluster
        .http
        .get(format!("{node}/v1/projects/{}", projects[0]))
        .bearer_auth(&cluster.token)
        .send()
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["connection"], "close");
    // HAProxy sees it leave through /readyz; then it stops and exits 0.
    cluster
        .haproxy()
        .wait_for_states(&["UP", "DOWN", "UP"], Duration::from_secs(5));
    let status = cluster
        .node(1)
        .wait_for_exit(Duration::from_secs(40))
        .expect("the drained node exits");
    assert!(status.success(), "{status}");
    cluster.nodes[1] = None;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("a load thread");
    }
    let sent = load.sent.load(Ordering::Relaxed);
    let failures = load.failures.lock().unwrap();
    eprintln!(
        "{sent} requests through HAProxy, {} while node 2 drained and after",
        sent - before
    );
    assert!(
        sent - before > 100,
        "too little load to show anything: {sent}"
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // It left the registry; the other two are there and live.
    let registry = cluster.registry();
    assert!(
        registry.iter().all(|node| node["id"] != drained_id),
        "{registry:?}"
    );
    let live: Vec<&Value> = registry
        .iter()
        .filter(|node| node["state"] == "live")
        .collect();
    assert_eq!(live.len(), 2, "{registry:?}");
}

/// One client's record: every push it was told committed, and every command that failed.
#[derive(Default)]
struct Record {
    /// (project, version, root) of each acknowledged push.
    pushes: Vec<(String, u64, String)>,
    failures: Vec<String>,
    commands: u64,
}

/// `cairn --json args...` in `dir`: the JSON answer, or a failure naming what it printed.
fn cairn(home: &ClientHome, dir: &Path, args: &[&str]) -> Result<Value, String> {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let output = home.run(dir, &full);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("cairn {args:?} exited {}: {stderr}", output.status));
    }
    // A routine failover is ridden through in silence: no error or warning for a user to act on.
    let lowered = stderr.to_lowercase();
    if lowered.contains("error") || lowered.contains("warning") {
        return Err(format!("cairn {args:?} succeeded but printed: {stderr}"));
    }
    serde_json::from_slice(&output.stdout).map_err(|error| format!("cairn {args:?}: {error}"))
}

/// Pushes a change to `copy` of `project` until `stop`, then records what it saw.
fn pusher(home: &ClientHome, copy: &Path, project: &str, who: usize, stop: &AtomicBool) -> Record {
    let mut record = Record::default();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        write(
            copy,
            &format!("requests/client{who}.json"),
            format!("{{\"client\": {who}, \"round\": {round}}}").as_bytes(),
        );
        record.commands += 1;
        match cairn(home, copy, &["push"]) {
            Ok(answer) => {
                let push = &answer["push"];
                if push["pushed"] == true {
                    record.pushes.push((
                        project.to_owned(),
                        push["version"].as_u64().expect("a version"),
                        push["root"].as_str().expect("a root").to_owned(),
                    ));
                }
            }
            Err(failure) => record.failures.push(failure),
        }
        // People edit between pushes: without a pause, two clients pushing the same project
        // back to back in a loop keep beating each other to the head, which is contention,
        // not what this test is about.
        std::thread::sleep(Duration::from_millis(100 + rand_below(200)));
    }
    record
}

/// A number in `0..bound` from the clock's nanoseconds: enough to spread two loops apart.
fn rand_below(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::from(since.subsec_nanos()));
    nanos % bound
}

/// Pulls `copy` until `stop`.
fn puller(home: &ClientHome, copy: &Path, stop: &AtomicBool) -> Record {
    let mut record = Record::default();
    while !stop.load(Ordering::Relaxed) {
        record.commands += 1;
        if let Err(failure) = cairn(home, copy, &["pull"]) {
            record.failures.push(failure);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    record
}

#[test]
fn the_cluster_survives_a_killed_node_and_a_restart() {
    let Some(mut cluster) = Cluster::start(true) else {
        return;
    };
    let home = Arc::new(ClientHome::new());
    home.login(&cluster.haproxy().url(), USER);
    // Three projects; two clients push to each (so they also merge), one pulls each.
    let projects: Vec<String> = (0..3)
        .map(|index| cluster.create_project(&format!("api{index}")))
        .collect();
    let copy = |name: String, project: &str| -> PathBuf {
        let answer = home.json(home.path(), &["clone", "--project", project, &name]);
        assert_eq!(answer["pull"]["version"], 0, "{answer}");
        home.path().join(name)
    };
    let mut copies = Vec::new();
    for (index, project) in projects.iter().enumerate() {
        for who in 0..2 {
            copies.push((
                copy(format!("push{index}-{who}"), project),
                project,
                Some(who),
            ));
        }
        copies.push((copy(format!("pull{index}"), project), project, None));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = copies
        .into_iter()
        .map(|(dir, project, pushing)| {
            let (home, stop, project) = (home.clone(), stop.clone(), project.clone());
            std::thread::spawn(move || match pushing {
                Some(who) => pusher(&home, &dir, &project, who, &stop),
                None => puller(&home, &dir, &stop),
            })
        })
        .collect();
    let started = Instant::now();
    let at = |seconds: u64| {
        let until = Duration::from_secs(seconds).saturating_sub(started.elapsed());
        std::thread::sleep(until);
    };
    at(4);
    eprintln!("killing node 2");
    cluster.node(1).kill();
    cluster.nodes[1] = None;
    at(9);
    eprintln!("restarting node 3");
    cluster.drain(2);
    cluster.restart(2);
    at(14);
    eprintln!("bringing node 2 back");
    cluster.restart(1);
    at(19);
    stop.store(true, Ordering::Relaxed);
    let mut pushes = Vec::new();
    let mut failures = Vec::new();
    let mut commands = 0;
    for client in clients {
        let record = client.join().expect("a client thread");
        pushes.extend(record.pushes);
        failures.extend(record.failures);
        commands += record.commands;
    }
    eprintln!(
        "{commands} cairn commands, {} acknowledged pushes",
        pushes.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {commands} cairn commands failed; first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(pushes.len() >= 10, "too few pushes to show anything");
    // Every node reads the same head of every project.
    eprintln!("clients stopped after {:?}", started.elapsed());
    cluster
        .haproxy()
        .wait_for_states(&["UP", "UP", "UP"], Duration::from_secs(20));
    let mut heads = Vec::new();
    for project in &projects {
        let seen: Vec<(u64, String)> = (0..3)
            .map(|node| {
                head(&cluster.get(&cluster.node_url(node), &format!("/v1/projects/{project}")))
            })
            .collect();
        assert!(
            seen.windows(2).all(|pair| pair[0] == pair[1]),
            "{project}: {seen:?}"
        );
        heads.push(seen[0].clone());
    }
    // Every acknowledged push is in the history with the root it was acknowledged with.
    for (project, version, root) in &pushes {
        let stored = cluster.get(
            &cluster.haproxy().url(),
            &format!("/v1/projects/{project}/versions/{version}"),
        );
        assert_eq!(stored["root"], root.as_str(), "{project} v{version}");
    }
    for ((project, (head_version, _)), index) in projects.iter().zip(&heads).zip(0..) {
        let acknowledged = pushes.iter().filter(|(p, _, _)| p == project).count() as u64;
        assert_eq!(
            *head_version, acknowledged,
            "project {index}: every version but 0 is an acknowledged push"
        );
    }
    // The store is whole.
    let checking = Instant::now();
    let output = cluster
        .env
        .command(&["fsck"])
        .output()
        .expect("running fsck");
    assert!(
        output.status.success(),
        "fsck: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("fsck took {:?}", checking.elapsed());
}

/// The node holding `count` event streams, from each running node's `/metrics`.
fn node_with_streams(cluster: &Cluster, count: u64) -> Option<usize> {
    (0..3).find(|&index| {
        cluster.nodes[index].is_some()
            && cluster
                .http
                .get(format!("{}/metrics", cluster.node_url(index)))
                .send()
                .and_then(|response| response.text())
                .is_ok_and(|text| {
                    text.lines()
                        .any(|line| line == format!("cairn_event_streams {count}"))
                })
    })
}

/// Waits until the node holding the watcher's stream is known.
fn watcher_node(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(index) = node_with_streams(cluster, 1) {
            return index;
        }
        assert!(
            Instant::now() < deadline,
            "no node holds the watch's event stream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pushes `text` as `note.txt` from `copy` and waits until the watched copy has it.
fn carried(cairn: &Cairn, copy: &Path, watched: &Path, text: &str, watch: &Running) {
    write(copy, "note.txt", text.as_bytes());
    cairn.json(copy, &["push"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(watched.join("note.txt")).ok().as_deref() != Some(text.as_bytes()) {
        assert!(
            Instant::now() < deadline,
            "the watch did not pull {text:?}: {:#?}",
            watch.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_watch_rides_through_its_nodes_drain_and_death() {
    let Some(mut cluster) = Cluster::start(true) else {
        return;
    };
    let project = cluster.create_project("watched");
    let cairn = Cairn::login_at(&cluster.haproxy().url());
    let (watched, _) = cairn.clone(&project, "watched");
    let (other, _) = cairn.clone(&project, "other");
    let watch = cairn.spawn(&watched, &["watch"]);
    let first = watcher_node(&cluster);
    carried(&cairn, &other, &watched, "one", &watch);
    // Its node drains: the stream ends with a reconnect hint, and the watch comes back
    // through HAProxy to another node.
    cluster.drain(first);
    let second = watcher_node(&cluster);
    assert_ne!(second, first);
    carried(&cairn, &other, &watched, "two", &watch);
    cluster.restart(first);
    // Its new node dies: the stream breaks, and the watch reconnects again.
    cluster.node(second).kill();
    cluster.nodes[second] = None;
    let third = watcher_node(&cluster);
    assert_ne!(third, second);
    carried(&cairn, &other, &watched, "three", &watch);
    let printed = watch.output();
    assert!(
        printed.iter().all(|line| {
            let line = line.to_lowercase();
            !line.contains("error") && !line.contains("warning")
        }),
        "the watch printed errors for a routine failover: {printed:#?}"
    );
}
