//! Object store tests, run against the folder backend (a temporary folder) and a real
//! S3-compatible server (s3s-fs, a fresh bucket per test): loose objects (the layout before
//! packs) first, then packs.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use sync_protocol::{
    Dir, DirEntry, EntryKind, Name, Object, ObjectId, ObjectKind, compress_object,
};
use sync_server::catalog::ProjectId;
use sync_server::store::pack::{Pack, PackBuilder, PackId};
use sync_server::store::{
    FsBackend, MAX_FRAME_SIZE, MAX_GAP, ObjectStore, PackLocation, RequestCounts, StoreError,
};

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

/// A stored value: a loose object or a pack.
#[derive(Debug, Clone, Copy)]
enum Stored {
    Object(ObjectId),
    Pack(PackId),
}

/// Overwrites a stored value behind the store's back: (project, value, new bytes).
type Tamper = Box<dyn Fn(ProjectId, Stored, Vec<u8>) -> Pin<Box<dyn Future<Output = ()>>>>;

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
                    let tamper: super::Tamper = Box::new(move |project, stored, value| {
                        let path = match stored {
                            super::Stored::Object(id) => tamper_backend.object_path(&project, &id),
                            super::Stored::Pack(pack) => tamper_backend.pack_path(&project, &pack),
                        };
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
                    let tamper: super::Tamper = Box::new(move |project, stored, value| {
                        let raw = raw.clone();
                        let key = match stored {
                            super::Stored::Object(id) => raw.key(&project, &id),
                            super::Stored::Pack(pack) => raw.pack_key(&project, &pack),
                        };
                        Box::pin(async move {
                            raw.client()
                                .put_object()
                                .bucket(raw.bucket())
                                .key(key)
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
    packs_read_back_whole_and_by_ranges,
    nearby_frames_are_read_in_one_request,
    pack_puts_are_idempotent,
    packs_list_and_delete,
    ranges_past_the_end_are_refused,
    a_flipped_byte_fails_only_its_object,
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
    tamper(
        project,
        Stored::Object(ids[1]),
        b"definitely not zstd".to_vec(),
    )
    .await;
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
    tamper(project, Stored::Object(ids[0]), objects[2].frame.to_vec()).await;
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

// Packs.

/// A pack of these objects, in their order.
fn pack_of(samples: &[Sample]) -> Pack {
    let mut builder = PackBuilder::new();
    for sample in samples {
        let (kind, size) = (sample.object.kind(), sample.object.content_size());
        builder.add(sample.id, kind, size, &sample.frame);
    }
    builder.finish()
}

/// Where each object of `pack` is, in pack order.
fn locations(pack: &Pack) -> Vec<PackLocation> {
    pack.entries
        .iter()
        .map(|entry| PackLocation::new(pack.id, entry))
        .collect()
}

/// A chunk of `len` bytes that do not compress, so its frame is longer than `len`.
fn incompressible(len: usize) -> Sample {
    let mut bytes = vec![0; len];
    blake3::Hasher::new()
        .update(b"incompressible")
        .finalize_xof()
        .fill(&mut bytes);
    sample(Object::Chunk(bytes))
}

/// The bytes that `locations` name, read through the store, match `expected` object by object.
async fn assert_reads(
    store: &ObjectStore,
    project: &ProjectId,
    locations: &[PackLocation],
    expected: &[&Sample],
) {
    let read = store.read_objects(project, locations).await.unwrap();
    assert_eq!(read.len(), expected.len());
    for (object, sample) in read.iter().zip(expected) {
        assert_eq!(object.frame, sample.frame);
        assert_eq!(object.object, sample.object);
    }
}

async fn packs_read_back_whole_and_by_ranges(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let objects = samples();
    let pack = pack_of(&objects);
    store.put_pack(&project, &pack).await.unwrap();

    assert_eq!(store.read_pack(&project, pack.id).await.unwrap(), pack);
    let len = pack.bytes.len() as u64;
    assert_eq!(store.pack_len(&project, pack.id).await.unwrap(), Some(len));
    assert_eq!(
        store.pack_contents(&project, pack.id).await.unwrap(),
        pack.entries
    );

    // By ranges, in any order, with repeats.
    let at = locations(&pack);
    let expected = [&objects[2], &objects[0], &objects[2], &objects[1]];
    assert_reads(&store, &project, &[at[2], at[0], at[2], at[1]], &expected).await;

    // The backend reads any bytes: the header, the footer's last bytes, an empty range.
    let reads = [(pack.id, 0..8), (pack.id, len - 8..len), (pack.id, 5..5)];
    let raw = store.backend().read_ranges(&project, &reads).await.unwrap();
    let end = pack.bytes.len();
    assert_eq!(
        raw,
        [
            pack.bytes.slice(..8),
            pack.bytes.slice(end - 8..),
            Bytes::new()
        ]
    );

    // A pack's objects are not loose objects: the two layouts are apart.
    let ids = ids(&objects);
    assert!(store.list(&project).await.unwrap().is_empty());
    assert_eq!(store.missing(&project, &ids).await.unwrap(), ids);
}

async fn nearby_frames_are_read_in_one_request(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let none = RequestCounts::default();
    let objects = samples();
    let pack = pack_of(&objects);
    let put = requests_of(&store, store.put_pack(&project, &pack)).await;
    assert_eq!(put, RequestCounts { put: 1, ..none });

    // Adjacent frames: one request, for two or for all three.
    let at = locations(&pack);
    let two = requests_of(&store, store.read_objects(&project, &at[..2])).await;
    assert_eq!(two, RequestCounts { get: 1, ..none });
    let three = requests_of(&store, store.read_objects(&project, &at)).await;
    assert_eq!(three, RequestCounts { get: 1, ..none });

    // Two frames with more than the gap between them: two requests. Asking for the one in
    // between as well makes them contiguous again.
    let wide = [
        sample(Object::Chunk(b"before the gap".to_vec())),
        incompressible(MAX_GAP as usize + 1),
        sample(Object::Chunk(b"after the gap".to_vec())),
    ];
    let wide_pack = pack_of(&wide);
    store.put_pack(&project, &wide_pack).await.unwrap();
    let far = locations(&wide_pack);
    assert!(far[2].offset - far[0].range().end > MAX_GAP);
    let apart = requests_of(&store, store.read_objects(&project, &[far[0], far[2]])).await;
    assert_eq!(apart, RequestCounts { get: 2, ..none });
    let through = requests_of(&store, store.read_objects(&project, &far)).await;
    assert_eq!(through, RequestCounts { get: 1, ..none });
    assert_reads(&store, &project, &far, &[&wide[0], &wide[1], &wide[2]]).await;

    // Objects of two packs: a request each.
    let both = requests_of(&store, store.read_objects(&project, &[at[0], far[0]])).await;
    assert_eq!(both, RequestCounts { get: 2, ..none });

    // A whole pack is one read; its contents two (the footer, then the contents).
    let whole = requests_of(&store, store.read_pack(&project, pack.id)).await;
    assert_eq!(whole, RequestCounts { get: 1, ..none });
    let contents = requests_of(&store, store.pack_contents(&project, pack.id)).await;
    assert_eq!(contents, RequestCounts { get: 2, ..none });
    eprintln!(
        "requests for a pack of 3 objects: put {}, read all {}, read whole {}, contents {}",
        put.total(),
        three.total(),
        whole.total(),
        contents.total()
    );
}

async fn pack_puts_are_idempotent(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let pack = pack_of(&samples());
    store.put_pack(&project, &pack).await.unwrap();
    // Again, and twice at once.
    store.put_pack(&project, &pack).await.unwrap();
    let (first, second) = tokio::join!(
        store.put_pack(&project, &pack),
        store.put_pack(&project, &pack)
    );
    first.unwrap();
    second.unwrap();
    let len = pack.bytes.len() as u64;
    assert_eq!(store.list_packs(&project).await.unwrap(), [(pack.id, len)]);
    assert_eq!(store.read_pack(&project, pack.id).await.unwrap(), pack);
}

async fn packs_list_and_delete(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let objects = samples();
    let (first, second) = (pack_of(&objects[..2]), pack_of(&objects[2..]));
    store.put_pack(&project, &first).await.unwrap();
    store.put_pack(&project, &second).await.unwrap();
    // Loose objects beside them are listed apart.
    store
        .put_many(&project, pairs(&objects[..1]))
        .await
        .unwrap();
    assert_eq!(store.list(&project).await.unwrap(), [objects[0].id]);

    let mut listed = store.list_packs(&project).await.unwrap();
    listed.sort();
    let mut expected = vec![
        (first.id, first.bytes.len() as u64),
        (second.id, second.bytes.len() as u64),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(
        store
            .list_packs(&ProjectId::random())
            .await
            .unwrap()
            .is_empty()
    );

    let absent = PackId::from_bytes([7; 32]);
    store
        .delete_packs(&project, &[first.id, absent])
        .await
        .unwrap();
    let len = second.bytes.len() as u64;
    assert_eq!(
        store.list_packs(&project).await.unwrap(),
        [(second.id, len)]
    );
    assert_eq!(store.pack_len(&project, first.id).await.unwrap(), None);
    for result in [
        store.read_pack(&project, first.id).await.map(|_| ()),
        store.pack_contents(&project, first.id).await.map(|_| ()),
        store
            .read_objects(&project, &locations(&first))
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(StoreError::MissingPack { pack, .. }) => assert_eq!(pack, first.id),
            other => panic!("expected a missing pack, got {other:?}"),
        }
    }
    assert_reads(&store, &project, &locations(&second), &[&objects[2]]).await;

    store
        .delete_packs(&project, &[first.id, second.id])
        .await
        .unwrap();
    assert!(store.list_packs(&project).await.unwrap().is_empty());
    assert_eq!(store.list(&project).await.unwrap(), [objects[0].id]);
}

async fn ranges_past_the_end_are_refused(store: ObjectStore, _tamper: Tamper) {
    let project = ProjectId::random();
    let objects = samples();
    let pack = pack_of(&objects);
    store.put_pack(&project, &pack).await.unwrap();
    let len = pack.bytes.len() as u64;
    let past_end = |start: u64, end: u64| {
        move |result: Result<Vec<Bytes>, StoreError>| match result {
            Err(StoreError::PackRange {
                pack: named,
                start: from,
                end: to,
                ..
            }) => {
                assert_eq!((named, from, to), (pack.id, start, end));
            }
            other => panic!("expected a range error for {start}..{end}, got {other:?}"),
        }
    };
    let backend = store.backend();
    // Across the end, starting at it, and well past it; beside a good range or alone.
    past_end(len - 2, len + 8)(
        backend
            .read_ranges(&project, &[(pack.id, 0..8), (pack.id, len - 2..len + 8)])
            .await,
    );
    past_end(len, len + 1)(
        backend
            .read_ranges(&project, &[(pack.id, len..len + 1)])
            .await,
    );
    let far = len + 10 * MAX_GAP;
    past_end(far, far + 1)(
        backend
            .read_ranges(&project, &[(pack.id, 0..8), (pack.id, far..far + 1)])
            .await,
    );

    // An object whose location runs past the end: the error names the pack.
    let mut beyond = locations(&pack)[2];
    beyond.offset = len - 4;
    let error = store.read_objects(&project, &[beyond]).await.unwrap_err();
    assert!(matches!(error, StoreError::PackRange { .. }), "{error:?}");
    assert!(error.to_string().contains(&pack.id.to_string()), "{error}");

    // A pack never stored is missing, not short.
    let never = PackId::from_bytes([9; 32]);
    assert!(matches!(
        backend.read_ranges(&project, &[(never, 0..8)]).await,
        Err(StoreError::MissingPack { pack, .. }) if pack == never
    ));
}

async fn a_flipped_byte_fails_only_its_object(store: ObjectStore, tamper: Tamper) {
    let project = ProjectId::random();
    let objects = samples();
    let pack = pack_of(&objects);
    store.put_pack(&project, &pack).await.unwrap();
    let at = locations(&pack);

    // One byte in the middle of the second frame.
    let mut bytes = pack.bytes.to_vec();
    bytes[(at[1].offset + u64::from(at[1].length) / 2) as usize] ^= 0x01;
    tamper(project, Stored::Pack(pack.id), bytes).await;

    let error = store.read_objects(&project, &at).await.unwrap_err();
    match &error {
        StoreError::Integrity { id, project: p, .. } => {
            assert_eq!((*id, *p), (objects[1].id, project));
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
    assert!(
        error.to_string().contains(&objects[1].id.to_string()),
        "{error}"
    );
    // The other objects of the pack still read, even in the same request as the bad one's
    // neighbours.
    assert_reads(
        &store,
        &project,
        &[at[0], at[2]],
        &[&objects[0], &objects[2]],
    )
    .await;
    // fsck sees exactly the one bad object.
    let inspected = store.inspect_objects(&project, &at).await.unwrap();
    let corrupt: Vec<bool> = inspected
        .iter()
        .map(|read| matches!(read, sync_server::store::Inspected::Corrupt(_)))
        .collect();
    assert_eq!(corrupt, [false, true, false]);
    // The whole pack no longer hashes to its name; its contents, at the tail, still read.
    match store.read_pack(&project, pack.id).await {
        Err(StoreError::PackIntegrity { pack: named, .. }) => assert_eq!(named, pack.id),
        other => panic!("expected a pack integrity error, got {other:?}"),
    }
    assert_eq!(
        store.pack_contents(&project, pack.id).await.unwrap(),
        pack.entries
    );

    // Damaged contents are caught by their digest.
    let mut bytes = pack.bytes.to_vec();
    let contents_start = at[2].range().end as usize;
    bytes[contents_start + 3] ^= 0x01;
    tamper(project, Stored::Pack(pack.id), bytes).await;
    assert!(matches!(
        store.pack_contents(&project, pack.id).await,
        Err(StoreError::PackIntegrity { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_and_s3_hold_the_same_packs_alike() {
    let Some(bucket) = TestBucket::create().await else {
        return;
    };
    let (dir, folder_backend, folder) = fs_store();
    let s3 = ObjectStore::new(bucket.backend.clone());
    let project = ProjectId::random();
    let mut objects = samples();
    objects.push(incompressible(MAX_GAP as usize * 2));
    objects.push(sample(Object::Chunk(b"last".to_vec())));
    let packs = [pack_of(&objects[..2]), pack_of(&objects[2..])];
    for store in [&folder, &s3] {
        for pack in &packs {
            store.put_pack(&project, pack).await.unwrap();
        }
    }

    // The layout: the S3 key, and the same path with one level of fan-out in the folder.
    let id = packs[0].id.to_string();
    assert_eq!(
        bucket.backend.pack_key(&project, &packs[0].id),
        format!("tenant/packs/{project}/{id}")
    );
    let path = folder_backend.pack_path(&project, &packs[0].id);
    assert_eq!(
        path,
        dir.path()
            .join("packs")
            .join(project.to_string())
            .join(&id[..2])
            .join(&id)
    );
    // What a crash between write and rename leaves behind is no pack.
    std::fs::write(path.parent().unwrap().join(".tmp-0123"), b"partial").unwrap();

    let all: Vec<PackLocation> = packs.iter().flat_map(locations).collect();
    let ranges: Vec<_> = packs
        .iter()
        .flat_map(|pack| {
            let len = pack.bytes.len() as u64;
            [
                (pack.id, 0..len),
                (pack.id, 3..40),
                (pack.id, len - 60..len),
            ]
        })
        .collect();
    let mut answers = Vec::new();
    for store in [&folder, &s3] {
        let mut listed = store.list_packs(&project).await.unwrap();
        listed.sort();
        let mut whole = Vec::new();
        let mut contents = Vec::new();
        for pack in &packs {
            whole.push(store.read_pack(&project, pack.id).await.unwrap().bytes);
            contents.push(store.pack_contents(&project, pack.id).await.unwrap());
        }
        let frames: Vec<Bytes> = store
            .read_objects(&project, &all)
            .await
            .unwrap()
            .into_iter()
            .map(|object| object.frame)
            .collect();
        let raw = store
            .backend()
            .read_ranges(&project, &ranges)
            .await
            .unwrap();
        answers.push((listed, whole, contents, frames, raw));
    }
    assert_eq!(answers[0], answers[1]);
    let (listed, whole, _, frames, _) = &answers[0];
    assert_eq!(listed.len(), 2);
    assert_eq!(whole[1], packs[1].bytes);
    let expected: Vec<&Bytes> = objects.iter().map(|sample| &sample.frame).collect();
    assert_eq!(frames.iter().collect::<Vec<_>>(), expected);
    bucket.remove().await;
}
