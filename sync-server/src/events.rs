//! Head-change events within one node: a broadcast channel per watched project.
//!
//! A commit publishes the project's new head; every open event stream of that project receives
//! it. Events are hints: a subscriber that falls behind skips to the latest head, and a client
//! re-reads the head whenever it (re)connects, so a lost event costs at most a late pull. Fan-out
//! across nodes (PostgreSQL LISTEN/NOTIFY) is not built yet.

use std::collections::HashMap;
use std::sync::Mutex;

use sync_protocol::ObjectId;
use sync_protocol::wire;
use tokio::sync::broadcast;

use crate::catalog::{ProjectId, VersionNumber};

/// Events buffered per project before a slow subscriber starts skipping.
const CHANNEL_CAPACITY: usize = 64;

/// A project's head moved: the data of a `head` event, as the wire contract has it.
pub type HeadChanged = wire::HeadEvent;

/// The event of `project`'s head moving to `version` with `root`.
pub fn head_changed(project: ProjectId, version: VersionNumber, root: ObjectId) -> HeadChanged {
    HeadChanged {
        project: project.to_string(),
        version,
        root,
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
        hub.publish(project, head_changed(project, 1, root));
        let mut receiver = hub.subscribe(project);
        hub.publish(project, head_changed(project, 2, root));
        assert_eq!(receiver.recv().await.unwrap().version, 2);
        drop(receiver);
        hub.publish(project, head_changed(project, 3, root));
        assert!(hub.channels.lock().unwrap().is_empty());
    }
}
