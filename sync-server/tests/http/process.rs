//! The real `sync-server` binary: the embedded default with no settings, `admin` and `fsck`,
//! graceful shutdown on SIGTERM, and the crash test (SIGKILL at many points during pushes).

use std::time::{Duration, Instant};

use cairn_test_support::{Mode, ServerEnvironment, admin_field};
use serde_json::{Value, json};

use crate::http::support::{Tree, stream_of, tree};

/// `mode`'s environment, running this crate's own `sync-server` (which cargo builds for these
/// tests); `None` (skipped) when production mode's services are not configured.
fn environment(mode: Mode) -> Option<ServerEnvironment> {
    Some(ServerEnvironment::new(mode)?.with_binary(env!("CARGO_BIN_EXE_sync-server")))
}

/// Runs `sync-server args...` to completion: (exit success, stdout).
fn run(env: &ServerEnvironment, args: &[&str], password: Option<&str>) -> (bool, String) {
    let mut command = env.command(args);
    if let Some(password) = password {
        command.env("CAIRN_PASSWORD", password);
    }
    let output = command.output().expect("running sync-server");
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Creates alice, her team and project with `admin`: (token, project id).
fn admin_setup(env: &ServerEnvironment) -> (String, String) {
    // The shell applies the sign-up rules of the API.
    for (name, email, password) in [
        ("bad name", "bad@example.com", "correct horse battery"),
        ("bob", "not-an-email", "correct horse battery"),
        ("bob", "bob@example.com", "short"),
    ] {
        let (ok, _) = run(
            env,
            &["admin", "create-user", "--name", name, "--email", email],
            Some(password),
        );
        assert!(
            !ok,
            "admin create-user accepted {name:?} {email:?} {password:?}"
        );
    }
    env.create_user("alice");
    env.create_team("crew", "alice");
    let output = env.admin(&["create-project", "--team", "crew", "--name", "api"]);
    let project = admin_field(&output, "project");
    let output = env.admin(&["create-token", "--user", "alice"]);
    (admin_field(&output, "token"), project)
}

fn version_tree(n: usize) -> Tree {
    let contents: Vec<(String, String)> = (0..24)
        .map(|file| {
            let body = format!(
                "{{\"file\":{file},\"edit\":{}}}",
                if file % 4 == n % 4 { n } else { 0 }
            );
            (format!("dir{}/req{file}.json", file % 3), body.repeat(40))
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = contents
        .iter()
        .map(|(path, body)| (path.as_str(), body.as_str()))
        .collect();
    tree(&borrowed)
}

async fn push(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    project: &str,
    push_id: &str,
    base_version: u64,
    tree: &Tree,
) -> Result<Value, String> {
    let response = http
        .post(format!(
            "{base}/v1/projects/{project}/push?push_id={push_id}&base_version={base_version}&root={}",
            tree.root
        ))
        .bearer_auth(token)
        .body(stream_of(&tree.objects))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|error| error.to_string())?;
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

async fn head(http: &reqwest::Client, base: &str, token: &str, project: &str) -> (u64, String) {
    let body: Value = http
        .get(format!("{base}/v1/projects/{project}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("head")
        .json()
        .await
        .expect("head json");
    (
        body["version"].as_u64().expect("version"),
        body["root"].as_str().expect("root").to_owned(),
    )
}

/// At least 50 SIGKILLs at random points during pushes; afterwards every acknowledged push is
/// in the history, the head pulls whole, and fsck is clean.
async fn crash_during_pushes(mode: Mode, kills: usize, max_delay_ms: u64) {
    let Some(env) = environment(mode) else {
        return;
    };
    let (token, project) = admin_setup(&env);
    let http = reqwest::Client::new();
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut next = 1usize;
    // Kills that landed while a push was in flight (its outcome unknown to the client).
    let mut interrupted = 0usize;
    for kill in 0..kills {
        let mut server = env.serve(&[]);
        let base = server.url().to_owned();
        let (mut version, _) = head(&http, &base, &token, &project).await;
        let deadline =
            Instant::now() + Duration::from_millis(5 + rand::random::<u64>() % max_delay_ms);
        // Push until the deadline, then kill the server wherever it is.
        let in_flight = std::cell::Cell::new(false);
        let pushing = async {
            loop {
                in_flight.set(true);
                let t = version_tree(next);
                next += 1;
                let push_id = format!("crash-{kill}-{next}");
                match push(&http, &base, &token, &project, &push_id, version, &t).await {
                    Ok(answer) => {
                        in_flight.set(false);
                        version = answer["version"].as_u64().expect("version");
                        acknowledged.push((version, t.root.to_string()));
                    }
                    Err(error) => panic!("a push failed while the server was up: {error}"),
                }
            }
        };
        tokio::select! {
            () = pushing => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
        server.kill();
        interrupted += usize::from(in_flight.get());
    }
    eprintln!(
        "crash test ({mode:?}): {kills} kills, {interrupted} during a push, {} pushes acknowledged",
        acknowledged.len()
    );
    assert!(acknowledged.len() > 5, "too few pushes got through");
    assert!(
        interrupted >= kills / 2,
        "too few kills landed during a push"
    );

    let mut server = env.serve(&[]);
    let base = server.url().to_owned();
    for (version, root) in &acknowledged {
        let body: Value = http
            .get(format!("{base}/v1/projects/{project}/versions/{version}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("version")
            .json()
            .await
            .expect("version json");
        assert_eq!(
            body["root"].as_str(),
            Some(root.as_str()),
            "version {version}"
        );
    }
    let response = http
        .post(format!("{base}/v1/projects/{project}/pull"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("pull");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("pull body");
    sync_protocol::stream::decode_stream(&bytes).expect("the head pulls whole");
    server.kill();

    let (clean, report) = run(&env, &["fsck", &project], None);
    assert!(clean, "fsck found damage:\n{report}");
    assert!(report.contains("status: clean"), "{report}");
    let (clean, report) = run(&env, &["fsck"], None);
    assert!(clean && report.contains("projects: 1"), "{report}");

    // Collection after the crashes: what killed pushes left (unreferenced objects, packs never
    // indexed) goes, every acknowledged version stays whole.
    let (ok, report) = run(&env, &["gc", "--grace", "0s"], None);
    assert!(ok, "gc failed:\n{report}");
    std::thread::sleep(Duration::from_millis(5));
    let (ok, report) = run(&env, &["gc", "--grace", "0s"], None);
    assert!(ok, "gc failed:\n{report}");
    assert!(report.contains(", 0 unreferenced,"), "{report}");
    let (clean, report) = run(&env, &["fsck", "--read-data", &project], None);
    assert!(clean, "fsck after gc found damage:\n{report}");
    assert!(report.contains("unreferenced objects: 0"), "{report}");
    assert!(report.contains("unindexed packs: 0"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_embedded() {
    crash_during_pushes(Mode::Embedded, 60, 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_production() {
    // S3 pushes are slower: kill later on average, so that some pushes complete.
    crash_during_pushes(Mode::Production, 50, 600).await;
}

/// SIGTERM lets an in-flight request finish, then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests() {
    let env = environment(Mode::Embedded).expect("embedded");
    let (token, project) = admin_setup(&env);
    let mut server = env.serve(&["--shutdown-grace-secs", "20"]);
    let base = server.url().to_owned();
    let t = version_tree(1);
    let body = stream_of(&t.objects);
    // The body trickles in over about a second: the request is in flight when SIGTERM lands.
    let pieces: Vec<Vec<u8>> = body
        .chunks(body.len() / 10 + 1)
        .map(<[u8]>::to_vec)
        .collect();
    let slow = futures_util::stream::unfold(pieces.into_iter(), |mut pieces| async move {
        let piece = pieces.next()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(piece), pieces))
    });
    let http = reqwest::Client::new();
    let request = http
        .post(format!(
            "{base}/v1/projects/{project}/push?push_id=slow&base_version=0&root={}",
            t.root
        ))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(slow))
        .send();
    let pid = server.pid();
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    };
    let (response, ()) = tokio::join!(request, terminate);
    let response = response.expect("the in-flight push is answered");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let status = server
        .wait_for_exit(Duration::from_secs(20))
        .expect("the server exits after the request");
    assert!(status.success(), "{status:?}");
    // New connections are refused now.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}

/// `sync-server serve` with no settings: the embedded default in `./.cairn-data`, and the site
/// from `./dist` when it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_settings_is_embedded() {
    let env = environment(Mode::Embedded).expect("embedded");
    let dir = env.dir();
    std::fs::create_dir_all(dir.join("dist/docs")).unwrap();
    std::fs::write(dir.join("dist/index.html"), "<h1>Cairn</h1>").unwrap();
    std::fs::write(dir.join("dist/docs/index.html"), "<h1>Docs</h1>").unwrap();
    std::fs::write(dir.join("dist/404.html"), "<h1>Lost</h1>").unwrap();
    let server = env.serve(&[]);
    let base = server.url();
    assert!(dir.join(".cairn-data/catalog.sqlite3").exists());
    let http = reqwest::Client::new();
    let index = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.text().await.unwrap().contains("Cairn"));
    let docs = http.get(format!("{base}/docs/")).send().await.unwrap();
    assert!(docs.text().await.unwrap().contains("Docs"));
    let lost = http.get(format!("{base}/nope.html")).send().await.unwrap();
    assert_eq!(lost.status(), 404);
    assert!(lost.text().await.unwrap().contains("Lost"));
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    // The API still answers with problem documents under /v1.
    let missing = http.get(format!("{base}/v1/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    drop(server);
}
