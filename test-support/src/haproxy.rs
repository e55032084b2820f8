//! HAProxy as a process, started with the shipped `deploy/haproxy.cfg` in front of a cluster's
//! nodes, so the tests check the configuration operators run.
//!
//! The binary is `CAIRN_HAPROXY`, else `haproxy` on the `PATH` (Debian's package; `scripts/test`
//! installs it when missing). Without it a test is skipped, or fails when `CAIRN_TEST_STRICT=1`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services::strict;

/// The variable naming the HAProxy binary.
pub const HAPROXY: &str = "CAIRN_HAPROXY";

/// How long HAProxy gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The HAProxy binary, or `None` after printing `skipped: ...` (a panic in a strict run).
pub fn haproxy_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(HAPROXY).filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("haproxy"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            !strict(),
            "haproxy not found and CAIRN_TEST_STRICT=1: install Debian's haproxy or set \
             {HAPROXY} (scripts/test does)"
        );
        eprintln!("skipped: haproxy not found (set {HAPROXY} or install it)");
    }
    found
}

/// The shipped configuration, `deploy/haproxy.cfg` at the workspace root.
pub fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("haproxy.cfg")
}

/// A free TCP port on `ip` (bound, read and released: another process could take it in
/// between, which a test on one machine does not).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|error| panic!("no free port on {ip}: {error}"))
}

/// A running HAProxy, killed when dropped.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    /// Where clients reach the cluster.
    pub address: SocketAddr,
    /// HAProxy's statistics page.
    pub stats: SocketAddr,
    log: PathBuf,
}

impl Haproxy {
    /// Starts `binary` with the shipped configuration in front of `nodes` (exactly three
    /// `host:port` addresses, as the shipped file has), listening on a free port of 127.0.0.1.
    /// Its output goes to `log`. Returns once it accepts connections.
    pub fn start(binary: &Path, nodes: &[String; 3], log: &Path) -> Haproxy {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap();
        let stats: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap();
        let output = std::fs::File::create(log).expect("the haproxy log file");
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(shipped_config())
            .env("CAIRN_HAPROXY_LISTEN", address.to_string())
            .env("CAIRN_HAPROXY_STATS", stats.to_string())
            .env("CAIRN_NODE1", &nodes[0])
            .env("CAIRN_NODE2", &nodes[1])
            .env("CAIRN_NODE3", &nodes[2])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("the haproxy log file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let mut haproxy = Haproxy {
            child,
            address,
            stats,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(address).is_err() {
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                panic!("haproxy exited ({status}): {}", haproxy.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen within {START_TIMEOUT:?}: {}",
                haproxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        haproxy
    }

    /// The base URL clients use, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Each node's state as HAProxy sees it (`UP`, `DOWN`, `UP 1/2`, ...), from its statistics
    /// page's CSV: (server name, state), in the configuration's order.
    pub fn node_states(&self) -> Vec<(String, String)> {
        let Ok(mut stream) = TcpStream::connect(self.stats) else {
            return Vec::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "GET /;csv HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.stats
        );
        let mut answer = String::new();
        if stream.write_all(request.as_bytes()).is_err()
            || stream.read_to_string(&mut answer).is_err()
        {
            return Vec::new();
        }
        let Some((head, body)) = answer.split_once("\r\n\r\n") else {
            return Vec::new();
        };
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        let mut lines = body.lines();
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| columns.iter().position(|column| *column == name);
        let (Some(proxy), Some(server), Some(status)) =
            (column("pxname"), column("svname"), column("status"))
        else {
            return Vec::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| {
                fields.get(proxy) == Some(&"nodes")
                    && !matches!(fields.get(server), Some(&"BACKEND" | &"FRONTEND"))
            })
            .filter_map(|fields| {
                Some((
                    fields.get(server)?.to_string(),
                    fields.get(status)?.to_string(),
                ))
            })
            .collect()
    }

    /// Waits up to `timeout` until HAProxy's node states are `expected` (e.g. `["UP", "DOWN",
    /// "UP"]`); panics with what it saw otherwise.
    pub fn wait_for_states(&self, expected: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.node_states();
            let seen: Vec<&str> = states.iter().map(|(_, state)| state.as_str()).collect();
            if seen == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy's nodes are {states:?}, not {expected:?}, after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What HAProxy printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A chunked HTTP/1.1 body's content (HAProxy chunks its statistics even for HTTP/1.0).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- haproxy log ---\n{}", self.log_text());
        }
    }
}
