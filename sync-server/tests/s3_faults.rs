//! The S3 backend against a scripted fake S3 on loopback: retries on 5xx and `SlowDown`,
//! "already exists" (412) on a conditional put, and request counting of every attempt. s3s-fs
//! cannot be made to fail on demand, so these faults need a server of our own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sync_protocol::{Object, compress_object};
use sync_server::catalog::ProjectId;
use sync_server::store::{ObjectStore, S3Backend, S3Credentials, S3Settings, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Requests seen ("METHOD path") and answers still to give (status, error code); once the
/// script runs out, the last answer repeats.
#[derive(Default)]
struct Script {
    seen: Vec<String>,
    answers: VecDeque<(u16, &'static str)>,
    last: Option<(u16, &'static str)>,
}

type Shared = Arc<Mutex<Script>>;

async fn fake_s3(answers: &[(u16, &'static str)]) -> (ObjectStore, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let script: Shared = Arc::new(Mutex::new(Script {
        answers: answers.iter().copied().collect(),
        ..Script::default()
    }));
    let serving = Arc::clone(&script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&serving)));
        }
    });
    let mut settings = S3Settings::new("fake-bucket");
    settings.endpoint = Some(format!("http://{address}"));
    settings.force_path_style = true;
    settings.max_attempts = 3;
    settings.credentials = Some(S3Credentials {
        access_key_id: "fake".to_owned(),
        secret_access_key: "fake-secret".to_owned(),
    });
    let backend = S3Backend::connect(&settings).await.unwrap();
    (ObjectStore::new(backend), script)
}

/// Answers HTTP/1.1 requests on one connection, keep-alive, per the script.
async fn serve(mut stream: TcpStream, script: Shared) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end + 4;
            }
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let length: usize = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        }
        buffer.drain(..head_end + length);
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let (status, code) = {
            let mut script = script.lock().unwrap();
            script.seen.push(
                request_line
                    .rsplit_once(' ')
                    .map_or(request_line.clone(), |(start, _)| start.to_owned()),
            );
            let answer = script
                .answers
                .pop_front()
                .or(script.last)
                .unwrap_or((200, ""));
            script.last = Some(answer);
            answer
        };
        let body = if status == 200 {
            if request_line.starts_with("GET") {
                String::from("not a frame")
            } else {
                String::new()
            }
        } else if request_line.starts_with("HEAD") {
            String::new()
        } else {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                 <Error><Code>{code}</Code><Message>scripted</Message></Error>"
            )
        };
        let response = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\ncontent-type: application/xml\r\n\
             etag: \"0123\"\r\nx-amz-request-id: fake\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Appends what the connection has next to `buffer`; false when it is closed or failed.
async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(read) => {
            buffer.extend_from_slice(&chunk[..read]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn one_object() -> (sync_protocol::ObjectId, Bytes) {
    let object = Object::Chunk(b"fault injection".to_vec());
    (object.id(), Bytes::from(compress_object(&object.encode())))
}

#[tokio::test]
async fn put_retries_slow_down_and_server_errors() {
    let (store, script) = fake_s3(&[(503, "SlowDown"), (500, "InternalError"), (200, "")]).await;
    let project = ProjectId::random();
    store
        .put_many(&project, vec![one_object()])
        .await
        .expect("the third attempt succeeds");
    // Every attempt is a billed request, and is counted.
    assert_eq!(store.request_counts().put, 3);
    let seen = script.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|line| line.starts_with("PUT /fake-bucket/objects/"))
    );
}

#[tokio::test]
async fn conditional_put_treats_already_exists_as_success() {
    let (store, script) = fake_s3(&[(412, "PreconditionFailed")]).await;
    store
        .put_many(&ProjectId::random(), vec![one_object()])
        .await
        .expect("412 means the object is already stored");
    assert_eq!(store.request_counts().put, 1);
    assert_eq!(script.lock().unwrap().seen.len(), 1);
}

#[tokio::test]
async fn persistent_failures_end_in_a_typed_error_after_the_attempts() {
    let (store, _script) = fake_s3(&[(500, "InternalError")]).await;
    let project = ProjectId::random();
    let (id, _) = one_object();
    match store.get_many(&project, &[id]).await {
        Err(StoreError::S3 { operation, key, .. }) => {
            assert_eq!(operation, "get");
            assert!(key.contains(&id.to_string()), "{key}");
        }
        other => panic!("expected an S3 error, got {other:?}"),
    }
    assert_eq!(store.request_counts().get, 3, "max_attempts is 3");
}

#[tokio::test]
async fn a_value_that_is_not_its_object_is_never_served() {
    // The fake answers 200 with "not a frame" for every GET.
    let (store, _script) = fake_s3(&[(200, "")]).await;
    let (id, _) = one_object();
    assert!(matches!(
        store.get_many(&ProjectId::random(), &[id]).await,
        Err(StoreError::Integrity { id: bad, .. }) if bad == id
    ));
}

#[tokio::test]
async fn head_404_is_missing() {
    let (store, _script) = fake_s3(&[(404, "NotFound")]).await;
    let (id, _) = one_object();
    assert_eq!(
        store
            .missing(&ProjectId::random(), &[id, id])
            .await
            .unwrap(),
        [id]
    );
    assert_eq!(store.request_counts().head, 1);
}
