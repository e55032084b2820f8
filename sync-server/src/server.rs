//! The HTTP server around the warp routes: accept loop, per-request bookkeeping and graceful
//! shutdown.
//!
//! warp's own `serve` cannot set socket options, so the accept loop is ours: every connection
//! gets `TCP_NODELAY` (small syncs are latency-bound; a delayed ACK costs 40 ms) and TCP
//! keep-alive, and is served by hyper's HTTP/1.1 with keep-alive and a header read timeout.
//!
//! Each request passes through [`handle`], which gives it a request id (the client's
//! `X-Request-Id` when it is sane, a random one otherwise), counts body bytes in and out, records
//! metrics and writes exactly one log line. While the node drains, every answer carries
//! `Connection: close`. On stop the listener closes at once, in-flight requests get a grace
//! period to finish, and connections still open after it are dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Request, Response, header};

use crate::metrics::{Metrics, route_label};
pub use crate::shutdown::Shutdown;

/// How long a client may take to send a request's head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `X-Request-Id` taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The id of one request, in its extensions, its log line and the `X-Request-Id` answer header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The address the request's connection came from, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// File descriptors a node keeps for other than client connections: its PostgreSQL pool (16)
/// and listener, its S3 connections, the SQLite catalog and site files, logs.
pub const FILE_RESERVE: u64 = 64;
/// The fewest connections a node accepts in all, however low its open-file limit.
pub const MIN_CONNECTIONS: u64 = 16;

/// The open connections, in all and by client address, and their limits: one address cannot
/// take every connection, and the node never runs out of file descriptors (an `accept` that
/// fails for want of one would leave even `/healthz` unanswered).
#[derive(Debug)]
struct Connections {
    per_address: usize,
    total: usize,
    open: std::sync::Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A connection's place among the open ones, given back when it is dropped.
#[derive(Debug)]
struct Slot {
    connections: Arc<Connections>,
    address: IpAddr,
}

impl Connections {
    fn new(per_address: usize) -> Self {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let total = usize::try_from(files.saturating_sub(FILE_RESERVE).max(MIN_CONNECTIONS))
            .unwrap_or(usize::MAX);
        // One address never holds more than half of them, whatever the setting: the other
        // half is the reserve that keeps `/healthz` and everyone else answered.
        let per_address = match per_address {
            0 => 0,
            limit => limit.min(total / 2).max(1),
        };
        Self {
            per_address,
            total,
            open: std::sync::Mutex::default(),
        }
    }

    /// A slot for a connection from `address`, or `None` when it would pass a limit.
    fn take(self: &Arc<Self>, address: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_address) = &mut *open;
        let from_address = by_address.entry(address).or_default();
        if *total >= self.total || (self.per_address > 0 && *from_address >= self.per_address) {
            if *from_address == 0 {
                by_address.remove(&address);
            }
            return None;
        }
        *from_address += 1;
        *total += 1;
        Some(Slot {
            connections: self.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (total, by_address) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(count) = by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` triggers, then waits up to `grace` for
/// in-flight requests. At most `per_address` connections from one client address are open at
/// once (0: no limit; never more than half the total), and no more in all than the open-file
/// limit allows, less [`FILE_RESERVE`].
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(warp::reply::Response,)>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    grace: Duration,
    per_address: usize,
) {
    let connections = Arc::new(Connections::new(per_address));
    tracing::info!(
        max = connections.total,
        per_address = connections.per_address,
        "connection limits"
    );
    let mut last_refusal_logged: Option<Instant> = None;
    let service = warp::service(routes);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        let Some(slot) = connections.take(peer.ip()) else {
            // Closed at once: a client past its share (or a node at its limit) waits for
            // nothing, and holds no file descriptor.
            drop(stream);
            Metrics::add(&metrics.connections_refused, 1);
            if last_refusal_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                last_refusal_logged = Some(Instant::now());
                tracing::warn!(%peer, "refusing connections: past the connection limits");
            }
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY failed");
        }
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let service = service.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(
                request,
                service.clone(),
                metrics.clone(),
                shutdown.clone(),
                peer,
            )
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), hyper_service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: draining requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over: dropping connections"),
    }
}

fn request_id(request: &Request<Incoming>) -> String {
    let sane = |id: &&str| {
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    };
    match request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(sane)
    {
        Some(id) => id.to_owned(),
        None => format!("{:016x}", rand::random::<u64>()),
    }
}

async fn handle<S, B>(
    request: Request<Incoming>,
    mut service: S,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    peer: SocketAddr,
) -> Result<Response<CountingBody<B>>, Infallible>
where
    S: Service<Request<CountingBody<Incoming>>, Response = Response<B>, Error = Infallible>,
    B: Body<Data = Bytes> + Unpin,
{
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut request = request.map(|body| CountingBody::new(body, metrics.clone(), Direction::In));
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(PeerAddr(peer));
    let Ok(mut response) = service.call(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if shutdown.is_draining() {
        // A draining node serves what reaches it but keeps no connection open: the client's
        // or the balancer's next request opens a new one, which goes to a node that stays.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    let took = started.elapsed();
    metrics.record_request(
        method.as_str(),
        route_label(method.as_str(), &path),
        status,
        took,
    );
    tracing::info!(
        target: "sync_server::request",
        request_id = %id,
        %peer,
        method = %method,
        path = %path,
        status,
        ms = %format_args!("{:.3}", took.as_secs_f64() * 1000.0),
        "request"
    );
    Ok(response.map(|body| CountingBody::new(body, metrics, Direction::Out)))
}

/// Which way a [`CountingBody`]'s bytes go.
#[derive(Debug, Clone, Copy)]
enum Direction {
    In,
    Out,
}

/// A body that adds the bytes passing through it to the byte counters.
#[derive(Debug)]
pub struct CountingBody<B> {
    inner: B,
    metrics: Arc<Metrics>,
    direction: Direction,
}

impl<B> CountingBody<B> {
    fn new(inner: B, metrics: Arc<Metrics>, direction: Direction) -> Self {
        Self {
            inner,
            metrics,
            direction,
        }
    }
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let counter = match self.direction {
                Direction::In => &self.metrics.bytes_in,
                Direction::Out => &self.metrics.bytes_out,
            };
            Metrics::add(counter, data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A server running in this process: its address and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<crate::app::App>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (within the grace period) and returns.
    pub async fn stop(self) {
        self.app.shutdown.trigger();
        let _ = self.task.await;
    }

    /// Waits until the server stops (after its [`Shutdown`] triggers).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds `listen` (port 0 picks a free one) and serves `app` in a background task.
pub async fn start(
    app: Arc<crate::app::App>,
    listen: SocketAddr,
    site_dir: Option<std::path::PathBuf>,
    grace: Duration,
) -> std::io::Result<Running> {
    start_on(app, TcpListener::bind(listen).await?, site_dir, grace)
}

/// Serves `app` on a bound `listener` in a background task.
pub fn start_on(
    app: Arc<crate::app::App>,
    listener: TcpListener,
    site_dir: Option<std::path::PathBuf>,
    grace: Duration,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let routes = crate::routes::routes(app.clone(), site_dir);
    let task = tokio::spawn(serve(
        listener,
        routes,
        app.metrics.clone(),
        app.shutdown.clone(),
        grace,
        app.limits.connections_per_address,
    ));
    Ok(Running { addr, app, task })
}
