//! The real `sync-server` binary in production mode (PostgreSQL and S3), on a free port, with
//! an account `alice` who owns the team `crew`; and its Prometheus counters.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::services::{Database, S3_REGION, Services, create_bucket};

/// The account every scenario works as, and its password.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery";
/// The team alice owns; projects are created in it.
pub const TEAM: &str = "crew";

/// The folder cargo builds into: `CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is inside the workspace")
            .join("target"),
    }
}

/// A binary of the workspace: `$variable` if set, else `<target dir>/debug/<name>`. These
/// tests do not build it: `scripts/test` (through `cargo test --workspace --no-run`) does.
pub fn binary(variable: &str, name: &str) -> PathBuf {
    let path = match std::env::var_os(variable) {
        Some(path) => PathBuf::from(path),
        None => target_dir().join("debug").join(name),
    };
    assert!(
        path.is_file(),
        "{} does not exist: build it first. Run scripts/test, which builds every binary and sets \
         {variable}; or run `cargo build -p {}` and set {variable} to the binary's path.",
        path.display(),
        if name == "cairn" {
            "sync-client"
        } else {
            "sync-server"
        }
    );
    path
}

pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| binary("CAIRN_SERVER_BIN", "sync-server"))
}

/// A running `sync-server serve`, killed when dropped; its database is dropped after it.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    http: reqwest::blocking::Client,
    /// Where the server's standard error goes; printed when a test fails.
    pub log: PathBuf,
    // Dropped after the process is killed (fields drop after `Drop::drop`).
    _database: Database,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Creates a database and a bucket, creates alice and her team with `sync-server admin`,
    /// then starts `serve` on a free port.
    pub fn start(services: &Services) -> Server {
        let dir = tempfile::tempdir().expect("a temp dir");
        let database = Database::create(services);
        let bucket = create_bucket(services);
        let environment = vec![
            ("DATABASE_URL", database.url.clone()),
            ("CAIRN_S3_ENDPOINT", services.s3_endpoint.clone()),
            ("CAIRN_S3_BUCKET", bucket),
            ("CAIRN_S3_REGION", S3_REGION.to_owned()),
            ("CAIRN_S3_PATH_STYLE", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", services.s3_access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", services.s3_secret_key.clone()),
            ("AWS_REGION", S3_REGION.to_owned()),
            ("CAIRN_PASSWORD", PASSWORD.to_owned()),
        ];
        let command = |args: &[&str]| {
            let mut command = Command::new(server_binary());
            command
                .args(args)
                .current_dir(dir.path())
                .env("CAIRN_LOG", "warn")
                // Nothing from the developer's shell may choose the server's state: the
                // production settings below are the only ones.
                .env_remove("CAIRN_CONFIG")
                .env_remove("CAIRN_SERVER_CONFIG")
                .env_remove("CAIRN_DATA_DIR")
                .env_remove("CAIRN_LISTEN")
                .env_remove("CAIRN_SITE_DIR")
                .env_remove("CAIRN_S3_PREFIX")
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE")
                .envs(environment.iter().map(|(key, value)| (key, value)));
            command
        };
        let admin = |args: &[&str]| {
            let mut full = vec!["admin"];
            full.extend_from_slice(args);
            let output = command(&full).output().expect("running sync-server admin");
            assert!(
                output.status.success(),
                "sync-server admin {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        admin(&[
            "create-user",
            "--name",
            USER,
            "--email",
            "alice@example.com",
        ]);
        admin(&["create-team", "--name", TEAM, "--owner", USER]);

        let log = dir.path().join("server.log");
        let mut child = command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("the server log file"))
            .spawn()
            .expect("starting sync-server serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("the server's stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sync-server serve printed no listening line ({read:?}, {line:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        // Anything else the server prints is drained, so it can never block on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        Server {
            child,
            url,
            http: reqwest::blocking::Client::new(),
            log,
            _database: database,
            _dir: dir,
        }
    }

    /// The server's counters from `GET /metrics`.
    pub fn metrics(&self) -> Metrics {
        let response = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        let mut text = String::new();
        response
            .take(64 * 1024 * 1024)
            .read_to_string(&mut text)
            .expect("the metrics text");
        Metrics::parse(&text)
    }

    /// The server's standard error so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sync-server log ---\n{}", self.log_text());
        }
    }
}

/// The counters the scenarios read, from the Prometheus text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// `cairn_http_bytes_in_total`: request body bytes read.
    pub bytes_in: u64,
    /// `cairn_http_bytes_out_total`: response body bytes written.
    pub bytes_out: u64,
    /// `cairn_objects_stored_total`: objects of accepted uploads, duplicates included.
    pub objects_stored: u64,
    /// `cairn_object_bytes_stored_total`: their compressed bytes.
    pub object_bytes_stored: u64,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let counter = |name: &str| -> u64 {
            let value = text
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"));
            value
                .trim()
                .parse::<f64>()
                .unwrap_or_else(|error| panic!("{name} {value:?}: {error}")) as u64
        };
        Metrics {
            bytes_in: counter("cairn_http_bytes_in_total"),
            bytes_out: counter("cairn_http_bytes_out_total"),
            objects_stored: counter("cairn_objects_stored_total"),
            object_bytes_stored: counter("cairn_object_bytes_stored_total"),
        }
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Metrics) -> Metrics {
        Metrics {
            bytes_in: self.bytes_in - before.bytes_in,
            bytes_out: self.bytes_out - before.bytes_out,
            objects_stored: self.objects_stored - before.objects_stored,
            object_bytes_stored: self.object_bytes_stored - before.object_bytes_stored,
        }
    }
}

#[test]
fn metrics_parse_counters_without_labels() {
    let text = "# TYPE cairn_http_bytes_in_total counter\ncairn_http_bytes_in_total 12\n\
                cairn_http_bytes_out_total 7\ncairn_objects_stored_total_extra 9\n\
                cairn_objects_stored_total 3\ncairn_object_bytes_stored_total 4096\n";
    assert_eq!(
        Metrics::parse(text),
        Metrics {
            bytes_in: 12,
            bytes_out: 7,
            objects_stored: 3,
            object_bytes_stored: 4096,
        }
    );
}
