//! Head changes across nodes: every commit that moves a project's head notifies
//! [`HEADS_CHANNEL`] in its own transaction (PostgreSQL delivers the notification when, and
//! only if, the transaction commits), and every node holds one connection that `LISTEN`s to it.
//!
//! A notification is only a hint. PostgreSQL drops them for a listener that is not connected,
//! so whoever uses a [`HeadListener`] re-reads the heads it cares about after every (re)connect.
//! Notifications are not in the SQLite catalog: an embedded node is the only node.

use std::time::Duration;

use futures_util::StreamExt;
use sync_protocol::ObjectId;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::error::CatalogError;
use super::types::{ProjectId, VersionNumber};

/// The channel every commit notifies with the project's new head.
pub const HEADS_CHANNEL: &str = "cairn_heads";

/// How long the listening connection may stay silent before it is checked with a query: a
/// connection to a database that vanished without closing it would otherwise wait forever.
pub const CHECK_EVERY: Duration = Duration::from_secs(15);

/// A head change as notified on [`HEADS_CHANNEL`]: `<project> <version> <root>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadNotification {
    pub project: ProjectId,
    pub version: VersionNumber,
    pub root: ObjectId,
}

impl HeadNotification {
    pub fn to_payload(&self) -> String {
        format!("{} {} {}", self.project, self.version, self.root)
    }

    /// `None` for a payload that is not a head change (another program's notification).
    pub fn from_payload(payload: &str) -> Option<Self> {
        let mut parts = payload.split(' ');
        let notification = Self {
            project: parts.next()?.parse().ok()?,
            version: parts.next()?.parse().ok()?,
            root: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(notification)
    }
}

/// One connection listening on [`HEADS_CHANNEL`].
pub struct HeadListener {
    client: tokio_postgres::Client,
    notifications: mpsc::UnboundedReceiver<HeadNotification>,
}

impl std::fmt::Debug for HeadListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadListener").finish_non_exhaustive()
    }
}

impl HeadListener {
    /// Connects to the database at `url` and listens. Notifications committed from now on
    /// arrive through [`HeadListener::next`].
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| CatalogError::database("listen", error))?;
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(|error| CatalogError::database("listen", error))?;
        let (sender, notifications) = mpsc::unbounded_channel();
        // The connection's messages must be polled for anything to happen on it, the LISTEN
        // below included; the task ends when the connection does, which ends `next`.
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        if notification.channel() != HEADS_CHANNEL {
                            continue;
                        }
                        match HeadNotification::from_payload(notification.payload()) {
                            Some(head) => {
                                if sender.send(head).is_err() {
                                    return;
                                }
                            }
                            None => tracing::warn!(
                                payload = notification.payload(),
                                "ignoring a malformed head notification"
                            ),
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the head listener's connection failed");
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {HEADS_CHANNEL}"))
            .await
            .map_err(|error| CatalogError::database("listen", error))?;
        Ok(Self {
            client,
            notifications,
        })
    }

    /// The next head change; `Err` once the connection is lost (connect again, then re-read
    /// the heads: what was notified in between is gone).
    pub async fn next(&mut self) -> Result<HeadNotification, CatalogError> {
        loop {
            match tokio::time::timeout(CHECK_EVERY, self.notifications.recv()).await {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {
                    return Err(CatalogError::database(
                        "listen",
                        "the listening connection closed",
                    ));
                }
                Err(_quiet) => {
                    // Silence is normal; a connection that cannot answer a query is not.
                    tokio::time::timeout(CHECK_EVERY, self.client.batch_execute("SELECT 1"))
                        .await
                        .map_err(|_| {
                            CatalogError::database("listen", "the database did not answer")
                        })?
                        .map_err(|error| CatalogError::database("listen", error))?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_strangers_are_refused() {
        let head = HeadNotification {
            project: ProjectId::random(),
            version: 42,
            root: sync_protocol::chunk_id(b"root"),
        };
        assert_eq!(
            HeadNotification::from_payload(&head.to_payload()),
            Some(head)
        );
        let payload = head.to_payload();
        assert_eq!(
            HeadNotification::from_payload(&format!("{payload} x")),
            None
        );
        assert_eq!(HeadNotification::from_payload("hello"), None);
        assert_eq!(HeadNotification::from_payload(""), None);
        let (project, _) = payload.split_once(' ').unwrap();
        assert_eq!(
            HeadNotification::from_payload(&format!("{project} -1 {}", head.root)),
            None
        );
    }
}
