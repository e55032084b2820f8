//! Head-change events: a broadcast channel per watched project on this node, fed by this
//! node's commits and, with PostgreSQL, by every node's ([`relay`]).
//!
//! A commit publishes the project's new head; every open event stream of that project receives
//! it. Events are hints: a subscriber that falls behind skips to the latest head, and a client
//! re-reads the head whenever it (re)connects, so a lost event costs at most a late pull. A
//! head reaches a node twice when the node made the commit (its own publish, then PostgreSQL's
//! notification), and may arrive out of order; each channel remembers the newest version it
//! sent and drops anything not newer.

pub mod relay;

use std::collections::HashMap;
use std::sync::Mutex;

use sync_protocol::ObjectId;
use sync_protocol::wire;
use tokio::sync::broadcast;

use crate::catalog::{AccountId, ProjectId, VersionNumber};

/// Events buffered per project before a slow subscriber starts skipping.
const CHANNEL_CAPACITY: usize = 64;
/// Access changes buffered before a slow stream skips some (and then checks anyway).
const ACCESS_CAPACITY: usize = 256;

/// Whose access shrank: one account's, or (`None`) anyone's, as after the relay missed some.
pub type AccessChanged = Option<AccountId>;

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

/// The node's event channels, created on first subscription and dropped with the last one,
/// and the channel of access changes every stream listens to.
#[derive(Debug)]
pub struct EventHub {
    channels: Mutex<HashMap<ProjectId, Channel>>,
    access: broadcast::Sender<AccessChanged>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            channels: Mutex::default(),
            access: broadcast::channel(ACCESS_CAPACITY).0,
        }
    }
}

#[derive(Debug)]
struct Channel {
    sender: broadcast::Sender<HeadChanged>,
    /// The newest version sent, if any.
    newest: Option<VersionNumber>,
}

impl EventHub {
    pub fn new() -> Self {
        Self::default()
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<ProjectId, Channel>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(&self, project: ProjectId) -> broadcast::Receiver<HeadChanged> {
        self.channels()
            .entry(project)
            .or_insert_with(|| Channel {
                sender: broadcast::channel(CHANNEL_CAPACITY).0,
                newest: None,
            })
            .sender
            .subscribe()
    }

    /// Tells the project's subscribers, if any, that its head moved, unless they were already
    /// told of this version or a newer one.
    pub fn publish(&self, project: ProjectId, event: HeadChanged) {
        let mut channels = self.channels();
        let Some(channel) = channels.get_mut(&project) else {
            return;
        };
        if channel.newest.is_some_and(|newest| newest >= event.version) {
            return;
        }
        channel.newest = Some(event.version);
        if channel.sender.send(event).is_err() {
            // Nobody listens any more: forget the channel.
            channels.remove(&project);
        }
    }

    /// Tells every stream that `account`'s access (or anyone's, for `None`) may have shrunk:
    /// the streams concerned check theirs again.
    pub fn access_changed(&self, account: AccessChanged) {
        // No stream open: nobody to tell.
        let _ = self.access.send(account);
    }

    /// The access changes from now on.
    pub fn access_changes(&self) -> broadcast::Receiver<AccessChanged> {
        self.access.subscribe()
    }

    /// The projects someone on this node is watching.
    pub fn watched(&self) -> Vec<ProjectId> {
        let mut channels = self.channels();
        channels.retain(|_, channel| channel.sender.receiver_count() > 0);
        channels.keys().copied().collect()
    }

    /// How many event streams are open on this node.
    pub fn streams(&self) -> usize {
        self.channels()
            .values()
            .map(|channel| channel.sender.receiver_count())
            .sum()
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
        // The same head again (this node's commit, then its notification) or an older one
        // (notifications overtaking each other) is not sent.
        hub.publish(project, head_changed(project, 2, root));
        hub.publish(project, head_changed(project, 1, root));
        hub.publish(project, head_changed(project, 3, root));
        assert_eq!(receiver.recv().await.unwrap().version, 3);
        assert!(receiver.try_recv().is_err());
        assert_eq!(hub.watched(), vec![project]);
        assert_eq!(hub.streams(), 1);
        drop(receiver);
        assert_eq!(hub.streams(), 0);
        hub.publish(project, head_changed(project, 4, root));
        assert!(hub.channels.lock().unwrap().is_empty());
        assert!(hub.watched().is_empty());
    }
}
