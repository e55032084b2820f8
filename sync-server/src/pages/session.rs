//! Browser sessions, cookies and CSRF tokens of the account pages.
//!
//! - **The session cookie** (`cairn_session`) holds a random secret (256 bits); the catalog
//!   keeps only its hash ([`TokenHash::of_session_secret`]) with an expiry ([`SESSION_LIFETIME`]).
//!   It is `HttpOnly` (no script reads it), `SameSite=Lax` (a cross-site form post does not
//!   carry it), `Path=/` and `Secure` when the request came over TLS (as a trusted proxy says).
//! - **CSRF tokens**: every form carries a token derived from the browser's secret, the session
//!   secret when signed in and otherwise a pre-session cookie (`cairn_csrf`) set by the pages
//!   with forms: `BLAKE3-derive-key(CSRF context, secret)`. A site that cannot read the cookie
//!   cannot make the token, and no server-side state is needed, so any node checks any form.
//!   Posts from another origin (`Origin`, or `Sec-Fetch-Site: cross-site`) are refused too.

use std::time::Duration;

use rand::RngCore;
use warp::http::{HeaderMap, HeaderValue, header};

use crate::catalog::{Timestamp, TokenHash};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cairn_session";
/// The pre-session cookie that anonymous forms (sign-in, sign-up) derive their token from.
pub const CSRF_COOKIE: &str = "cairn_csrf";
/// How long a browser stays signed in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);
/// The derive-key context of CSRF tokens.
const CSRF_CONTEXT: &str = "cairn.dev 2026-12 account pages csrf v1";

/// A fresh cookie secret: 256 random bits as 64 hex digits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `text` looks like a secret this module made (so junk never reaches the catalog).
fn well_formed(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The hash the catalog keeps of a session secret.
pub fn session_hash(secret: &str) -> TokenHash {
    TokenHash::of_session_secret(secret.as_bytes())
}

/// The CSRF token of forms shown to the browser holding `secret`.
pub fn csrf_token(secret: &str) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(CSRF_CONTEXT);
    hasher.update(secret.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// Whether `sent` is the CSRF token of `secret`, compared in constant time.
pub fn csrf_matches(secret: &str, sent: &str) -> bool {
    let expected = csrf_token(secret);
    expected.len() == sent.len()
        && expected
            .bytes()
            .zip(sent.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The value of cookie `name`, if the request sent a well-formed one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| well_formed(value))
}

/// Whether the browser reached us over TLS: only a trusted proxy's `X-Forwarded-Proto` can
/// say so, since nodes speak plain HTTP themselves.
pub fn over_tls(headers: &HeaderMap, trust_proxy_headers: bool) -> bool {
    trust_proxy_headers
        && headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for `name`: `value` kept for `max_age`, or removed when `None`.
pub fn set_cookie(name: &str, value: Option<&str>, max_age: Duration, secure: bool) -> HeaderValue {
    let (value, max_age) = match value {
        Some(value) => (value, max_age),
        None => ("", Duration::ZERO),
    };
    // `Expires` as well as `Max-Age`: browsers use the latter, older clients (lynx) only the
    // former, and without it keep the cookie for the session alone.
    let expires = if max_age.is_zero() {
        std::time::UNIX_EPOCH
    } else {
        std::time::SystemTime::now() + max_age
    };
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/; Max-Age={}; Expires={}; HttpOnly; SameSite=Lax{secure}",
        max_age.as_secs(),
        httpdate::fmt_http_date(expires)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// When a session made now expires.
pub fn expiry_from_now() -> Timestamp {
    let lifetime = i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(Timestamp::now().unix_millis().saturating_add(lifetime))
}

/// Whether a form post came from another site: its `Origin` names another host than the one
/// it was sent to, or the browser says `Sec-Fetch-Site: cross-site`. A post with neither
/// header (an old browser, curl) is judged by its CSRF token alone.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if text("sec-fetch-site").is_some_and(|site| site == "cross-site") {
        return true;
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            !origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_secret() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        assert!(!csrf_matches(&a, &csrf_token(&a)[1..]));
    }

    #[test]
    fn cookies_are_read_only_when_well_formed() {
        let secret = new_secret();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {SESSION_COOKIE}={secret}")).unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some(secret.as_str()));
        assert_eq!(cookie(&headers, CSRF_COOKIE), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("cairn_session=short"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }

    #[test]
    fn cookie_flags() {
        let set = set_cookie(SESSION_COOKIE, Some("abc"), SESSION_LIFETIME, true);
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Secure"));
        let cleared = set_cookie(SESSION_COOKIE, None, SESSION_LIFETIME, false);
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
        assert!(
            cleared
                .to_str()
                .unwrap()
                .contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
        );
        assert!(!cleared.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn tls_only_from_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&headers, true));
        assert!(!over_tls(&headers, false));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!over_tls(&headers, true));
    }

    #[test]
    fn cross_site_posts_are_recognized() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("cairn.example:8080"));
        assert!(!cross_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://cairn.example:8080"),
        );
        assert!(!cross_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&headers));
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&headers));
    }
}
