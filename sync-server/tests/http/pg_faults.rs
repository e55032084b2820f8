//! PostgreSQL connections dying under pushes (production mode only).
//!
//! - At each write of a push, in turn: a trigger makes the backend terminate itself
//!   (`pg_terminate_backend(pg_backend_pid())`) at the first row the statement writes, or, for
//!   the commit, at `COMMIT` itself (a deferred constraint trigger). Which call dies is counted
//!   by a sequence, which a dying transaction cannot roll back. The push fails; the client sends
//!   it again with the same push id, as `cairn` does, and it commits exactly once.
//! - Anywhere, at random: another connection terminates the server's backends every few
//!   milliseconds while pushes run, so some die after their commit and before their answer;
//!   the retry with the same push id is answered with the receipt, never a second version.
//!
//! Afterwards the history is checked: versions contiguous, each acknowledged push exactly once
//! with its root, the head the last of them; and the server's pool serves requests again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::http::support::{Mode, TestServer, User, tree};

/// The writes of a push a fault is planted at: (name, table, when).
const POINTS: [(&str, &str, &str); 5] = [
    ("pack", "packs", "BEFORE INSERT"),
    ("head", "projects", "BEFORE UPDATE"),
    ("version", "versions", "BEFORE INSERT"),
    ("receipt", "push_receipts", "BEFORE INSERT"),
    ("commit", "versions", "COMMIT"),
];
/// Pushes per point.
const RUNS: u64 = 20;

/// A connection to the server's database, for planting faults.
async fn connect(server: &TestServer) -> tokio_postgres::Client {
    let url = server
        .storage
        .database
        .as_ref()
        .expect("production mode")
        .url()
        .to_owned();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(connection);
    client
}

/// Plants the triggers: the first call at `point` after its sequence restarts kills its backend.
async fn plant(client: &tokio_postgres::Client) {
    let mut sql = String::from(
        "CREATE FUNCTION cairn_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF nextval('fault_' || TG_ARGV[0]) = 1 THEN
                 PERFORM pg_terminate_backend(pg_backend_pid());
             END IF;
             RETURN NEW;
         END $$;",
    );
    for (point, table, when) in POINTS {
        sql.push_str(&format!("CREATE SEQUENCE fault_{point} START 1000;"));
        if when == "COMMIT" {
            sql.push_str(&format!(
                "CREATE CONSTRAINT TRIGGER fault_{point} AFTER INSERT ON {table}
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cairn_fault('{point}');"
            ));
        } else {
            sql.push_str(&format!(
                "CREATE TRIGGER fault_{point} {when} ON {table}
                 FOR EACH ROW EXECUTE FUNCTION cairn_fault('{point}');"
            ));
        }
    }
    client
        .batch_execute(&sql)
        .await
        .expect("planting the faults");
}

/// Arms `point`: its next call dies.
async fn arm(client: &tokio_postgres::Client, point: &str) {
    client
        .batch_execute(&format!("ALTER SEQUENCE fault_{point} RESTART WITH 1"))
        .await
        .expect("arming a fault");
}

/// How many calls `point` has seen since it was armed.
async fn calls(client: &tokio_postgres::Client, point: &str) -> i64 {
    let row = client
        .query_one(
            &format!("SELECT last_value, is_called FROM fault_{point}"),
            &[],
        )
        .await
        .expect("reading a fault's sequence");
    let (last, called): (i64, bool) = (row.get(0), row.get(1));
    if called { last } else { 0 }
}

/// Sends the push of `files` on `base` with `push_id` until it is answered 200, as `cairn`
/// retries: every failure must be one a client retries (a 5xx or a broken connection). Its
/// answer, and how many attempts it took.
async fn push_until_answered(
    server: &TestServer,
    user: &User,
    project: &str,
    base: u64,
    push_id: &str,
    files: &[(&str, &str)],
) -> (Value, u32) {
    let t = tree(files);
    for attempt in 1..=50 {
        let sent = server
            .http
            .post(server.url(&format!(
                "/v1/projects/{project}/push?push_id={push_id}&base_version={base}&root={}",
                t.root
            )))
            .bearer_auth(&user.token)
            .header("content-type", sync_protocol::wire::OBJECTS_MEDIA_TYPE)
            .body(t.stream())
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 200 => {
                let answer: Value = response.json().await.expect("a push answer");
                assert_eq!(answer["root"], t.root.to_string(), "{answer}");
                return (answer, attempt);
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                assert!(
                    status.is_server_error(),
                    "push {push_id}: {status} is not a failure to retry: {body}"
                );
            }
            Err(error) => eprintln!("push {push_id}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
    }
    panic!("push {push_id} was never answered");
}

/// The project's whole history as (number, push id, root), oldest first.
async fn history(server: &TestServer, user: &User, project: &str) -> Vec<(u64, String, String)> {
    let page = server.versions(user, project, "?limit=1000").await;
    let mut versions: Vec<(u64, String, String)> = page["versions"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|version| {
            (
                version["number"].as_u64().unwrap(),
                version["push_id"].as_str().unwrap_or_default().to_owned(),
                version["root"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    versions.reverse();
    versions
}

/// Each acknowledged push (push id → (version, root)) is in the history exactly once, with its
/// root, and the versions are 0, 1, 2, ... with nothing else in between.
async fn assert_history(
    server: &TestServer,
    user: &User,
    project: &str,
    acknowledged: &BTreeMap<String, (u64, String)>,
) {
    let versions = history(server, user, project).await;
    let numbers: Vec<u64> = versions.iter().map(|(number, _, _)| *number).collect();
    assert_eq!(numbers, (0..versions.len() as u64).collect::<Vec<_>>());
    assert_eq!(versions.len() as u64, acknowledged.len() as u64 + 1);
    for (number, push_id, root) in &versions[1..] {
        let (version, acked_root) = acknowledged
            .get(push_id)
            .unwrap_or_else(|| panic!("version {number} is no acknowledged push: {push_id}"));
        assert_eq!((version, acked_root), (number, root), "push {push_id}");
    }
    // The pool serves again.
    let head = server.head(user, project).await;
    assert_eq!(head.0, acknowledged.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_at_each_write_of_a_push_loses_and_doubles_nothing() {
    let Some(server) = TestServer::start(Mode::Production, Default::default()).await else {
        return;
    };
    let database = connect(&server).await;
    plant(&database).await;
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let mut acknowledged = BTreeMap::new();
    let mut base = 0;
    for (point, _, _) in POINTS {
        let mut retried = 0;
        for run in 0..RUNS {
            arm(&database, point).await;
            let push_id = format!("{point}-{run}");
            let content = format!("{{\"point\": \"{point}\", \"run\": {run}}}");
            let (answer, attempts) = push_until_answered(
                &server,
                &alice,
                &project,
                base,
                &push_id,
                &[("a.json", &content)],
            )
            .await;
            assert!(
                calls(&database, point).await >= 1,
                "push {push_id} never reached the {point} fault"
            );
            retried += u32::from(attempts > 1);
            let version = answer["version"].as_u64().unwrap();
            assert_eq!(version, base + 1, "{answer}");
            acknowledged.insert(
                push_id,
                (version, answer["root"].as_str().unwrap().to_owned()),
            );
            base = version;
        }
        // The fault fired: every push of this point needed its retry.
        assert_eq!(
            retried, RUNS as u32,
            "the {point} fault did not fail its pushes"
        );
    }
    assert_history(&server, &alice, &project, &acknowledged).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_killed_at_random_lose_and_double_nothing() {
    let Some(server) = TestServer::start(Mode::Production, Default::default()).await else {
        return;
    };
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let database = connect(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut kills = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let killed = database
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .expect("terminating backends");
                kills += killed.len() as u64;
                let pause = 5 + rand::random::<u64>() % 20;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            kills
        })
    };
    let mut acknowledged = BTreeMap::new();
    let mut base = 0;
    let mut retried = 0;
    for run in 0..100 {
        let push_id = format!("random-{run}");
        let content = format!("{{\"run\": {run}}}");
        let (answer, attempts) = push_until_answered(
            &server,
            &alice,
            &project,
            base,
            &push_id,
            &[("a.json", &content)],
        )
        .await;
        retried += u32::from(attempts > 1);
        let version = answer["version"].as_u64().unwrap();
        assert_eq!(version, base + 1, "{answer}");
        acknowledged.insert(
            push_id,
            (version, answer["root"].as_str().unwrap().to_owned()),
        );
        base = version;
    }
    stop.store(true, Ordering::Relaxed);
    let kills = killer.await.unwrap();
    eprintln!("{kills} backends terminated; {retried} of 100 pushes needed a retry");
    assert!(
        retried > 0,
        "no push met a killed connection: the test showed nothing"
    );
    assert_history(&server, &alice, &project, &acknowledged).await;
    server.stop().await;
}
