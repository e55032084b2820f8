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

use std::convert::Infallible;
use std::net::SocketAddr;
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

/// Serves `routes` on `listener` until `shutdown` triggers, then waits up to `grace` for
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(warp::reply::Response,)>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    grace: Duration,
) {
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
    ));
    Ok(Running { addr, app, task })
}
