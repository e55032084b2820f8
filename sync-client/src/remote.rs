//! The HTTP client of the server's `/v1` API (docs-src `protocol/http-api.md`).
//!
//! Blocking reqwest over rustls, one keep-alive connection pool per [`Remote`], `TCP_NODELAY`
//! on, every request body written whole. Answers are parsed into the small structs below; a
//! problem document becomes a [`RemoteError::Problem`] that keeps its stable `code`, except
//! `401` ([`RemoteError::Unauthorized`]) and `409 conflict` ([`RemoteError::Conflict`]), which
//! callers act on.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sync_protocol::ObjectId;
use sync_protocol::patch::Record;
use sync_protocol::stream::{Item, StreamDecoder};
use sync_protocol::tree::Listing;

use crate::object_cache::ObjectCache;
use crate::progress::{CountingReader, Progress, Silent, Totals, Transfer};

/// Media type of an object stream.
pub const OBJECTS_MEDIA_TYPE: &str = "application/vnd.cairn.objects";

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The server could not be reached, or the connection broke before a whole answer arrived.
    #[error(
        "could not reach the server at {url}: {detail}; check the URL and that the server is running"
    )]
    Network { url: String, detail: String },
    /// No token for this server, or the server refused it.
    #[error("{detail}; run `cairn login --server {server}`")]
    Unauthorized { server: String, detail: String },
    /// The push, commit or restore was based on a version that is no longer the head.
    #[error("the project has moved on to version {} while this was based on an older one; pull and try again", head.version)]
    Conflict { head: Head },
    /// Any other problem document.
    #[error("the server refused {what} ({status} {code}): {detail}")]
    Problem {
        what: String,
        status: u16,
        code: String,
        detail: String,
    },
    /// An answer that does not follow the API.
    #[error("the server's answer to {what} is not what the API describes: {detail}")]
    BadAnswer { what: String, detail: String },
}

impl RemoteError {
    /// True when retrying the same request may succeed (the outcome is unknown or transient).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } => true,
            Self::Problem { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// A project's head: its latest version and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub version: u64,
    #[serde(with = "hex_id")]
    pub root: ObjectId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// The answer to a log in. Its `Debug` leaves the token out.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub token: String,
    pub account: Account,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub team: String,
    pub name: String,
    pub role: String,
    pub version: u64,
    #[serde(with = "hex_id")]
    pub root: ObjectId,
    pub created: String,
}

impl Project {
    pub fn head(&self) -> Head {
        Head {
            version: self.version,
            root: self.root,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Author {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub number: u64,
    #[serde(with = "hex_id")]
    pub root: ObjectId,
    pub parent: Option<u64>,
    pub author: Author,
    pub time: String,
    pub message: String,
    pub push_id: Option<String>,
}

/// The answer to a push, commit or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub version: u64,
    #[serde(with = "hex_id")]
    pub root: ObjectId,
    pub replayed: bool,
}

/// What a pull delivered: every frame verified and stored in the object cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    pub version: u64,
    pub root: ObjectId,
    pub objects: u32,
    pub bytes: u64,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    head: Option<Head>,
}

/// A server and, for every route but log in, its token.
#[derive(Clone)]
pub struct Remote {
    server: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
    progress: Arc<dyn Progress>,
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

impl Remote {
    /// A client of `server` (a base URL such as `https://cairn.example.com`).
    pub fn new(server: &str, token: Option<String>) -> Result<Self, RemoteError> {
        let server = server.trim_end_matches('/').to_owned();
        let http = reqwest::blocking::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            // Large pushes take a while; a stalled server still ends the request.
            .timeout(Duration::from_secs(600))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| RemoteError::Network {
                url: server.clone(),
                detail: format!("could not set up the HTTP client: {error}"),
            })?;
        Ok(Self {
            server,
            token,
            http,
            progress: Arc::new(Silent),
        })
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

    /// An object-stream request body that reports its bytes as they are sent.
    fn stream_body(&self, stream: Vec<u8>) -> reqwest::blocking::Body {
        let len = stream.len() as u64;
        reqwest::blocking::Body::sized(CountingReader::new(stream, self.progress.clone()), len)
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.server)
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::blocking::RequestBuilder, RemoteError> {
        let builder = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => Ok(builder.bearer_auth(token)),
            None => Err(RemoteError::Unauthorized {
                server: self.server.clone(),
                detail: format!("you are not logged in to {}", self.server),
            }),
        }
    }

    /// Sends a request; a non-2xx answer becomes its error.
    fn send(
        &self,
        what: &str,
        builder: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, RemoteError> {
        let response = builder.send().map_err(|error| self.network(&error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.problem(what, response))
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
        RemoteError::Network { url, detail }
    }

    fn problem(&self, what: &str, response: reqwest::blocking::Response) -> RemoteError {
        let status = response.status().as_u16();
        let problem: Option<Problem> = response
            .bytes()
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok());
        let (code, detail, head) = match problem {
            Some(problem) => (problem.code, problem.detail, problem.head),
            None => (String::new(), format!("HTTP status {status}"), None),
        };
        match (status, code.as_str(), head) {
            (401, _, _) => RemoteError::Unauthorized {
                server: self.server.clone(),
                detail: if code == "bad-credentials" {
                    "log in failed: unknown account or wrong password".to_owned()
                } else {
                    format!(
                        "{} did not accept your access token ({detail})",
                        self.server
                    )
                },
            },
            (409, "conflict", Some(head)) => RemoteError::Conflict { head },
            _ => {
                // The two refusals a user can act on get a hint beside the server's detail.
                let hint = match (status, code.as_str()) {
                    (403, _) => {
                        "; your role in the project's team is too low for this (ask a team owner)"
                    }
                    (404, "not-found") => {
                        "; it does not exist or you are not a member of its team (see `cairn projects`)"
                    }
                    _ => "",
                };
                RemoteError::Problem {
                    what: what.to_owned(),
                    status,
                    code,
                    detail: format!("{detail}{hint}"),
                }
            }
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        response: reqwest::blocking::Response,
    ) -> Result<T, RemoteError> {
        let body = response.bytes().map_err(|error| self.network(&error))?;
        serde_json::from_slice(&body).map_err(|error| RemoteError::BadAnswer {
            what: what.to_owned(),
            detail: error.to_string(),
        })
    }

    /// `POST /v1/sessions`: a new token for `login` (account name or email).
    pub fn log_in(&self, login: &str, password: &str, label: &str) -> Result<Session, RemoteError> {
        let what = "the log in";
        let builder = self
            .http
            .post(self.url("/sessions"))
            .json(&json!({"login": login, "password": password, "label": label}));
        let response = self.send(what, builder)?;
        self.json(what, response)
    }

    pub fn teams(&self) -> Result<Vec<Team>, RemoteError> {
        #[derive(Deserialize)]
        struct Teams {
            teams: Vec<Team>,
        }
        let what = "the list of teams";
        let response = self.send(what, self.request(reqwest::Method::GET, "/teams")?)?;
        Ok(self.json::<Teams>(what, response)?.teams)
    }

    pub fn projects(&self) -> Result<Vec<Project>, RemoteError> {
        #[derive(Deserialize)]
        struct Projects {
            projects: Vec<Project>,
        }
        let what = "the list of projects";
        let response = self.send(what, self.request(reqwest::Method::GET, "/projects")?)?;
        Ok(self.json::<Projects>(what, response)?.projects)
    }

    pub fn create_project(&self, team: &str, name: &str) -> Result<Project, RemoteError> {
        let what = "creating the project";
        let builder = self
            .request(reqwest::Method::POST, &format!("/teams/{team}/projects"))?
            .json(&json!({"name": name}));
        let response = self.send(what, builder)?;
        self.json(what, response)
    }

    /// `GET /v1/projects/{id}`: the project and its head.
    pub fn project(&self, project: &str) -> Result<Project, RemoteError> {
        let what = "reading the project";
        let response = self.send(
            what,
            self.request(reqwest::Method::GET, &format!("/projects/{project}"))?,
        )?;
        self.json(what, response)
    }

    /// Newest first, at most `limit`.
    pub fn versions(&self, project: &str, limit: u64) -> Result<Vec<Version>, RemoteError> {
        #[derive(Deserialize)]
        struct Versions {
            versions: Vec<Version>,
        }
        let what = "the list of versions";
        let builder = self
            .request(
                reqwest::Method::GET,
                &format!("/projects/{project}/versions"),
            )?
            .query(&[("limit", limit)]);
        let response = self.send(what, builder)?;
        Ok(self.json::<Versions>(what, response)?.versions)
    }

    /// `POST /v1/projects/{id}/pull`: the head (or `want`), minus what `have` holds; every frame
    /// is verified by the stream decoder and stored in `objects` as it arrives. With
    /// `have_listing` (the listing of `have`), the server may answer a small change as change
    /// records, which are applied to it here ([`crate::records::apply_pulled`]).
    pub fn pull(
        &self,
        project: &str,
        want: Option<u64>,
        have: &ObjectId,
        have_listing: Option<&Listing>,
        objects: &ObjectCache,
    ) -> Result<Pulled, crate::ClientError> {
        let what = "the pull";
        let mut body = json!({"have": have.to_hex()});
        if let Some(want) = want {
            body["want"] = json!(want);
        }
        if have_listing.is_some() {
            body["records"] = json!(true);
        }
        let builder = self
            .request(reqwest::Method::POST, &format!("/projects/{project}/pull"))?
            .json(&body);
        let mut response = self.send(what, builder)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let bad = |detail: String| RemoteError::BadAnswer {
            what: what.to_owned(),
            detail,
        };
        let version = header("cairn-version")
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| bad("no Cairn-Version header".to_owned()))?;
        let root = header("cairn-root")
            .and_then(|text| text.parse::<ObjectId>().ok())
            .ok_or_else(|| bad("no Cairn-Root header".to_owned()))?;
        self.progress.start(
            Transfer::Download,
            Totals {
                objects: None,
                bytes: response.content_length(),
            },
        );
        let received = self.receive_stream(project, &mut response, objects, &bad);
        self.progress.finish();
        let (summary, records) = received?;
        if !records.is_empty() {
            let listing = have_listing
                .ok_or_else(|| bad("change records the request did not ask for".to_owned()))?;
            crate::records::apply_pulled(objects, have, listing, &records, &root)?;
        }
        Ok(Pulled {
            version,
            root,
            objects: summary.frames,
            bytes: summary.len,
        })
    }

    /// Reads a pull's object stream, storing each verified frame in `objects` as it arrives (so
    /// an interrupted pull keeps what it got) and reporting progress.
    fn receive_stream(
        &self,
        project: &str,
        response: &mut reqwest::blocking::Response,
        objects: &ObjectCache,
        bad: &dyn Fn(String) -> RemoteError,
    ) -> Result<(sync_protocol::stream::StreamSummary, Vec<Record>), crate::ClientError> {
        let mut decoder = StreamDecoder::new();
        let mut records = Vec::new();
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = match response.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(RemoteError::Network {
                        url: self.url(&format!("/projects/{project}/pull")),
                        detail: format!("the pull broke off: {error}"),
                    }
                    .into());
                }
            };
            self.progress.advance(0, read as u64);
            decoder.feed(&buffer[..read]);
            while let Some(item) = decoder
                .next_item()
                .map_err(|error| bad(format!("the object stream is invalid: {error}")))?
            {
                match item {
                    // The decoder verified the frame against its id and kind.
                    Item::Object(frame) => {
                        objects.put_encoded(&frame.id, &frame.compressed)?;
                    }
                    Item::Record(item) => records.push(item.record),
                }
                self.progress.advance(1, 0);
            }
        }
        let summary = decoder
            .finish()
            .map_err(|error| bad(format!("the object stream is invalid: {error}")))?;
        Ok((summary, records))
    }

    /// `POST /v1/projects/{id}/push`: one object stream, committed as a new version on top of
    /// `base_version` if that is still the head.
    pub fn push(
        &self,
        project: &str,
        push_id: &str,
        base_version: u64,
        root: &ObjectId,
        message: Option<&str>,
        stream: Vec<u8>,
    ) -> Result<Committed, RemoteError> {
        let what = "the push";
        let mut query = vec![
            ("push_id", push_id.to_owned()),
            ("base_version", base_version.to_string()),
            ("root", root.to_hex()),
        ];
        if let Some(message) = message {
            query.push(("message", message.to_owned()));
        }
        let builder = self
            .request(reqwest::Method::POST, &format!("/projects/{project}/push"))?
            .query(&query)
            .header(reqwest::header::CONTENT_TYPE, OBJECTS_MEDIA_TYPE)
            .body(self.stream_body(stream));
        let response = self.send(what, builder)?;
        self.json(what, response)
    }

    /// `POST /v1/projects/{id}/missing`: which of `ids` (at most
    /// `sync_protocol::negotiate::NEGOTIATE_BATCH_SIZE`) the server does not store.
    pub fn missing(&self, project: &str, ids: &[ObjectId]) -> Result<Vec<ObjectId>, RemoteError> {
        #[derive(Deserialize)]
        struct Missing {
            missing: Vec<String>,
        }
        let what = "the missing-objects question";
        let ids: Vec<String> = ids.iter().map(ObjectId::to_hex).collect();
        let builder = self
            .request(
                reqwest::Method::POST,
                &format!("/projects/{project}/missing"),
            )?
            .json(&json!({ "ids": ids }));
        let response = self.send(what, builder)?;
        let answer: Missing = self.json(what, response)?;
        answer
            .missing
            .iter()
            .map(|text| {
                text.parse().map_err(|_| RemoteError::BadAnswer {
                    what: what.to_owned(),
                    detail: format!("{text:?} is not an object id"),
                })
            })
            .collect()
    }

    /// `POST /v1/projects/{id}/objects`: stores an object stream without committing anything.
    /// Every object it references must be earlier in it or already stored.
    pub fn upload(&self, project: &str, stream: Vec<u8>) -> Result<(), RemoteError> {
        let what = "the upload";
        let builder = self
            .request(
                reqwest::Method::POST,
                &format!("/projects/{project}/objects"),
            )?
            .header(reqwest::header::CONTENT_TYPE, OBJECTS_MEDIA_TYPE)
            .body(self.stream_body(stream));
        self.send(what, builder)?;
        Ok(())
    }

    /// `POST /v1/projects/{id}/commits`: `root` (whose objects are all stored) as a new version
    /// on top of `base_version` if that is still the head.
    pub fn commit(
        &self,
        project: &str,
        push_id: &str,
        base_version: u64,
        root: &ObjectId,
        message: Option<&str>,
    ) -> Result<Committed, RemoteError> {
        let what = "the commit";
        let builder = self
            .request(
                reqwest::Method::POST,
                &format!("/projects/{project}/commits"),
            )?
            .json(&json!({
                "push_id": push_id,
                "base_version": base_version,
                "root": root.to_hex(),
                "message": message.unwrap_or_default(),
            }));
        let response = self.send(what, builder)?;
        self.json(what, response)
    }

    /// `POST /v1/projects/{id}/restore`: `version`'s tree as a new version on top of
    /// `base_version`.
    pub fn restore(
        &self,
        project: &str,
        version: u64,
        base_version: u64,
        push_id: &str,
    ) -> Result<Committed, RemoteError> {
        let what = "the restore";
        let builder = self
            .request(
                reqwest::Method::POST,
                &format!("/projects/{project}/restore"),
            )?
            .json(&json!({"version": version, "base_version": base_version, "push_id": push_id}));
        let response = self.send(what, builder)?;
        self.json(what, response)
    }
}

/// An open `GET /v1/projects/{id}/events` stream: the head when it opened, then one head per
/// commit. Events are hints (see the API page): a reader compares them with its base.
#[derive(Debug)]
pub struct Events {
    lines: std::io::BufReader<reqwest::blocking::Response>,
}

impl Events {
    /// The next head; `Ok(None)` when the server ended the stream.
    pub fn next_head(&mut self) -> Result<Option<Head>, RemoteError> {
        #[derive(Deserialize)]
        struct HeadEvent {
            version: u64,
            #[serde(with = "hex_id")]
            root: ObjectId,
        }
        let mut event = String::new();
        let mut data = String::new();
        loop {
            let mut line = String::new();
            let read =
                std::io::BufRead::read_line(&mut self.lines, &mut line).map_err(|error| {
                    RemoteError::Network {
                        url: "the event stream".to_owned(),
                        detail: error.to_string(),
                    }
                })?;
            if read == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                // The end of one event.
                if event == "head" && !data.is_empty() {
                    let head: HeadEvent =
                        serde_json::from_str(&data).map_err(|error| RemoteError::BadAnswer {
                            what: "the event stream".to_owned(),
                            detail: error.to_string(),
                        })?;
                    return Ok(Some(Head {
                        version: head.version,
                        root: head.root,
                    }));
                }
                event.clear();
                data.clear();
            } else if let Some(value) = line.strip_prefix("event:") {
                event = value.trim_start().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.trim_start());
            }
            // `id:` and `:` comments (keep-alives) need nothing.
        }
    }
}

impl Remote {
    /// Opens the project's event stream (no overall timeout: it stays open until the server
    /// ends it; the server sends a comment every 15 seconds).
    pub fn events(&self, project: &str) -> Result<Events, RemoteError> {
        let what = "the event stream";
        let http = reqwest::blocking::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| self.network(&error))?;
        let mut builder = http.get(self.url(&format!("/projects/{project}/events")));
        match &self.token {
            Some(token) => builder = builder.bearer_auth(token),
            None => {
                return Err(RemoteError::Unauthorized {
                    server: self.server.clone(),
                    detail: format!("you are not logged in to {}", self.server),
                });
            }
        }
        let response = self.send(what, builder)?;
        Ok(Events {
            lines: std::io::BufReader::new(response),
        })
    }
}

/// A fresh push id: 32 random hex digits.
pub fn new_push_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Object ids as the API writes them: 64 lowercase hex digits.
mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};
    use sync_protocol::ObjectId;

    pub fn serialize<S: Serializer>(id: &ObjectId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&id.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, new_push_id());
    }
}
