//! The S3 backend against faults S3 shows now and then.
//!
//! - A scripted fake S3 on loopback: retries on 5xx and `SlowDown`, "already exists" (412) on a
//!   conditional put, and request counting of every attempt.
//! - The test s3s-fs behind `FaultyS3` (cairn_test_support), which injects S3's faults at a
//!   seeded rate: every store operation rides out 20% of faulty requests of every kind, bodies
//!   that break off and error documents in a `GET`'s body are read again, and what fails on
//!   every read is a `Transfer` error (503 `unavailable` with `Retry-After`), never data and
//!   never an integrity error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_test_support::s3_faults::RequestKind;
use cairn_test_support::{Fault, FaultPlan};
use sync_protocol::{Object, compress_object};
use sync_server::catalog::ProjectId;
use sync_server::problem::Problem;
use sync_server::store::pack::{Pack, PackBuilder, PackId};
use sync_server::store::{
    ObjectStore, PackLocation, READ_ATTEMPTS, S3Backend, S3Credentials, S3Settings, StoreError,
};
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

/// The test s3s-fs behind a fault-injecting proxy: a fresh bucket, and a store whose S3
/// endpoint is the proxy. The plan starts without faults.
struct Faulty {
    store: ObjectStore,
    proxy: cairn_test_support::FaultyS3,
    bucket: cairn_test_support::TestBucket,
}

impl Faulty {
    async fn start() -> Option<Faulty> {
        let bucket = cairn_test_support::TestBucket::from_env()?;
        let service = bucket.service().clone();
        let proxy = cairn_test_support::FaultyS3::start(
            cairn_test_support::FaultyS3::target_of(&service.endpoint),
            cairn_test_support::FaultPlan::none(),
        );
        let mut settings = S3Settings::new(bucket.name());
        settings.endpoint = Some(proxy.endpoint());
        settings.force_path_style = true;
        settings.prefix = "tenant".to_owned();
        // Short, so a stalled body costs the test a second, not the default ten.
        settings.body_stall_timeout = STALL_TIMEOUT;
        settings.credentials = Some(S3Credentials {
            access_key_id: service.access_key.clone(),
            secret_access_key: service.secret_key.clone(),
        });
        let store = ObjectStore::new(S3Backend::connect(&settings).await.unwrap());
        Some(Faulty {
            store,
            proxy,
            bucket,
        })
    }

    /// Turns the faults off and removes the bucket.
    async fn remove(self) {
        self.proxy.set_plan(cairn_test_support::FaultPlan::none());
        self.bucket.remove().await;
    }
}

/// The store's stall timeout in these tests.
const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A pack of `count` chunks of a few KiB, and where each of its objects is.
fn chunk_pack(count: usize, seed: u64) -> (Pack, Vec<Object>, Vec<PackLocation>) {
    let objects: Vec<Object> = (0..count)
        .map(|index| {
            Object::Chunk(cairn_test_support::noise(
                2000 + index * 37,
                seed + index as u64,
            ))
        })
        .collect();
    let mut builder = PackBuilder::new();
    for object in &objects {
        let frame = compress_object(&object.encode());
        builder.add(object.id(), object.kind(), object.content_size(), &frame);
    }
    let pack = builder.finish();
    let locations = pack
        .entries
        .iter()
        .map(|entry| PackLocation::new(pack.id, entry))
        .collect();
    (pack, objects, locations)
}

#[tokio::test]
async fn every_operation_rides_out_a_fifth_of_requests_failing() {
    let Some(faulty) = Faulty::start().await else {
        return;
    };
    let store = &faulty.store;
    let project = ProjectId::random();
    faulty
        .proxy
        .set_plan(FaultPlan::uniform(20_260_113, 0.2).with_latency(ms(5)..ms(50)));
    let mut kept = Vec::new();
    for round in 0..16u64 {
        // PUT
        let (pack, objects, locations) = chunk_pack(12, round * 100);
        store.put_pack(&project, &pack).await.unwrap();
        kept.push(pack.id);
        // GET by ranges, every other frame (several coalesced requests).
        let some: Vec<PackLocation> = locations.iter().copied().step_by(2).collect();
        let read = store.read_objects(&project, &some).await.unwrap();
        for (object, expected) in read.iter().zip(objects.iter().step_by(2)) {
            assert_eq!(&object.object, expected);
        }
        // GET whole, and a suffix range then a range (the contents).
        let (whole, _) = store.read_pack_objects(&project, pack.id).await.unwrap();
        assert_eq!(whole.bytes, pack.bytes);
        assert_eq!(
            store.pack_contents(&project, pack.id).await.unwrap(),
            pack.entries
        );
        // HEAD
        assert_eq!(
            store.pack_len(&project, pack.id).await.unwrap(),
            Some(pack.bytes.len() as u64)
        );
        // LIST
        let mut listed: Vec<PackId> = store
            .list_packs(&project)
            .await
            .unwrap()
            .into_iter()
            .map(|(pack, _)| pack)
            .collect();
        listed.sort();
        kept.sort();
        assert_eq!(listed, kept);
        // The layout before packs: PUT, GET, HEAD and DELETE per object.
        let frame = Bytes::from(compress_object(&objects[0].encode()));
        let id = objects[0].id();
        store
            .put_many(&project, vec![(id, frame.clone())])
            .await
            .unwrap();
        assert_eq!(
            store.get_many(&project, &[id]).await.unwrap(),
            [Some(frame)]
        );
        assert!(store.missing(&project, &[id]).await.unwrap().is_empty());
        store.delete_many(&project, &[id]).await.unwrap();
        assert_eq!(store.missing(&project, &[id]).await.unwrap(), [id]);
    }
    store.delete_packs(&project, &kept).await.unwrap();
    assert!(store.list_packs(&project).await.unwrap().is_empty());
    let counts = faulty.proxy.counts();
    eprintln!("{counts}");
    for kind in RequestKind::ALL {
        assert!(
            counts.injected.keys().any(|(of, _)| *of == kind),
            "no fault in a {kind:?}:\n{counts}"
        );
    }
    for fault in Fault::ALL {
        assert!(counts.of_fault(fault) > 0, "no {fault:?}:\n{counts}");
    }
    faulty.remove().await;
}

#[tokio::test]
async fn cut_bodies_and_error_documents_are_read_again_never_served() {
    let Some(faulty) = Faulty::start().await else {
        return;
    };
    let store = &faulty.store;
    let project = ProjectId::random();
    let (pack, objects, locations) = chunk_pack(30, 7);
    store.put_pack(&project, &pack).await.unwrap();
    // A third of the GETs cut short or carrying an error document: the SDK retries neither.
    faulty.proxy.set_plan(
        FaultPlan::uniform(99, 0.35)
            .with_faults(&[Fault::Truncate, Fault::ErrorBody])
            .with_rate(RequestKind::Put, 0.0),
    );
    for round in 0..30 {
        let some: Vec<PackLocation> = locations
            .iter()
            .copied()
            .skip(round % 5)
            .step_by(5)
            .collect();
        let read = store.read_objects(&project, &some).await.unwrap();
        for (object, expected) in read.iter().zip(objects.iter().skip(round % 5).step_by(5)) {
            assert_eq!(&object.object, expected);
        }
    }
    let counts = faulty.proxy.counts();
    assert!(
        counts.of_fault(Fault::Truncate) > 2 && counts.of_fault(Fault::ErrorBody) > 2,
        "{counts}"
    );
    faulty.remove().await;
}

#[tokio::test]
async fn a_stalled_body_is_broken_off_and_read_again() {
    let Some(faulty) = Faulty::start().await else {
        return;
    };
    let store = &faulty.store;
    let project = ProjectId::random();
    let (pack, objects, locations) = chunk_pack(6, 13);
    store.put_pack(&project, &pack).await.unwrap();
    // Every other GET sends half its body and then nothing, holding the connection open.
    faulty.proxy.set_plan(
        FaultPlan::uniform(5, 0.5)
            .with_faults(&[Fault::Stall])
            .with_rate(RequestKind::Put, 0.0),
    );
    let started = std::time::Instant::now();
    for (location, expected) in locations.iter().zip(&objects) {
        let read = store.read_objects(&project, &[*location]).await.unwrap();
        assert_eq!(&read[0].object, expected);
    }
    let stalls = faulty.proxy.counts().of_fault(Fault::Stall);
    assert!(stalls > 0, "{}", faulty.proxy.counts());
    // Each stall cost about the stall timeout, not more: it was broken off, not waited out.
    let elapsed = started.elapsed();
    assert!(
        elapsed < STALL_TIMEOUT * (stalls as u32 + 2) + Duration::from_secs(5),
        "{stalls} stalls took {elapsed:?}"
    );
    // Every read stalling: a transfer failure after the bounded attempts, never a hang.
    faulty.proxy.set_plan(
        FaultPlan::uniform(5, 1.0)
            .with_faults(&[Fault::Stall])
            .with_rate(RequestKind::Put, 0.0),
    );
    let error = store
        .read_objects(&project, &locations[..1])
        .await
        .expect_err("no read succeeds");
    assert!(matches!(error, StoreError::Transfer { .. }), "{error:?}");
    faulty.remove().await;
}

#[tokio::test]
async fn a_read_that_fails_every_time_is_unavailable_not_corrupt() {
    let Some(faulty) = Faulty::start().await else {
        return;
    };
    let store = &faulty.store;
    let project = ProjectId::random();
    let (pack, _, locations) = chunk_pack(3, 11);
    store.put_pack(&project, &pack).await.unwrap();
    for fault in [Fault::Truncate, Fault::ErrorBody] {
        faulty
            .proxy
            .set_plan(FaultPlan::uniform(1, 1.0).with_faults(&[fault]));
        let before = store.request_counts();
        let error = store
            .read_objects(&project, &locations[1..2])
            .await
            .expect_err("no read succeeds");
        assert!(
            matches!(error, StoreError::Transfer { .. }),
            "{fault:?}: {error:?}"
        );
        assert_eq!(
            store.request_counts().since(&before).get,
            u64::from(READ_ATTEMPTS),
            "{fault:?}: read again, a bounded number of times"
        );
        let response = Problem::from(error).into_response();
        assert_eq!(response.status(), 503, "{fault:?}");
        assert_eq!(response.headers()["retry-after"], "1");
    }
    // Wrong bytes that are the same on every read are stored so: corrupt, 500.
    faulty.proxy.set_plan(FaultPlan::none());
    let mut damaged = pack.bytes.to_vec();
    let middle = locations[1].offset as usize + locations[1].length as usize / 2;
    damaged[middle] ^= 0x01;
    overwrite_pack(&faulty, &project, &pack, damaged).await;
    let error = store
        .read_objects(&project, &locations[1..2])
        .await
        .expect_err("a damaged frame is never served");
    assert!(
        matches!(&error, StoreError::Integrity { id, .. } if *id == locations[1].id),
        "{error:?}"
    );
    assert_eq!(Problem::from(error).into_response().status(), 500);
    faulty.remove().await;
}

/// Replaces a stored pack's bytes behind the store's back (the tests' way to damage it).
async fn overwrite_pack(faulty: &Faulty, project: &ProjectId, pack: &Pack, bytes: Vec<u8>) {
    let service = faulty.bucket.service();
    let mut settings = S3Settings::new(faulty.bucket.name());
    settings.endpoint = Some(service.endpoint.clone());
    settings.force_path_style = true;
    settings.prefix = "tenant".to_owned();
    settings.conditional_put = false;
    settings.credentials = Some(S3Credentials {
        access_key_id: service.access_key.clone(),
        secret_access_key: service.secret_key.clone(),
    });
    let direct = S3Backend::connect(&settings).await.unwrap();
    direct
        .client()
        .put_object()
        .bucket(faulty.bucket.name())
        .key(direct.pack_key(project, &pack.id))
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

fn ms(millis: u64) -> std::time::Duration {
    std::time::Duration::from_millis(millis)
}
