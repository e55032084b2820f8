//! Head-change events within one node: a broadcast channel per watched project.
//!
//! A commit publishes the project's new head; every open event stream of that project receives
//! it. Events are hints: a subscriber that falls behind skips to the latest head, and a client
//! re-reads the head whenever it (re)connects, so a lost event costs at most a late pull. Fan-out
//! across nodes (PostgreSQL LISTEN/NOTIFY) is not built yet.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use sync_protocol::ObjectId;
use tokio::sync::broadcast;

use crate::catalog::{ProjectId, VersionNumber};

/// Events buffered per project before a slow subscriber starts skipping.
const CHANNEL_CAPACITY: usize = 64;

/// A project's head moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadChanged {
    pub project: String,
    pub version: VersionNumber,
    pub root: String,
}

impl HeadChanged {
    pub fn new(project: ProjectId, version: VersionNumber, root: ObjectId) -> Self {
        Self {
            project: project.to_string(),
            version,
            root: root.to_string(),
        }
    }
}

/// The node's event channels, created on first subscription and dropped with the last one.
#[derive(Debug, Default)]
pub struct EventHub {
    channels: Mutex<HashMap<ProjectId, broadcast::Sender<HeadChanged>>>,
}

impl EventHub {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self, project: ProjectId) -> broadcast::Receiver<HeadChanged> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channels
            .entry(project)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Tells the project's subscribers, if any, that its head moved.
    pub fn publish(&self, project: ProjectId, event: HeadChanged) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = channels.get(&project)
            && sender.send(event).is_err()
        {
            // Nobody listens any more: forget the channel.
            channels.remove(&project);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_published_heads() {
        let hub = EventHub::new();
        let project = ProjectId::random();
        let root = sync_protocol::chunk_id(b"");
        hub.publish(project, HeadChanged::new(project, 1, root));
        let mut receiver = hub.subscribe(project);
        hub.publish(project, HeadChanged::new(project, 2, root));
        assert_eq!(receiver.recv().await.unwrap().version, 2);
        drop(receiver);
        hub.publish(project, HeadChanged::new(project, 3, root));
        assert!(hub.channels.lock().unwrap().is_empty());
    }
}
