//! Every node's commits and access changes to this node's event streams: one PostgreSQL
//! connection that `LISTEN`s (see `catalog::CatalogListener`) and publishes what it hears to
//! the node's [`EventHub`](super::EventHub).
//!
//! When the connection is lost, notifications sent meanwhile are lost with it; after every
//! (re)connect the relay re-reads the head of every project watched on this node and publishes
//! it, and has every stream check its access, so a watcher misses nothing, and keeps nothing it
//! lost, for longer than the outage. Connecting again backs off from [`FIRST_PAUSE`] to
//! [`LONGEST_PAUSE`].

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::catalog::{CatalogListener, HeadNotification, Notification};

use super::head_changed;

/// The pause before the first reconnect.
pub const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between reconnects.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(10);

/// Relays head notifications from the database at `url` to `app`'s event streams until the
/// node stops.
pub async fn run(app: Arc<App>, url: String) {
    let stopped = app.shutdown.wait();
    tokio::pin!(stopped);
    let mut pause = FIRST_PAUSE;
    loop {
        tokio::select! {
            () = &mut stopped => return,
            outcome = relay_once(&app, &url) => {
                match outcome {
                    // It was connected: the next failure starts from the shortest pause.
                    Ok(error) => {
                        tracing::warn!(%error, "lost the head notifications; reconnecting");
                        pause = FIRST_PAUSE;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64,
                            "cannot listen for head notifications");
                    }
                }
            }
        }
        app.metrics.set_event_relay_connected(false);
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// One connection's life: `Err` if it could not start listening, `Ok(why it ended)` after.
async fn relay_once(
    app: &App,
    url: &str,
) -> Result<crate::catalog::CatalogError, crate::catalog::CatalogError> {
    let mut listener = CatalogListener::connect(url).await?;
    app.metrics.set_event_relay_connected(true);
    tracing::info!("listening for head notifications");
    catch_up(app).await?;
    loop {
        match listener.next().await {
            Ok(Notification::Head(HeadNotification {
                project,
                version,
                root,
            })) => app
                .events
                .publish(project, head_changed(project, version, root)),
            Ok(Notification::Access(account)) => app.events.access_changed(Some(account)),
            Err(error) => return Ok(error),
        }
    }
}

/// Publishes the current head of every project watched here, and has every stream check its
/// access: what was notified while this node was not listening.
async fn catch_up(app: &App) -> Result<(), crate::catalog::CatalogError> {
    app.events.access_changed(None);
    for project in app.events.watched() {
        if let Some(current) = app.catalog.project(project).await? {
            app.events.publish(
                project,
                head_changed(project, current.head_version, current.head_root),
            );
        }
    }
    Ok(())
}
