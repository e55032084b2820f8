//! The pages' static files, compiled into the binary: the docs site's stylesheet (one look for
//! both), its icon, and the one script, which only adds copy buttons.

use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::render;

/// The site's stylesheet, shared with sitegen's output (`docs-src/static/assets/style.css`).
const STYLE: &str = include_str!("../../../docs-src/static/assets/style.css");
const FAVICON: &str = include_str!("../../../docs-src/static/assets/favicon.svg");
const SCRIPT: &str = include_str!("../../templates/pages.js");

/// Answers `/account/assets/{file}`.
pub fn serve(file: &str) -> Response {
    let (body, content_type) = match file {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        "pages.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return render::error_page(None, &render::PageError::NotFound),
    };
    let mut response = Response::new(body.into());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    render::secure_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Short: the assets change with the binary, and their names do not.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
