//! `GET /v1/projects/{project}/events`: a Server-Sent Events stream of the project's head.
//!
//! The first event is the head as it is when the stream opens; then one `head` event per
//! commit on any node (see `events::relay`): `event: head`, `id: <version>`,
//! `data: {"project", "version", "root"}`.
//! A comment every [`KEEP_ALIVE`] keeps proxies from closing an idle stream. Events are hints:
//! a client that reconnects reads the head from the first event again, so nothing is lost by a
//! dropped connection. When the node stops, each stream ends with a reconnect hint: the SSE
//! `retry:` field, a pause of [`RECONNECT_HINT`] plus up to as much again at random, so that a
//! node's watchers do not all come back in the same instant.
//!
//! Access is checked for as long as a stream is open, not only when it opens: when the caller's
//! access may have shrunk (a member removed from the team, a token revoked, on any node: the
//! hub's access changes) and in any case every [`ACCESS_RECHECK`], the stream authenticates
//! its token and looks up the caller's role again, and ends, sending nothing more, once either
//! fails. A catalog that does not answer ends nothing: the next check decides.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sync_protocol::wire;
use tokio::sync::{broadcast, mpsc};
use warp::Reply;
use warp::reply::Response;

use super::request::{ApiRequest, project_access};
use crate::app::App;
use crate::catalog::{AccountId, Catalog, ProjectId, Role, TokenHash};
use crate::events::{HeadChanged, head_changed};
use crate::problem::Problem;

/// How often an idle event stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(wire::EVENT_KEEP_ALIVE_SECS);
/// The shortest reconnect pause a stream ended by a stopping node suggests.
pub const RECONNECT_HINT: Duration = Duration::from_millis(250);
/// How often a stream checks its access without being told to: the backstop for a change
/// whose notification was lost.
pub const ACCESS_RECHECK: Duration = Duration::from_secs(60);

/// What the stream sends.
enum Item {
    Head(HeadChanged),
    /// The node is stopping: reconnect (through the balancer, to another node) after this.
    Reconnect(Duration),
}

/// Who holds a stream, to check again that they still may.
struct Holder {
    catalog: Arc<dyn Catalog>,
    token: TokenHash,
    account: AccountId,
    project: ProjectId,
}

impl Holder {
    /// False once the token is revoked or the account may no longer see the project; true
    /// while they hold, and when the catalog cannot tell (it is asked again later).
    async fn still_allowed(&self) -> bool {
        let authenticated = match self.catalog.authenticate_token(&self.token).await {
            Ok(authenticated) => authenticated,
            Err(error) => {
                tracing::warn!(%error, "cannot check an event stream's token");
                return true;
            }
        };
        if authenticated.is_none_or(|caller| caller.account.id != self.account) {
            return false;
        }
        match self.catalog.project_role(self.account, self.project).await {
            Ok(role) => role.is_some_and(|role| role >= Role::Viewer),
            Err(error) => {
                tracing::warn!(%error, "cannot check an event stream's access");
                true
            }
        }
    }
}

pub async fn stream(app: &App, request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let (caller, project, _) = project_access(app, &request, project, Role::Viewer).await?;
    let holder = Holder {
        catalog: app.catalog.clone(),
        token: crate::auth::bearer_token(&request.headers)
            .map(crate::auth::token_hash)
            .ok_or_else(|| Problem::unauthorized("send an API token"))?,
        account: caller.account.id,
        project: project.id,
    };
    // Subscribe before reading the head (and the access), so nothing in between is missed.
    let mut receiver = app.events.subscribe(project.id);
    let mut access = app.events.access_changes();
    let current = app
        .catalog
        .project(project.id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let first = head_changed(current.id, current.head_version, current.head_root);

    let (sender, mut events) = mpsc::channel::<Item>(16);
    let stopped = app.shutdown.wait();
    tokio::spawn(async move {
        tokio::pin!(stopped);
        if sender.send(Item::Head(first)).await.is_err() {
            return;
        }
        let mut recheck =
            tokio::time::interval_at(tokio::time::Instant::now() + ACCESS_RECHECK, ACCESS_RECHECK);
        loop {
            let event = tokio::select! {
                changed = access.recv() => {
                    let concerned = match changed {
                        Ok(account) => account.is_none_or(|account| account == holder.account),
                        // Some changes were skipped: any could have been this stream's.
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if concerned && !holder.still_allowed().await {
                        return;
                    }
                    continue;
                }
                _ = recheck.tick() => {
                    if !holder.still_allowed().await {
                        return;
                    }
                    continue;
                }
                () = &mut stopped => {
                    let jitter = RECONNECT_HINT.mul_f64(rand::random::<f64>());
                    let _ = sender.send(Item::Reconnect(RECONNECT_HINT + jitter)).await;
                    return;
                }
                () = sender.closed() => return,
                received = receiver.recv() => match received {
                    Ok(event) => event,
                    // A slow client skipped some heads; the next one is the newest anyway.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if sender.send(Item::Head(event)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| events.poll_recv(cx)).map(|item| {
        Ok::<_, Infallible>(match item {
            Item::Head(event) => {
                let sse = warp::sse::Event::default()
                    .event("head")
                    .id(event.version.to_string());
                match sse.json_data(&event) {
                    Ok(sse) => sse,
                    Err(_) => warp::sse::Event::default().comment("unencodable event"),
                }
            }
            Item::Reconnect(after) => warp::sse::Event::default()
                .retry(after)
                .comment("this node is stopping: reconnect"),
        })
    });
    let reply = warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(stream));
    Ok(reply.into_response())
}
