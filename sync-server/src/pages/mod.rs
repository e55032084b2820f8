//! The account pages: sign-up, sign-in, account and tokens, teams and members, projects, their
//! history, trees and restores, rendered on the server with tera and complete without
//! JavaScript (forms post and redirect; the one script only adds copy buttons).
//!
//! They live beside the API on the same origin, under `/account` (and `/` when no site is
//! built), routed by one table ([`routes::PAGES`]). Every page applies the API's rules through
//! the same functions (`api::access`, the catalog's rules): a project or team the visitor may
//! not see answers the same 404 page as one that does not exist. Sessions, cookies and CSRF
//! tokens are in [`session`]; failed sign-ins are counted by [`SignInLimiter`].

mod account;
mod assets;
mod forms;
mod limiter;
mod projects;
mod render;
pub mod routes;
pub mod session;
mod teams;

use std::net::IpAddr;
use std::sync::Arc;

use warp::Filter;
use warp::http::{HeaderMap, Method};
use warp::reply::Response;

pub use limiter::SignInLimiter;

/// The largest file the pages hand out by default ([`crate::app::Limits`]).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 32 * 1024 * 1024;
pub use render::PageError;

use crate::api::BodyStream;
use crate::app::App;
use crate::catalog::SignedIn;
use crate::server::PeerAddr;
use routes::{Page, PageMatch};

/// One page request, as the handlers see it.
pub struct PageRequest {
    pub method: Method,
    /// The path split at `/`, percent-decoded, without empty segments.
    pub segments: Vec<String>,
    /// The raw query string, empty when absent.
    pub query: String,
    pub headers: HeaderMap,
    /// The client's address: the connection's peer, or the trusted proxy's `X-Forwarded-For`.
    pub client: Option<IpAddr>,
    /// Whether a built site (the docs) is served beside the pages.
    pub site: bool,
    pub body: BodyStream,
}

impl std::fmt::Debug for PageRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageRequest")
            .field("method", &self.method)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

/// Who is asking: the signed-in account, if any, and the secret its forms' CSRF tokens are
/// derived from.
#[derive(Debug)]
pub struct Visitor {
    /// Whether the docs site is served here (the pages link to it only then).
    pub site: bool,
    pub signed_in: Option<SignedIn>,
    /// The session secret when signed in, else the pre-session cookie's.
    pub secret: String,
    /// A pre-session cookie minted for this answer (the browser had none).
    pub minted: bool,
    /// Whether cookies must be `Secure` (the browser came over TLS).
    pub secure: bool,
}

impl Visitor {
    /// The CSRF token every form of this answer carries.
    pub fn csrf(&self) -> String {
        session::csrf_token(&self.secret)
    }
}

/// The filter of every page: `/account/...`, and `/` when `start_page` (no built site).
pub fn filter(
    app: Arc<App>,
    start_page: bool,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path::full()
        .and_then(move |path: warp::path::FullPath| async move {
            let segments: Vec<&str> = path.as_str().split('/').filter(|s| !s.is_empty()).collect();
            if routes::is_page_path(&segments) || (start_page && segments.is_empty()) {
                Ok(path)
            } else {
                Err(warp::reject::not_found())
            }
        })
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::body::stream().map(crate::api::request::box_body))
        .then(
            move |path: warp::path::FullPath,
                  method,
                  query,
                  headers: HeaderMap,
                  peer: Option<PeerAddr>,
                  body| {
                let app = app.clone();
                let segments = crate::api::request::path_segments(path.as_str());
                let client = client_address(&headers, peer, app.limits.trust_proxy_headers);
                let request = PageRequest {
                    method,
                    segments,
                    query,
                    headers,
                    client,
                    site: !start_page,
                    body,
                };
                async move { dispatch(&app, request).await }
            },
        )
}

/// The client's address: the proxy's last `X-Forwarded-For` entry when proxy headers are
/// trusted (the one the proxy itself added), else the connection's peer.
pub fn client_address(headers: &HeaderMap, peer: Option<PeerAddr>, trust: bool) -> Option<IpAddr> {
    if trust
        && let Some(forwarded) = headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
    {
        return Some(forwarded);
    }
    peer.map(|PeerAddr(address)| address.ip())
}

/// Routes one page request; every failure becomes a page.
pub async fn dispatch(app: &App, request: PageRequest) -> Response {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let (route, values) = match routes::find(request.method.as_str(), &segments) {
        PageMatch::Found(route, values) => (route, values),
        PageMatch::MethodNotAllowed(allowed) => {
            return render::method_not_allowed(&allowed);
        }
        PageMatch::NotFound => return render::error_page(None, &PageError::NotFound),
    };
    if route.page == Page::Asset {
        return assets::serve(values.first().map_or("", String::as_str));
    }
    let visitor = match visitor(app, &request.headers, request.site).await {
        Ok(visitor) => visitor,
        Err(error) => return render::error_page(None, &error),
    };
    let mut request = request;
    let form = if request.method == Method::POST {
        match forms::read(&mut request, &visitor).await {
            Ok(form) => form,
            Err(error) => return render::error_page(Some(&visitor), &error),
        }
    } else {
        forms::Form::default()
    };
    // After the form's check: a cross-site post is refused as such, not sent to sign in.
    if route.signed_in && visitor.signed_in.is_none() {
        return render::sign_in_redirect(&request);
    }
    let value = |index: usize| values.get(index).map_or("", String::as_str).to_owned();
    let (first, second) = (value(0), value(1));
    let (v, r, f) = (&visitor, &request, form);
    let answer = match route.page {
        Page::Start => account::start(v, r),
        Page::Asset => Err(PageError::NotFound),
        Page::SignUpForm => account::sign_up_form(v, r),
        Page::SignUp => account::sign_up(app, v, f).await,
        Page::SignInForm => account::sign_in_form(v, r),
        Page::SignIn => account::sign_in(app, v, r, f).await,
        Page::SignOut => account::sign_out(app, v).await,
        Page::SignOutEverywhere => account::sign_out_everywhere(app, v).await,
        Page::Account => account::overview(app, v, r).await,
        Page::ChangePassword => account::change_password(app, v, r, f).await,
        Page::Tokens => account::tokens(app, v, r).await,
        Page::CreateToken => account::create_token(app, v, f).await,
        Page::RevokeToken => account::revoke_token(app, v, &first).await,
        Page::Teams => teams::list(app, v, r).await,
        Page::CreateTeam => teams::create(app, v, f).await,
        Page::Team => teams::show(app, v, r, &first).await,
        Page::AddMember => teams::add_member(app, v, f, &first).await,
        Page::SetRole => teams::set_role(app, v, f, &first, &second).await,
        Page::RemoveMember => teams::remove_member(app, v, &first, &second).await,
        Page::CreateProject => teams::create_project(app, v, f, &first).await,
        Page::Projects => projects::list(app, v).await,
        Page::Project => projects::show(app, v, r, &first).await,
        Page::Tree => projects::tree(app, v, r, &first, &second).await,
        Page::Download => projects::download(app, v, r, &first, &second).await,
        Page::RestoreForm => projects::restore_form(app, v, &first, &second).await,
        Page::Restore => projects::restore(app, v, f, &first, &second).await,
    };
    let response = match answer {
        Ok(response) => response,
        Err(error) => render::error_page(Some(&visitor), &error),
    };
    render::with_visitor_cookie(response, &visitor)
}

/// The visitor of a request: its session, if the cookie names a live one, else its
/// pre-session secret (minted now when it has none).
async fn visitor(app: &App, headers: &HeaderMap, site: bool) -> Result<Visitor, PageError> {
    let secure = session::over_tls(headers, app.limits.trust_proxy_headers);
    if let Some(secret) = session::cookie(headers, session::SESSION_COOKIE) {
        let hash = session::session_hash(secret);
        if let Some(signed_in) = app.catalog.session(&hash).await? {
            return Ok(Visitor {
                site,
                signed_in: Some(signed_in),
                secret: secret.to_owned(),
                minted: false,
                secure,
            });
        }
    }
    Ok(match session::cookie(headers, session::CSRF_COOKIE) {
        Some(secret) => Visitor {
            site,
            signed_in: None,
            secret: secret.to_owned(),
            minted: false,
            secure,
        },
        None => Visitor {
            site,
            signed_in: None,
            secret: session::new_secret(),
            minted: true,
            secure,
        },
    })
}
