//! This process as a member of the cluster: its id, the status it reports to the catalog with
//! a heartbeat every [`HEARTBEAT_EVERY`], and its leaving.
//!
//! The registry is for operators (`sync-server admin nodes`): the load balancer finds nodes by
//! its own health checks on `/readyz`, and any node serves any project correctly, so nothing
//! waits on the registry and a node that cannot write its heartbeat keeps serving.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::catalog::{Node, NodeId, NodeStats, NodeStatus, Timestamp};

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A node is shown live while its last heartbeat is younger than this (three missed beats).
pub const LIVE_FOR: Duration = Duration::from_secs(15);
/// A node that has not written a heartbeat for this long (it died without leaving) is
/// removed from the registry by the others.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Who this process is in the registry.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub id: NodeId,
    /// Where the balancer and operators reach it.
    pub address: String,
    pub started: Timestamp,
}

impl NodeIdentity {
    /// A new node (a new id every start) reachable at `address`.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            id: NodeId::random(),
            address: address.into(),
            started: Timestamp::now(),
        }
    }
}

/// What the node reports now.
pub fn status(app: &App) -> NodeStatus {
    let cache = app.cache.stats();
    NodeStatus {
        address: app.node.address.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: app.node.started,
        draining: app.shutdown.is_draining(),
        stats: NodeStats {
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_evictions: cache.evictions,
            cache_bytes: cache.bytes,
            cache_objects: cache.objects,
            cache_capacity: cache.capacity,
            event_streams: app.events.streams() as u64,
        },
    }
}

/// Writes one heartbeat now; a failure is logged, not fatal.
pub async fn beat(app: &App) {
    if let Err(error) = app.catalog.heartbeat(app.node.id, &status(app)).await {
        tracing::warn!(%error, "cannot write the node's heartbeat");
    }
}

/// Writes a heartbeat every [`HEARTBEAT_EVERY`] until the node stops, and removes the nodes
/// that died long ago.
pub async fn heartbeats(app: Arc<App>) {
    let stopped = app.shutdown.wait();
    tokio::pin!(stopped);
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        beat(&app).await;
        match app.catalog.forget_nodes(FORGET_AFTER).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "forgot nodes gone for an hour"),
            Err(error) => tracing::warn!(%error, "cannot forget dead nodes"),
        }
    }
}

/// Removes this node from the registry (the last step of a clean stop).
pub async fn leave(app: &App) {
    match app.catalog.remove_node(app.node.id).await {
        Ok(()) => tracing::info!(node = %app.node.id, "left the cluster"),
        Err(error) => tracing::warn!(%error, "cannot remove the node from the registry"),
    }
}

/// A node's state as `admin nodes` shows it.
pub fn state(node: &Node, now: Timestamp) -> &'static str {
    if node.heartbeat.elapsed_until(now) > LIVE_FOR {
        "missing"
    } else if node.status.draining {
        "draining"
    } else {
        "live"
    }
}

/// One node as a JSON object (`admin nodes --json`).
pub fn json(node: &Node, now: Timestamp) -> serde_json::Value {
    let stats = &node.status.stats;
    serde_json::json!({
        "id": node.id.to_string(),
        "address": node.status.address,
        "version": node.status.version,
        "state": state(node, now),
        "started": crate::api::answer::rfc3339(node.status.started),
        "heartbeat": crate::api::answer::rfc3339(node.heartbeat),
        "heartbeat_age_ms": node.heartbeat.elapsed_until(now).as_millis() as u64,
        "event_streams": stats.event_streams,
        "cache": {
            "hits": stats.cache_hits,
            "misses": stats.cache_misses,
            "hit_rate": stats.cache_hit_rate(),
            "evictions": stats.cache_evictions,
            "bytes": stats.cache_bytes,
            "objects": stats.cache_objects,
            "capacity": stats.cache_capacity,
        },
    })
}

/// The nodes as a table (`admin nodes`).
pub fn table(nodes: &[Node], now: Timestamp) -> String {
    use std::fmt::Write;

    if nodes.is_empty() {
        return "no nodes registered\n".to_owned();
    }
    let mut rows = vec![
        [
            "NODE", "ADDRESS", "VERSION", "STATE", "SEEN", "UP", "STREAMS", "CACHE", "HIT RATE",
            "HITS", "MISSES",
        ]
        .map(str::to_owned),
    ];
    for node in nodes {
        let stats = &node.status.stats;
        let id = node.id.to_string();
        rows.push([
            id[..8.min(id.len())].to_owned(),
            node.status.address.clone(),
            node.status.version.clone(),
            state(node, now).to_owned(),
            format!("{}s ago", node.heartbeat.elapsed_until(now).as_secs()),
            age(node.status.started.elapsed_until(now)),
            stats.event_streams.to_string(),
            format!(
                "{} / {}",
                mebibytes(stats.cache_bytes),
                mebibytes(stats.cache_capacity)
            ),
            stats
                .cache_hit_rate()
                .map_or_else(|| "-".to_owned(), |rate| format!("{:.1}%", rate * 100.0)),
            stats.cache_hits.to_string(),
            stats.cache_misses.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn age(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose heartbeat was `heartbeat_ago` before `now`: the same `now` the test
    /// reads the node at, or a clock tick between the two makes "40s ago" read "39s ago".
    fn node(
        now: Timestamp,
        heartbeat_ago: Duration,
        draining: bool,
        hits: u64,
        misses: u64,
    ) -> Node {
        Node {
            id: NodeId::random(),
            status: NodeStatus {
                address: "10.0.0.5:8080".to_owned(),
                version: "0.1.0".to_owned(),
                started: Timestamp::from_unix_millis(now.unix_millis() - 7_200_000),
                draining,
                stats: NodeStats {
                    cache_hits: hits,
                    cache_misses: misses,
                    cache_bytes: 3 * 1024 * 1024,
                    cache_capacity: 256 * 1024 * 1024,
                    ..NodeStats::default()
                },
            },
            heartbeat: Timestamp::from_unix_millis(
                now.unix_millis() - heartbeat_ago.as_millis() as i64,
            ),
        }
    }

    #[test]
    fn states_follow_the_heartbeat_and_the_drain() {
        let now = Timestamp::now();
        assert_eq!(
            state(&node(now, Duration::from_secs(2), false, 0, 0), now),
            "live"
        );
        assert_eq!(
            state(&node(now, Duration::from_secs(2), true, 0, 0), now),
            "draining"
        );
        assert_eq!(
            state(
                &node(now, LIVE_FOR + Duration::from_secs(1), false, 0, 0),
                now
            ),
            "missing"
        );
    }

    #[test]
    fn the_table_shows_the_cache_figures() {
        let now = Timestamp::now();
        let nodes = [
            node(now, Duration::from_secs(1), false, 90, 10),
            node(now, Duration::from_secs(40), false, 0, 0),
        ];
        let table = table(&nodes, now);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("NODE"), "{table}");
        assert!(
            lines[1].contains("live") && lines[1].contains("90.0%"),
            "{table}"
        );
        assert!(lines[1].contains("3.0 MiB / 256.0 MiB"), "{table}");
        assert!(lines[1].contains("2h00m"), "{table}");
        assert!(
            lines[2].contains("missing") && lines[2].contains("40s ago"),
            "{table}"
        );
        let json = json(&nodes[0], now);
        assert_eq!(json["cache"]["hit_rate"], 0.9);
        assert_eq!(json["state"], "live");
        assert_eq!(table_of_none(), "no nodes registered\n");
    }

    fn table_of_none() -> String {
        table(&[], Timestamp::now())
    }
}
