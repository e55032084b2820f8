//! The account pages' route table: every page once, with its method and path template, matched
//! like the API's routes ([`wire::routes::template_captures`]). The dispatcher, the metrics'
//! route labels and the tests that walk every page are all made from [`PAGES`].

use sync_protocol::wire::Method;
use sync_protocol::wire::routes::template_captures;

/// Every page and form action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Page {
    /// `/` when no site is built: what this server is, sign in, sign up, the docs.
    Start,
    Asset,
    SignUpForm,
    SignUp,
    SignInForm,
    SignIn,
    SignOut,
    SignOutEverywhere,
    Account,
    ChangePassword,
    Tokens,
    CreateToken,
    RevokeToken,
    Teams,
    CreateTeam,
    Team,
    AddMember,
    SetRole,
    RemoveMember,
    CreateProject,
    Projects,
    Project,
    Tree,
    Download,
    RestoreForm,
    Restore,
}

/// One page: how it is reached and whether it needs a signed-in browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRoute {
    pub page: Page,
    pub method: Method,
    pub path: &'static str,
    /// False for the pages anyone may open (start, sign-up, sign-in, the stylesheet...).
    pub signed_in: bool,
}

const fn page(page: Page, method: Method, path: &'static str, signed_in: bool) -> PageRoute {
    PageRoute {
        page,
        method,
        path,
        signed_in,
    }
}

use Method::{Get, Post};
use Page as P;

/// Every page. Forms post to their own path or an action path and answer with a redirect
/// (303 See Other) on success, or the form again with its errors (422).
pub const PAGES: &[PageRoute] = &[
    page(P::Start, Get, "/", false),
    page(P::Asset, Get, "/account/assets/{file}", false),
    page(P::SignUpForm, Get, "/account/sign-up", false),
    page(P::SignUp, Post, "/account/sign-up", false),
    page(P::SignInForm, Get, "/account/sign-in", false),
    page(P::SignIn, Post, "/account/sign-in", false),
    page(P::SignOut, Post, "/account/sign-out", false),
    page(
        P::SignOutEverywhere,
        Post,
        "/account/sign-out-everywhere",
        true,
    ),
    page(P::Account, Get, "/account", true),
    page(P::ChangePassword, Post, "/account/password", true),
    page(P::Tokens, Get, "/account/tokens", true),
    page(P::CreateToken, Post, "/account/tokens", true),
    page(P::RevokeToken, Post, "/account/tokens/{token}/revoke", true),
    page(P::Teams, Get, "/account/teams", true),
    page(P::CreateTeam, Post, "/account/teams", true),
    page(P::Team, Get, "/account/teams/{team}", true),
    page(P::AddMember, Post, "/account/teams/{team}/members", true),
    page(
        P::SetRole,
        Post,
        "/account/teams/{team}/members/{account}/role",
        true,
    ),
    page(
        P::RemoveMember,
        Post,
        "/account/teams/{team}/members/{account}/remove",
        true,
    ),
    page(
        P::CreateProject,
        Post,
        "/account/teams/{team}/projects",
        true,
    ),
    page(P::Projects, Get, "/account/projects", true),
    page(P::Project, Get, "/account/projects/{project}", true),
    page(
        P::Tree,
        Get,
        "/account/projects/{project}/versions/{version}",
        true,
    ),
    page(
        P::Download,
        Get,
        "/account/projects/{project}/versions/{version}/file",
        true,
    ),
    page(
        P::RestoreForm,
        Get,
        "/account/projects/{project}/versions/{version}/restore",
        true,
    ),
    page(
        P::Restore,
        Post,
        "/account/projects/{project}/versions/{version}/restore",
        true,
    ),
];

/// Where a request's method and path lead among the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageMatch {
    Found(&'static PageRoute, Vec<String>),
    /// The path is a page; these methods are allowed on it.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Finds the page of `method` on `segments` (the path split at `/`, without empty segments).
/// `HEAD` finds what `GET` finds.
pub fn find(method: &str, segments: &[&str]) -> PageMatch {
    let method = if method == "HEAD" { "GET" } else { method };
    let mut allowed = Vec::new();
    for route in PAGES {
        if let Some(captured) = template_captures(route.path, segments) {
            if route.method.as_str() == method {
                return PageMatch::Found(route, captured);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        PageMatch::NotFound
    } else {
        allowed.sort();
        allowed.dedup();
        PageMatch::MethodNotAllowed(allowed)
    }
}

/// Whether `segments` are under the pages' own prefix, `/account`.
pub fn is_page_path(segments: &[&str]) -> bool {
    segments.first() == Some(&"account")
}

/// The metrics label of a page path: its template, `None` when it is not a page.
pub fn label(segments: &[&str]) -> Option<&'static str> {
    if !is_page_path(segments) {
        return None;
    }
    Some(
        PAGES
            .iter()
            .find(|route| template_captures(route.path, segments).is_some())
            .map_or("/account/other", |route| route.path),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_once_and_every_path_under_account_but_the_start() {
        for (index, route) in PAGES.iter().enumerate() {
            assert!(
                PAGES[..index]
                    .iter()
                    .all(|other| (other.method, other.path) != (route.method, route.path)),
                "{:?} {} twice",
                route.method,
                route.path
            );
            assert!(
                route.path == "/" || route.path.starts_with("/account"),
                "{}",
                route.path
            );
        }
    }

    #[test]
    fn pages_are_found_by_method_and_template() {
        let segments = ["account", "teams", "abc", "members"];
        match find("POST", &segments) {
            PageMatch::Found(route, values) => {
                assert_eq!(route.page, Page::AddMember);
                assert_eq!(values, ["abc"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            find("DELETE", &["account", "tokens"]),
            PageMatch::MethodNotAllowed(vec![Method::Get, Method::Post])
        );
        assert!(
            matches!(find("HEAD", &["account"]), PageMatch::Found(route, _) if route.page == Page::Account)
        );
        assert_eq!(find("GET", &["account", "nope"]), PageMatch::NotFound);
        assert_eq!(
            label(&["account", "teams", "x"]),
            Some("/account/teams/{team}")
        );
        assert_eq!(label(&["account", "zzz", "x"]), Some("/account/other"));
        assert_eq!(label(&["docs"]), None);
    }
}
