//! Pull, push, and the resume path (missing-objects query, upload, commit).
//!
//! # Push: verify everything, store children first, then move the head
//!
//! A push body is an object stream. Each frame is verified by the stream decoder as its last
//! byte arrives (hash, canonical form, limits, names, case collisions). Then:
//!
//! 1. closure: every child of every object is either earlier in the same upload or already
//!    stored (one batched `missing` call for the children outside the upload); the new root is
//!    a dir and present;
//! 2. consistency: a dir entry (or file chunk) pointing into the upload has the kind and size
//!    of the object it points at;
//! 3. the objects are stored in layers, leaves first, each layer after the one below it is
//!    durable, so the store's closure invariant holds at every instant, even if this process
//!    dies half way;
//! 4. the catalog commit, one compare-and-swap of the head.
//!
//! Nothing is stored when any check fails. A stale base answers `409 conflict` with the
//! current head and stores nothing; a retry with the same push id answers the original result.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use sync_protocol::diff::{Change, DiffError, DiffWalk, Side};
use sync_protocol::patch::{PatchError, Record, TreePatch, decode_content, records_of_changes};
use sync_protocol::stream::{Frame, Item, StreamDecoder, StreamEncoder, StreamError};
use sync_protocol::tree::{FileRef, Path};
use sync_protocol::wire::{
    self, MAX_MISSING_BODY, MAX_MISSING_IDS, MAX_RECORDS, OBJECT_COUNT_HEADER, OBJECTS_MEDIA_TYPE,
    ProblemCode, ROOT_HEADER, VERSION_HEADER,
};
use sync_protocol::{
    Dir, Object, ObjectId, ObjectKind, compress_object, decompress_object, verify_frame_of_kind,
};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::projects::{parse_id, unknown_version};
use super::{
    ApiRequest, authenticate, check_declared_length, check_media_type, json, next_chunk,
    parse_query, project_access, read_body, read_json,
};
use crate::app::App;
use crate::catalog::{
    CommitOutcome, CommitRequest, Project, ProjectId, PushId, Role, VersionNumber, empty_root,
};
use crate::events::head_changed;
use crate::metrics::Metrics;
use crate::problem::Problem;

/// Answers a commit outcome, publishing a new head to the event streams.
pub fn commit_answer(
    app: &App,
    project: ProjectId,
    outcome: CommitOutcome,
) -> Result<Response, Problem> {
    match outcome {
        CommitOutcome::Committed { version, replayed } => {
            if !replayed {
                Metrics::add(&app.metrics.pushes_committed, 1);
                app.events
                    .publish(project, head_changed(project, version.number, version.root));
                tracing::info!(%project, version = version.number, root = %version.root, "committed");
            }
            Ok(json(
                StatusCode::OK,
                &wire::Committed {
                    version: version.number,
                    root: version.root,
                    replayed,
                },
            ))
        }
        CommitOutcome::Conflict {
            head_version,
            head_root,
        } => {
            Metrics::add(&app.metrics.push_conflicts, 1);
            Err(conflict(head_version, head_root))
        }
    }
}

/// The `409 conflict` problem: the base is stale; pull, merge and push again.
pub fn conflict(head_version: VersionNumber, head_root: ObjectId) -> Problem {
    Problem::conflict(wire::Head {
        version: head_version,
        root: head_root,
    })
}

// Pull.

pub async fn pull(app: &App, mut request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Viewer).await?;
    let body: wire::PullRequest = read_json(&mut request).await?;
    let (version, want_root) = match body.want {
        None => (Some(project.head_version), project.head_root),
        Some(wire::Want::Version(number)) if number == project.head_version => {
            (Some(number), project.head_root)
        }
        Some(wire::Want::Version(number)) => {
            let version = app
                .catalog
                .version(project.id, number)
                .await?
                .ok_or_else(|| unknown_version(number))?;
            (Some(number), version.root)
        }
        Some(wire::Want::Root(text)) => (None, parse_id("want", &text)?),
    };
    let have = match &body.have {
        Some(text) => parse_id("have", text)?,
        None => empty_root(),
    };
    let (plan, against_have) = match plan_pull(app, project.id, have, want_root).await {
        // The client's base is not in this project (another server, a wiped store): send all.
        Err(PullError::Diff(DiffError::Missing {
            side: Side::Old, ..
        })) => (
            plan_pull(app, project.id, empty_root(), want_root).await,
            false,
        ),
        other => (other, true),
    };
    let PulledPlan { objects, changes } = plan.map_err(|error| error.into_problem(&want_root))?;
    let compact = body.records
        && against_have
        && have != empty_root()
        && !changes.is_empty()
        && changes.len() <= MAX_RECORDS;
    let encoder = if compact {
        encode_records(app, project.id, &objects, &changes).await?
    } else {
        let mut encoder = StreamEncoder::new();
        for (id, kind, frame) in &objects {
            encoder
                .push(*kind, id, frame)
                .map_err(|error| Problem::internal(format!("encoding a pull: {error}")))?;
        }
        encoder
    };
    let items = encoder.frame_count();
    Metrics::add(&app.metrics.pulls, 1);
    Metrics::add(&app.metrics.objects_served, u64::from(items));
    let mut response = Response::new(encoder.finish().into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OBJECTS_MEDIA_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(version) = version {
        headers.insert(VERSION_HEADER, HeaderValue::from(version));
    }
    if let Ok(value) = HeaderValue::from_str(&want_root.to_string()) {
        headers.insert(ROOT_HEADER, value);
    }
    headers.insert(OBJECT_COUNT_HEADER, HeaderValue::from(items));
    Ok(response)
}

/// A pull as change records: one per changed path, one-chunk files inline (as a delta against
/// the chunk the client had at that path when there was one), and the other new objects that
/// are not dirs (multi-chunk files and their chunks); the client rebuilds the dirs.
async fn encode_records(
    app: &App,
    project: ProjectId,
    objects: &[(ObjectId, ObjectKind, Bytes)],
    changes: &[Change],
) -> Result<StreamEncoder, Problem> {
    // Frames by id (`Bytes` clones share the buffer), for the blocking task below.
    let sent: HashMap<ObjectId, Bytes> = objects
        .iter()
        .map(|(id, _, frame)| (*id, frame.clone()))
        .collect();
    // The client's old chunk at each path that stays a one-chunk file: the delta dictionaries.
    let old_chunks: Vec<ObjectId> = changes
        .iter()
        .filter_map(|change| match change {
            Change::Modified { old, new, .. }
                if old.target == ObjectKind::Chunk
                    && new.target == ObjectKind::Chunk
                    && sent.contains_key(&new.id) =>
            {
                Some(old.id)
            }
            _ => None,
        })
        .collect();
    let dictionaries: HashMap<ObjectId, Vec<u8>> = app
        .store
        .get_objects(&project, &old_chunks)
        .await?
        .into_iter()
        .zip(&old_chunks)
        .filter_map(|(object, id)| Some((*id, object?.object.encode())))
        .collect();
    let objects = objects.to_vec();
    let changes = changes.to_vec();
    // Compression is CPU work: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut inlined = HashSet::new();
        let records = records_of_changes(&changes, |_, new, old| {
            // Only one-chunk files go inline; a file object and its chunks go as frames.
            if new.target != ObjectKind::Chunk {
                return None;
            }
            let frame = sent.get(&new.id)?;
            let encoded = decompress_object(
                frame,
                sync_protocol::compress::max_encoded_len(ObjectKind::Chunk),
            )
            .ok()?;
            let dictionary = old
                .filter(|old| old.target == ObjectKind::Chunk)
                .and_then(|old| dictionaries.get(&old.id));
            inlined.insert(new.id);
            Some((
                dictionary.is_some(),
                sync_protocol::patch::encode_content(&encoded, dictionary.map(Vec::as_slice)),
            ))
        });
        let mut encoder = StreamEncoder::new();
        let encode_error =
            |error: StreamError| Problem::internal(format!("encoding a pull: {error}"));
        for record in &records {
            encoder.push_record(record).map_err(encode_error)?;
        }
        for (id, kind, frame) in &objects {
            if *kind == ObjectKind::Dir || inlined.contains(id) {
                continue;
            }
            encoder.push(*kind, id, frame).map_err(encode_error)?;
        }
        Ok(encoder)
    })
    .await
    .map_err(Problem::internal)?
}

#[derive(Debug)]
enum PullError {
    Diff(DiffError),
    Problem(Problem),
}

impl PullError {
    fn into_problem(self, want_root: &ObjectId) -> Problem {
        match self {
            PullError::Problem(problem) => problem,
            PullError::Diff(DiffError::Missing { id, .. }) if id == *want_root => {
                Problem::missing_object(&id, "the wanted root is not stored in this project")
            }
            PullError::Diff(DiffError::WrongKind { id, .. }) if id == *want_root => {
                Problem::invalid_field("want", "the wanted root is not a dir")
            }
            // Anything else means a stored version is not whole: the store broke its invariant.
            PullError::Diff(error) => {
                Problem::integrity(format!("a stored version is not whole: {error}"))
            }
        }
    }
}

impl From<crate::store::StoreError> for PullError {
    fn from(error: crate::store::StoreError) -> Self {
        PullError::Problem(error.into())
    }
}

/// The objects a client with `have` needs for `want`, children first, with their stored frames.
/// Reads nothing when `have == want`; otherwise one batched read per level of changed dirs, one
/// for changed file objects, and one for the rest.
/// What a pull sends: the new objects with their frames, children first, and the changed paths.
struct PulledPlan {
    objects: Vec<(ObjectId, ObjectKind, Bytes)>,
    changes: Vec<Change>,
}

async fn plan_pull(
    app: &App,
    project: ProjectId,
    have: ObjectId,
    want: ObjectId,
) -> Result<PulledPlan, PullError> {
    let mut walk = DiffWalk::new(have, want);
    let mut read: HashMap<ObjectId, (ObjectKind, Bytes)> = HashMap::new();
    while !walk.is_done() {
        let ids = walk.wants().to_vec();
        let objects = app.store.get_objects(&project, &ids).await?;
        for (id, object) in ids.into_iter().zip(objects) {
            let Some(object) = object else {
                return Err(PullError::Diff(walk.missing(&id)));
            };
            read.insert(id, (object.object.kind(), object.frame.clone()));
            walk.provide(id, object.object).map_err(PullError::Diff)?;
        }
    }
    let diff = walk.finish().map_err(PullError::Diff)?;
    let empty = empty_root();
    if diff.new_objects.contains(&empty) {
        // Never required in the store: every node can make it.
        let frame = compress_object(&Object::Dir(Dir::empty()).encode());
        read.insert(empty, (ObjectKind::Dir, Bytes::from(frame)));
    }
    let unread: Vec<ObjectId> = diff
        .new_objects
        .iter()
        .filter(|id| !read.contains_key(id))
        .copied()
        .collect();
    let objects = app.store.get_objects(&project, &unread).await?;
    for (id, object) in unread.into_iter().zip(objects) {
        let Some(object) = object else {
            return Err(PullError::Diff(DiffError::Missing {
                id,
                side: Side::New,
            }));
        };
        read.insert(id, (object.object.kind(), object.frame));
    }
    let mut objects = Vec::with_capacity(diff.new_objects.len());
    for id in diff.new_objects {
        if let Some((kind, frame)) = read.remove(&id) {
            objects.push((id, kind, frame));
        }
    }
    Ok(PulledPlan {
        objects,
        changes: diff.changes,
    })
}

// Push and upload.

/// One verified object of an upload.
#[derive(Debug)]
struct Received {
    id: ObjectId,
    kind: ObjectKind,
    frame: Bytes,
    /// Uncompressed content size: a chunk's length, a file's size, 0 for dirs.
    size: u64,
    /// 0 for chunks; else one more than its tallest child in the same upload.
    height: u32,
}

/// The verified objects of one upload, in stream order, and the children they reference that
/// the upload does not hold (the store must have them).
#[derive(Debug, Default)]
struct Upload {
    objects: Vec<Received>,
    index: HashMap<ObjectId, usize>,
    outside: Vec<ObjectId>,
    outside_seen: HashSet<ObjectId>,
}

impl Upload {
    /// Adds one verified frame, checking each child that is already in the upload.
    fn add(&mut self, frame: Frame) -> Result<(), Problem> {
        if self.index.contains_key(&frame.id) {
            return Ok(());
        }
        // (child id, the kind it must be, the size it must have)
        let children: Vec<(ObjectId, ObjectKind, u64, String)> = match &frame.object {
            Object::Chunk(_) => Vec::new(),
            Object::File(file) => file
                .chunks()
                .iter()
                .enumerate()
                .map(|(index, chunk)| {
                    (
                        chunk.id,
                        ObjectKind::Chunk,
                        u64::from(chunk.len),
                        format!("chunk {index}"),
                    )
                })
                .collect(),
            Object::Dir(dir) => dir
                .entries()
                .iter()
                .map(|entry| {
                    (
                        entry.id,
                        entry.target,
                        entry.size,
                        format!("entry {:?}", entry.name.as_str()),
                    )
                })
                .collect(),
        };
        let mut height = 0;
        for (child, kind, size, what) in children {
            match self.index.get(&child) {
                Some(&position) => {
                    let received = &self.objects[position];
                    let size_matters = kind != ObjectKind::Dir;
                    if received.kind != kind || (size_matters && received.size != size) {
                        return Err(Problem::new(ProblemCode::EntryMismatch)
                        .with_detail(format!(
                            "{what} of {} {} says {} of {size} bytes, the object {child} is a {} of {} bytes",
                            frame.kind.as_str(),
                            frame.id,
                            kind.as_str(),
                            received.kind.as_str(),
                            received.size
                        ))
                        .with_id(frame.id));
                    }
                    height = height.max(received.height + 1);
                }
                None => {
                    height = height.max(1);
                    if self.outside_seen.insert(child) {
                        self.outside.push(child);
                    }
                }
            }
        }
        let size = match &frame.object {
            Object::Chunk(bytes) => bytes.len() as u64,
            Object::File(file) => file.size(),
            Object::Dir(_) => 0,
        };
        self.index.insert(frame.id, self.objects.len());
        self.objects.push(Received {
            id: frame.id,
            kind: frame.kind,
            frame: Bytes::from(frame.compressed),
            size,
            height,
        });
        Ok(())
    }
}

/// Reads and verifies an object-stream body, within the upload limit. Change records are
/// returned when `records` is set (a push) and refused otherwise (an upload of objects).
async fn receive(
    app: &App,
    request: &mut ApiRequest,
    records: bool,
) -> Result<(Upload, Vec<Record>), Problem> {
    let limit = app.limits.max_upload_bytes;
    check_declared_length(&request.headers, limit)?;
    check_media_type(&request.headers, OBJECTS_MEDIA_TYPE)?;
    let mut decoder = StreamDecoder::new();
    let mut upload = Upload::default();
    let mut changes = Vec::new();
    let mut received: u64 = 0;
    while let Some(chunk) = next_chunk(&mut request.body).await? {
        let chunk = chunk.map_err(|error| {
            Problem::new(ProblemCode::TruncatedStream)
                .with_detail(format!("reading the body failed: {error}"))
        })?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(Problem::body_too_large(limit));
        }
        // Decompressing and hashing is CPU work: keep it off the async workers.
        let (returned, items) = tokio::task::spawn_blocking(move || {
            decoder.feed(&chunk);
            let mut items = Vec::new();
            let result = loop {
                match decoder.next_item() {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break Ok(()),
                    Err(error) => break Err(error),
                }
            };
            (decoder, result.map(|()| items))
        })
        .await
        .map_err(Problem::internal)?;
        decoder = returned;
        for item in items? {
            match item {
                Item::Object(frame) => upload.add(frame)?,
                Item::Record(item) if records => changes.push(item.record),
                Item::Record(item) => {
                    return Err(StreamError::UnexpectedRecord {
                        index: item.index,
                        offset: item.offset,
                    }
                    .into());
                }
            }
        }
    }
    decoder.finish()?;
    Ok((upload, changes))
}

/// A `422` about change records that do not fit the base they were sent against.
fn record_problem(detail: impl std::fmt::Display) -> Problem {
    Problem::new(ProblemCode::BadRecords).with_detail(detail)
}

fn patch_problem(error: PatchError) -> Problem {
    record_problem(error)
}

/// Turns a push's change records into objects of the upload: rebuilds the new dirs from the
/// base's dirs on the changed paths ([`TreePatch`]), decodes inline content (a delta against
/// the base's chunk at the same path when so marked), and checks that the result is the root
/// the push names. Reads one batch of base dirs per level and one batch of base chunks.
async fn apply_records(
    app: &App,
    project: ProjectId,
    base_root: ObjectId,
    root: ObjectId,
    records: Vec<Record>,
    upload: &mut Upload,
) -> Result<(), Problem> {
    let paths: Vec<Path> = records.iter().map(|record| record.path().clone()).collect();
    let mut patch = TreePatch::new(base_root, paths).map_err(patch_problem)?;
    while !patch.is_done() {
        let ids = patch.wants().to_vec();
        let objects = app.store.get_objects(&project, &ids).await?;
        for (id, object) in ids.into_iter().zip(objects) {
            match object.map(|object| object.object) {
                Some(Object::Dir(dir)) => patch.provide(id, dir).map_err(patch_problem)?,
                // The base is a stored version: its dirs are whole (the closure invariant).
                _ => {
                    return Err(Problem::internal(format!(
                        "dir {id} of the base version is not stored"
                    )));
                }
            }
        }
    }
    let mut dictionary_ids = Vec::new();
    for record in &records {
        if let Record::Content {
            path, delta: true, ..
        } = record
        {
            match patch.base_entry(path) {
                Some(entry) if entry.target == ObjectKind::Chunk => dictionary_ids.push(entry.id),
                _ => {
                    return Err(record_problem(format!(
                        "{path}: a delta against the base, but the base has no one-chunk file there"
                    )));
                }
            }
        }
    }
    let dictionaries: Vec<Vec<u8>> = app
        .store
        .get_objects(&project, &dictionary_ids)
        .await?
        .into_iter()
        .zip(&dictionary_ids)
        .map(|(object, id)| {
            object
                .map(|object| object.object.encode())
                .ok_or_else(|| Problem::internal(format!("chunk {id} of the base is not stored")))
        })
        .collect::<Result<_, _>>()?;
    // Decompressing, hashing and building dirs is CPU work: keep it off the async workers.
    let built = tokio::task::spawn_blocking(move || build_records(patch, records, dictionaries))
        .await
        .map_err(Problem::internal)??;
    if built.root != root {
        return Err(record_problem(format!(
            "applied to the base, the records give root {}, not the root {root} the push names",
            built.root
        )));
    }
    for frame in built.frames {
        upload.add(frame)?;
    }
    Ok(())
}

/// What the records of a push stand for: the inline chunks and the new dirs, children first.
struct BuiltRecords {
    root: ObjectId,
    frames: Vec<Frame>,
}

fn object_frame(id: ObjectId, object: Object, encoded: &[u8]) -> Frame {
    Frame {
        index: 0,
        offset: 0,
        kind: object.kind(),
        id,
        object,
        compressed: compress_object(encoded),
    }
}

fn build_records(
    patch: TreePatch,
    records: Vec<Record>,
    dictionaries: Vec<Vec<u8>>,
) -> Result<BuiltRecords, Problem> {
    let mut dictionaries = dictionaries.into_iter();
    let mut changes: BTreeMap<Path, Option<FileRef>> = BTreeMap::new();
    let mut frames = Vec::new();
    for record in records {
        match record {
            Record::Remove { path } => {
                changes.insert(path, None);
            }
            Record::Entry { path, entry } => {
                changes.insert(path, Some(entry));
            }
            Record::Content {
                path,
                kind,
                delta,
                zstd,
            } => {
                let dictionary = if delta { dictionaries.next() } else { None };
                let decoded =
                    decode_content(kind, &zstd, dictionary.as_deref()).map_err(|error| {
                        let detail = format!("{path}: inline content: {error}");
                        Problem::from(error).with_detail(detail)
                    })?;
                changes.insert(path, Some(decoded.entry));
                frames.push(object_frame(
                    decoded.entry.id,
                    decoded.chunk,
                    &decoded.encoded,
                ));
            }
        }
    }
    let patched = patch.finish(&changes).map_err(patch_problem)?;
    for (id, object) in patched.dirs {
        let encoded = object.encode();
        frames.push(object_frame(id, object, &encoded));
    }
    Ok(BuiltRecords {
        root: patched.root,
        frames,
    })
}

/// Checks the upload's closure against the store and stores it, leaves first.
async fn store_upload(app: &App, project: ProjectId, upload: Upload) -> Result<(), Problem> {
    // The empty dir is every project's version 0 root and is never required to be stored.
    let empty = empty_root();
    let outside: Vec<ObjectId> = upload
        .outside
        .iter()
        .filter(|id| **id != empty)
        .copied()
        .collect();
    let missing = app.store.missing(&project, &outside).await?;
    if !missing.is_empty() {
        return Err(Problem::missing_objects(
            &missing,
            format!(
                "{} referenced objects are neither earlier in the upload nor stored; send them first",
                missing.len()
            ),
        ));
    }
    let mut layers: Vec<Vec<(ObjectId, Bytes)>> = Vec::new();
    let mut bytes = 0u64;
    let count = upload.objects.len() as u64;
    for object in upload.objects {
        let height = object.height as usize;
        if layers.len() <= height {
            layers.resize_with(height + 1, Vec::new);
        }
        bytes += object.frame.len() as u64;
        layers[height].push((object.id, object.frame));
    }
    app.store.put_layers(&project, layers).await?;
    Metrics::add(&app.metrics.objects_stored, count);
    Metrics::add(&app.metrics.object_bytes_stored, bytes);
    Ok(())
}

/// Checks that `root` is a dir, from the upload or (one read) from the store.
async fn check_root(
    app: &App,
    project: ProjectId,
    root: ObjectId,
    upload: Option<&Upload>,
) -> Result<(), Problem> {
    if let Some(upload) = upload
        && let Some(&position) = upload.index.get(&root)
    {
        return if upload.objects[position].kind == ObjectKind::Dir {
            Ok(())
        } else {
            Err(Problem::invalid_field("root", "the root must be a dir"))
        };
    }
    if root == empty_root() {
        return Ok(());
    }
    match app
        .store
        .get_objects(&project, &[root])
        .await?
        .pop()
        .flatten()
    {
        Some(object) if object.object.kind() == ObjectKind::Dir => Ok(()),
        Some(_) => Err(Problem::invalid_field("root", "the root must be a dir")),
        None => Err(Problem::missing_object(
            &root,
            "the root is neither in the upload nor stored",
        )),
    }
}

/// Checks every path the new version adds against the format's path limits (depth and length),
/// which no single object can carry: a dir does not know how deep it sits. The diff from the
/// base enters only what changed, so this reads the base's dirs along changed paths and any
/// stored dir that the new version places somewhere new (a moved folder); dirs of the upload
/// are decoded from memory. It stops before the diff's file-object phase, which paths don't need.
async fn check_paths(
    app: &App,
    project: ProjectId,
    base_root: ObjectId,
    root: ObjectId,
    upload: Option<&Upload>,
) -> Result<(), Problem> {
    let mut walk = DiffWalk::new(base_root, root);
    while !walk.is_done() && walk.wanted_kind() == Some(ObjectKind::Dir) {
        let ids = walk.wants().to_vec();
        let mut from_store = Vec::new();
        for id in ids {
            let received = upload.and_then(|upload| {
                upload
                    .index
                    .get(&id)
                    .map(|&position| &upload.objects[position])
            });
            match received {
                Some(received) => {
                    let (object, _) = verify_frame_of_kind(&id, received.kind, &received.frame)?;
                    walk.provide(id, object).map_err(path_problem)?;
                }
                None => from_store.push(id),
            }
        }
        let objects = app.store.get_objects(&project, &from_store).await?;
        for (id, object) in from_store.into_iter().zip(objects) {
            let object = object.ok_or_else(|| path_problem(walk.missing(&id)))?;
            walk.provide(id, object.object).map_err(path_problem)?;
        }
    }
    Ok(())
}

/// A diff error met while checking a pushed tree's paths.
fn path_problem(error: DiffError) -> Problem {
    match error {
        DiffError::Path(error) => Problem::new(ProblemCode::BadPath).with_detail(error),
        DiffError::WrongKind { id, .. } => Problem::new(ProblemCode::EntryMismatch)
            .with_detail(&error)
            .with_id(id),
        DiffError::Missing { id, .. } => Problem::missing_object(
            &id,
            "the new version references an object that is not stored",
        ),
        other => Problem::internal(other),
    }
}

/// Moves the head, after a cheap look at it: a base that is already stale cannot commit, so
/// the catalog is asked first (it answers a replay or a conflict) and nothing is stored.
///
/// A push's change records (`records`, empty otherwise) are applied to the head here, once it
/// is known to be the push's base: against a stale base they mean nothing.
async fn commit_after_store(
    app: &App,
    project: &Project,
    commit: CommitRequest,
    mut upload: Option<Upload>,
    records: Vec<Record>,
) -> Result<Response, Problem> {
    let current = app
        .catalog
        .project(project.id)
        .await?
        .ok_or_else(Problem::not_found)?;
    if current.head_version != commit.base_version {
        let outcome = app.catalog.commit(commit).await?;
        return commit_answer(app, project.id, outcome);
    }
    if !records.is_empty() {
        let upload = upload.get_or_insert_with(Upload::default);
        apply_records(
            app,
            project.id,
            current.head_root,
            commit.root,
            records,
            upload,
        )
        .await?;
    }
    check_root(app, project.id, commit.root, upload.as_ref()).await?;
    check_paths(
        app,
        project.id,
        current.head_root,
        commit.root,
        upload.as_ref(),
    )
    .await?;
    if let Some(upload) = upload {
        store_upload(app, project.id, upload).await?;
    }
    let outcome = app.catalog.commit(commit).await?;
    commit_answer(app, project.id, outcome)
}

pub async fn push(app: &App, mut request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Editor).await?;
    let query: wire::PushQuery = parse_query(&request)?;
    let commit = CommitRequest {
        project: project.id,
        push_id: PushId::new(&query.push_id)?,
        base_version: query.base_version,
        root: parse_id("root", &query.root)?,
        author: caller.account.id,
        message: query.message,
    };
    let (upload, records) = receive(app, &mut request, true).await?;
    commit_after_store(app, &project, commit, Some(upload), records).await
}

pub async fn upload(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Editor).await?;
    let (upload, _) = receive(app, &mut request, false).await?;
    let received = upload.objects.len();
    store_upload(app, project.id, upload).await?;
    Ok(json(StatusCode::OK, &wire::UploadAnswer { received }))
}

pub async fn commit(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Editor).await?;
    let body: wire::Commit = read_json(&mut request).await?;
    let commit = CommitRequest {
        project: project.id,
        push_id: PushId::new(&body.push_id)?,
        base_version: body.base_version,
        root: parse_id("root", &body.root)?,
        author: caller.account.id,
        message: body.message,
    };
    commit_after_store(app, &project, commit, None, Vec::new()).await
}

pub async fn missing(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Viewer).await?;
    check_declared_length(&request.headers, MAX_MISSING_BODY)?;
    let bytes = read_body(&mut request.body, MAX_MISSING_BODY).await?;
    let body: wire::MissingQuery = serde_json::from_slice(&bytes).map_err(Problem::bad_json)?;
    if body.ids.len() > MAX_MISSING_IDS {
        return Err(Problem::invalid_field(
            "ids",
            format!("at most {MAX_MISSING_IDS} ids per query"),
        ));
    }
    let ids = body
        .ids
        .iter()
        .map(|text| parse_id("ids", text))
        .collect::<Result<Vec<_>, _>>()?;
    let missing = app.store.missing(&project.id, &ids).await?;
    Ok(json(StatusCode::OK, &wire::MissingAnswer { missing }))
}
