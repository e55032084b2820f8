//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//!
//! A handful of counters and one latency histogram, kept by hand rather than through a metrics
//! crate: the set is small and fixed, and the labels are bounded (route templates, never raw
//! paths, so a scan of random URLs cannot grow the label set).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sync_protocol::wire;

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route, status) → requests answered.
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    /// route → latency until the response head.
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub objects_stored: AtomicU64,
    pub object_bytes_stored: AtomicU64,
    pub objects_served: AtomicU64,
    pub pushes_committed: AtomicU64,
    pub push_conflicts: AtomicU64,
    /// Pushes committed on top of a head that had moved since their base.
    pub pushes_rebased: AtomicU64,
    pub pulls: AtomicU64,
    /// Connections closed at once for passing the connection limits.
    pub connections_refused: AtomicU64,
    /// 1 while the node listens for other nodes' commits (PostgreSQL), else 0.
    pub event_relay_connected: AtomicU64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_event_relay_connected(&self, connected: bool) {
        self.event_relay_connected
            .store(u64::from(connected), Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Records one answered request.
    pub fn record_request(&self, method: &str, route: &'static str, status: u16, took: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((method_label(method), route, status))
                .or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let histogram = latency.entry(route).or_default();
            let seconds = took.as_secs_f64();
            for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
    }

    /// The text exposition format. `extra` is appended as is: counters (e.g. the object
    /// store's requests), then `gauges` (e.g. the cache's bytes).
    pub fn render(&self, extra: &[(&str, &str, u64)], gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP cairn_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((method, route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "cairn_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP cairn_http_request_duration_seconds Time to the response head.\n");
        out.push_str("# TYPE cairn_http_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for (route, histogram) in latency.iter() {
                for (bucket, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS) {
                    let _ = writeln!(
                        out,
                        "cairn_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {bucket}"
                    );
                }
                let _ = writeln!(
                    out,
                    "cairn_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "cairn_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "cairn_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    histogram.count
                );
            }
        }
        let counters: [(&str, &str, &AtomicU64); 9] = [
            (
                "cairn_http_bytes_in_total",
                "Request body bytes read.",
                &self.bytes_in,
            ),
            (
                "cairn_http_bytes_out_total",
                "Response body bytes written.",
                &self.bytes_out,
            ),
            (
                "cairn_objects_stored_total",
                "Objects received and stored.",
                &self.objects_stored,
            ),
            (
                "cairn_object_bytes_stored_total",
                "Compressed bytes of objects received and stored.",
                &self.object_bytes_stored,
            ),
            (
                "cairn_objects_served_total",
                "Objects sent in pulls.",
                &self.objects_served,
            ),
            (
                "cairn_pushes_committed_total",
                "Pushes and commits that moved a head.",
                &self.pushes_committed,
            ),
            (
                "cairn_push_conflicts_total",
                "Pushes and commits answered with a conflict.",
                &self.push_conflicts,
            ),
            (
                "cairn_pushes_rebased_total",
                "Pushes committed on top of a head that had moved since their base (also counted as committed).",
                &self.pushes_rebased,
            ),
            ("cairn_pulls_total", "Pulls answered.", &self.pulls),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        for (kind, values) in [("counter", extra), ("gauge", gauges)] {
            for (name, help, value) in values {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
        out
    }
}

/// The method label of a request: one of the methods the server answers, else `other`, so a
/// client inventing methods cannot grow the label set.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The route label of a request: a template of the route table ([`wire::ROUTES`]) or of the
/// operations endpoints, `site` for other reads outside `/v1`, else `other`. The set is closed:
/// a scan of random URLs or methods cannot grow it.
pub fn route_label(method: &str, path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["healthz"] => return "/healthz",
        ["readyz"] => return "/readyz",
        ["metrics"] => return "/metrics",
        ["v1", ..] => {}
        ["account", ..] => return crate::pages::routes::label(&segments).unwrap_or("other"),
        _ if method == "GET" || method == "HEAD" => return "site",
        _ => return "other",
    }
    // A known path answers under its template whatever the method (a 405 is still that route).
    wire::ROUTES
        .iter()
        .find(|route| route.captures(&segments).is_some())
        .map_or("other", |route| route.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::new();
        metrics.record_request("GET", "/healthz", 200, Duration::from_millis(2));
        Metrics::add(&metrics.push_conflicts, 2);
        let text = metrics.render(&[("cairn_store_requests_total", "Store requests.", 7)], &[]);
        assert!(text.contains(
            "cairn_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "cairn_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.0025\"} 1"
        ));
        assert!(text.contains(
            "cairn_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.001\"} 0"
        ));
        assert!(text.contains("cairn_push_conflicts_total 2"));
        assert!(text.contains("cairn_store_requests_total 7"));
    }

    #[test]
    fn routes_are_templates() {
        assert_eq!(
            route_label("POST", "/v1/projects/abc/push"),
            "/v1/projects/{project}/push"
        );
        assert_eq!(
            route_label("GET", "/v1/projects/abc/versions/3"),
            "/v1/projects/{project}/versions/{number}"
        );
        assert_eq!(route_label("GET", "/docs/x/y.html"), "site");
        assert_eq!(
            route_label("POST", "/account/teams/abc/members"),
            "/account/teams/{team}/members"
        );
        assert_eq!(route_label("GET", "/account/whatever/x"), "/account/other");
        assert_eq!(route_label("POST", "/v1/nope/x/y"), "other");
        assert_eq!(
            route_label("BREW", "/v1/projects/abc"),
            "/v1/projects/{project}"
        );
        assert_eq!(route_label("POST", "/elsewhere"), "other");
    }

    #[test]
    fn invented_methods_share_one_label() {
        let metrics = Metrics::new();
        for method in ["BREW", "WHEN", "X-ANYTHING"] {
            metrics.record_request(method, "other", 405, Duration::from_millis(1));
        }
        let text = metrics.render(&[], &[]);
        assert!(text.contains(
            "cairn_http_requests_total{method=\"other\",route=\"other\",status=\"405\"} 3"
        ));
        assert!(!text.contains("BREW"));
    }
}
