//! The client rides through a server node's death: against a scripted fake server on
//! 127.0.0.1, requests answered by a `503`, a dropped connection or a body cut off mid-stream
//! are sent again when that is harmless, and only then. Every test asserts on what the fake
//! server received; the backoff is a few milliseconds, and no test measures time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_test_support::trees::Tree;
use sync_client::ClientError;
use sync_client::operations::{PushOutcome, pull, push_once};
use sync_client::transport::{AnswerError, Backoff, NetworkStage, Remote, RemoteError};
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};
use sync_protocol::wire::{self, Committed, HeadEvent, LogIn, ProjectList};

use crate::util::{files_on_disk, write};

/// What the fake server does with one request.
enum Answer {
    /// Reads the request, then closes the connection without answering: a node killed while
    /// it worked on it.
    Drop,
    /// Answers `status` with `headers` and `body`, announcing its length as `length` says,
    /// then closes the connection.
    Send {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        length: Length,
    },
}

/// How an answer announces its body's length.
enum Length {
    /// `Content-Length` of the body sent.
    Exact,
    /// `Content-Length` of more than is sent: the connection closes mid-body.
    Claimed(usize),
    /// No length: the body ends when the connection closes.
    UntilClose,
    /// No length, and the connection stays open and silent after the body until `.1` is set,
    /// then closes: a node whose machine vanished without closing its connections.
    Silent(Arc<std::sync::atomic::AtomicBool>),
}

impl Answer {
    fn whole(status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Answer {
        Answer::Send {
            status,
            headers,
            body,
            length: Length::Exact,
        }
    }

    /// The proxy's `503` when it has no node to send the request to.
    fn unavailable(retry_after: Option<u64>) -> Answer {
        let headers = retry_after
            .map(|seconds| vec![("retry-after", seconds.to_string())])
            .unwrap_or_default();
        Answer::whole(
            503,
            headers,
            b"<html>503 Service Unavailable</html>".to_vec(),
        )
    }

    fn json(body: &impl serde::Serialize) -> Answer {
        let headers = vec![("content-type", wire::JSON_MEDIA_TYPE.to_owned())];
        Answer::whole(200, headers, serde_json::to_vec(body).unwrap())
    }
}

/// One request as the fake server received it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// The path and query.
    target: String,
    body: Vec<u8>,
}

impl Request {
    fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that answers each connection's one request with the next
/// answer of its script (a `418` once the script is done) and records every request.
struct FakeServer {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    fn start(script: Vec<Answer>) -> FakeServer {
        let mut script = script.into_iter();
        FakeServer::answering(move |_| {
            script
                .next()
                .unwrap_or_else(|| Answer::whole(418, Vec::new(), Vec::new()))
        })
    }

    /// A server that answers each request as `answer` says.
    fn answering(mut answer: impl FnMut(&Request) -> Answer + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(connection) = connection else { return };
                let Some(request) = read_request(&connection) else {
                    continue;
                };
                let answer = answer(&request);
                recorded.lock().unwrap().push(request);
                answer_with(connection, answer);
            }
        });
        FakeServer { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// A client of it with a token and a backoff of milliseconds.
    fn remote(&self) -> Remote {
        Remote::new(&self.url, Some("cairn_test".to_owned()))
            .unwrap()
            .with_backoff(QUICK)
    }

    /// A new working copy of project `p` on it.
    fn copy(&self) -> (tempfile::TempDir, WorkingCopy) {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new(&self.url, "p").unwrap();
        let copy = WorkingCopy::init(&dir.path().join("work"), config).unwrap();
        (dir, copy)
    }
}

/// The standard policy's shape in milliseconds, so that retries cost the tests nothing.
const QUICK: Backoff = Backoff {
    first: Duration::from_millis(1),
    max_pause: Duration::from_millis(4),
    max_retry_after: Duration::from_millis(5),
    budget: Duration::from_millis(100),
};

fn read_request(connection: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(connection);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        body,
    })
}

fn answer_with(mut connection: TcpStream, answer: Answer) {
    let Answer::Send {
        status,
        headers,
        body,
        length,
    } = answer
    else {
        return;
    };
    let mut head = format!("HTTP/1.1 {status} Scripted\r\nconnection: close\r\n");
    match length {
        Length::Exact => head.push_str(&format!("content-length: {}\r\n", body.len())),
        Length::Claimed(claimed) => head.push_str(&format!("content-length: {claimed}\r\n")),
        Length::UntilClose | Length::Silent(_) => {}
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = connection.write_all(head.as_bytes());
    let _ = connection.write_all(&body);
    let _ = connection.flush();
    if let Length::Silent(release) = length {
        while !release.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The files of the fake project.
fn project_tree() -> Tree {
    Tree::build(&[
        ("api/openapi.yaml", b"openapi: 3.1.0\n".to_vec(), false),
        ("README.md", b"pets\n".to_vec(), false),
    ])
}

/// The answer to a pull of `tree` as version 4, its body cut to `keep` bytes and its length
/// announced as `length` says.
fn pull_answer(tree: &Tree, keep: Option<usize>, length: impl Fn(usize) -> Length) -> Answer {
    let stream = tree.stream();
    let headers = vec![
        (wire::VERSION_HEADER, "4".to_owned()),
        (wire::ROOT_HEADER, tree.root.to_hex()),
        ("content-type", wire::OBJECTS_MEDIA_TYPE.to_owned()),
    ];
    let full = stream.len();
    let body = stream[..keep.unwrap_or(full)].to_vec();
    Answer::Send {
        status: 200,
        headers,
        body,
        length: length(full),
    }
}

fn assert_pulled(copy: &WorkingCopy) {
    assert_eq!(copy.base().unwrap().version, Some(4));
    assert_eq!(
        files_on_disk(copy.root()),
        ["README.md", "api/openapi.yaml"]
    );
}

#[test]
fn requests_answered_503_or_502_are_sent_again_until_one_succeeds() {
    let tree = project_tree();
    let server = FakeServer::start(vec![
        Answer::unavailable(Some(1)),
        Answer::unavailable(None),
        pull_answer(&tree, None, |_| Length::Exact),
        Answer::whole(502, Vec::new(), b"Bad Gateway".to_vec()),
        Answer::json(&ProjectList {
            projects: Vec::new(),
        }),
    ]);
    let (_dir, copy) = server.copy();
    let remote = server.remote();
    let pulled = pull(&copy, &remote).unwrap();
    assert_eq!((pulled.version, pulled.root), (4, tree.root));
    assert_pulled(&copy);
    assert!(server.remote().projects().unwrap().is_empty());
    let targets: Vec<_> = server
        .requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.target))
        .collect();
    assert_eq!(
        targets,
        [
            "POST /v1/projects/p/pull",
            "POST /v1/projects/p/pull",
            "POST /v1/projects/p/pull",
            "GET /v1/projects",
            "GET /v1/projects",
        ]
    );
}

#[test]
fn a_push_whose_connection_drops_is_sent_again_with_the_same_push_id() {
    write_then_push(|root| {
        vec![
            Answer::Drop,
            Answer::unavailable(None),
            Answer::json(&Committed {
                version: 1,
                root,
                replayed: true,
                rebased: false,
            }),
        ]
    });
}

/// Pushes a new file of a never-synced copy against the answers `script` gives for its root,
/// which must end in a commit after three push requests of one push id.
fn write_then_push(script: impl FnOnce(sync_protocol::ObjectId) -> Vec<Answer>) {
    let tree = Tree::build(&[("spec.yaml", b"paths: {}\n".to_vec(), false)]);
    let server = FakeServer::start(script(tree.root));
    let (_dir, copy) = server.copy();
    write(copy.root(), "spec.yaml", b"paths: {}\n");
    let outcome = push_once(&copy, &server.remote(), Some("first")).unwrap();
    let PushOutcome::Committed { committed, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!((committed.version, committed.root), (1, tree.root));
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let push_id = requests[0].query("push_id").unwrap();
    assert!(wire::is_valid_push_id(push_id), "{push_id}");
    for request in &requests {
        assert!(
            request.target.starts_with("/v1/projects/p/push?"),
            "{request:?}"
        );
        assert_eq!(request.query("push_id"), Some(push_id), "{request:?}");
        assert_eq!(request.body, requests[0].body);
    }
    assert!(!requests[0].body.is_empty());
}

/// The server as a push that committed, but whose every answer was lost, leaves it: pushes
/// are dropped (after committing, the script pretends), and the commit of the first push id
/// is answered as that version, replayed. Anything else gets `after`.
fn lost_answers(
    first: sync_protocol::ObjectId,
    mut after: impl FnMut(&Request) -> Answer + Send + 'static,
) -> FakeServer {
    let mut first_push_id: Option<String> = None;
    FakeServer::answering(move |request| {
        if request.target.starts_with("/v1/projects/p/push?") && first_push_id.is_none()
            || request.query("push_id") == first_push_id.as_deref()
        {
            first_push_id = request.query("push_id").map(str::to_owned);
            return Answer::Drop;
        }
        if request.target == "/v1/projects/p/commits" {
            let commit: wire::Commit = serde_json::from_slice(&request.body).unwrap();
            if Some(commit.push_id.as_str()) == first_push_id.as_deref() {
                assert_eq!((commit.base_version, commit.root), (0, first.to_hex()));
                return Answer::json(&Committed {
                    version: 1,
                    root: first,
                    replayed: true,
                    rebased: false,
                });
            }
        }
        after(request)
    })
}

#[test]
fn a_push_left_without_an_answer_is_settled_before_the_next_push() {
    let first = Tree::build(&[("spec.yaml", b"v1\n".to_vec(), false)]);
    let second = Tree::build(&[("spec.yaml", b"v2\n".to_vec(), false)]);
    let second_root = second.root;
    let server = lost_answers(first.root, move |request| {
        // The next push, on the settled version.
        assert!(
            request.target.starts_with("/v1/projects/p/push?"),
            "{request:?}"
        );
        assert_eq!(request.query("base_version"), Some("1"), "{request:?}");
        Answer::json(&Committed {
            version: 2,
            root: second_root,
            replayed: false,
            rebased: false,
        })
    });
    let (_dir, copy) = server.copy();
    write(copy.root(), "spec.yaml", b"v1\n");
    let error = push_once(&copy, &server.remote(), Some("first")).unwrap_err();
    assert!(
        error.remote().is_some_and(RemoteError::is_transient),
        "{error:?}"
    );
    // The same file edited again before the outcome is known.
    write(copy.root(), "spec.yaml", b"v2\n");
    let outcome = push_once(&copy, &server.remote(), Some("second")).unwrap();
    let PushOutcome::Committed { committed, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!((committed.version, committed.root), (2, second.root));
    let requests = server.requests();
    let commits: Vec<&Request> = requests
        .iter()
        .filter(|request| request.target == "/v1/projects/p/commits")
        .collect();
    assert_eq!(commits.len(), 1, "{requests:?}");
    let last = requests.last().unwrap();
    assert_ne!(last.query("push_id"), requests[0].query("push_id"));
    assert_eq!(copy.base().unwrap().version, Some(2));
}

#[test]
fn a_push_left_without_an_answer_is_settled_before_a_pull() {
    let first = Tree::build(&[("spec.yaml", b"v1\n".to_vec(), false)]);
    let first_root = first.root;
    let server = lost_answers(first.root, move |request| {
        // The pull starts from the settled version: the server has nothing newer.
        assert_eq!(request.target, "/v1/projects/p/pull", "{request:?}");
        let pull: wire::PullRequest = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(pull.have, Some(first_root.to_hex()), "{request:?}");
        pull_answer(
            &Tree::build(&[("spec.yaml", b"v1\n".to_vec(), false)]),
            None,
            |_| Length::Exact,
        )
    });
    let (_dir, copy) = server.copy();
    write(copy.root(), "spec.yaml", b"v1\n");
    push_once(&copy, &server.remote(), None).unwrap_err();
    // Deleted before the outcome is known: the pull must not bring it back.
    std::fs::remove_file(copy.root().join("spec.yaml")).unwrap();
    let pulled = pull(&copy, &server.remote()).unwrap();
    assert_eq!(pulled.version, 4);
    assert!(!copy.root().join("spec.yaml").exists());
}

#[test]
fn a_push_that_lost_is_settled_as_lost() {
    let server = FakeServer::answering(move |request| {
        if request.target.starts_with("/v1/projects/p/push?") {
            return Answer::unavailable(None);
        }
        // Another push moved the head meanwhile: this one lost, and the server says so.
        assert_eq!(request.target, "/v1/projects/p/commits", "{request:?}");
        let problem = wire::Problem::new(wire::ProblemCode::Conflict);
        let headers = vec![("content-type", wire::PROBLEM_MEDIA_TYPE.to_owned())];
        Answer::whole(409, headers, serde_json::to_vec(&problem).unwrap())
    });
    let (_dir, copy) = server.copy();
    write(copy.root(), "spec.yaml", b"v1\n");
    push_once(&copy, &server.remote(), None).unwrap_err();
    assert!(copy.state().journal().unwrap().is_some());
    // The next push settles it (lost: the journal goes), then pushes on its own base.
    write(copy.root(), "spec.yaml", b"v2\n");
    push_once(&copy, &server.remote(), None).unwrap_err();
    let requests = server.requests();
    let settled = requests
        .iter()
        .position(|request| request.target == "/v1/projects/p/commits")
        .expect("a commit settles the push");
    let next = &requests[settled + 1];
    assert_eq!(next.query("base_version"), Some("0"), "{next:?}");
    assert_ne!(next.query("push_id"), requests[0].query("push_id"));
}

#[test]
fn a_pull_whose_answer_is_cut_mid_body_is_retried() {
    let tree = project_tree();
    let cut = tree.stream().len() / 2;
    let server = FakeServer::start(vec![
        // The length announced, fewer bytes sent: the connection breaks mid-body.
        pull_answer(&tree, Some(cut), Length::Claimed),
        // No length: the body ends cleanly, before the stream's trailer.
        pull_answer(&tree, Some(cut), |_| Length::UntilClose),
        // Cut inside the trailer's digest.
        pull_answer(&tree, Some(tree.stream().len() - 3), |_| Length::UntilClose),
        pull_answer(&tree, None, |_| Length::Exact),
    ]);
    let (_dir, copy) = server.copy();
    pull(&copy, &server.remote()).unwrap();
    assert_pulled(&copy);
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn a_whole_answer_that_is_invalid_is_not_retried() {
    let tree = project_tree();
    let mut answer = pull_answer(&tree, None, |_| Length::Exact);
    if let Answer::Send { body, .. } = &mut answer {
        // The last byte of the trailer's digest.
        *body.last_mut().unwrap() ^= 1;
    }
    let server = FakeServer::start(vec![answer, pull_answer(&tree, None, |_| Length::Exact)]);
    let (_dir, copy) = server.copy();
    let error = pull(&copy, &server.remote()).unwrap_err();
    assert!(
        matches!(
            error.remote(),
            Some(RemoteError::BadAnswer {
                reason: AnswerError::Stream(_),
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(copy.base().unwrap().version, None);
}

#[test]
fn a_login_is_not_sent_again_once_it_may_have_reached_the_server() {
    let server = FakeServer::start(vec![Answer::Drop, Answer::unavailable(Some(7))]);
    let remote = server.remote();
    let log_in = LogIn {
        login: "ada".to_owned(),
        password: "secret".to_owned(),
        label: None,
    };
    let error = remote.log_in(&log_in).unwrap_err();
    assert!(
        matches!(
            error,
            RemoteError::Network {
                stage: NetworkStage::Exchange,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 1, "sent once");

    // A 503 may be the server's, after the work was done: not repeated either, and its
    // Retry-After is kept.
    let error = remote.create_project("team", "api").unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "sent once: {requests:?}");
    assert_eq!(requests[1].target, "/v1/teams/team/projects");
}

#[test]
fn a_connection_never_made_is_told_apart() {
    // A port nobody listens on: the connection is refused, so the request never left.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let remote = Remote::new(&url, None).unwrap().with_backoff(QUICK);
    let log_in = LogIn {
        login: "ada".to_owned(),
        password: "secret".to_owned(),
        label: None,
    };
    let error = remote.log_in(&log_in).unwrap_err();
    assert!(error.never_sent(), "{error:?}");
    assert!(
        ClientError::from(error).to_string().contains(&url),
        "the URL is named"
    );
}

#[test]
fn the_event_stream_hands_over_the_servers_retry_hint() {
    let tree = project_tree();
    let head = HeadEvent {
        project: "p".to_owned(),
        version: 4,
        root: tree.root,
    };
    let text = format!(
        ": keep-alive\n\nevent: head\ndata: {}\n\nretry: 1500\n\n",
        serde_json::to_string(&head).unwrap()
    );
    let stream = |length| Answer::Send {
        status: 200,
        headers: vec![("content-type", wire::EVENT_STREAM_MEDIA_TYPE.to_owned())],
        body: text.clone().into_bytes(),
        length,
    };
    let server = FakeServer::start(vec![
        stream(Length::UntilClose),
        stream(Length::Claimed(text.len() + 100)),
    ]);
    let remote = server.remote();

    // The draining node's stream: the head, the hint, then its end.
    let mut events = remote.events("p").unwrap();
    assert_eq!(events.retry(), None);
    let first = events.next_head().unwrap().unwrap();
    assert_eq!((first.version, first.root), (4, tree.root));
    assert_eq!(events.next_head().unwrap(), None);
    assert_eq!(events.retry(), Some(Duration::from_millis(1500)));

    // A stream that breaks instead of ending keeps the hint as well.
    let mut events = remote.events("p").unwrap();
    assert!(events.next_head().unwrap().is_some());
    let error = events.next_head().unwrap_err();
    assert!(matches!(error, RemoteError::Network { .. }), "{error:?}");
    assert_eq!(events.retry(), Some(Duration::from_millis(1500)));
    assert_eq!(server.requests().len(), 2);
}

/// A stream that goes silent with its connection open (the machine of its node vanished) is
/// counted as broken after the silence allowed, rather than waited on forever.
#[test]
fn a_silent_event_stream_counts_as_broken() {
    let head = HeadEvent {
        project: "p".to_owned(),
        version: 2,
        root: project_tree().root,
    };
    let text = format!(
        "event: head\ndata: {}\n\n",
        serde_json::to_string(&head).unwrap()
    );
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = FakeServer::start(vec![Answer::Send {
        status: 200,
        headers: vec![("content-type", wire::EVENT_STREAM_MEDIA_TYPE.to_owned())],
        body: text.into_bytes(),
        length: Length::Silent(release.clone()),
    }]);
    let remote = server
        .remote()
        .with_events_silence(Duration::from_millis(300));
    let mut events = remote.events("p").unwrap();
    assert_eq!(events.next_head().unwrap().unwrap().version, 2);
    let error = events.next_head().unwrap_err();
    // The server still holds the connection: the client gave up on its own.
    assert!(!release.load(std::sync::atomic::Ordering::SeqCst));
    assert!(matches!(error, RemoteError::Network { .. }), "{error:?}");
    release.store(true, std::sync::atomic::Ordering::SeqCst);
}
