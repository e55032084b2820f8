//! Rendering: the templates (tera, compiled into the binary from `sync-server/templates/`),
//! the answers every page shares (security headers, redirects, error pages) and [`PageError`].

use std::sync::OnceLock;
use std::time::Duration;

use sync_protocol::wire::{self, ProblemCode};
use tera::{Context, Tera};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::session::{self, CSRF_COOKIE, SESSION_LIFETIME};
use super::{PageRequest, Visitor};
use crate::catalog::CatalogError;
use crate::problem::Problem;

/// The templates, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("start.html", include_str!("../../templates/start.html")),
    ("sign_up.html", include_str!("../../templates/sign_up.html")),
    ("sign_in.html", include_str!("../../templates/sign_in.html")),
    ("account.html", include_str!("../../templates/account.html")),
    ("tokens.html", include_str!("../../templates/tokens.html")),
    (
        "token_created.html",
        include_str!("../../templates/token_created.html"),
    ),
    ("teams.html", include_str!("../../templates/teams.html")),
    ("team.html", include_str!("../../templates/team.html")),
    (
        "projects.html",
        include_str!("../../templates/projects.html"),
    ),
    ("project.html", include_str!("../../templates/project.html")),
    ("tree.html", include_str!("../../templates/tree.html")),
    ("restore.html", include_str!("../../templates/restore.html")),
    ("error.html", include_str!("../../templates/error.html")),
];

/// The Content-Security-Policy of every page: nothing inline, nothing from elsewhere, never
/// in a frame.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn templates() -> &'static Tera {
    static TERA: OnceLock<Tera> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = Tera::default();
        // The templates are part of the binary: a test renders every one, so this cannot fail
        // in a build that passed its tests.
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .unwrap_or_else(|error| panic!("the account pages' templates: {error:?}"));
        tera.autoescape_on(vec![".html"]);
        tera.register_filter("when", when);
        tera
    })
}

/// The `when` filter: an RFC 3339 time as the API writes it ("2026-11-26T14:50:06.537Z")
/// shown as "2026-11-26 14:50 UTC".
fn when(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = value.as_str().unwrap_or_default();
    let shown = match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
        _ => text.to_owned(),
    };
    Ok(tera::Value::String(shown))
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Nothing here, or nothing the visitor may see: one answer for both.
    NotFound,
    /// Allowed to see it, not to do this.
    Forbidden(String),
    /// The form's CSRF token is missing or wrong, or it came from another site.
    BadForm(String),
    /// Too many failed sign-ins: try again after this.
    TooMany(Duration),
    /// The body is past the form limit.
    TooLarge,
    /// Any other failure: the API's problem for it.
    Problem(Problem),
}

impl From<Problem> for PageError {
    fn from(problem: Problem) -> Self {
        match problem.code {
            ProblemCode::NotFound => Self::NotFound,
            ProblemCode::Forbidden => Self::Forbidden(problem.document.detail.clone()),
            _ => Self::Problem(problem),
        }
    }
}

impl From<CatalogError> for PageError {
    fn from(error: CatalogError) -> Self {
        Problem::from(error).into()
    }
}

impl From<crate::objects::ObjectsError> for PageError {
    fn from(error: crate::objects::ObjectsError) -> Self {
        Problem::from(error).into()
    }
}

/// The context every page starts from: the visitor and their CSRF token.
pub fn context(visitor: &Visitor, title: &str, section: &str) -> Context {
    let mut context = Context::new();
    context.insert("title", title);
    context.insert("section", section);
    context.insert("site", &visitor.site);
    context.insert("csrf", &visitor.csrf());
    // Forms shown for the first time: no values kept, no errors (a failed post replaces both).
    context.insert(
        "values",
        &std::collections::BTreeMap::<String, String>::new(),
    );
    context.insert("errors", &super::forms::FormErrors::default());
    context.insert("max_password", &crate::auth::MAX_PASSWORD_LEN);
    context.insert("max_name", &crate::catalog::limits::MAX_NAME_LEN);
    if let Some(signed_in) = &visitor.signed_in {
        context.insert("me", &signed_in.account.name);
    }
    context
}

/// Renders `template` into an HTML answer with `status`.
pub fn page(status: StatusCode, template: &str, context: &Context) -> Result<Response, PageError> {
    let body = templates().render(template, context).map_err(|error| {
        PageError::Problem(Problem::internal(format!(
            "rendering {template}: {error:?}"
        )))
    })?;
    Ok(html(status, body))
}

/// An HTML answer with the pages' security headers.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

/// The headers of every page answer: no caching of private pages, the CSP, no framing, no
/// sniffing, no referrer beyond this origin.
pub fn secure_headers(headers: &mut warp::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// A 303 See Other to `location` (a path of this server): where a form goes on success.
pub fn redirect(location: &str) -> Response {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secure_headers(response.headers_mut());
    response
}

/// To the sign-in page, coming back here afterwards (for a page read with GET).
pub fn sign_in_redirect(request: &PageRequest) -> Response {
    let here = format!("/{}", request.segments.join("/"));
    if request.method == warp::http::Method::GET {
        let next: String = url_encode(&here);
        redirect(&format!("/account/sign-in?next={next}"))
    } else {
        redirect("/account/sign-in")
    }
}

/// Percent-encodes `text` for a query value.
pub fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Sets the pre-session cookie on an answer when the visitor had none.
pub fn with_visitor_cookie(mut response: Response, visitor: &Visitor) -> Response {
    if visitor.minted && visitor.signed_in.is_none() {
        response.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(
                CSRF_COOKIE,
                Some(&visitor.secret),
                SESSION_LIFETIME,
                visitor.secure,
            ),
        );
    }
    response
}

/// The `405` page.
pub fn method_not_allowed(allowed: &[wire::Method]) -> Response {
    let allow = allowed
        .iter()
        .map(|method| method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = plain_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        &format!("This page answers {allow}."),
    );
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The page of a failure.
pub fn error_page(visitor: Option<&Visitor>, error: &PageError) -> Response {
    let (status, title, detail, retry) = match error {
        PageError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here, or you may not see it.".to_owned(),
            None,
        ),
        PageError::Forbidden(detail) => {
            (StatusCode::FORBIDDEN, "Not allowed", detail.clone(), None)
        }
        PageError::BadForm(detail) => (StatusCode::FORBIDDEN, "Form refused", detail.clone(), None),
        PageError::TooMany(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            format!(
                "Too many failed sign-ins. Try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            ),
            Some(wait.as_secs()),
        ),
        PageError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            format!(
                "A form may send at most {} bytes.",
                super::forms::MAX_FORM_BYTES
            ),
            None,
        ),
        PageError::Problem(problem) => {
            let status = problem.status();
            if status.is_server_error() {
                tracing::warn!(code = %problem.code, detail = %problem.document.detail, "page failed");
                (
                    status,
                    "Something went wrong",
                    "The server could not answer this page. Try again in a moment.".to_owned(),
                    problem.retry_after.map(u64::from),
                )
            } else {
                (
                    status,
                    "Request refused",
                    problem.document.detail.clone(),
                    None,
                )
            }
        }
    };
    let mut response = match visitor {
        Some(visitor) => {
            let mut context = context(visitor, title, "");
            context.insert("detail", &detail);
            context.insert("status", &status.as_u16());
            page(status, "error.html", &context)
                .unwrap_or_else(|_| plain_error(status, title, &detail))
        }
        None => plain_error(status, title, &detail),
    };
    if let Some(seconds) = retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An error page without a visitor (before one is known, or when rendering failed).
fn plain_error(status: StatusCode, title: &str, detail: &str) -> Response {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    html(
        status,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title} · Cairn</title>\n\
             <link rel=\"stylesheet\" href=\"/account/assets/style.css\">\n\
             <link rel=\"icon\" href=\"/account/assets/favicon.svg\" type=\"image/svg+xml\">\n\
             </head>\n<body>\n<main id=\"main\" class=\"narrow\">\n<h1>{title}</h1>\n<p>{detail}</p>\n\
             <p><a href=\"/account\">Your account</a></p>\n</main>\n</body>\n</html>\n",
            title = escape(title),
            detail = escape(detail),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let names: Vec<&str> = templates().get_template_names().collect();
        assert_eq!(names.len(), TEMPLATES.len());
    }
}
