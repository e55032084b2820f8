//! Shared helpers of the HTTP tests: a server started in-process on port 0 over real stores,
//! in embedded mode (SQLite and a folder) or production mode (a fresh PostgreSQL database and a
//! fresh s3s-fs bucket, from `cairn_test_support` through `storage_support`), and an HTTP client
//! that speaks the API. Trees come from `cairn_test_support::trees`.
//!
//! `http_test!(name, scenario)` makes two tests of one scenario, `name::embedded` and
//! `name::production`. Production tests need `CAIRN_TEST_DATABASE_URL` and `CAIRN_TEST_S3_*`
//! (set by `scripts/test`); without them they print "skipped" and pass, unless
//! `CAIRN_TEST_STRICT=1`, when they fail.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sync_protocol::stream::decode_stream;
use sync_protocol::{Object, ObjectId};
use sync_server::app::{App, Limits};
use sync_server::catalog::{Catalog, PostgresCatalog, PostgresSettings, SqliteCatalog};
use sync_server::server::Running;
use sync_server::store::{FsBackend, ObjectStore};

pub use cairn_test_support::Mode;
pub use cairn_test_support::trees::{FramedObject as Obj, Tree, stream_of, tree};

use crate::storage_support::{TestBucket, TestDatabase};

/// Makes `name::embedded` and `name::production` from `async fn scenario(server: &TestServer)`.
#[macro_export]
macro_rules! http_test {
    ($name:ident, $scenario:ident) => {
        $crate::http_test!($name, $scenario, sync_server::app::Limits::default());
    };
    ($name:ident, $scenario:ident, $limits:expr) => {
        mod $name {
            $crate::http_test!(@mode embedded, Embedded, $scenario, $limits);
            $crate::http_test!(@mode production, Production, $scenario, $limits);
        }
    };
    (@mode $test:ident, $mode:ident, $scenario:ident, $limits:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            $crate::http::support::run(
                $crate::http::support::Mode::$mode,
                $limits,
                |server| Box::pin(async move { super::$scenario(server).await }),
            )
            .await;
        }
    };
}

type Scenario =
    for<'a> fn(&'a TestServer) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

/// Starts a server in `mode`, runs the scenario, stops the server and drops its database.
pub async fn run(mode: Mode, limits: Limits, scenario: Scenario) {
    let Some(server) = TestServer::start(mode, limits).await else {
        return;
    };
    scenario(&server).await;
    server.stop().await;
}

/// The state a test server runs on.
#[derive(Debug)]
pub struct Storage {
    pub catalog: Arc<dyn Catalog>,
    pub store: ObjectStore,
    /// Kept alive for the folder and SQLite file of embedded mode.
    pub dir: tempfile::TempDir,
    /// Production: removed when the storage is dropped, also when the scenario panics.
    pub database: Option<TestDatabase>,
    pub bucket: Option<TestBucket>,
}

impl Storage {
    pub async fn open(mode: Mode) -> Option<Storage> {
        let dir = tempfile::tempdir().expect("temp dir");
        match mode {
            Mode::Embedded => {
                let catalog = SqliteCatalog::open(dir.path().join("catalog.sqlite3"))
                    .await
                    .expect("SQLite catalog");
                let store = ObjectStore::new(FsBackend::new(dir.path()));
                Some(Storage {
                    catalog: Arc::new(catalog),
                    store,
                    dir,
                    database: None,
                    bucket: None,
                })
            }
            Mode::Production => {
                let database = TestDatabase::create().await?;
                let bucket = TestBucket::create().await?;
                let catalog = PostgresCatalog::connect(&PostgresSettings::new(database.url()))
                    .await
                    .expect("PostgreSQL catalog");
                Some(Storage {
                    catalog: Arc::new(catalog),
                    store: ObjectStore::new(bucket.backend.clone()),
                    dir,
                    database: Some(database),
                    bucket: Some(bucket),
                })
            }
        }
    }
}

/// A server running in this process, and a client for it.
#[derive(Debug)]
pub struct TestServer {
    pub mode: Mode,
    pub base: String,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    running: Option<Running>,
    pub storage: Storage,
}

impl TestServer {
    pub async fn start(mode: Mode, limits: Limits) -> Option<TestServer> {
        Self::start_with_site(mode, limits, None).await
    }

    pub async fn start_with_site(
        mode: Mode,
        limits: Limits,
        site: Option<std::path::PathBuf>,
    ) -> Option<TestServer> {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_test_writer()
                .with_env_filter("info")
                .try_init();
        }
        let storage = Storage::open(mode).await?;
        let app = Arc::new(App::new(
            storage.catalog.clone(),
            storage.store.clone(),
            limits,
        ));
        let running = sync_server::server::start(
            app.clone(),
            "127.0.0.1:0".parse().expect("address"),
            site,
            Duration::from_secs(5),
        )
        .await
        .expect("starting the server");
        Some(TestServer {
            mode,
            base: format!("http://{}", running.addr),
            app,
            http: reqwest::Client::new(),
            running: Some(running),
            storage,
        })
    }

    /// Stops the server; its storage goes with it.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` with `user`'s token and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &User,
        body: Option<&Value>,
    ) -> reqwest::Response {
        self.call_with_token(method, path, Some(&user.token), body)
            .await
    }

    /// Sends `method path` without a token and with an optional JSON body.
    pub async fn call_anonymous(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        self.call_with_token(method, path, None, body).await
    }

    /// Sends `method path` with `token`, if any, and an optional JSON body.
    pub async fn call_with_token(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// The API document the server serves, `GET /v1/openapi.json`.
    pub async fn openapi_document(&self) -> Value {
        self.call_anonymous(reqwest::Method::GET, "/v1/openapi.json", None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// `call`, and the JSON body of its answer, whatever the status.
    pub async fn call_json(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &User,
        body: Option<&Value>,
    ) -> Value {
        self.call(method, path, user, body)
            .await
            .json()
            .await
            .unwrap()
    }

    /// `call`, expecting the problem `status` / `code` (see `expect_problem`); the document.
    pub async fn call_refused(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &User,
        body: Option<&Value>,
        status: u16,
        code: &str,
    ) -> Value {
        let response = self.call(method, path, user, body).await;
        Self::expect_problem(response, status, code).await
    }

    /// Store requests so far (all kinds).
    pub fn store_requests(&self) -> u64 {
        self.app.store.request_counts().total()
    }

    // API helpers. Each asserts the success status, so scenarios read as the story they test.

    pub async fn sign_up(&self, name: &str) -> User {
        let response = self
            .http
            .post(self.url("/v1/accounts"))
            .json(&json!({"name": name, "email": format!("{name}@example.com"), "password": "correct horse battery"}))
            .send()
            .await
            .expect("sign up");
        assert_eq!(
            response.status(),
            201,
            "sign up: {}",
            response.text().await.unwrap_or_default()
        );
        let account: Value = response.json().await.expect("account json");
        let response = self
            .http
            .post(self.url("/v1/sessions"))
            .json(&json!({"login": name, "password": "correct horse battery"}))
            .send()
            .await
            .expect("log in");
        assert_eq!(response.status(), 201);
        let session: Value = response.json().await.expect("session json");
        User {
            id: account["id"].as_str().unwrap_or_default().to_owned(),
            name: name.to_owned(),
            token: session["token"].as_str().unwrap_or_default().to_owned(),
            token_id: session["token_id"].as_str().unwrap_or_default().to_owned(),
        }
    }

    pub async fn create_team(&self, owner: &User, name: &str) -> String {
        self.create(owner, "/v1/teams", name).await
    }

    pub async fn create_project(&self, user: &User, team: &str, name: &str) -> String {
        self.create(user, &format!("/v1/teams/{team}/projects"), name)
            .await
    }

    /// Posts `{"name": name}` to `path` as `user` and expects 201 Created; the new id.
    async fn create(&self, user: &User, path: &str, name: &str) -> String {
        let body = json!({ "name": name });
        let response = self
            .call(reqwest::Method::POST, path, user, Some(&body))
            .await;
        assert_eq!(response.status(), 201, "creating {name} at {path}");
        let created: Value = response.json().await.expect("created json");
        created["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Gives the account `name` `role` in `team`, as `user`; the raw answer.
    pub async fn set_member_raw(
        &self,
        user: &User,
        team: &str,
        name: &str,
        role: &str,
    ) -> reqwest::Response {
        let path = format!("/v1/teams/{team}/members/{name}");
        let body = json!({"role": role});
        self.call(reqwest::Method::PUT, &path, user, Some(&body))
            .await
    }

    /// Removes the account `name` from `team`, as `user`; the raw answer.
    pub async fn remove_member_raw(
        &self,
        user: &User,
        team: &str,
        name: &str,
    ) -> reqwest::Response {
        let path = format!("/v1/teams/{team}/members/{name}");
        self.call(reqwest::Method::DELETE, &path, user, None).await
    }

    pub async fn add_member(&self, owner: &User, team: &str, member: &User, role: &str) {
        let response = self.set_member_raw(owner, team, &member.name, role).await;
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    /// A user with a team and a project: the usual start of a scenario.
    pub async fn owner_with_project(&self, name: &str) -> (User, String, String) {
        let user = self.sign_up(name).await;
        let team = self.create_team(&user, &format!("{name}-team")).await;
        let project = self.create_project(&user, &team, "api").await;
        (user, team, project)
    }

    pub async fn head(&self, user: &User, project: &str) -> (u64, String) {
        let response = self
            .http
            .get(self.url(&format!("/v1/projects/{project}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("head");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("head json");
        (
            body["version"].as_u64().unwrap_or(u64::MAX),
            body["root"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Sends a push; the raw answer.
    pub async fn push_raw(
        &self,
        user: &User,
        project: &str,
        push_id: &str,
        base_version: u64,
        root: &ObjectId,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.push_request(user, project, push_id, base_version, root, body)
            .send()
            .await
            .expect("push")
    }

    /// A push request, not yet sent (to add headers).
    pub fn push_request(
        &self,
        user: &User,
        project: &str,
        push_id: &str,
        base_version: u64,
        root: &ObjectId,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(&format!(
                "/v1/projects/{project}/push?push_id={push_id}&base_version={base_version}&root={root}&message=test"
            )))
            .bearer_auth(&user.token)
            .header("content-type", "application/vnd.cairn.objects")
            .body(body)
    }

    /// Pushes a whole tree (every object) and expects it committed; returns the new version.
    pub async fn push_tree(&self, user: &User, project: &str, base: u64, tree: &Tree) -> u64 {
        let push_id = cairn_test_support::unique_name("push-");
        let response = self
            .push_raw(user, project, &push_id, base, &tree.root, tree.stream())
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("push answer");
        assert_eq!(status, 200, "push: {body}");
        assert_eq!(body["root"], tree.root.to_string());
        body["version"].as_u64().unwrap_or(u64::MAX)
    }

    /// Uploads an object stream (`/objects`, the resumable push's upload); the raw answer.
    pub async fn upload_raw(&self, user: &User, project: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/projects/{project}/objects")))
            .bearer_auth(&user.token)
            .header("content-type", sync_protocol::wire::OBJECTS_MEDIA_TYPE)
            .body(body)
            .send()
            .await
            .expect("upload")
    }

    /// Sends a commit request (`/commits`, the end of a resumable push); the raw answer.
    pub async fn commit_raw(&self, user: &User, project: &str, body: &Value) -> reqwest::Response {
        let path = format!("/v1/projects/{project}/commits");
        self.call(reqwest::Method::POST, &path, user, Some(body))
            .await
    }

    /// Asks which of `ids` the project lacks (`/missing`); the raw answer.
    pub async fn missing_raw(
        &self,
        user: &User,
        project: &str,
        ids: &[String],
    ) -> reqwest::Response {
        let path = format!("/v1/projects/{project}/missing");
        let body = json!({ "ids": ids });
        self.call(reqwest::Method::POST, &path, user, Some(&body))
            .await
    }

    /// Sends a restore request (`/restore`); the raw answer.
    pub async fn restore_raw(&self, user: &User, project: &str, body: &Value) -> reqwest::Response {
        let path = format!("/v1/projects/{project}/restore");
        self.call(reqwest::Method::POST, &path, user, Some(body))
            .await
    }

    /// `GET /versions{rest}` as JSON, whatever the status: the history (`rest` empty or a query
    /// such as `?limit=2`) or one version (`/3`).
    pub async fn versions(&self, user: &User, project: &str, rest: &str) -> Value {
        let path = format!("/v1/projects/{project}/versions{rest}");
        self.call_json(reqwest::Method::GET, &path, user, None)
            .await
    }

    pub async fn pull_raw(&self, user: &User, project: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/projects/{project}/pull")))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .expect("pull")
    }

    /// Pulls and decodes: (version header, root header, objects received).
    pub async fn pull(&self, user: &User, project: &str, body: Value) -> Pulled {
        let response = self.pull_raw(user, project, body).await;
        assert_eq!(response.status(), 200);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let version = header("cairn-version").parse().unwrap_or(u64::MAX);
        let root = header("cairn-root");
        let bytes = response.bytes().await.expect("pull body");
        let frames = decode_stream(&bytes).expect("a valid object stream");
        Pulled {
            version,
            root,
            objects: frames
                .into_iter()
                .map(|frame| (frame.id, frame.object))
                .collect(),
        }
    }

    /// The problem document of an answer, asserting its status and code.
    pub async fn expect_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok()),
            Some("application/problem+json")
        );
        let actual = response.status().as_u16();
        let body: Value = response.json().await.expect("problem json");
        assert_eq!(actual, status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status);
        assert_eq!(body["type"], format!("https://cairn.dev/problems/{code}"));
        body
    }
}

/// A signed-up, logged-in account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub token: String,
    pub token_id: String,
}

/// What a pull delivered.
#[derive(Debug)]
pub struct Pulled {
    pub version: u64,
    pub root: String,
    pub objects: Vec<(ObjectId, Object)>,
}

impl Pulled {
    /// Asserts that the pull delivered every object of `tree` and nothing else, in any order.
    pub fn assert_objects_of(&self, tree: &Tree) {
        let mut got: Vec<ObjectId> = self.objects.iter().map(|(id, _)| *id).collect();
        let mut want = tree.ids();
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "the pull did not deliver exactly the tree's objects"
        );
    }
}
