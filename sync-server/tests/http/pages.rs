//! The account pages over real HTTP and real stores: a browser is a client with a cookie jar
//! that follows no redirects, so each test sees every answer. The journey, every form's bad
//! input, CSRF, what a visitor may not see, sign-in limits, sessions, headers and downloads.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;
use sync_server::app::Limits;

use crate::http::support::{TestServer, Tree, User};

/// One answer as a browser sees it.
#[derive(Debug)]
struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a csrf token") + marker.len();
        self.body[start..start + 64].to_owned()
    }

    /// The error shown next to the field whose input has id `id`.
    fn field_error(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}-error\"><span class=\"visually-hidden\">Error: </span>");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find("</p>")? + start;
        Some(self.body[start..end].to_owned())
    }

    /// The value the field `id` shows.
    fn value(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\" name=");
        let start = self.body.find(&marker)?;
        let rest = &self.body[start..];
        let value = rest.find("value=\"")? + "value=\"".len();
        let end = rest[value..].find('"')? + value;
        Some(rest[value..end].to_owned())
    }

    fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }
}

/// A browser: a cookie jar and no redirects followed.
struct Browser<'a> {
    server: &'a TestServer,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(self.server.url(path));
        self.send(request).await
    }

    /// Posts a form as a browser does from one of the server's pages.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.post_raw(path, body.into_bytes(), &[]).await
    }

    async fn post_raw(&mut self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Page {
        let mut request = self
            .http
            .post(self.server.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Fills and sends the form of the page at `form_page`.
    async fn submit(&mut self, form_page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(form_page).await.assert_status(200).csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    async fn sign_up(&mut self, name: &str) -> Page {
        let email = format!("{name}@example.com");
        self.submit(
            "/account/sign-up",
            "/account/sign-up",
            &[("name", name), ("email", &email), ("password", PASSWORD)],
        )
        .await
    }
}

const PASSWORD: &str = "correct horse battery";

/// An API user for a page account (logs in through the API).
async fn api_user(server: &TestServer, name: &str) -> User {
    let response = server
        .http
        .post(server.url("/v1/sessions"))
        .json(&serde_json::json!({"login": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: Value = response.json().await.unwrap();
    let account = &session["account"];
    User {
        id: account["id"].as_str().unwrap().to_owned(),
        name: name.to_owned(),
        token: session["token"].as_str().unwrap().to_owned(),
        token_id: session["token_id"].as_str().unwrap().to_owned(),
    }
}

/// The id after `prefix` in a redirect's location.
fn id_after(location: &str, prefix: &str) -> String {
    location
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{location} does not start with {prefix}"))
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

/// Alice signs up, makes a team and a project, adds Bob; Bob reads the history, browses and
/// downloads, restores version 1, makes and revokes a token, and signs out.
async fn journey(server: &TestServer) {
    let mut alice = Browser::new(server);
    let page = alice.get("/account/sign-up").await;
    page.assert_status(200);
    assert!(alice.cookies.contains_key("cairn_csrf"));
    let page = alice.sign_up("alice").await;
    assert_eq!((page.status, page.location()), (303, "/account/teams"));
    assert!(alice.cookies.contains_key("cairn_session"));

    let page = alice
        .submit("/account/teams", "/account/teams", &[("name", "apis")])
        .await;
    page.assert_status(303);
    let team = id_after(page.location(), "/account/teams/");
    let page = alice.get(page.location()).await;
    assert!(page.body.contains("The team is created"), "{}", page.body);

    let mut bob = Browser::new(server);
    bob.sign_up("bob").await.assert_status(303);
    let team_page = format!("/account/teams/{team}");
    let page = alice
        .submit(
            &team_page,
            &format!("/account/teams/{team}/members"),
            &[("account", "bob@example.com"), ("role", "editor")],
        )
        .await;
    page.assert_status(303);
    let page = alice.get(&team_page).await;
    assert!(
        page.body
            .contains("<td data-label=\"Account\">bob</td>\n<td data-label=\"Role\">editor</td>"),
        "{}",
        page.body
    );

    let page = alice
        .submit(
            &team_page,
            &format!("/account/teams/{team}/projects"),
            &[("name", "petstore")],
        )
        .await;
    page.assert_status(303);
    let project = id_after(page.location(), "/account/projects/");

    // Two versions pushed through the API.
    let alice_api = api_user(server, "alice").await;
    let first = Tree::build(&[(
        "requests/list.json",
        b"{\"url\": \"/pets\"}".as_slice(),
        false,
    )]);
    let second = Tree::build(&[(
        "requests/list.json",
        b"{\"url\": \"/pets?limit=10\"}".as_slice(),
        false,
    )]);
    assert_eq!(server.push_tree(&alice_api, &project, 0, &first).await, 1);
    assert_eq!(server.push_tree(&alice_api, &project, 1, &second).await, 2);

    let page = bob.get("/account/projects").await;
    page.assert_status(200);
    assert!(
        page.body
            .contains(&format!("/account/projects/{project}\">petstore</a>"))
    );
    let page = bob.get(&format!("/account/projects/{project}")).await;
    page.assert_status(200);
    for number in 0..=2 {
        assert!(
            page.body.contains(&format!("<tr id=\"v{number}\">")),
            "{}",
            page.body
        );
    }
    assert!(page.body.contains(&format!("--project {project}")));
    let page = bob
        .get(&format!(
            "/account/projects/{project}/versions/1?path=requests"
        ))
        .await;
    page.assert_status(200);
    assert!(page.body.contains("list.json"));
    let page = bob
        .get(&format!(
            "/account/projects/{project}/versions/1/file?path=requests/list.json"
        ))
        .await;
    page.assert_status(200);
    assert_eq!(page.body, "{\"url\": \"/pets\"}");
    assert!(
        page.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("list.json")
    );

    let restore = format!("/account/projects/{project}/versions/1/restore");
    let page = bob
        .submit(
            &restore,
            &restore,
            &[
                ("base", "2"),
                ("push_id", "page-restore-1"),
                ("message", "Back to 1"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let (version, root) = server.head(&alice_api, &project).await;
    assert_eq!((version, root), (3, first.root.to_string()));
    // The same confirmation sent again restores nothing more.
    let again = bob
        .submit(
            &restore,
            &restore,
            &[
                ("base", "2"),
                ("push_id", "page-restore-1"),
                ("message", "Back to 1"),
            ],
        )
        .await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(server.head(&alice_api, &project).await.0, 3);

    // A token made on the page works on the API until it is revoked there.
    let page = bob
        .submit("/account/tokens", "/account/tokens", &[("label", "laptop")])
        .await;
    page.assert_status(201);
    let marker = "<code id=\"secret\">";
    let start = page.body.find(marker).unwrap() + marker.len();
    let secret = page.body[start..start + 70].to_owned();
    assert!(secret.starts_with("cairn_"));
    let whoami = |token: String| {
        let http = server.http.clone();
        let url = server.url("/v1/account");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(whoami(secret.clone()).await, 200);
    let page = bob.get("/account/tokens").await;
    let action = "action=\"/account/tokens/";
    let start = page.body.find(action).unwrap() + action.len();
    let token_id = page.body[start..start + 32].to_owned();
    let page = bob
        .submit(
            "/account/tokens",
            &format!("/account/tokens/{token_id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(
        (page.status, page.location()),
        (303, "/account/tokens?done=token-revoked")
    );
    assert_eq!(whoami(secret).await, 401);

    // Signing out ends the session: the old cookie no longer works.
    let old = bob.cookies.clone();
    let page = bob.submit("/account", "/account/sign-out", &[]).await;
    assert_eq!(page.status, 303);
    assert!(!bob.cookies.contains_key("cairn_session"));
    bob.cookies = old;
    let page = bob.get("/account").await;
    assert_eq!(
        (page.status, page.location()),
        (303, "/account/sign-in?next=%2Faccount")
    );
}
http_test!(pages_journey, journey);

/// Every form refuses empty, too long and malformed fields with a message next to the field,
/// and keeps the other fields' values; at the limit it accepts.
async fn bad_input(server: &TestServer) {
    let mut browser = Browser::new(server);
    let form = "/account/sign-up";
    let csrf = browser.get(form).await.csrf();
    let long_name = "n".repeat(101);
    // (the fields sent, the field in error, its message)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("name", ""),
                ("email", "a@example.com"),
                ("password", PASSWORD),
            ],
            "name",
            "Enter an account name",
        ),
        (
            vec![
                ("name", &long_name),
                ("email", "a@example.com"),
                ("password", PASSWORD),
            ],
            "name",
            "1 to 100 letters",
        ),
        (
            vec![
                ("name", "has space"),
                ("email", "a@example.com"),
                ("password", PASSWORD),
            ],
            "name",
            "1 to 100 letters",
        ),
        (
            vec![("name", "ada"), ("email", ""), ("password", PASSWORD)],
            "email",
            "Enter your email address",
        ),
        (
            vec![
                ("name", "ada"),
                ("email", "a@example.com"),
                ("password", ""),
            ],
            "password",
            "Enter a password",
        ),
        (
            vec![
                ("name", "ada"),
                ("email", "no-at-sign"),
                ("password", PASSWORD),
            ],
            "email",
            "Not an email address",
        ),
        (
            vec![
                ("name", "ada"),
                ("email", "a@example.com"),
                ("password", "seven77"),
            ],
            "password",
            "At least 8 characters",
        ),
    ];
    for (fields, field, message) in cases {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields.iter().copied());
        let page = browser.post(form, &all).await;
        page.assert_status(422);
        let error = page
            .field_error(field)
            .unwrap_or_else(|| panic!("no error on {field}: {}", page.body));
        assert!(error.contains(message), "{field}: {error}");
        // The other fields keep what was typed (never the password).
        for (other, value) in &fields {
            if *other != field && *other != "password" {
                assert_eq!(page.value(other).as_deref(), Some(*value), "{other} kept");
            }
        }
        assert!(
            !page.body.contains(PASSWORD),
            "the password is never shown again"
        );
    }
    // Every field empty: each says so, and the summary lists them in the form's order.
    let page = browser.post(form, &[("csrf", &csrf)]).await;
    page.assert_status(422);
    let at = |text: &str| {
        page.body
            .find(text)
            .unwrap_or_else(|| panic!("{text}: {}", page.body))
    };
    assert!(at("<a href=\"#name\">") < at("<a href=\"#email\">"));
    assert!(at("<a href=\"#email\">") < at("<a href=\"#password\">"));
    // Malformed bytes: not UTF-8, a NUL.
    for (body, message) in [
        (
            format!("csrf={csrf}&name=%FF%FE&email=a%40example.com&password=correct+horse"),
            "Not valid UTF-8",
        ),
        (
            format!("csrf={csrf}&name=a%00b&email=a%40example.com&password=correct+horse"),
            "Control characters",
        ),
    ] {
        let page = browser.post_raw(form, body.into_bytes(), &[]).await;
        page.assert_status(422);
        assert!(
            page.field_error("name").unwrap().contains(message),
            "{}",
            page.body
        );
    }
    // The form limit (16 KiB): at it the form is read (and judged), past it refused unread.
    let filler = |total: usize| {
        let head = format!("csrf={csrf}&filler=");
        format!("{head}{}", "a".repeat(total - head.len())).into_bytes()
    };
    browser
        .post_raw(form, filler(16 * 1024), &[])
        .await
        .assert_status(422);
    browser
        .post_raw(form, filler(16 * 1024 + 1), &[])
        .await
        .assert_status(413);
    // The sign-in form, empty.
    let mut fresh = Browser::new(server);
    let sign_in_csrf = fresh.get("/account/sign-in").await.csrf();
    let page = fresh
        .post("/account/sign-in", &[("csrf", &sign_in_csrf)])
        .await;
    page.assert_status(422);
    assert!(
        page.field_error("login")
            .unwrap()
            .contains("Enter your account name or email")
    );
    assert!(
        page.field_error("password")
            .unwrap()
            .contains("Enter your password")
    );
    // Nothing was stored by any of these.
    assert!(
        server
            .app
            .catalog
            .account_credentials("ada")
            .await
            .unwrap()
            .is_none()
    );

    // At the limits: a 100-character name and an 8-character password.
    let name = "a".repeat(100);
    let page = browser
        .post(
            form,
            &[
                ("csrf", &csrf),
                ("name", &name),
                ("email", "long@example.com"),
                ("password", "eight888"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    // Taken name and email, each next to its field.
    let mut other = Browser::new(server);
    let csrf = other.get(form).await.csrf();
    let page = other
        .post(
            form,
            &[
                ("csrf", &csrf),
                ("name", &name.to_uppercase()),
                ("email", "x@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(
        page.field_error("name").unwrap().contains("taken"),
        "{}",
        page.body
    );
    let page = other
        .post(
            form,
            &[
                ("csrf", &csrf),
                ("name", "fresh"),
                ("email", "LONG@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(
        page.field_error("email")
            .unwrap()
            .contains("exists already"),
        "{}",
        page.body
    );

    // Team, project, token and member forms (signed in as the 100-character account).
    let names = [
        ("", "Enter a name"),
        (&*"t".repeat(101), "At most 100 characters"),
    ];
    for (value, message) in names {
        let page = browser
            .submit("/account/teams", "/account/teams", &[("name", value)])
            .await;
        page.assert_status(422);
        assert!(
            page.field_error("name").unwrap().contains(message),
            "{}",
            page.body
        );
        assert_eq!(page.value("name").as_deref(), Some(value));
    }
    let team_name = "t".repeat(100);
    let page = browser
        .submit("/account/teams", "/account/teams", &[("name", &team_name)])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let team = id_after(page.location(), "/account/teams/");
    let team_page = format!("/account/teams/{team}");
    let projects = format!("/account/teams/{team}/projects");
    for (value, message) in names {
        let page = browser
            .submit(&team_page, &projects, &[("name", value)])
            .await;
        page.assert_status(422);
        assert!(
            page.field_error("project-name").unwrap().contains(message),
            "{}",
            page.body
        );
    }
    let page = browser
        .submit(&team_page, &projects, &[("name", &"p".repeat(100))])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let project = id_after(page.location(), "/account/projects/");
    let members = format!("/account/teams/{team}/members");
    for (account, role, field, message) in [
        (
            "",
            "editor",
            "member-account",
            "Enter an account name or email",
        ),
        (
            "nobody",
            "editor",
            "member-account",
            "No account has this name or email",
        ),
        (
            "nobody@example.com",
            "editor",
            "member-account",
            "No account has this name or email",
        ),
        (
            "long@example.com",
            "admiral",
            "member-role",
            "Owner, editor or viewer",
        ),
    ] {
        let page = browser
            .submit(
                &team_page,
                &members,
                &[("account", account), ("role", role)],
            )
            .await;
        page.assert_status(422);
        let error = page
            .field_error(field)
            .unwrap_or_else(|| panic!("{field}: {}", page.body));
        assert!(error.contains(message), "{error}");
        assert_eq!(page.value("member-account").as_deref(), Some(account));
    }
    for (value, message) in [
        ("", "Name the token"),
        (&*"l".repeat(101), "At most 100 characters"),
    ] {
        let page = browser
            .submit("/account/tokens", "/account/tokens", &[("label", value)])
            .await;
        page.assert_status(422);
        assert!(
            page.field_error("label").unwrap().contains(message),
            "{}",
            page.body
        );
    }
    browser
        .submit(
            "/account/tokens",
            "/account/tokens",
            &[("label", &"l".repeat(100))],
        )
        .await
        .assert_status(201);
    // The password form.
    for (current, new, field, message) in [
        (
            "",
            "a new password",
            "current_password",
            "Enter your current password",
        ),
        (
            "wrong password",
            "a new password",
            "current_password",
            "not your current password",
        ),
        ("eight888", "short", "new_password", "At least 8 characters"),
    ] {
        let page = browser
            .submit(
                "/account",
                "/account/password",
                &[("current_password", current), ("new_password", new)],
            )
            .await;
        page.assert_status(422);
        assert!(
            page.field_error(field).unwrap().contains(message),
            "{}",
            page.body
        );
    }
    // The restore message: at its limit and past it.
    let restore = format!("/account/projects/{project}/versions/0/restore");
    let long = "m".repeat(4097);
    let page = browser
        .submit(
            &restore,
            &restore,
            &[("base", "0"), ("push_id", "r-past"), ("message", &long)],
        )
        .await;
    page.assert_status(422);
    assert!(
        page.field_error("message")
            .unwrap()
            .contains("At most 4096 characters")
    );
    let at_limit = "m".repeat(4096);
    let page = browser
        .submit(
            &restore,
            &restore,
            &[("base", "0"), ("push_id", "r-at"), ("message", &at_limit)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
}
http_test!(pages_refuse_bad_input, bad_input);

/// A form post without its CSRF token, with another browser's, or from another site is
/// refused, and nothing is written.
async fn csrf(server: &TestServer) {
    let mut alice = Browser::new(server);
    alice.sign_up("alice").await.assert_status(303);
    let mut mallory = Browser::new(server);
    mallory.get("/account/sign-in").await;
    let foreign = mallory.get("/account/sign-in").await.csrf();
    let own = alice.get("/account/teams").await.csrf();
    for (token, headers) in [
        ("", vec![]),
        (foreign.as_str(), vec![]),
        (own.as_str(), vec![("origin", "https://evil.example")]),
        (own.as_str(), vec![("sec-fetch-site", "cross-site")]),
        (own.as_str(), vec![("origin", "null")]),
    ] {
        let body = serde_urlencoded::to_string([("csrf", token), ("name", "stolen")]).unwrap();
        let page = alice
            .post_raw("/account/teams", body.into_bytes(), &headers)
            .await;
        assert_eq!(page.status, 403, "{token:?} {headers:?}: {}", page.body);
        assert!(page.body.contains("Form refused"));
    }
    assert!(
        server
            .app
            .catalog
            .team_by_name("stolen")
            .await
            .unwrap()
            .is_none()
    );
    // A browser without cookies cannot sign up either (its token cannot match).
    let mut bare = Browser::new(server);
    let page = bare
        .post(
            "/account/sign-up",
            &[
                ("csrf", &own),
                ("name", "eve"),
                ("email", "eve@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    // The same form with its own token goes through.
    let page = alice
        .post("/account/teams", &[("csrf", &own), ("name", "mine")])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
}
http_test!(pages_check_csrf, csrf);

/// A project or team the visitor may not see answers exactly as one that does not exist.
async fn not_found(server: &TestServer) {
    let (carol, team, project) = server.owner_with_project("carol").await;
    let tree = Tree::build(&[("a.json", b"{}".as_slice(), false)]);
    server.push_tree(&carol, &project, 0, &tree).await;
    let mut alice = Browser::new(server);
    alice.sign_up("alice").await;
    let missing_project = "0123456789abcdef0123456789abcdef";
    let paths = |project: &str, team: &str| {
        vec![
            format!("/account/projects/{project}"),
            format!("/account/projects/{project}/versions/1"),
            format!("/account/projects/{project}/versions/1/file?path=a.json"),
            format!("/account/projects/{project}/versions/1/restore"),
            format!("/account/teams/{team}"),
        ]
    };
    let reference = alice
        .get(&format!("/account/projects/{missing_project}"))
        .await;
    reference.assert_status(404);
    for (hidden, absent) in paths(&project, &team)
        .into_iter()
        .zip(paths(missing_project, missing_project))
    {
        let hidden_page = alice.get(&hidden).await;
        let absent_page = alice.get(&absent).await;
        assert_eq!(hidden_page.status, 404, "{hidden}");
        assert_eq!(hidden_page.body, absent_page.body, "{hidden}");
        assert_eq!(hidden_page.body, reference.body);
    }
    for malformed in [
        "/account/projects/zzz",
        "/account/teams/not-an-id",
        "/account/projects/%00",
    ] {
        let page = alice.get(malformed).await;
        assert_eq!(
            (page.status, page.body.as_str()),
            (404, reference.body.as_str()),
            "{malformed}"
        );
    }
    // A viewer sees the project but may not restore.
    let viewer = api_user(server, "alice").await;
    server.add_member(&carol, &team, &viewer, "viewer").await;
    alice
        .get(&format!("/account/projects/{project}"))
        .await
        .assert_status(200);
    let page = alice
        .get(&format!("/account/projects/{project}/versions/0/restore"))
        .await;
    page.assert_status(403);
    // Pages need a signed-in browser: the rest of the world goes to sign in.
    let mut anonymous = Browser::new(server);
    let page = anonymous.get(&format!("/account/projects/{project}")).await;
    assert_eq!(page.status, 303);
    assert!(page.location().starts_with("/account/sign-in?next="));
}
http_test!(pages_hide_what_you_may_not_see, not_found);

/// Failed sign-ins are limited per account (and the API's log-in shares the count).
async fn sign_in_limit(server: &TestServer) {
    let mut alice = Browser::new(server);
    alice.sign_up("alice").await;
    let mut attacker = Browser::new(server);
    let csrf = attacker.get("/account/sign-in").await.csrf();
    for _ in 0..10 {
        let page = attacker
            .post(
                "/account/sign-in",
                &[
                    ("csrf", &csrf),
                    ("login", "alice"),
                    ("password", "guess guess"),
                ],
            )
            .await;
        page.assert_status(401);
        assert!(page.body.contains("do not match an account"));
        assert_eq!(page.value("login").as_deref(), Some("alice"));
    }
    // The right password now waits too, on the pages and on the API.
    let page = attacker
        .post(
            "/account/sign-in",
            &[("csrf", &csrf), ("login", "ALICE"), ("password", PASSWORD)],
        )
        .await;
    page.assert_status(429);
    assert!(page.headers.contains_key("retry-after"));
    let response = server
        .http
        .post(server.url("/v1/sessions"))
        .json(&serde_json::json!({"login": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "too-many-requests");
    // Another account signs in as usual.
    Browser::new(server).sign_up("bob").await;
    let mut bob = Browser::new(server);
    let page = bob
        .submit(
            "/account/sign-in",
            "/account/sign-in",
            &[("login", "bob"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
}
http_test!(pages_limit_sign_ins, sign_in_limit);

/// A password change and "sign out everywhere" end the other browsers' sessions.
async fn sessions(server: &TestServer) {
    let mut first = Browser::new(server);
    first.sign_up("alice").await;
    let mut second = Browser::new(server);
    let page = second
        .submit(
            "/account/sign-in",
            "/account/sign-in",
            &[
                ("login", "alice@example.com"),
                ("password", PASSWORD),
                ("next", "/account/tokens"),
            ],
        )
        .await;
    assert_eq!((page.status, page.location()), (303, "/account/tokens"));
    // An open redirect is not: `next` must be one of the pages.
    let mut third = Browser::new(server);
    let page = third
        .submit(
            "/account/sign-in",
            "/account/sign-in",
            &[
                ("login", "alice"),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!((page.status, page.location()), (303, "/account/projects"));
    assert!(
        second
            .get("/account")
            .await
            .body
            .contains("signed in on 3 browsers")
    );

    let page = first
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(
        (page.status, page.location()),
        (303, "/account?done=password-changed")
    );
    assert_eq!(first.get("/account").await.status, 200);
    assert_eq!(second.get("/account").await.status, 303);
    assert_eq!(third.get("/account").await.status, 303);

    let mut fourth = Browser::new(server);
    fourth
        .submit(
            "/account/sign-in",
            "/account/sign-in",
            &[("login", "alice"), ("password", "a brand new password")],
        )
        .await
        .assert_status(303);
    let page = fourth
        .submit("/account", "/account/sign-out-everywhere", &[])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(first.get("/account").await.status, 303);
    assert_eq!(fourth.get("/account").await.status, 303);
}
http_test!(pages_end_sessions, sessions);

/// Every page carries the security headers; cookies are HttpOnly and SameSite=Lax, and Secure
/// only when a trusted proxy says the browser came over TLS.
async fn headers(server: &TestServer) {
    let mut browser = Browser::new(server);
    for path in ["/", "/account/sign-in", "/account/sign-up", "/account/nope"] {
        let page = browser.get(path).await;
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["referrer-policy"], "same-origin");
        assert_eq!(page.headers["x-content-type-options"], "nosniff");
    }
    let response = server
        .http
        .get(server.url("/account/sign-in"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert_eq!(
        cookie.contains("Secure"),
        server.app.limits.trust_proxy_headers,
        "{cookie}"
    );
    // The stylesheet is the docs site's.
    let css = browser.get("/account/assets/style.css").await;
    assert!(css.body.contains(".site-header"));
    assert_eq!(browser.get("/account/assets/nope.css").await.status, 404);
    // A method the page does not answer.
    let response = server
        .http
        .delete(server.url("/account/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
}
http_test!(pages_send_security_headers, headers);
http_test!(
    pages_mark_cookies_secure_behind_a_trusted_proxy,
    headers,
    sync_server::app::Limits {
        trust_proxy_headers: true,
        ..sync_server::app::Limits::default()
    }
);

/// The pages hand out files up to their limit, and past it say to use `cairn`.
async fn downloads(server: &TestServer) {
    let limit = server.app.limits.max_page_download_bytes as usize;
    let (owner, _, project) = server.owner_with_project("alice").await;
    let at = vec![b'a'; limit];
    let past = vec![b'b'; limit + 1];
    let tree = Tree::build(&[
        ("at.bin", at.as_slice(), false),
        ("past.bin", past.as_slice(), true),
    ]);
    server.push_tree(&owner, &project, 0, &tree).await;
    let mut browser = Browser::new(server);
    browser
        .submit(
            "/account/sign-in",
            "/account/sign-in",
            &[("login", "alice"), ("password", PASSWORD)],
        )
        .await
        .assert_status(303);
    let page = browser
        .get(&format!(
            "/account/projects/{project}/versions/1/file?path=at.bin"
        ))
        .await;
    page.assert_status(200);
    assert_eq!(page.body.len(), limit);
    let page = browser
        .get(&format!(
            "/account/projects/{project}/versions/1/file?path=past.bin"
        ))
        .await;
    page.assert_status(413);
    assert!(page.body.contains("cairn clone"));
    let page = browser
        .get(&format!("/account/projects/{project}/versions/1"))
        .await;
    assert!(page.body.contains("(executable)"));
    for missing in ["nope.bin", "at.bin/x", "", "../at.bin"] {
        let page = browser
            .get(&format!(
                "/account/projects/{project}/versions/1/file?path={missing}"
            ))
            .await;
        assert_eq!(page.status, 404, "{missing}");
    }
}
http_test!(
    pages_download_files_within_their_limit,
    downloads,
    sync_server::app::Limits {
        max_page_download_bytes: 300 * 1024,
        ..sync_server::app::Limits::default()
    }
);

/// Without a built site `/` is the start page; with one, the site's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_page_only_without_a_site() {
    let server = TestServer::start(cairn_test_support::Mode::Embedded, Limits::default())
        .await
        .unwrap();
    let page = Browser::new(&server).get("/").await;
    page.assert_status(200);
    assert!(
        page.body.contains("href=\"/account/sign-up\"")
            && page.body.contains("href=\"/account/sign-in\"")
    );
    assert!(!page.body.contains("href=\"/docs/\""), "no docs to link to");
    server.stop().await;

    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<p>the site</p>").unwrap();
    let server = TestServer::start_with_site(
        cairn_test_support::Mode::Embedded,
        Limits::default(),
        Some(site.path().to_owned()),
    )
    .await
    .unwrap();
    let mut browser = Browser::new(&server);
    assert_eq!(browser.get("/").await.body, "<p>the site</p>");
    let page = browser.get("/account/sign-in").await;
    assert!(
        page.body.contains("href=\"/docs/\""),
        "the pages link the docs"
    );
    server.stop().await;
}
