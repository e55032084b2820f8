//! The JSON and object-stream API under `/v1`.
//!
//! One warp filter takes every `/v1` request whole (method, path, query, headers and the body as
//! an unread stream) and [`dispatch`] matches it on `(method, path segments)`. Routing by hand
//! keeps the order of checks explicit in each handler: authenticate, check access to the project,
//! and only then read the body, within its limit. Every failure is a [`Problem`].
//!
//! Areas: [`accounts`] (sign up, log in, tokens), [`teams`] (teams, members, project creation),
//! [`projects`] (project list, head, history, restore), [`sync`] (pull, push, missing, upload,
//! commit) and [`events`] (the head-change stream).

pub mod accounts;
pub mod answer;
pub mod events;
pub mod projects;
pub mod request;
pub mod sync;
pub mod teams;
pub(crate) mod views;

use std::sync::Arc;

use sync_protocol::wire::{self, Operation, RouteMatch};
use warp::Filter;
use warp::reply::Response;

pub use request::{ApiRequest, BodyStream};

use crate::app::App;
use crate::problem::Problem;
use request::box_body;

/// The filter of the whole `/v1` tree.
pub fn filter(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let body = warp::body::stream().map(box_body);
    warp::path("v1")
        .and(warp::path::tail())
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<crate::server::PeerAddr>())
        .and(body)
        .then(
            move |tail: warp::path::Tail, method, query, headers, peer, body| {
                let app = app.clone();
                let client =
                    crate::pages::client_address(&headers, peer, app.limits.trust_proxy_headers);
                let segments = crate::api::request::path_segments(tail.as_str());
                let request = ApiRequest {
                    method,
                    segments,
                    query,
                    headers,
                    client,
                    body,
                };
                async move { dispatch(&app, request).await }
            },
        )
}

/// Routes one request and turns its failure, if any, into a problem document.
pub async fn dispatch(app: &App, request: ApiRequest) -> Response {
    match route(app, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

/// Dispatches one request by the route table, [`wire::ROUTES`].
async fn route(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let mut segments: Vec<&str> = vec!["v1"];
    segments.extend(request.segments.iter().map(String::as_str));
    let (route, values) = match wire::routes::find(request.method.as_str(), &segments) {
        RouteMatch::Found(route, values) => (route, values),
        RouteMatch::MethodNotAllowed(allowed) => {
            let path = format!("/{}", segments.join("/"));
            return Err(Problem::method_not_allowed(
                request.method.as_str(),
                &path,
                &allowed,
            ));
        }
        RouteMatch::NotFound => return Err(Problem::not_found()),
    };
    let value = |index: usize| values.get(index).map_or("", String::as_str);
    let (first, second) = (value(0), value(1));
    match route.operation {
        Operation::OpenApi => Ok(crate::openapi::response()),
        Operation::SignUp => accounts::sign_up(app, request).await,
        Operation::WhoAmI => accounts::whoami(app, request).await,
        Operation::LogIn => accounts::log_in(app, request).await,
        Operation::ListTokens => accounts::list_tokens(app, request).await,
        Operation::CreateToken => accounts::create_token(app, request).await,
        Operation::RevokeToken => accounts::revoke_token(app, request, first).await,
        Operation::ListTeams => teams::list(app, request).await,
        Operation::CreateTeam => teams::create(app, request).await,
        Operation::ShowTeam => teams::show(app, request, first).await,
        Operation::ListMembers => teams::members(app, request, first).await,
        Operation::SetMember => teams::set_member(app, request, first, second).await,
        Operation::RemoveMember => teams::remove_member(app, request, first, second).await,
        Operation::CreateProject => teams::create_project(app, request, first).await,
        Operation::ListProjects => projects::list(app, request).await,
        Operation::ShowProject => projects::head(app, request, first).await,
        Operation::ListVersions => projects::versions(app, request, first).await,
        Operation::ShowVersion => projects::version(app, request, first, second).await,
        Operation::Restore => projects::restore(app, request, first).await,
        Operation::Pull => sync::pull(app, request, first).await,
        Operation::Push => sync::push(app, request, first).await,
        Operation::Missing => sync::missing(app, request, first).await,
        Operation::Upload => sync::upload(app, request, first).await,
        Operation::Commit => sync::commit(app, request, first).await,
        Operation::Events => events::stream(app, request, first).await,
    }
}
