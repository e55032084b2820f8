//! Object store tests, run against the folder backend (a temporary folder) and a real
//! S3-compatible server (s3s-fs, a fresh bucket per test).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use sync_protocol::{
    Dir, DirEntry, EntryKind, Name, Object, ObjectId, ObjectKind, compress_object,
};
use sync_server::catalog::ProjectId;
use sync_server::store::{FsBackend, MAX_FRAME_SIZE, ObjectStore, RequestCounts, StoreError};

use crate::storage_support::TestBucket;

/// An object and its stored form.
struct Sample {
    id: ObjectId,
    frame: Bytes,
    object: Object,
}

fn sample(object: Object) -> Sample {
    Sample {
        id: object.id(),
        frame: Bytes::from(compress_object(&object.encode())),
        object,
    }
}

/// Two chunks and a dir holding them: children first, as pushes arrive.
fn samples() -> Vec<Sample> {
    let first = sample(Object::Chunk(b"{\"method\": \"GET\"}".to_vec()));
    let second = sample(Object::Chunk(b"request body ".repeat(500)));
    let entry = |name: &str, chunk: &Sample, size: usize| DirEntry {
        name: Name::new(name).unwrap(),
        kind: EntryKind::File,
        target: ObjectKind::Chunk,
        size: size as u64,
        id: chunk.id,
    };
    let dir = Dir::new(vec![
        entry("a.json", &first, 17),
        entry("b.txt", &second, 13 * 500),
    ])
    .unwrap();
    let root = sample(Object::Dir(dir));
    vec![first, second, root]
}

/// The store holds these objects, each as its original frame, and nothing else.
async fn assert_holds_exactly(store: &ObjectStore, project: &ProjectId, objects: &[Sample]) {
    let ids = ids(objects);
    let frames = store.get_many(project, &ids).await.unwrap();
    for (frame, sample) in frames.iter().zip(objects) {
        assert_eq!(frame.as_ref(), Some(&sample.frame));
    }
    let mut listed = store.list(project).await.unwrap();
    listed.sort();
    let mut expected = ids;
    expected.sort();
    assert_eq!(listed, expected);
}

fn pairs(samples: &[Sample]) -> Vec<(ObjectId, Bytes)> {
    samples
        .iter()
        .map(|sample| (sample.id, sample.frame.clone()))
        .collect()
}

fn ids(samples: &[Sample]) -> Vec<ObjectId> {
    samples.iter().map(|sample| sample.id).collect()
}

/// A fresh project holding the samples; the samples.
async fn stored_samples(store: &ObjectStore) -> (ProjectId, Vec<Sample>) {
    let project = ProjectId::random();
    let objects = samples();
    store.put_many(&project, pairs(&objects)).await.unwrap();
    (project, objects)
}

/// The store requests that `work` made; it must succeed.
async fn requests_of<T, E: std::fmt::Debug>(
    store: &ObjectStore,
    work: impl Future<Output = Result<T, E>>,
) -> RequestCounts {
    let before = store.request_counts();
    work.await.unwrap();
    store.request_counts().since(&before)
}

/// Overwrites a stored value behind the store's back: (project, id, new value).
type Tamper = Box<dyn Fn(ProjectId, ObjectId, Vec<u8>) -> Pin<Box<dyn Future<Output = ()>>>>;

/// Runs each scenario against both backends: `fs::<name>` and `s3::<name>`. A scenario gets the
/// store and a function that overwrites a stored value behind the store's back.
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let backend = sync_server::store::FsBackend::new(dir.path());
                    let tamper_backend = backend.clone();
                    let tamper: super::Tamper = Box::new(move |project, id, value| {
                        let path = tamper_backend.object_path(&project, &id);
                        Box::pin(async move { std::fs::write(path, value).unwrap() })
                    });
                    super::$name(sync_server::store::ObjectStore::new(backend), tamper).await;
                }
            )*
        }

        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(bucket) = crate::storage_support::TestBucket::create().await else {
                        return;
                    };
                    let raw = bucket.backend.clone();
                    let tamper: super::Tamper = Box::new(move |project, id, value| {
                        let raw = raw.clone();
                        Box::pin(async move {
                            raw.client()
                                .put_object()
                                .bucket(raw.bucket())
                                .key(raw.key(&project, &id))
                                .body(value.into())
                                .send()
                                .await
                                .unwrap();
                        })
                    });
                    super::$name(
                        sync_server::store::ObjectStore::new(bucket.backend.clone()),
                        tamper,
                    )
                    .await;
                    bucket.remove().await;
                }
            )*
        }
    };
}

store_suite!(
    put_get_missing_round_trip,
    puts_are_idempotent,
    projects_are_namespaced,
    corrupt_objects_are_integrity_errors,
    requests_are_counted_per_object,
    list_and_delete,
    layers_are_all_stored,
);

async fn put_get_missing_round_trip(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let objects = samples();
    let absent = sample(Object::Chunk(b"never stored".to_vec()));
    let ids = ids(&objects);
    assert_eq!(store.missing(&project, &ids).await.unwrap(), ids);

    store.put_many(&project, pairs(&objects)).await.unwrap();

    let asked = [ids[0], absent.id, ids[2], ids[1]];
    let frames = store.get_many(&project, &asked).await.unwrap();
    assert_eq!(frames[0].as_ref(), Some(&objects[0].frame));
    assert_eq!(frames[1], None);
    assert_eq!(frames[2].as_ref(), Some(&objects[2].frame));
    assert_eq!(frames[3].as_ref(), Some(&objects[1].frame));

    let decoded = store.get_objects(&project, &[ids[2]]).await.unwrap();
    let root = decoded[0].as_ref().unwrap();
    assert_eq!(root.object, objects[2].object);
    assert_eq!(root.frame, objects[2].frame);

    // Missing keeps the caller's order and drops duplicates.
    let probe = [absent.id, ids[1], absent.id, ids[0]];
    assert_eq!(store.missing(&project, &probe).await.unwrap(), [absent.id]);
    assert!(store.missing(&project, &ids).await.unwrap().is_empty());
}

async fn puts_are_idempotent(store: ObjectStore, _tamper: Tamper) {
    let (project, objects) = stored_samples(&store).await;
    // Again, and with duplicates inside one batch.
    let mut twice = pairs(&objects);
    twice.extend(pairs(&objects));
    store.put_many(&project, twice).await.unwrap();
    // A different frame of the same object (with a content checksum) leaves the first.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut encoder, &objects[1].object.encode()).unwrap();
    let recompressed = Bytes::from(encoder.finish().unwrap());
    assert!(sync_protocol::verify_frame(&objects[1].id, &recompressed).is_ok());
    assert_ne!(recompressed, objects[1].frame);
    store
        .put_many(&project, vec![(objects[1].id, recompressed)])
        .await
        .unwrap();
    assert_holds_exactly(&store, &project, &objects).await;
}

async fn projects_are_namespaced(store: ObjectStore, _tamper: Tamper) {
    let mine = ProjectId::random();
    let theirs = ProjectId::random();
    let objects = samples();
    store.put_many(&mine, pairs(&objects)).await.unwrap();
    let ids = ids(&objects);
    assert_eq!(store.missing(&theirs, &ids).await.unwrap(), ids);
    assert_eq!(
        store.get_many(&theirs, &ids).await.unwrap(),
        vec![None, None, None]
    );
    assert!(store.list(&theirs).await.unwrap().is_empty());
}

async fn corrupt_objects_are_integrity_errors(store: ObjectStore, tamper: Tamper) {
    let (project, objects) = stored_samples(&store).await;
    let ids = ids(&objects);

    // Garbage where a frame should be.
    tamper(project, ids[1], b"definitely not zstd".to_vec()).await;
    let error = store.get_many(&project, &ids).await.unwrap_err();
    match &error {
        StoreError::Integrity { id, project: p, .. } => {
            assert_eq!(*id, ids[1]);
            assert_eq!(*p, project);
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
    assert!(error.to_string().contains(&ids[1].to_string()), "{error}");
    assert!(matches!(
        store.get_objects(&project, &ids[1..2]).await,
        Err(StoreError::Integrity { .. })
    ));

    // A valid frame of another object under this id: a hash mismatch, equally refused.
    tamper(project, ids[0], objects[2].frame.to_vec()).await;
    match store.get_many(&project, &ids[..1]).await {
        Err(StoreError::Integrity { id, error, .. }) => {
            assert_eq!(id, ids[0]);
            assert!(matches!(
                *error,
                sync_protocol::CompressError::IdMismatch { .. }
            ));
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
    // The intact object still reads.
    assert!(store.get_many(&project, &ids[2..]).await.unwrap()[0].is_some());
}

async fn requests_are_counted_per_object(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let objects = samples();
    let ids = ids(&objects);

    // Empty batches, like a no-op pull or push, make no request at all.
    let none = RequestCounts::default();
    let start = store.request_counts();
    store.put_many(&project, Vec::new()).await.unwrap();
    assert!(store.get_many(&project, &[]).await.unwrap().is_empty());
    assert!(store.missing(&project, &[]).await.unwrap().is_empty());
    store.delete_many(&project, &[]).await.unwrap();
    assert_eq!(store.request_counts().since(&start), none);

    // One request per object, of the batch's kind only.
    let put = requests_of(&store, store.put_many(&project, pairs(&objects))).await;
    assert_eq!(put, RequestCounts { put: 3, ..none });
    let get = requests_of(&store, store.get_many(&project, &ids)).await;
    assert_eq!(get, RequestCounts { get: 3, ..none });
    let missing = requests_of(&store, store.missing(&project, &ids)).await;
    assert_eq!(missing, RequestCounts { head: 3, ..none });
    let listing = requests_of(&store, store.list(&project)).await;
    assert_eq!((listing.get, listing.put, listing.head), (0, 0, 0));
    assert!(listing.list >= 1);
    eprintln!(
        "requests for 3 objects: put {}, get {}, missing {}, list {}",
        put.total(),
        get.total(),
        missing.total(),
        listing.total()
    );
}

async fn list_and_delete(store: ObjectStore, _tamper: Tamper) {
    let (project, objects) = stored_samples(&store).await;
    let ids = ids(&objects);
    assert_eq!(store.list(&project).await.unwrap().len(), 3);
    let absent = sample(Object::Chunk(b"absent".to_vec())).id;
    store
        .delete_many(&project, &[ids[0], ids[1], absent])
        .await
        .unwrap();
    assert_eq!(store.list(&project).await.unwrap(), [ids[2]]);
    assert_eq!(store.missing(&project, &ids).await.unwrap(), &ids[..2]);
    store.delete_many(&project, &ids).await.unwrap();
    assert!(store.list(&project).await.unwrap().is_empty());
}

// Backend-specific cases.

/// A folder store in a temporary folder, with its backend for looking behind the store.
fn fs_store() -> (tempfile::TempDir, FsBackend, ObjectStore) {
    let dir = tempfile::tempdir().unwrap();
    let backend = FsBackend::new(dir.path());
    let store = ObjectStore::new(backend.clone());
    (dir, backend, store)
}

#[tokio::test]
async fn fs_refuses_oversized_values_without_reading_them() {
    let (dir, backend, store) = fs_store();
    let project = ProjectId::random();
    let object = sample(Object::Chunk(b"x".to_vec()));
    store
        .put_many(&project, vec![(object.id, object.frame.clone())])
        .await
        .unwrap();
    let path = backend.object_path(&project, &object.id);
    assert!(path.starts_with(dir.path().join("objects").join(project.to_string())));
    // At the limit: read, then refused as corrupt. One past: refused before reading.
    std::fs::write(&path, vec![0u8; MAX_FRAME_SIZE]).unwrap();
    assert!(matches!(
        store.get_many(&project, &[object.id]).await,
        Err(StoreError::Integrity { .. })
    ));
    std::fs::write(&path, vec![0u8; MAX_FRAME_SIZE + 1]).unwrap();
    assert!(matches!(
        store.get_many(&project, &[object.id]).await,
        Err(StoreError::Oversized { len, .. }) if len == MAX_FRAME_SIZE as u64 + 1
    ));
}

async fn layers_are_all_stored(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let objects = samples();
    // One chunk is stored already; the other comes twice, in two layers; an empty layer too.
    store
        .put_many(&project, pairs(&objects[..1]))
        .await
        .unwrap();
    let layers = vec![pairs(&objects[..2]), Vec::new(), pairs(&objects[1..])];
    store.put_layers(&project, layers).await.unwrap();
    assert_holds_exactly(&store, &project, &objects).await;
    // Empty layers are nothing to store, not an error.
    store.put_layers(&project, vec![Vec::new()]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_layers_appear_leaves_first() {
    let (_dir, backend, store) = fs_store();
    let project = ProjectId::random();
    let objects = samples();
    let path = |sample: &Sample| backend.object_path(&project, &sample.id);
    let (children, root) = ([path(&objects[0]), path(&objects[1])], path(&objects[2]));
    // A watcher that looks at the moment the dir appears: its children must be there already.
    // (The layers' fsyncs in between leave it milliseconds to see a dir stored too early.)
    let watcher = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        while !root.exists() {
            assert!(started.elapsed().as_secs() < 30, "the dir never appeared");
            std::hint::spin_loop();
        }
        children.iter().all(|child| child.exists())
    });
    let layers = vec![
        pairs(&objects[..1]),
        pairs(&objects[1..2]),
        pairs(&objects[2..]),
    ];
    store.put_layers(&project, layers).await.unwrap();
    assert!(
        watcher.join().unwrap(),
        "the dir was visible before its children"
    );
}

#[tokio::test]
async fn fs_ignores_leftover_temporary_files() {
    let (_dir, backend, store) = fs_store();
    let (project, objects) = stored_samples(&store).await;
    let folder = backend
        .object_path(&project, &objects[0].id)
        .parent()
        .unwrap()
        .to_owned();
    // What a crash between write and rename leaves behind.
    std::fs::write(folder.join(".tmp-0123"), b"partial").unwrap();
    assert_eq!(store.list(&project).await.unwrap().len(), 3);
    let leftovers: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the planted one: writes leave none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_follow_the_layout_and_many_objects_batch() {
    let Some(bucket) = TestBucket::create().await else {
        return;
    };
    let project = ProjectId::random();
    let store = ObjectStore::new(bucket.backend.clone());
    let object = sample(Object::Chunk(b"layout".to_vec()));
    assert_eq!(
        bucket.backend.key(&project, &object.id),
        format!("tenant/objects/{project}/{}", object.id)
    );
    // More objects than the concurrency limit, so batching and ordering are exercised.
    let many: Vec<Sample> = (0..100)
        .map(|index| sample(Object::Chunk(format!("object {index}").into_bytes())))
        .collect();
    let before = store.request_counts();
    store.put_many(&project, pairs(&many)).await.unwrap();
    let ids = ids(&many);
    let frames = store.get_many(&project, &ids).await.unwrap();
    for (frame, sample) in frames.iter().zip(&many) {
        assert_eq!(frame.as_ref(), Some(&sample.frame));
    }
    let used = store.request_counts().since(&before);
    assert_eq!((used.put, used.get), (100, 100));
    let listed = bucket
        .backend
        .client()
        .list_objects_v2()
        .bucket(bucket.backend.bucket())
        .prefix(format!("tenant/objects/{project}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(100));
    let before_delete = store.request_counts();
    store.delete_many(&project, &ids).await.unwrap();
    let deleted = store.request_counts().since(&before_delete);
    assert_eq!(deleted.delete, 1, "one DeleteObjects request per 1000 keys");
    assert_eq!(store.missing(&project, &ids).await.unwrap(), ids);
    bucket.remove().await;
}
