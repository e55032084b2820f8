//! The HTTP client of the server's `/v1` API, written against `sync_protocol::wire`: its route
//! table builds the URLs, its serde types are the bodies, its problem documents are the errors.
//!
//! Blocking reqwest over rustls, one keep-alive connection pool per [`Remote`], `TCP_NODELAY`
//! on, every request body written whole. An error status becomes [`RemoteError::Refused`] with
//! the server's `wire::Problem` (its code typed by `Problem::code`). A pull's answer is handed to
//! the caller item by item ([`PullStream`]), each frame verified by the stream decoder; what to
//! do with the objects and change records is the caller's business: this module knows nothing
//! of the working copy.
//!
//! Every request that is answered whole is sent again by the method itself while it fails in a
//! way a node's death or drain explains, as [`retry`] decides and with the [`Remote`]'s
//! [`Backoff`]. The two answers the caller reads as they arrive are the exceptions, since a
//! retry has to start their reading over: the caller of [`Remote::pull`] retries the whole
//! pull (`operations::pull`), and the reader of [`Remote::events`] reconnects
//! (`operations::watch`).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sync_protocol::ObjectId;
use sync_protocol::wire::{
    self, Commit, Committed, HistoryQuery, LogIn, MissingAnswer, MissingQuery, NameBody, NewToken,
    Operation, Problem, Project, ProjectList, PullRequest, PushQuery, Restore, Team, TeamList,
    Version, VersionList,
};

mod events;
mod pull;
pub mod retry;

pub use crate::error::{AnswerError, NetworkStage, RemoteError};
pub use events::Events;
pub use pull::{PullStream, Pulled};
pub use retry::Backoff;

use crate::progress::{CountingReader, Progress, Silent, Totals, Transfer};

/// A server and, for every route but log in, its token.
#[derive(Clone)]
pub struct Remote {
    server: String,
    token: Option<String>,
    http: Arc<LazyClient>,
    progress: Arc<dyn Progress>,
    backoff: Backoff,
    /// How long an event stream may stay silent before it counts as broken.
    events_silence: Duration,
    /// Whether pushes and commits allow the server to rebase them (`cairn-rebase`).
    rebase: bool,
}

// By hand, so the token never lands in a log or a panic message.
impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

type Built = Result<reqwest::blocking::Client, String>;

/// A [`Remote`]'s HTTP client, built on a thread of its own from the moment the remote is
/// made. The blocking client starts a runtime thread and sets up rustls, which took 0.3 to
/// 44 ms per command on a busy machine (`CAIRN_TIMINGS`, phase `http client`): time a command
/// now spends reading and scanning its working copy meanwhile, not before its first request.
struct LazyClient {
    building: Mutex<Option<JoinHandle<Built>>>,
    built: OnceLock<Built>,
}

impl LazyClient {
    fn start(build: fn() -> Built) -> Self {
        let client = Self {
            building: Mutex::new(None),
            built: OnceLock::new(),
        };
        match std::thread::Builder::new()
            .name("cairn-http-client".to_owned())
            .spawn(build)
        {
            Ok(handle) => {
                *client
                    .building
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(handle);
            }
            // No thread to be had: built here and now, as before.
            Err(_) => {
                let _ = client.built.set(build());
            }
        }
        client
    }

    /// The client, once its thread has built it (waiting for that if need be).
    fn get(&self) -> Result<&reqwest::blocking::Client, &str> {
        self.built
            .get_or_init(|| {
                let handle = self
                    .building
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                match handle.map(JoinHandle::join) {
                    Some(Ok(built)) => built,
                    Some(Err(_)) => Err("its thread panicked".to_owned()),
                    None => Err("it was never started".to_owned()),
                }
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The client every [`Remote`] request goes through (not the event stream's).
fn build_client() -> Built {
    crate::timing::timed("build http client", build_reqwest_client)
}

fn build_reqwest_client() -> Built {
    reqwest::blocking::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        // Large pushes take a while; a stalled server still ends the request.
        .timeout(Duration::from_secs(600))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| error.to_string())
}

/// A JSON request body as the client has always sent it: serialized through serde_json's map,
/// whose members are in name order, so the bytes on the wire do not depend on the order of the
/// wire type's fields.
fn json_body(body: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(body).expect("the wire types are plain structs of strings and numbers")
}

impl Remote {
    /// A client of `server` (a base URL such as `https://cairn.example.com`). Its HTTP client
    /// is built on another thread meanwhile ([`LazyClient`]); a failure to build it is the
    /// first request's error.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, RemoteError> {
        let server = server.trim_end_matches('/').to_owned();
        Ok(Self {
            server,
            token,
            http: Arc::new(LazyClient::start(build_client)),
            progress: Arc::new(Silent),
            backoff: Backoff::STANDARD,
            events_silence: EVENTS_SILENCE,
            rebase: true,
        })
    }

    /// Pushes and commits without the `cairn-rebase` header, as clients before it did: a stale
    /// base is always answered with a conflict (`CAIRN_REBASE=off`).
    #[must_use]
    pub fn without_rebase(mut self) -> Self {
        self.rebase = false;
        self
    }

    /// The `cairn-rebase` header of a push or commit, if this client allows rebasing.
    fn rebase_header(
        &self,
        builder: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        if self.rebase {
            builder.header(wire::REBASE_HEADER, wire::REBASE_ALLOWED)
        } else {
            builder
        }
    }

    /// Pauses between retries as `backoff` says (tests use short ones).
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Counts an event stream silent for `silence` as broken ([`EVENTS_SILENCE`] by default;
    /// tests use a short one).
    #[must_use]
    pub fn with_events_silence(mut self, silence: Duration) -> Self {
        self.events_silence = silence;
        self
    }

    /// How this client pauses between retries.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Reports every upload and download to `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Where uploads and downloads are reported.
    pub fn progress(&self) -> &Arc<dyn Progress> {
        &self.progress
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The URL of `operation` with its path placeholders filled in from `values`.
    fn url(&self, operation: Operation, values: &[&str]) -> String {
        format!("{}{}", self.server, operation.path(values))
    }

    /// A request for `operation`, with the token when the route needs one.
    fn request(
        &self,
        operation: Operation,
        values: &[&str],
    ) -> Result<reqwest::blocking::RequestBuilder, RemoteError> {
        let http = self.http.get().map_err(|error| RemoteError::Network {
            url: self.server.clone(),
            detail: format!("could not set up the HTTP client: {error}"),
            stage: NetworkStage::Connect,
        })?;
        self.request_with(http, operation, values)
    }

    fn request_with(
        &self,
        http: &reqwest::blocking::Client,
        operation: Operation,
        values: &[&str],
    ) -> Result<reqwest::blocking::RequestBuilder, RemoteError> {
        let route = operation.route();
        let method = match route.method {
            wire::Method::Get => reqwest::Method::GET,
            wire::Method::Post => reqwest::Method::POST,
            wire::Method::Put => reqwest::Method::PUT,
            wire::Method::Delete => reqwest::Method::DELETE,
        };
        let builder = http.request(method, self.url(operation, values));
        if !route.authenticated {
            return Ok(builder);
        }
        match &self.token {
            Some(token) => Ok(builder.bearer_auth(token)),
            None => Err(RemoteError::NotLoggedIn {
                server: self.server.clone(),
            }),
        }
    }

    /// An object-stream request body that reports its bytes as they are sent.
    fn stream_body(&self, stream: Vec<u8>) -> reqwest::blocking::Body {
        let len = stream.len() as u64;
        reqwest::blocking::Body::sized(CountingReader::new(stream, self.progress.clone()), len)
    }

    /// Sends a request once; a non-2xx answer becomes its error.
    fn send(
        &self,
        operation: Operation,
        builder: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, RemoteError> {
        let response = builder.send().map_err(|error| self.network(&error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        // Only the seconds form: a proxy or server that sends a date gets the usual backoff.
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Any body that is not a problem document (a proxy's error page) is no problem.
        let problem: Option<Problem> = response
            .bytes()
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok());
        Err(RemoteError::Refused {
            server: self.server.clone(),
            operation,
            status,
            problem: problem.map(Box::new),
            retry_after,
        })
    }

    /// Runs `attempt`, one request of `operation`, again while [`retry::worth_retrying`] says
    /// so, pausing as this client's backoff says.
    fn retrying<T>(
        &self,
        operation: Operation,
        attempt: impl FnMut() -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        retry::retry(
            &self.backoff,
            retry::is_repeatable(operation),
            std::thread::sleep,
            attempt,
        )
    }

    fn network(&self, error: &reqwest::Error) -> RemoteError {
        let url = error
            .url()
            .map(ToString::to_string)
            .unwrap_or_else(|| self.server.clone());
        // reqwest's chain repeats the URL at each level; its innermost cause says what happened.
        let mut innermost: &dyn std::error::Error = error;
        while let Some(cause) = innermost.source() {
            innermost = cause;
        }
        let detail = if error.is_timeout() {
            "the request timed out".to_owned()
        } else {
            innermost.to_string()
        };
        // Only a connection that was never made (refused, unreachable, name lookup, TLS
        // handshake) says the request never left; reqwest tells it by the connector's error.
        let stage = if error.is_connect() {
            NetworkStage::Connect
        } else {
            NetworkStage::Exchange
        };
        RemoteError::Network { url, detail, stage }
    }

    pub(super) fn bad_answer(&self, operation: Operation, reason: AnswerError) -> RemoteError {
        RemoteError::BadAnswer {
            server: self.server.clone(),
            operation,
            reason,
        }
    }

    /// Sends the request `build` makes (anew for each attempt) and parses its JSON answer,
    /// retrying.
    fn call<T: DeserializeOwned>(
        &self,
        operation: Operation,
        build: impl Fn() -> Result<reqwest::blocking::RequestBuilder, RemoteError>,
    ) -> Result<T, RemoteError> {
        self.retrying(operation, || {
            let response = self.send(operation, build()?)?;
            let body = response.bytes().map_err(|error| self.network(&error))?;
            serde_json::from_slice(&body)
                .map_err(|error| self.bad_answer(operation, AnswerError::Json(error)))
        })
    }

    /// Sends `body` as JSON to `operation` and parses its JSON answer, retrying.
    fn call_json<T: DeserializeOwned>(
        &self,
        operation: Operation,
        values: &[&str],
        body: &impl Serialize,
    ) -> Result<T, RemoteError> {
        let body = json_body(body);
        self.call(operation, || {
            Ok(self.request(operation, values)?.json(&body))
        })
    }

    /// `POST /v1/sessions`: a new token for `login` (account name or email). Sent again only
    /// when no connection was made: a repeat would make a second token.
    pub fn log_in(&self, login: &LogIn) -> Result<NewToken, RemoteError> {
        self.call_json(Operation::LogIn, &[], login)
    }

    pub fn teams(&self) -> Result<Vec<Team>, RemoteError> {
        let operation = Operation::ListTeams;
        let list: TeamList = self.call(operation, || self.request(operation, &[]))?;
        Ok(list.teams)
    }

    pub fn projects(&self) -> Result<Vec<Project>, RemoteError> {
        let operation = Operation::ListProjects;
        let list: ProjectList = self.call(operation, || self.request(operation, &[]))?;
        Ok(list.projects)
    }

    /// `POST /v1/teams/{id}/projects`. Sent again only when no connection was made: a repeat
    /// after the first was carried out would answer `already-exists`.
    pub fn create_project(&self, team: &str, name: &str) -> Result<Project, RemoteError> {
        let body = NameBody {
            name: name.to_owned(),
        };
        self.call_json(Operation::CreateProject, &[team], &body)
    }

    /// `GET /v1/projects/{id}`: the project and its head.
    pub fn project(&self, project: &str) -> Result<Project, RemoteError> {
        let operation = Operation::ShowProject;
        self.call(operation, || self.request(operation, &[project]))
    }

    /// The project's history as `query` selects it, newest first.
    pub fn versions(
        &self,
        project: &str,
        query: &HistoryQuery,
    ) -> Result<Vec<Version>, RemoteError> {
        let operation = Operation::ListVersions;
        let list: VersionList = self.call(operation, || {
            Ok(self.request(operation, &[project])?.query(query))
        })?;
        Ok(list.versions)
    }

    /// `POST /v1/projects/{id}/pull`: asks for `request.want` (the head when absent) minus what
    /// `request.have` holds, and opens the answer. Its items are read with
    /// [`PullStream::next_item`]. Sent once: the caller retries the pull with its reading.
    pub fn pull(&self, project: &str, request: &PullRequest) -> Result<PullStream, RemoteError> {
        let operation = Operation::Pull;
        let builder = self
            .request(operation, &[project])?
            .json(&json_body(request));
        let response = self.send(operation, builder)?;
        let header = |name: &'static str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| self.bad_answer(operation, AnswerError::Header(name)))
        };
        let version = header(wire::VERSION_HEADER)?
            .parse::<u64>()
            .map_err(|_| self.bad_answer(operation, AnswerError::Header(wire::VERSION_HEADER)))?;
        let root = header(wire::ROOT_HEADER)?
            .parse::<ObjectId>()
            .map_err(|_| self.bad_answer(operation, AnswerError::Header(wire::ROOT_HEADER)))?;
        self.progress.start(
            Transfer::Download,
            Totals {
                objects: None,
                bytes: response.content_length(),
            },
        );
        Ok(PullStream::new(
            self.clone(),
            self.url(operation, &[project]),
            response,
            version,
            root,
        ))
    }

    /// `POST /v1/projects/{id}/push`: one object stream, committed as a new version on top of
    /// `query.base_version` if that is still the head, or rebased onto the head when the head
    /// changed none of its paths (`cairn-rebase: allowed`; the answer says `rebased`). Every
    /// retry carries the same push id, so a push that did commit is answered with its receipt,
    /// not committed twice.
    pub fn push(
        &self,
        project: &str,
        query: &PushQuery,
        stream: &[u8],
    ) -> Result<Committed, RemoteError> {
        let operation = Operation::Push;
        self.call(operation, || {
            Ok(self
                .rebase_header(self.request(operation, &[project])?)
                .query(query)
                .header(reqwest::header::CONTENT_TYPE, wire::OBJECTS_MEDIA_TYPE)
                .body(self.stream_body(stream.to_vec())))
        })
    }

    /// `POST /v1/projects/{id}/missing`: which of `ids` (at most
    /// `sync_protocol::negotiate::NEGOTIATE_BATCH_SIZE`) the server does not store.
    pub fn missing(&self, project: &str, ids: &[ObjectId]) -> Result<Vec<ObjectId>, RemoteError> {
        let operation = Operation::Missing;
        let query = MissingQuery {
            ids: ids.iter().map(ObjectId::to_hex).collect(),
        };
        let body = json_body(&query);
        let answer: MissingAnswer = self.call(operation, || {
            Ok(self.request(operation, &[project])?.json(&body))
        })?;
        Ok(answer.missing)
    }

    /// `POST /v1/projects/{id}/objects`: stores an object stream without committing anything.
    /// Every object it references must be earlier in it or already stored.
    pub fn upload(&self, project: &str, stream: &[u8]) -> Result<(), RemoteError> {
        let operation = Operation::Upload;
        self.retrying(operation, || {
            let builder = self
                .request(operation, &[project])?
                .header(reqwest::header::CONTENT_TYPE, wire::OBJECTS_MEDIA_TYPE)
                .body(self.stream_body(stream.to_vec()));
            self.send(operation, builder)?;
            Ok(())
        })
    }

    /// `POST /v1/projects/{id}/commits`: `commit.root` (whose objects are all stored) as a new
    /// version on top of `commit.base_version` if that is still the head, or rebased as a
    /// push is.
    pub fn commit(&self, project: &str, commit: &Commit) -> Result<Committed, RemoteError> {
        let operation = Operation::Commit;
        let body = json_body(commit);
        self.call(operation, || {
            Ok(self
                .rebase_header(self.request(operation, &[project])?)
                .json(&body))
        })
    }

    /// `POST /v1/projects/{id}/restore`: `restore.version`'s tree as a new version on top of
    /// `restore.base_version`.
    pub fn restore(&self, project: &str, restore: &Restore) -> Result<Committed, RemoteError> {
        self.call_json(Operation::Restore, &[project], restore)
    }

    /// Opens the project's event stream (no overall deadline: it stays open until the server
    /// ends it). The server sends a comment every 15 seconds, so a stream silent for
    /// [`EVENTS_SILENCE`] (or what [`Remote::with_events_silence`] set) is broken even if its connection looks open (a node's machine gone
    /// without closing it): reading fails, and the reader reconnects. Tried once: its reader
    /// reconnects, after the pause the server asked for ([`Events::retry`]) or its own backoff.
    pub fn events(&self, project: &str) -> Result<Events, RemoteError> {
        let operation = Operation::Events;
        // The blocking client's timeout bounds the wait for the answer's head and each read
        // of its body, not the whole: a stream that keeps talking stays open.
        let http = reqwest::blocking::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(self.events_silence)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| self.network(&error))?;
        let builder = self.request_with(&http, operation, &[project])?;
        let response = self.send(operation, builder)?;
        Ok(Events::new(
            self.server.clone(),
            self.url(operation, &[project]),
            response,
        ))
    }
}

/// How long an event stream may stay silent before it counts as broken: three of the
/// server's keep-alive comments.
pub const EVENTS_SILENCE: Duration =
    Duration::from_secs(3 * sync_protocol::wire::EVENT_KEEP_ALIVE_SECS);

/// A fresh push id: 32 random hex digits.
pub fn new_push_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::wire::Want;

    #[test]
    fn debug_output_hides_the_token() {
        let remote = Remote::new("http://127.0.0.1:1/", Some("cairn_secret".to_owned())).unwrap();
        let text = format!("{remote:?}");
        assert!(!text.contains("cairn_secret"), "{text}");
        assert!(text.contains("http://127.0.0.1:1"), "{text}");
    }

    #[test]
    fn push_ids_are_fresh_and_valid() {
        let first = new_push_id();
        assert_eq!(first.len(), 32);
        assert!(wire::is_valid_push_id(&first));
        assert_ne!(first, new_push_id());
    }

    #[test]
    fn urls_come_from_the_route_table() {
        let remote = Remote::new("https://cairn.test/", None).unwrap();
        assert_eq!(
            remote.url(Operation::Pull, &["p1"]),
            "https://cairn.test/v1/projects/p1/pull"
        );
        assert_eq!(
            remote.url(Operation::CreateProject, &["t1"]),
            "https://cairn.test/v1/teams/t1/projects"
        );
        assert_eq!(
            remote.url(Operation::LogIn, &[]),
            "https://cairn.test/v1/sessions"
        );
    }

    #[test]
    fn only_log_in_goes_without_a_token() {
        let remote = Remote::new("https://cairn.test", None).unwrap();
        assert!(remote.request(Operation::LogIn, &[]).is_ok());
        assert!(matches!(
            remote.request(Operation::Pull, &["p"]),
            Err(RemoteError::NotLoggedIn { server }) if server == "https://cairn.test"
        ));
    }

    /// The request bodies are the bytes earlier clients sent (members in name order), so the
    /// move to the wire types changed nothing on the wire.
    #[test]
    fn request_bodies_keep_their_bytes() {
        let root = sync_protocol::tree::empty_dir_id();
        let pull = PullRequest {
            want: Some(Want::Version(3)),
            have: Some(root.to_hex()),
            records: true,
        };
        assert_eq!(
            text(&pull),
            format!(r#"{{"have":"{root}","records":true,"want":3}}"#)
        );
        let plain = PullRequest {
            want: None,
            have: Some(root.to_hex()),
            records: false,
        };
        assert_eq!(text(&plain), format!(r#"{{"have":"{root}"}}"#));
        let commit = Commit {
            push_id: "p".into(),
            base_version: 2,
            root: root.to_hex(),
            message: String::new(),
        };
        assert_eq!(
            text(&commit),
            format!(r#"{{"base_version":2,"message":"","push_id":"p","root":"{root}"}}"#)
        );
        let restore = Restore {
            version: 1,
            base_version: 4,
            push_id: Some("p".into()),
            message: None,
        };
        assert_eq!(
            text(&restore),
            r#"{"base_version":4,"push_id":"p","version":1}"#
        );
        let log_in = LogIn {
            login: "ada".into(),
            password: "pw".into(),
            label: Some("cairn on x".into()),
        };
        assert_eq!(
            text(&log_in),
            r#"{"label":"cairn on x","login":"ada","password":"pw"}"#
        );
        let push = PushQuery {
            push_id: "p".into(),
            base_version: 2,
            root: root.to_hex(),
            message: "m 1".into(),
        };
        assert_eq!(
            query_text(&push),
            format!("push_id=p&base_version=2&root={root}&message=m+1")
        );
    }

    /// A JSON body as [`json_body`] sends it.
    fn text(body: &impl Serialize) -> String {
        serde_json::to_string(&json_body(body)).unwrap()
    }

    /// The query string reqwest writes for `query`.
    fn query_text(query: &impl Serialize) -> String {
        let request = reqwest::blocking::Client::new()
            .post("http://cairn.test/")
            .query(query)
            .build()
            .unwrap();
        request.url().query().unwrap_or_default().to_owned()
    }
}
