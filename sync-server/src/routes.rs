//! The whole filter tree: operations endpoints, the `/v1` API and the built site.
//!
//! - `GET /healthz`: 200 `ok` while the process runs.
//! - `GET /readyz`: 200 `ready` when the catalog answers; 503 problem `unavailable` when it does
//!   not or the node is draining (from SIGTERM on, so load balancers stop sending it work while
//!   it still serves what is in flight).
//! - `GET /metrics`: Prometheus text format.
//! - `/v1/...`: [`crate::api`].
//! - `/account/...`: the account pages, [`crate::pages`]; and `/` too when no site is built
//!   (the start page).
//! - anything else, `GET` or `HEAD`: the site folder, when it exists, with its `404.html`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::app::App;
use crate::catalog::ProjectId;
use crate::problem::{self, Problem};

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn readyz(app: Arc<App>) -> Response {
    if app.shutdown.is_draining() {
        return Problem::unavailable("the node is draining").into_response();
    }
    // Any cheap query proves the catalog answers.
    match app.catalog.project(ProjectId::from_bytes([0; 16])).await {
        Ok(_) => text(
            StatusCode::OK,
            "ready\n".into(),
            "text/plain; charset=utf-8",
        ),
        Err(error) => {
            tracing::warn!(%error, "not ready: catalog");
            Problem::unavailable("the catalog does not answer").into_response()
        }
    }
}

fn metrics(app: &App) -> Response {
    let counts = app.store.request_counts();
    let store = [
        (
            "cairn_store_get_requests_total",
            "Object store reads (S3 GetObject).",
            counts.get,
        ),
        (
            "cairn_store_put_requests_total",
            "Object store writes (S3 PutObject).",
            counts.put,
        ),
        (
            "cairn_store_head_requests_total",
            "Object store existence probes (S3 HeadObject).",
            counts.head,
        ),
        (
            "cairn_store_list_requests_total",
            "Object store listings.",
            counts.list,
        ),
        (
            "cairn_store_delete_requests_total",
            "Object store deletions.",
            counts.delete,
        ),
    ];
    let cache = app.cache.stats();
    let counters: Vec<(&str, &str, u64)> = store
        .into_iter()
        .chain([
            (
                "cairn_cache_hits_total",
                "Objects found in the hot cache.",
                cache.hits,
            ),
            (
                "cairn_cache_misses_total",
                "Objects looked for in the hot cache and not found.",
                cache.misses,
            ),
            (
                "cairn_cache_evictions_total",
                "Objects evicted from the hot cache.",
                cache.evictions,
            ),
            (
                "cairn_connections_refused_total",
                "Connections closed at once for passing the per-address or total limit.",
                app.metrics.connections_refused.load(Ordering::Relaxed),
            ),
        ])
        .collect();
    let gauges = [
        (
            "cairn_cache_bytes",
            "Bytes held by the hot cache.",
            cache.bytes,
        ),
        (
            "cairn_cache_objects",
            "Objects held by the hot cache.",
            cache.objects,
        ),
        (
            "cairn_cache_capacity_bytes",
            "The hot cache's size limit.",
            cache.capacity,
        ),
        (
            "cairn_event_streams",
            "Event streams open on this node.",
            app.events.streams() as u64,
        ),
        (
            "cairn_event_relay_connected",
            "1 while this node hears other nodes' commits (PostgreSQL LISTEN), else 0.",
            app.metrics.event_relay_connected.load(Ordering::Relaxed),
        ),
        (
            "cairn_draining",
            "1 once this node is draining (SIGTERM), else 0.",
            u64::from(app.shutdown.is_draining()),
        ),
    ];
    text(
        StatusCode::OK,
        app.metrics.render(&counters, &gauges),
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

/// Every route, with every rejection turned into a problem document.
pub fn routes(app: Arc<App>, site_dir: Option<PathBuf>) -> BoxedFilter<(Response,)> {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8"));
    let ready = {
        let app = app.clone();
        warp::path!("readyz")
            .and(warp::get())
            .then(move || readyz(app.clone()))
    };
    let metrics = {
        let app = app.clone();
        warp::path!("metrics")
            .and(warp::get())
            .map(move || metrics(&app))
    };
    let site_dir = site_dir.filter(|dir| dir.is_dir());
    let pages = crate::pages::filter(app.clone(), site_dir.is_none());
    let api = crate::api::filter(app);
    let core = health
        .or(ready)
        .unify()
        .or(metrics)
        .unify()
        .or(api)
        .unify()
        .or(pages)
        .unify();
    let with_site = match site_dir {
        Some(dir) => {
            tracing::info!(site = %dir.display(), "serving the built site at /");
            let not_found_page = dir.join("404.html");
            let files = warp::get()
                .and(warp::fs::dir(dir))
                .map(|file: warp::fs::File| file.into_response());
            let fallback = warp::get().then(move || {
                let page = not_found_page.clone();
                async move {
                    match tokio::fs::read(&page).await {
                        Ok(bytes) => {
                            let mut response = Response::new(bytes.into());
                            *response.status_mut() = StatusCode::NOT_FOUND;
                            response.headers_mut().insert(
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("text/html; charset=utf-8"),
                            );
                            response
                        }
                        Err(_) => Problem::not_found().into_response(),
                    }
                }
            });
            core.or(files).unify().or(fallback).unify().boxed()
        }
        None => core.boxed(),
    };
    with_site.recover(problem::recover).unify().boxed()
}
