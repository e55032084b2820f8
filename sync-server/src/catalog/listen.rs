//! Changes across nodes: every commit that moves a project's head notifies [`HEADS_CHANNEL`]
//! in its own transaction (PostgreSQL delivers the notification when, and only if, the
//! transaction commits); every removal of a member and every revocation of a token notifies
//! [`ACCESS_CHANNEL`] with the account whose access shrank. Every node holds one connection
//! that `LISTEN`s to both ([`CatalogListener`]).
//!
//! A notification is only a hint. PostgreSQL drops them for a listener that is not connected,
//! so whoever uses a listener re-reads what it cares about after every (re)connect.
//! Notifications are not in the SQLite catalog: an embedded node is the only node.

use std::time::Duration;

use futures_util::StreamExt;
use sync_protocol::ObjectId;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::error::CatalogError;
use super::types::{AccountId, ProjectId, VersionNumber};

/// The channel every commit notifies with the project's new head.
pub const HEADS_CHANNEL: &str = "cairn_heads";
/// The channel a member's removal or a token's revocation notifies with the account's id.
pub const ACCESS_CHANNEL: &str = "cairn_access";

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

/// What a listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    Head(HeadNotification),
    /// This account may see less than before: its event streams must check their access.
    Access(AccountId),
}

impl Notification {
    /// `None` for a channel or payload that is not ours.
    fn parse(channel: &str, payload: &str) -> Option<Self> {
        match channel {
            HEADS_CHANNEL => HeadNotification::from_payload(payload).map(Self::Head),
            ACCESS_CHANNEL => payload.parse().ok().map(Self::Access),
            _ => None,
        }
    }
}

/// One connection listening on [`HEADS_CHANNEL`] and [`ACCESS_CHANNEL`].
pub struct CatalogListener {
    client: tokio_postgres::Client,
    notifications: mpsc::UnboundedReceiver<Notification>,
}

impl std::fmt::Debug for CatalogListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogListener").finish_non_exhaustive()
    }
}

impl CatalogListener {
    /// Connects to the database at `url` and listens. Notifications committed from now on
    /// arrive through [`CatalogListener::next`].
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
                        match Notification::parse(notification.channel(), notification.payload()) {
                            Some(parsed) => {
                                if sender.send(parsed).is_err() {
                                    return;
                                }
                            }
                            None => tracing::warn!(
                                channel = notification.channel(),
                                payload = notification.payload(),
                                "ignoring a notification that is not Cairn's"
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
            .batch_execute(&format!("LISTEN {HEADS_CHANNEL}; LISTEN {ACCESS_CHANNEL}"))
            .await
            .map_err(|error| CatalogError::database("listen", error))?;
        Ok(Self {
            client,
            notifications,
        })
    }

    /// The next notification; `Err` once the connection is lost (connect again, then re-read
    /// what matters: what was notified in between is gone).
    pub async fn next(&mut self) -> Result<Notification, CatalogError> {
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
    fn notifications_are_read_by_channel() {
        let account = AccountId::random();
        assert_eq!(
            Notification::parse(ACCESS_CHANNEL, &account.to_string()),
            Some(Notification::Access(account))
        );
        assert_eq!(Notification::parse(ACCESS_CHANNEL, "nobody"), None);
        assert_eq!(Notification::parse("elsewhere", &account.to_string()), None);
    }

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
