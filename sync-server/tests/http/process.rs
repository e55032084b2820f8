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

/// A sign-in whose head is sent whole and whose body trickles: it holds its connection until
/// the server closes it. The stream, or `None` when the server refused the connection at once.
fn trickling_sign_in(address: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).expect("connecting");
    // A refused connection is closed by the server at once; writing to it may fail, which is
    // what the caller looks at later.
    let _ = stream.write_all(
        b"POST /v1/sessions HTTP/1.1\r\nHost: cairn\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"login\"",
    );
    stream
}

/// Whether the server still holds `stream` open: a read would wait, rather than end (or fail,
/// for a connection the server reset). Asked without waiting.
fn still_open(stream: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    stream.set_nonblocking(true).unwrap();
    let open = matches!(
        stream.peek(&mut byte),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    open
}

/// Reads until the server closes `stream`: what it sent.
fn read_to_close(stream: &mut std::net::TcpStream, limit: Duration) -> String {
    use std::io::Read;
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the server kept the connection open past {limit:?}: {error}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Slow clients: with the open-file limit at 256, 300 anonymous connections from one address,
/// each trickling a sign-in body, take at most their address's share; `/healthz` and an
/// authenticated request from another address are answered meanwhile; and each trickle is
/// closed at the body deadline with `408 body-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_cannot_starve_others() {
    let env = environment(Mode::Embedded).expect("embedded");
    let (token, _project) = admin_setup(&env);
    let server = env.serve_with_file_limit(256, &[]);
    let address = server.url().trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let trickles: Vec<std::net::TcpStream> =
        (0..300).map(|_| trickling_sign_in(&address)).collect();
    // Another client, from another address.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = other
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .expect("/healthz answers while 300 trickles are open");
    assert_eq!(health.status(), 200);
    let account = other
        .get(format!("{}/v1/account", server.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("an authenticated request is answered");
    assert_eq!(account.status(), 200);
    // The trickles past the address's share were closed at once, without an answer; the
    // share is at most the setting, and at most half of what 256 files allow.
    // The server closes a refused connection as soon as it accepts it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut held, refused): (Vec<_>, Vec<_>) = trickles.into_iter().partition(still_open);
    let share = held.len();
    assert!(
        (16..=sync_server::config::DEFAULT_CONNECTIONS_PER_ADDRESS.min(256 / 2)).contains(&share),
        "{share} connections held from one address"
    );
    assert_eq!(refused.len(), 300 - share);
    let trickles = &mut held;
    // The others get their answer at the deadline, not before.
    let deadline = sync_server::api::request::SMALL_BODY_DEADLINE;
    let answer = read_to_close(&mut trickles[0], deadline + Duration::from_secs(15));
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-timeout"), "{answer}");
    assert!(
        waited >= deadline - Duration::from_secs(1),
        "closed after {waited:?}, before the deadline"
    );
    for stream in &mut trickles[1..] {
        let answer = read_to_close(stream, Duration::from_secs(15));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    drop(server);
}
