//! A deterministic in-memory simulation of the sync protocol: one server, several clients,
//! messages as Rust values, no sockets, no threads, no clock (quinn-proto's `Pair` in spirit).
//!
//! The server is not a model: it runs the protocol's own server half, the push acceptor
//! (`sync_protocol::accept`) and the pull responder (`sync_protocol::respond`), over an
//! in-memory object store, exactly as `sync-server`'s handlers drive them over S3 or a folder.
//! Pushes and uploads travel as real object streams, decoded and verified by the stream decoder.
//! Only the catalog (head, history, push receipts) is modelled, as a compare-and-swap.
//!
//! Every scenario counts round trips, objects and estimated bytes on the wire and asserts them:
//! the protocol's promises (one round trip per push and pull, only changed objects travel, a
//! no-op pull reads nothing, a retried push is not applied twice, a resumed upload sends only what
//! is missing) are checked here before any server exists.
//!
//! Message sizes are estimates: a fixed allowance for each message's control fields, 32 bytes per
//! id, and for each object the frame header of the object stream plus its zstd frame, exactly as
//! `compress_object` produces it.

use std::collections::{BTreeMap, HashMap, HashSet};

use sync_protocol::accept::{ObjectInfo, PushAcceptor, Rejection, Step};
use sync_protocol::checks::noise;
use sync_protocol::chunking;
use sync_protocol::diff::diff_listings;
use sync_protocol::negotiate::{NEGOTIATE_BATCH_SIZE, answer_question, negotiate};
use sync_protocol::object::{EntryKind, Object, ObjectKind};
use sync_protocol::patch::{Record, apply_records, records_push};
use sync_protocol::plan::plan_push;
use sync_protocol::respond::{PullResponder, PullStep, StoredObject};
use sync_protocol::stream::{Item, StreamDecoder, StreamEncoder};
use sync_protocol::tree::{
    FileRef, Listing, MemoryObjects, ObjectSource, Path, build_tree, empty_dir_id, flatten,
    references,
};
use sync_protocol::wire;
use sync_protocol::{ObjectId, compress_object, verify_frame};

/// Control fields of one message (ids, versions, push id, lengths), as a flat allowance.
const CONTROL_BYTES: usize = 64;
/// Per object in a stream: kind, id and frame length before the zstd frame.
const FRAME_HEADER_BYTES: usize = 1 + 32 + 4;

/// One object on the wire: its id and zstd frame.
#[derive(Debug, Clone)]
struct WireObject {
    id: ObjectId,
    kind: ObjectKind,
    frame: Vec<u8>,
}

impl WireObject {
    fn of(id: ObjectId, object: &Object) -> Self {
        Self {
            id,
            kind: object.kind(),
            frame: compress_object(&object.encode()),
        }
    }
}

/// An object stream of `records` then `objects`, as a client writes it.
fn stream_of(records: &[Record], objects: &[WireObject]) -> Vec<u8> {
    let mut encoder = StreamEncoder::new();
    for record in records {
        encoder.push_record(record).expect("a record");
    }
    for object in objects {
        encoder
            .push(object.kind, &object.id, &object.frame)
            .expect("a frame");
    }
    encoder.finish()
}

#[derive(Debug, Clone)]
enum Request {
    /// Pull the head; the client has `have_root`, and can apply change records when `records`.
    Pull { have_root: ObjectId, records: bool },
    /// Objects (and, in place of the dirs, change records) committed as `new_root` on
    /// `base_version`.
    Push {
        push_id: u64,
        base_version: u64,
        new_root: ObjectId,
        records: Vec<Record>,
        objects: Vec<WireObject>,
    },
    /// Objects stored without a commit: one batch of a large push.
    Upload { objects: Vec<WireObject> },
    /// Commits a root whose objects are all stored.
    Commit {
        push_id: u64,
        base_version: u64,
        new_root: ObjectId,
    },
    /// "Which of these ids are missing?"
    Missing { ids: Vec<ObjectId> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Response {
    Pulled {
        version: u64,
        root: ObjectId,
        records: Vec<Record>,
        objects: Vec<(ObjectId, Vec<u8>)>,
    },
    Committed {
        version: u64,
    },
    Uploaded,
    Conflict {
        head_version: u64,
        head_root: ObjectId,
    },
    Missing {
        ids: Vec<ObjectId>,
    },
    /// A refusal, by its problem code.
    Rejected(wire::ProblemCode),
}

fn objects_bytes<'a>(frames: impl Iterator<Item = &'a Vec<u8>>) -> usize {
    frames.map(|frame| FRAME_HEADER_BYTES + frame.len()).sum()
}

fn records_bytes(records: &[Record]) -> usize {
    let mut encoder = StreamEncoder::new();
    for record in records {
        encoder.push_record(record).expect("a record");
    }
    // The stream's own header and trailer are in the control allowance.
    encoder.finish().len() - stream_of(&[], &[]).len()
}

impl Request {
    fn wire_size(&self) -> usize {
        CONTROL_BYTES
            + match self {
                Self::Pull { .. } | Self::Commit { .. } => 0,
                Self::Push {
                    objects, records, ..
                } => objects_bytes(objects.iter().map(|o| &o.frame)) + records_bytes(records),
                Self::Upload { objects } => objects_bytes(objects.iter().map(|o| &o.frame)),
                Self::Missing { ids } => 32 * ids.len(),
            }
    }

    fn object_count(&self) -> usize {
        match self {
            Self::Push { objects, .. } | Self::Upload { objects } => objects.len(),
            _ => 0,
        }
    }
}

impl Response {
    fn wire_size(&self) -> usize {
        CONTROL_BYTES
            + match self {
                Self::Pulled {
                    objects, records, ..
                } => objects_bytes(objects.iter().map(|(_, f)| f)) + records_bytes(records),
                Self::Missing { ids } => 32 * ids.len(),
                _ => 0,
            }
    }

    fn object_count(&self) -> usize {
        match self {
            Self::Pulled { objects, .. } => objects.len(),
            _ => 0,
        }
    }
}

/// The server: an object store driven by the protocol's acceptor and responder, and a catalog
/// modelled as a head, a history and push receipts.
#[derive(Debug, Default)]
struct SimServer {
    store: HashMap<ObjectId, StoredObject>,
    head_version: u64,
    head_root: Option<ObjectId>,
    /// (version, root, parent version).
    history: Vec<(u64, ObjectId, u64)>,
    /// Push id to the answer of the push that committed.
    receipts: HashMap<u64, Response>,
    /// Objects read from the store (by the acceptor and the responder).
    reads: usize,
    /// Kind-and-size lookups of stored objects.
    stats: usize,
    /// Objects newly written to the store.
    writes: usize,
}

impl SimServer {
    fn new() -> Self {
        Self::default()
    }

    fn head_root(&self) -> ObjectId {
        self.head_root.unwrap_or_else(empty_dir_id)
    }

    fn has(&self, id: &ObjectId) -> bool {
        self.store.contains_key(id)
    }

    /// Every stored object, decoded: what a test walks.
    fn objects(&self) -> MemoryObjects {
        let mut objects = MemoryObjects::new();
        objects.extend(
            self.store
                .iter()
                .map(|(id, stored)| (*id, stored.object.clone())),
        );
        objects
    }

    fn handle(&mut self, request: Request) -> Option<Response> {
        Some(match request {
            Request::Pull { have_root, records } => self.pull(have_root, records),
            Request::Missing { ids } => {
                let empty = empty_dir_id();
                match answer_question(&ids, |id| *id == empty || self.has(id)) {
                    Ok(ids) => Response::Missing { ids },
                    Err(_) => Response::Rejected(wire::ProblemCode::InvalidField),
                }
            }
            Request::Push {
                push_id,
                base_version,
                new_root,
                records,
                objects,
            } => {
                let stream = stream_of(&records, &objects);
                self.commit(push_id, base_version, new_root, Some(&stream))
            }
            Request::Commit {
                push_id,
                base_version,
                new_root,
            } => self.commit(push_id, base_version, new_root, None),
            Request::Upload { objects } => {
                let mut acceptor = PushAcceptor::upload();
                let accepted = receive(&mut acceptor, &stream_of(&[], &objects))
                    .and_then(|()| self.accept(acceptor));
                match accepted {
                    Ok(()) => Response::Uploaded,
                    Err(code) => Response::Rejected(code),
                }
            }
        })
    }

    /// A push or commit: replayed by its receipt, refused on a stale base before anything is
    /// read, else accepted (checked and stored) and committed by compare-and-swap.
    fn commit(
        &mut self,
        push_id: u64,
        base_version: u64,
        new_root: ObjectId,
        stream: Option<&[u8]>,
    ) -> Response {
        if let Some(receipt) = self.receipts.get(&push_id) {
            return receipt.clone();
        }
        if base_version != self.head_version {
            return Response::Conflict {
                head_version: self.head_version,
                head_root: self.head_root(),
            };
        }
        let mut acceptor = PushAcceptor::version(self.head_root(), new_root);
        let accepted = match stream {
            Some(stream) => receive(&mut acceptor, stream),
            None => Ok(()),
        }
        .and_then(|()| self.accept(acceptor));
        if let Err(code) = accepted {
            return Response::Rejected(code);
        }
        self.head_version += 1;
        self.head_root = Some(new_root);
        self.history
            .push((self.head_version, new_root, base_version));
        let answer = Response::Committed {
            version: self.head_version,
        };
        self.receipts.insert(push_id, answer.clone());
        answer
    }

    /// Drives the acceptor over the store, as the server's handlers do.
    fn accept(&mut self, mut acceptor: PushAcceptor) -> Result<(), wire::ProblemCode> {
        let refused = |rejection: Rejection| problem_code(&wire::Problem::from(&rejection));
        loop {
            match acceptor.step().map_err(refused)? {
                Step::Read(ids) => {
                    for id in ids {
                        self.reads += 1;
                        let object = self.store.get(&id).map(|stored| stored.object.clone());
                        acceptor.provide(id, object).map_err(refused)?;
                    }
                }
                Step::Stat(ids) => {
                    for id in ids {
                        self.stats += 1;
                        let info = self
                            .store
                            .get(&id)
                            .map(|stored| ObjectInfo::of(&stored.object));
                        acceptor.provide_info(id, info).map_err(refused)?;
                    }
                }
                Step::Compute => acceptor.compute().map_err(refused)?,
                Step::Store(layers) => {
                    for sync_protocol::accept::ToStore { id, frame, .. } in
                        layers.into_iter().flatten()
                    {
                        // A store never overwrites; each layer is whole before the next.
                        if self.store.contains_key(&id) {
                            continue;
                        }
                        let (object, _) =
                            verify_frame(&id, &frame).expect("accepted frames verify");
                        for child in references(&object) {
                            assert!(
                                child == empty_dir_id() || self.has(&child),
                                "{id} stored before its child {child}"
                            );
                        }
                        self.store.insert(id, StoredObject { object, frame });
                        self.writes += 1;
                    }
                }
                Step::Done(_) => return Ok(()),
            }
        }
    }

    fn pull(&mut self, have_root: ObjectId, records: bool) -> Response {
        let want = self.head_root();
        let mut responder = PullResponder::new(have_root, want, records);
        let answer = loop {
            match responder.step() {
                Ok(PullStep::Read(ids)) => {
                    for id in ids {
                        self.reads += 1;
                        let object = self.store.get(&id).cloned();
                        if let Err(rejection) = responder.provide(id, object) {
                            return Response::Rejected(problem_code(&wire::Problem::from(
                                &rejection,
                            )));
                        }
                    }
                }
                Ok(PullStep::Compute) => match responder.compute() {
                    Ok(answer) => break answer,
                    Err(rejection) => {
                        return Response::Rejected(problem_code(&wire::Problem::from(&rejection)));
                    }
                },
                Err(rejection) => {
                    return Response::Rejected(problem_code(&wire::Problem::from(&rejection)));
                }
            }
        };
        let (records, objects) = decode_answer(&answer.stream);
        Response::Pulled {
            version: self.head_version,
            root: want,
            records,
            objects,
        }
    }
}

fn problem_code(problem: &wire::Problem) -> wire::ProblemCode {
    problem.code().expect("the server answers known codes")
}

/// Decodes a request body into the acceptor, as the server's `receive` does.
fn receive(acceptor: &mut PushAcceptor, stream: &[u8]) -> Result<(), wire::ProblemCode> {
    let mut decoder = StreamDecoder::new();
    decoder.feed(stream);
    let code = |problem: wire::Problem| problem_code(&problem);
    while let Some(item) = decoder
        .next_item()
        .map_err(|error| code(wire::Problem::from(&error)))?
    {
        acceptor
            .receive(item)
            .map_err(|rejection| code(wire::Problem::from(&rejection)))?;
    }
    decoder
        .finish()
        .map_err(|error| code(wire::Problem::from(&error)))?;
    Ok(())
}

/// A pull answer's records and frames, verified by the stream decoder as a client reads it.
fn decode_answer(stream: &[u8]) -> (Vec<Record>, Vec<(ObjectId, Vec<u8>)>) {
    let mut decoder = StreamDecoder::new();
    decoder.feed(stream);
    let mut records = Vec::new();
    let mut objects = Vec::new();
    while let Some(item) = decoder.next_item().expect("the server sends valid streams") {
        match item {
            Item::Object(frame) => objects.push((frame.id, frame.compressed)),
            Item::Record(item) => records.push(item.record),
        }
    }
    decoder.finish().expect("a whole stream");
    (records, objects)
}

/// The wire between clients and the server: counts what crosses it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Wire {
    round_trips: usize,
    bytes_up: usize,
    bytes_down: usize,
    objects_up: usize,
    objects_down: usize,
}

impl Wire {
    /// One round trip. `None` when the answer was lost (the server may have acted on it).
    fn call(&mut self, server: &mut SimServer, request: Request) -> Option<Response> {
        self.round_trips += 1;
        self.bytes_up += request.wire_size();
        self.objects_up += request.object_count();
        let response = server.handle(request)?;
        self.bytes_down += response.wire_size();
        self.objects_down += response.object_count();
        Some(response)
    }

    /// One round trip whose answer the client never sees; returns it for the test to compare.
    fn call_answer_lost(&mut self, server: &mut SimServer, request: Request) -> Option<Response> {
        self.round_trips += 1;
        self.bytes_up += request.wire_size();
        self.objects_up += request.object_count();
        server.handle(request)
    }

    fn since(&self, before: &Wire) -> Wire {
        Wire {
            round_trips: self.round_trips - before.round_trips,
            bytes_up: self.bytes_up - before.bytes_up,
            bytes_down: self.bytes_down - before.bytes_down,
            objects_up: self.objects_up - before.objects_up,
            objects_down: self.objects_down - before.objects_down,
        }
    }
}

type WorkingCopy = BTreeMap<Path, (EntryKind, Vec<u8>)>;

/// The real content-defined chunker, plugged into the tree builder.
fn encode_cdc(bytes: &[u8]) -> (FileRef, Vec<(ObjectId, Object)>) {
    let encoded = chunking::encode_file(bytes, false).expect("file within limits");
    let objects = encoded
        .objects
        .iter()
        .map(|o| (o.id, verify_frame(&o.id, &o.frame).expect("own frame").0))
        .collect();
    let file_ref = FileRef {
        kind: encoded.kind,
        target: encoded.target,
        size: encoded.size,
        id: encoded.id,
    };
    (file_ref, objects)
}

/// A file's bytes from the local objects; nothing for an empty dir.
fn read_file(objects: &MemoryObjects, file_ref: &FileRef) -> Vec<u8> {
    if file_ref.is_dir() {
        return Vec::new();
    }
    let chunk = |id: &ObjectId| match objects.get(id) {
        Some(Object::Chunk(bytes)) => bytes.clone(),
        other => panic!("chunk {id} missing locally: {other:?}"),
    };
    match file_ref.target {
        ObjectKind::Chunk => chunk(&file_ref.id),
        _ => objects
            .file(&file_ref.id)
            .expect("file object")
            .chunks()
            .iter()
            .flat_map(|c| chunk(&c.id))
            .collect(),
    }
}

#[derive(Debug)]
struct SimClient {
    objects: MemoryObjects,
    base_version: u64,
    base_root: ObjectId,
    working: WorkingCopy,
    next_push_id: u64,
    /// Pushes and pulls small changes as change records, as the `cairn` client does.
    records: bool,
}

impl SimClient {
    fn new(id: u64) -> Self {
        Self {
            objects: MemoryObjects::new(),
            base_version: 0,
            base_root: empty_dir_id(),
            working: WorkingCopy::new(),
            // Push ids are unique per client.
            next_push_id: id << 32,
            records: false,
        }
    }

    /// A client that uses change records for small pushes and pulls.
    fn with_records(id: u64) -> Self {
        Self {
            records: true,
            ..Self::new(id)
        }
    }

    fn write(&mut self, path: &str, contents: &[u8]) {
        self.working.insert(
            Path::new(path).unwrap(),
            (EntryKind::File, contents.to_vec()),
        );
    }

    /// Encodes the working copy into the local object cache; returns the root and listing.
    fn snapshot(&mut self) -> (ObjectId, Listing) {
        let entries = self
            .working
            .iter()
            .map(|(path, (kind, bytes))| (path.clone(), *kind, bytes.clone()));
        let tree = build_tree(entries, encode_cdc).unwrap();
        self.objects.extend(tree.objects);
        (tree.root, tree.listing)
    }

    fn listing(&self, root: &ObjectId) -> Listing {
        flatten(&self.objects, root).unwrap()
    }

    /// The canonical encoding of a local one-chunk file: a delta dictionary.
    fn chunk_encoding(&self, file: &FileRef) -> Option<Vec<u8>> {
        (file.target == ObjectKind::Chunk)
            .then(|| self.objects.get(&file.id))
            .flatten()
            .map(Object::encode)
    }

    fn push_request(&mut self) -> Request {
        let (root, listing) = self.snapshot();
        let plan = plan_push(&self.objects, &self.base_root, &root).unwrap();
        self.next_push_id += 1;
        let changes = diff_listings(&self.listing(&self.base_root.clone()), &listing);
        let small = self
            .records
            .then(|| {
                records_push(
                    &changes,
                    &plan.objects,
                    |id| self.objects.get(id).map(Object::kind) == Some(ObjectKind::Dir),
                    |file| self.chunk_encoding(file),
                )
            })
            .flatten();
        let (records, objects) = match small {
            Some(push) => (push.records, self.wire_objects(&push.objects)),
            None => (Vec::new(), self.wire_objects(&plan.objects)),
        };
        Request::Push {
            push_id: self.next_push_id,
            base_version: self.base_version,
            new_root: root,
            records,
            objects,
        }
    }

    fn wire_objects(&self, ids: &[ObjectId]) -> Vec<WireObject> {
        ids.iter()
            .map(|id| WireObject::of(*id, self.objects.get(id).unwrap()))
            .collect()
    }

    /// Applies the answer to a push or commit.
    fn pushed(&mut self, request: &Request, response: &Response) {
        if let (
            Request::Push { new_root, .. } | Request::Commit { new_root, .. },
            Response::Committed { version },
        ) = (request, response)
        {
            self.base_version = *version;
            self.base_root = *new_root;
        }
    }

    fn push(&mut self, wire: &mut Wire, server: &mut SimServer) -> Response {
        let request = self.push_request();
        let response = wire.call(server, request.clone()).expect("answer");
        self.pushed(&request, &response);
        response
    }

    /// Pulls the head into the local cache; returns its version and root.
    fn fetch(&mut self, wire: &mut Wire, server: &mut SimServer) -> (u64, ObjectId) {
        let request = Request::Pull {
            have_root: self.base_root,
            records: self.records,
        };
        match wire.call(server, request).expect("answer") {
            Response::Pulled {
                version,
                root,
                records,
                objects,
            } => {
                for (id, frame) in objects {
                    let (object, _) = verify_frame(&id, &frame).expect("server sent a valid frame");
                    // Closure holds locally too: children arrive first.
                    for child in references(&object) {
                        assert!(self.objects.contains(&child), "{id} before its child");
                    }
                    self.objects.insert(id, object);
                }
                if !records.is_empty() {
                    let base = self.listing(&self.base_root.clone());
                    let applied =
                        apply_records(&self.objects, self.base_root, &records, root, |path| {
                            base.get(path).and_then(|file| self.chunk_encoding(file))
                        })
                        .expect("the records give the root the server named");
                    for content in applied.chunks {
                        self.objects.insert(content.entry.id, content.chunk);
                    }
                    self.objects.extend(applied.patched.dirs);
                }
                (version, root)
            }
            other => panic!("pull failed: {other:?}"),
        }
    }

    /// Pulls with no local edits: the working copy becomes the head.
    fn pull(&mut self, wire: &mut Wire, server: &mut SimServer) {
        let (version, root) = self.fetch(wire, server);
        self.checkout(&self.listing(&root));
        self.base_version = version;
        self.base_root = root;
    }

    fn checkout(&mut self, listing: &Listing) {
        self.working = listing
            .iter()
            .map(|(path, file_ref)| {
                (
                    path.clone(),
                    (file_ref.kind, read_file(&self.objects, file_ref)),
                )
            })
            .collect();
    }

    /// Pulls and merges local edits over the head with the three-way listing merge; returns
    /// the merge's conflicts.
    fn pull_and_merge(
        &mut self,
        wire: &mut Wire,
        server: &mut SimServer,
    ) -> Vec<sync_protocol::merge::Conflict> {
        let base = self.listing(&self.base_root.clone());
        let (_, ours) = self.snapshot();
        let (version, theirs_root) = self.fetch(wire, server);
        let theirs = self.listing(&theirs_root);
        let outcome = sync_protocol::merge::merge(&base, &ours, &theirs).expect("valid listings");
        self.checkout(&outcome.merged);
        self.base_version = version;
        self.base_root = theirs_root;
        outcome.conflicts
    }
}

/// A small API project: a few JSON documents three dirs deep and one large binary asset.
fn seed_project(client: &mut SimClient) {
    client.write("README.md", b"# Pet store API\n");
    client.write("environments/dev.json", br#"{"host":"localhost:8080"}"#);
    client.write("environments/prod.json", br#"{"host":"api.example.com"}"#);
    client.write(
        "requests/users/list/request.json",
        br#"{"method":"GET","url":"/users"}"#,
    );
    client.write(
        "requests/users/list/response.json",
        br#"{"status":200,"body":[]}"#,
    );
    client.write(
        "requests/users/create/request.json",
        br#"{"method":"POST","url":"/users"}"#,
    );
    client.write(
        "requests/auth/login/request.json",
        br#"{"method":"POST","url":"/login"}"#,
    );
    client.write("assets/spec.bin", &noise(400 * 1024, 7));
}

fn all_reachable(objects: &MemoryObjects, root: &ObjectId) -> Vec<ObjectId> {
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    let mut order = Vec::new();
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            order.push(id);
            stack.extend(references(objects.get(&id).unwrap()));
        }
    }
    order
}

/// A server with the seed project committed as version 1 by `author`.
fn project_with_author() -> (SimServer, SimClient, Wire) {
    project_with_author_and(|_| {})
}

/// [`project_with_author`], with the seed changed by `adjust` before the first push.
fn project_with_author_and(adjust: impl FnOnce(&mut SimClient)) -> (SimServer, SimClient, Wire) {
    let mut server = SimServer::new();
    let mut author = SimClient::new(1);
    let mut wire = Wire::default();
    seed_project(&mut author);
    adjust(&mut author);
    let response = author.push(&mut wire, &mut server);
    assert_eq!(response, Response::Committed { version: 1 });
    (server, author, wire)
}

#[test]
fn first_push_sends_the_whole_tree_in_one_round_trip() {
    let (server, author, wire) = project_with_author();
    let everything = all_reachable(&author.objects, &author.base_root);
    assert_eq!(wire.round_trips, 1);
    assert_eq!(wire.objects_up, everything.len());
    assert_eq!(server.writes, everything.len());
    // 7 one-chunk files, the asset's distinct chunks and its file object, 9 dirs (root included).
    let asset = author.listing(&author.base_root)[&Path::new("assets/spec.bin").unwrap()];
    assert_eq!(asset.target, ObjectKind::File);
    let asset_chunks: HashSet<ObjectId> = author
        .objects
        .file(&asset.id)
        .unwrap()
        .chunks()
        .iter()
        .map(|chunk| chunk.id)
        .collect();
    assert!(asset_chunks.len() >= 2, "the asset is cut into chunks");
    assert_eq!(everything.len(), 7 + asset_chunks.len() + 1 + 9);
    assert_eq!(server.history, vec![(1, author.base_root, 0)]);
}

#[test]
fn clone_is_one_round_trip() {
    let (mut server, author, _) = project_with_author();
    let mut clone = SimClient::new(2);
    let mut wire = Wire::default();
    clone.pull(&mut wire, &mut server);
    assert_eq!(wire.round_trips, 1);
    let everything = all_reachable(&author.objects, &author.base_root);
    assert_eq!(wire.objects_down, everything.len());
    let frames: usize = everything
        .iter()
        .map(|id| FRAME_HEADER_BYTES + server.store[id].frame.len())
        .sum();
    assert_eq!(wire.bytes_down, CONTROL_BYTES + frames);
    assert_eq!(clone.working, author.working);
    assert_eq!((clone.base_version, clone.base_root), (1, author.base_root));
}

#[test]
fn small_edit_push_and_pull_send_only_the_changed_path() {
    let (mut server, mut author, mut wire) = project_with_author();
    let mut teammate = SimClient::new(2);
    teammate.pull(&mut wire, &mut server);

    let before = wire;
    let writes_before = server.writes;
    author.write(
        "requests/users/list/request.json",
        br#"{"method":"GET","url":"/users?page=2"}"#,
    );
    let response = author.push(&mut wire, &mut server);
    assert_eq!(response, Response::Committed { version: 2 });
    let push = wire.since(&before);
    // The new chunk, the three dirs on its path and the root; nothing else.
    assert_eq!(push.round_trips, 1);
    assert_eq!(push.objects_up, 5);
    assert_eq!(server.writes - writes_before, 5);
    let stored = server.objects();
    let new_ids: Vec<ObjectId> = server.history[1..]
        .iter()
        .flat_map(|(_, root, _)| all_reachable(&stored, root))
        .filter(|id| !all_reachable(&stored, &server.history[0].1).contains(id))
        .collect();
    assert_eq!(new_ids.len(), 5);
    let frames: usize = new_ids
        .iter()
        .map(|id| FRAME_HEADER_BYTES + server.store[id].frame.len())
        .sum();
    assert_eq!(push.bytes_up, CONTROL_BYTES + frames);
    let Request::Push { objects, .. } = author.push_request() else {
        unreachable!()
    };
    assert!(
        objects.is_empty(),
        "a second push of the same tree sends nothing"
    );

    let before = wire;
    let reads_before = server.reads;
    teammate.pull(&mut wire, &mut server);
    let pull = wire.since(&before);
    assert_eq!(pull.round_trips, 1);
    assert_eq!(pull.objects_down, 5);
    assert_eq!(teammate.working, author.working);
    // The walk read both sides of the four changed levels (the new dirs among them), then the
    // one new object it had not read: the edited chunk. Every object is read once.
    assert_eq!(server.reads - reads_before, 2 * 4 + 1);
    // The server streams exactly the frames the author sent.
    assert_eq!(pull.bytes_down, push.bytes_up);
    assert!(pull.bytes_down < 1_000, "{} bytes", pull.bytes_down);
}

#[test]
fn noop_pull_is_one_round_trip_and_reads_nothing() {
    let (mut server, mut author, _) = project_with_author();
    let mut wire = Wire::default();
    let reads_before = server.reads;
    author.pull(&mut wire, &mut server);
    assert_eq!(wire.round_trips, 1);
    assert_eq!(wire.objects_down, 0);
    assert_eq!(wire.bytes_down, CONTROL_BYTES);
    assert_eq!(server.reads, reads_before);
}

#[test]
fn concurrent_pushes_conflict_then_merge_and_retry() {
    let (mut server, mut alice, _) = project_with_author();
    let mut bob = SimClient::new(2);
    let mut setup = Wire::default();
    bob.pull(&mut setup, &mut server);

    alice.write("environments/dev.json", br#"{"host":"localhost:9090"}"#);
    bob.write(
        "requests/auth/login/request.json",
        br#"{"method":"POST","url":"/v2/login"}"#,
    );
    bob.write("requests/auth/logout/request.json", br#"{"method":"POST"}"#);

    let mut alice_wire = Wire::default();
    assert_eq!(
        alice.push(&mut alice_wire, &mut server),
        Response::Committed { version: 2 }
    );
    assert_eq!(alice_wire.round_trips, 1);

    let mut bob_wire = Wire::default();
    let conflict = bob.push(&mut bob_wire, &mut server);
    assert_eq!(
        conflict,
        Response::Conflict {
            head_version: 2,
            head_root: alice.base_root,
        }
    );
    assert_eq!(server.head_version, 2, "the stale push changed nothing");
    let conflicts = bob.pull_and_merge(&mut bob_wire, &mut server);
    assert!(
        conflicts.is_empty(),
        "edits of different files merge cleanly"
    );
    assert_eq!(
        bob.push(&mut bob_wire, &mut server),
        Response::Committed { version: 3 }
    );
    // Push, pull, push.
    assert_eq!(bob_wire.round_trips, 3);
    // The pull brought alice's edit: one chunk and the two dirs on its path.
    assert_eq!(bob_wire.objects_down, 3);

    alice.pull(&mut alice_wire, &mut server);
    assert_eq!(alice.working, bob.working);
    let dev = &alice.working[&Path::new("environments/dev.json").unwrap()].1;
    assert_eq!(dev.as_slice(), br#"{"host":"localhost:9090"}"#);
    assert!(
        alice
            .working
            .contains_key(&Path::new("requests/auth/logout/request.json").unwrap())
    );
    assert_eq!(
        server
            .history
            .iter()
            .map(|(version, _, parent)| (*version, *parent))
            .collect::<Vec<_>>(),
        [(1, 0), (2, 1), (3, 2)]
    );
}

#[test]
fn retried_push_with_a_lost_answer_is_applied_once() {
    let (mut server, mut author, _) = project_with_author();
    let mut wire = Wire::default();
    author.write("README.md", b"# Pet store API, v2\n");
    let request = author.push_request();
    // The server commits, but the answer never arrives.
    let lost = wire.call_answer_lost(&mut server, request.clone());
    let writes = server.writes;
    let head = (server.head_version, server.head_root());
    // The client does not know the outcome and sends the same request again.
    let retried = wire.call(&mut server, request.clone()).unwrap();
    assert_eq!(Some(retried.clone()), lost);
    assert_eq!(retried, Response::Committed { version: 2 });
    assert_eq!(server.writes, writes, "nothing stored twice");
    assert_eq!((server.head_version, server.head_root()), head);
    assert_eq!(server.history.len(), 2, "one commit, not two");
    author.pushed(&request, &retried);
    assert_eq!(author.base_version, 2);
    assert_eq!(wire.round_trips, 2);
}

#[test]
fn interrupted_upload_resumes_with_negotiation() {
    let mut server = SimServer::new();
    let mut client = SimClient::new(3);
    seed_project(&mut client);
    for i in 0..12 {
        client.write(
            &format!("requests/generated/batch{}/item{i}.json", i % 3),
            format!("{{\"item\":{i}}}").as_bytes(),
        );
    }
    // A large push goes as batches of objects, children first, then a commit.
    let Request::Push {
        push_id,
        new_root,
        objects,
        ..
    } = client.push_request()
    else {
        unreachable!()
    };
    let total = objects.len();
    let batches: Vec<Vec<WireObject>> = objects.chunks(4).map(<[WireObject]>::to_vec).collect();
    let mut wire = Wire::default();
    // The connection dies after half the batches.
    let sent = batches.len() / 2;
    for batch in &batches[..sent] {
        let answer = wire.call(
            &mut server,
            Request::Upload {
                objects: batch.clone(),
            },
        );
        assert_eq!(answer, Some(Response::Uploaded));
    }
    let half: usize = batches[..sent].iter().map(Vec::len).sum();
    assert_eq!(server.writes, half);
    assert_eq!(server.head_version, 0, "nothing committed");

    // Resume: find what the server lacks, then upload just that and commit.
    let negotiation_start = wire;
    let negotiated = negotiate(&client.objects, new_root, |question| {
        assert!(question.len() <= NEGOTIATE_BATCH_SIZE);
        match wire.call(
            &mut server,
            Request::Missing {
                ids: question.to_vec(),
            },
        ) {
            Some(Response::Missing { ids }) => Ok(ids),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
    let rounds = wire.since(&negotiation_start).round_trips;
    assert_eq!(rounds, negotiated.rounds());
    // One round per level of the tree: the root, then the three dir levels, then the files
    // four deep (`requests/generated/batchN/itemI.json`); the asset's chunks, three deep, share
    // a round with the deepest dirs.
    assert_eq!(rounds, 5);
    assert_eq!(negotiated.upload_order().len(), total - half);
    assert!(negotiated.upload_order().iter().all(|id| !server.has(id)));

    let before = wire;
    let rest = Request::Upload {
        objects: client.wire_objects(negotiated.upload_order()),
    };
    assert_eq!(wire.call(&mut server, rest), Some(Response::Uploaded));
    let commit = Request::Commit {
        push_id,
        base_version: 0,
        new_root,
    };
    let response = wire.call(&mut server, commit.clone()).unwrap();
    assert_eq!(response, Response::Committed { version: 1 });
    let upload = wire.since(&before);
    assert_eq!(upload.round_trips, 2);
    assert_eq!(upload.objects_up, total - half);
    assert_eq!(server.writes, total, "every object stored exactly once");
    client.pushed(&commit, &response);

    let mut other = SimClient::new(4);
    other.pull(&mut Wire::default(), &mut server);
    assert_eq!(other.working, client.working);
}

#[test]
fn empty_dirs_travel_like_any_other_object() {
    let mut server = SimServer::new();
    let mut author = SimClient::new(6);
    let mut wire = Wire::default();
    author.write("requests/health.json", br#"{"method":"GET"}"#);
    let empty = |path: &str| (Path::new(path).unwrap(), (EntryKind::Dir, Vec::new()));
    author
        .working
        .extend([empty("drafts"), empty("requests/todo")]);
    // One chunk, the empty dir (once, though used twice), `requests` and the root. The server
    // checks closure with no special case for the empty dir: it arrives before its parents.
    assert_eq!(
        author.push(&mut wire, &mut server),
        Response::Committed { version: 1 }
    );
    assert_eq!(wire.objects_up, 4);
    assert!(server.has(&empty_dir_id()));
    let mut clone = SimClient::new(7);
    clone.pull(&mut wire, &mut server);
    assert_eq!(clone.working, author.working);
    // Removing everything pushes the empty project: just the empty dir as the root, already
    // stored, so nothing is sent.
    author.working.clear();
    let before = wire;
    assert_eq!(
        author.push(&mut wire, &mut server),
        Response::Committed { version: 2 }
    );
    assert_eq!(wire.since(&before).objects_up, 0);
    clone.pull(&mut wire, &mut server);
    assert!(clone.working.is_empty());
    assert_eq!(clone.base_root, empty_dir_id());
}

#[test]
fn upload_out_of_order_is_rejected_and_commits_nothing() {
    let mut server = SimServer::new();
    let mut client = SimClient::new(5);
    seed_project(&mut client);
    let Request::Push {
        push_id,
        new_root,
        mut objects,
        ..
    } = client.push_request()
    else {
        unreachable!()
    };
    objects.reverse();
    let mut wire = Wire::default();
    let response = wire.call(
        &mut server,
        Request::Push {
            push_id,
            base_version: 0,
            new_root,
            records: Vec::new(),
            objects,
        },
    );
    assert_eq!(
        response,
        Some(Response::Rejected(wire::ProblemCode::MissingObject))
    );
    assert_eq!((server.head_version, server.writes), (0, 0));
    assert!(server.receipts.is_empty());
}

/// What one step of a random schedule does.
#[derive(Debug, Clone)]
enum Action {
    Write { file: u8, value: u8 },
    Remove { file: u8 },
    Push,
    Pull,
}

fn action_strategy() -> impl proptest::strategy::Strategy<Value = Action> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0u8..4, any::<u8>()).prop_map(|(file, value)| Action::Write { file, value }),
        1 => (0u8..4).prop_map(|file| Action::Remove { file }),
        2 => Just(Action::Push),
        1 => Just(Action::Pull),
    ]
}

/// Pushes until committed: after a conflict, pull, merge and retry. Returns the round trips.
fn push_until_committed(client: &mut SimClient, server: &mut SimServer) -> usize {
    let mut wire = Wire::default();
    let mut conflicts = 0;
    loop {
        match client.push(&mut wire, server) {
            Response::Committed { .. } => break,
            Response::Conflict { .. } => {
                conflicts += 1;
                let merge_conflicts = client.pull_and_merge(&mut wire, server);
                assert!(merge_conflicts.is_empty(), "{merge_conflicts:?}");
            }
            other => panic!("push failed: {other:?}"),
        }
    }
    // In a sequential schedule nobody pushes between the pull and the retry.
    assert!(conflicts <= 1);
    assert_eq!(wire.round_trips, 1 + 2 * conflicts);
    wire.round_trips
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Three clients, each editing its own folder, push and pull in a random order: every push
    /// takes one round trip, or three after a conflict; nothing written is lost; all converge.
    #[test]
    fn random_schedules_converge(
        steps in proptest::collection::vec((0usize..3, action_strategy()), 1..24),
    ) {
        // Without the large asset: every snapshot re-encodes the working copy.
        let (mut server, author, _) = project_with_author_and(|author| {
            author.working.remove(&Path::new("assets/spec.bin").unwrap());
        });
        let mut clients: Vec<SimClient> = (0..3).map(|i| SimClient::new(10 + i)).collect();
        let mut setup = Wire::default();
        for client in &mut clients {
            client.pull(&mut setup, &mut server);
        }
        // What each client's folder should hold: its own latest edits.
        let mut expected: Vec<BTreeMap<String, Vec<u8>>> = vec![BTreeMap::new(); 3];
        for (step, (who, action)) in steps.iter().enumerate() {
            let client = &mut clients[*who];
            match action {
                Action::Write { file, value } => {
                    let path = format!("clients/c{who}/f{file}.json");
                    let body = format!("{{\"value\":{value},\"step\":{step}}}").into_bytes();
                    client.write(&path, &body);
                    expected[*who].insert(path, body);
                }
                Action::Remove { file } => {
                    let path = format!("clients/c{who}/f{file}.json");
                    client.working.remove(&Path::new(&path).unwrap());
                    expected[*who].remove(&path);
                }
                Action::Push => {
                    let (root, _) = client.snapshot();
                    if root != client.base_root {
                        push_until_committed(client, &mut server);
                    }
                }
                Action::Pull => {
                    let mut wire = Wire::default();
                    let conflicts = client.pull_and_merge(&mut wire, &mut server);
                    proptest::prop_assert!(conflicts.is_empty());
                    proptest::prop_assert_eq!(wire.round_trips, 1);
                }
            }
        }
        for client in &mut clients {
            let (root, _) = client.snapshot();
            if root != client.base_root {
                push_until_committed(client, &mut server);
            }
        }
        let head = server.head_root();
        for client in &mut clients {
            client.pull_and_merge(&mut Wire::default(), &mut server);
            proptest::prop_assert_eq!(client.base_root, head);
        }
        let mut final_copy = clients[0].working.clone();
        for client in &clients[1..] {
            proptest::prop_assert_eq!(&client.working, &final_copy);
        }
        for (who, files) in expected.iter().enumerate() {
            let prefix = format!("clients/c{who}/");
            let actual: BTreeMap<String, Vec<u8>> = final_copy
                .iter()
                .filter(|(path, _)| path.as_str().starts_with(&prefix))
                .map(|(path, (_, body))| (path.as_str().to_owned(), body.clone()))
                .collect();
            proptest::prop_assert_eq!(&actual, files);
        }
        // The seed project is untouched by the clients' edits.
        final_copy.retain(|path, _| !path.as_str().starts_with("clients/"));
        proptest::prop_assert_eq!(&final_copy, &author.working);
        // One version per committed push, each with its parent the version before.
        for (index, (version, _, parent)) in server.history.iter().enumerate() {
            proptest::prop_assert_eq!(*version, index as u64 + 1);
            proptest::prop_assert_eq!(*parent, index as u64);
        }
    }
}

#[test]
fn small_edits_travel_as_records_both_ways() {
    let (mut server, mut author, _) = project_with_author();
    author.records = true;
    let mut teammate = SimClient::with_records(2);
    teammate.pull(&mut Wire::default(), &mut server);

    author.write(
        "requests/users/list/request.json",
        br#"{"method":"GET","url":"/users?page=2"}"#,
    );
    author.write(
        "requests/users/delete/request.json",
        br#"{"method":"DELETE"}"#,
    );
    author
        .working
        .remove(&Path::new("requests/auth/login/request.json").unwrap());
    let mut wire = Wire::default();
    let writes = server.writes;
    let request = author.push_request();
    let Request::Push {
        records, objects, ..
    } = &request
    else {
        unreachable!()
    };
    assert_eq!(records.len(), 3, "one record per changed path");
    assert!(objects.is_empty(), "both new files went inline");
    let response = wire.call(&mut server, request.clone()).unwrap();
    author.pushed(&request, &response);
    assert_eq!(response, Response::Committed { version: 2 });
    // The server stored what the records stand for: two chunks, and the dirs it rebuilt (the
    // root, `requests`, `users`, `users/list`, `users/delete`, and `auth` without `login`).
    assert_eq!(server.writes - writes, 2 + 6);
    assert_eq!(server.head_root(), author.base_root);

    let mut wire = Wire::default();
    teammate.pull(&mut wire, &mut server);
    assert_eq!(wire.round_trips, 1);
    assert_eq!(wire.objects_down, 0, "the answer is records only");
    assert!(wire.bytes_down < 400, "{} bytes", wire.bytes_down);
    assert_eq!(teammate.working, author.working);
    assert_eq!(teammate.base_root, author.base_root);
}

#[test]
fn records_that_give_another_root_are_refused() {
    let (mut server, mut author, _) = project_with_author();
    author.records = true;
    author.write("README.md", b"# Pet store API, v2\n");
    let Request::Push {
        push_id,
        base_version,
        records,
        objects,
        ..
    } = author.push_request()
    else {
        unreachable!()
    };
    // The client and the server must agree on the root the records give: any other is refused.
    let other_root = author.base_root;
    let response = Wire::default().call(
        &mut server,
        Request::Push {
            push_id,
            base_version,
            new_root: other_root,
            records,
            objects,
        },
    );
    assert_eq!(
        response,
        Some(Response::Rejected(wire::ProblemCode::BadRecords))
    );
    assert_eq!(server.head_version, 1, "nothing committed");
}

/// The files a random tree may hold: no path is a folder of another.
const PATHS: [&str; 7] = [
    "a.json",
    "b.json",
    "d/a.json",
    "d/b.json",
    "d/e/f.json",
    "x/y/z.bin",
    "x/w.json",
];

#[derive(Debug, Clone)]
enum Edit {
    /// Writes file `path` with `len` bytes of seed `seed` (large ones are cut into chunks).
    Write {
        path: usize,
        len: usize,
        seed: u64,
    },
    /// Flips the executable bit.
    Chmod {
        path: usize,
    },
    Remove {
        path: usize,
    },
}

fn edit_strategy() -> impl proptest::strategy::Strategy<Value = Edit> {
    use proptest::prelude::*;
    let len = prop_oneof![4 => 1usize..200, 1 => 20_000usize..70_000];
    prop_oneof![
        4 => (0..PATHS.len(), len, 1u64..1000).prop_map(|(path, len, seed)| Edit::Write { path, len, seed }),
        1 => (0..PATHS.len()).prop_map(|path| Edit::Chmod { path }),
        2 => (0..PATHS.len()).prop_map(|path| Edit::Remove { path }),
    ]
}

fn apply_edit(client: &mut SimClient, edit: &Edit) {
    match edit {
        Edit::Write { path, len, seed } => {
            client.write(PATHS[*path], &noise(*len, *seed));
        }
        Edit::Chmod { path } => {
            if let Some((kind, _)) = client.working.get_mut(&Path::new(PATHS[*path]).unwrap()) {
                *kind = match kind {
                    EntryKind::File => EntryKind::Executable,
                    _ => EntryKind::File,
                };
            }
        }
        Edit::Remove { path } => {
            client.working.remove(&Path::new(PATHS[*path]).unwrap());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Change records rebuild the same root on both sides: every records push the client makes
    /// is committed with the root it computed itself (the acceptor refuses any other), and every
    /// records pull rebuilds the server's head exactly (the client refuses any other).
    #[test]
    fn records_rebuild_the_same_root_on_both_sides(
        base in proptest::collection::vec(edit_strategy(), 1..10),
        rounds in proptest::collection::vec(proptest::collection::vec(edit_strategy(), 1..6), 1..4),
    ) {
        let mut server = SimServer::new();
        let mut author = SimClient::with_records(1);
        let mut reader = SimClient::with_records(2);
        for edit in &base {
            apply_edit(&mut author, edit);
        }
        for edits in std::iter::once(&Vec::new()).chain(&rounds) {
            for edit in edits {
                apply_edit(&mut author, edit);
            }
            let (root, _) = author.snapshot();
            if root != author.base_root {
                let response = author.push(&mut Wire::default(), &mut server);
                proptest::prop_assert!(
                    matches!(response, Response::Committed { .. }),
                    "{:?}", response
                );
                proptest::prop_assert_eq!(server.head_root(), root);
            }
            reader.pull(&mut Wire::default(), &mut server);
            proptest::prop_assert_eq!(reader.base_root, server.head_root());
            proptest::prop_assert_eq!(&reader.working, &author.working);
        }
    }
}
