//! The real `sync-server` binary in production mode (a fresh PostgreSQL database and S3 bucket,
//! from `cairn_test_support`), on a free port, with an account `alice` who owns the team `crew`;
//! and its Prometheus counters.

use std::io::Read;

use cairn_test_support::{ServerEnvironment, ServerProcess, Services};

/// The account every scenario works as; its password is `cairn_test_support::PASSWORD`.
pub const USER: &str = "alice";
/// The team alice owns; projects are created in it.
pub const TEAM: &str = "crew";

/// A running `sync-server serve`, killed when dropped (its log printed if the test failed); its
/// database and bucket are removed after it.
#[derive(Debug)]
pub struct Server {
    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    http: reqwest::blocking::Client,
    // Fields drop in order: the process is killed before its database and bucket go.
    _process: ServerProcess,
    _environment: ServerEnvironment,
}

impl Server {
    /// Creates a database and a bucket, creates alice and her team with `sync-server admin`,
    /// then starts `serve` on a free port.
    pub fn start(services: &Services) -> Server {
        let environment = ServerEnvironment::production(services);
        environment.create_user(USER);
        environment.create_team(TEAM, USER);
        let process = environment.serve(&[]);
        Server {
            url: process.url().to_owned(),
            http: reqwest::blocking::Client::new(),
            _process: process,
            _environment: environment,
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
