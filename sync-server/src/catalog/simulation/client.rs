//! A client as `cairn` behaves: edits its working copy, pushes what changed on the version it
//! has (retrying a push whose outcome it did not learn with the same push id, a bounded number
//! of times), pulls, and on a conflict pulls the head and merges with the protocol's three-way
//! merge before pushing again under a new push id. A push it gave up on is settled before its
//! next push or pull, by sending it again under its push id (`cairn`'s `operations::settle`):
//! without that, a given-up push that did commit came back as somebody else's edit, which the
//! simulation found as a conflict of a client with its own earlier edit. Client `i` edits only paths under `c{i}/`,
//! so merges never conflict and the final tree is known: every client's own files.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sync_protocol::checks::noise;
use sync_protocol::chunking;
use sync_protocol::merge::merge;
use sync_protocol::object::{EntryKind, Object, ObjectKind};
use sync_protocol::plan::plan_push;
use sync_protocol::stream::{Item, StreamDecoder, StreamEncoder};
use sync_protocol::tree::{
    FileRef, Listing, MemoryObjects, ObjectSource, Path, build_tree, empty_dir_id, flatten,
};
use sync_protocol::{ObjectId, verify_frame};

use super::Planted;
use super::net::{Answer, Outcome, Request, SharedNet, call};

/// Attempts of one push (same push id) before the client gives up, as `cairn` gives up after
/// its retry budget and exits 7.
pub(super) const PUSH_ATTEMPTS: usize = 5;

/// A push the client was told committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ack {
    pub client: usize,
    pub push_id: String,
    pub version: u64,
    pub root: ObjectId,
}

/// What a client saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Log {
    pub acks: Vec<Ack>,
    /// Answers no valid request should get.
    pub refusals: Vec<String>,
    pub conflicts: usize,
    /// Pushes the server rebased onto other clients' versions.
    pub rebased: usize,
    pub lost: usize,
    pub gave_up: usize,
}

/// Path, kind and bytes of every file.
type WorkingCopy = BTreeMap<Path, Vec<u8>>;

#[derive(Debug)]
pub(super) struct Client {
    pub index: usize,
    rng: StdRng,
    net: SharedNet,
    objects: MemoryObjects,
    base_version: u64,
    base_root: ObjectId,
    pub working: WorkingCopy,
    /// Its own files as it last wrote them: what its working copy must hold of them however
    /// its pushes and pulls went.
    pub intended: WorkingCopy,
    /// A push it gave up on, to settle before the next push or pull.
    unsettled: Option<Request>,
    /// Whether its pushes allow a server-side rebase: even clients do, odd ones behave as
    /// clients from before rebasing.
    rebase: bool,
    /// After a rebased push, the tree it pushed: the base is the rebased version, but the other
    /// clients' changes in it are not in the working copy yet. As `cairn` keeps those paths
    /// pending, the client pulls before its next push and merges from this tree.
    rebased_from: Option<ObjectId>,
    planted: Planted,
    /// Each content's encoding, made once: the tree is rebuilt from the working copy at every
    /// push and merge.
    encoded: RefCell<HashMap<Vec<u8>, Encoded>>,
    pushes: u64,
    pub log: Log,
}

impl Client {
    pub fn new(index: usize, seed: u64, net: SharedNet, planted: Planted) -> Self {
        Self {
            index,
            rng: StdRng::seed_from_u64(seed),
            net,
            objects: MemoryObjects::new(),
            base_version: 0,
            base_root: empty_dir_id(),
            working: WorkingCopy::new(),
            intended: WorkingCopy::new(),
            unsettled: None,
            rebase: index.is_multiple_of(2),
            rebased_from: None,
            planted,
            encoded: RefCell::default(),
            pushes: 0,
            log: Log::default(),
        }
    }

    /// `ops` edits, syncs and pulls, then returns itself.
    pub async fn run(mut self, ops: usize) -> Self {
        for _ in 0..ops {
            match self.rng.gen_range(0..10) {
                0..=5 => {
                    self.edit();
                    self.sync(PUSH_ATTEMPTS).await;
                }
                6..=7 => self.edit(),
                _ => {
                    self.pull().await;
                }
            }
        }
        self
    }

    /// Pulls, then syncs until the working copy is committed, however many attempts it takes:
    /// the end of a run, once faults have stopped.
    pub async fn settle(mut self) -> Self {
        // As `cairn sync`: pull first, so a push it gave up on that did commit comes back.
        while self.log.refusals.is_empty() {
            if self.pull().await && self.sync(usize::MAX).await {
                break;
            }
        }
        self
    }

    /// Pulls until it has the head: the last step of a run, when nothing fails any more.
    pub async fn catch_up(mut self) -> Self {
        while self.log.refusals.is_empty() && !self.pull().await {}
        self
    }

    /// The version and root it last pulled or pushed.
    pub fn base(&self) -> (u64, ObjectId) {
        (self.base_version, self.base_root)
    }

    /// Writes, rewrites or deletes one of its own files.
    fn edit(&mut self) {
        let name = format!(
            "c{}/{}/f{}.json",
            self.index,
            self.rng.gen_range(0..2),
            self.rng.gen_range(0..3)
        );
        let path = Path::new(&name).expect("a valid path");
        if self.working.contains_key(&path) && self.rng.gen_bool(0.2) {
            self.working.remove(&path);
            self.intended.remove(&path);
            return;
        }
        // Now and then a file of several chunks.
        let len = if self.rng.gen_bool(0.03) {
            self.rng.gen_range(100_000..160_000)
        } else {
            self.rng.gen_range(0..200)
        };
        let bytes = noise(len, self.rng.r#gen());
        self.intended.insert(path.clone(), bytes.clone());
        self.working.insert(path, bytes);
    }

    /// Pushes the working copy if it differs from the base: on a conflict pulls, merges and
    /// tries again with a new push id. True when the working copy is committed (or nothing
    /// needed pushing); false when it gave up on a push after `attempts` tries.
    async fn sync(&mut self, attempts: usize) -> bool {
        if !self.settle_unknown(attempts).await {
            return false;
        }
        loop {
            if self.rebased_from.is_some() && !self.pull().await {
                return false;
            }
            let (root, _) = self.snapshot();
            if root == self.base_root {
                return true;
            }
            self.pushes += 1;
            let request = self.push_request(root);
            let Request::Push { push_id, .. } = &request else {
                unreachable!("a push")
            };
            let push_id = push_id.clone();
            let mut answer = None;
            for _ in 0..attempts {
                match call(&self.net, self.index, request.clone()).await {
                    Outcome::Answer(got) => {
                        answer = Some(got);
                        break;
                    }
                    Outcome::Lost => self.log.lost += 1,
                }
            }
            match answer {
                None => {
                    self.log.gave_up += 1;
                    self.unsettled = Some(request);
                    return false;
                }
                Some(Answer::Committed {
                    version,
                    root: committed,
                    rebased,
                }) => {
                    self.log.acks.push(Ack {
                        client: self.index,
                        push_id,
                        version,
                        root: committed,
                    });
                    self.committed(version, rebased, root, committed);
                    return true;
                }
                Some(Answer::Conflict { .. }) => {
                    self.log.conflicts += 1;
                    if !self.pull().await {
                        return false;
                    }
                }
                Some(other) => {
                    self.log.refusals.push(format!("push: {other:?}"));
                    return false;
                }
            }
        }
    }

    /// The base after its push of `root` committed as `version` with `committed`, as `cairn`'s
    /// `push::base_after_commit` records it: that version, or, rebased, that version with the
    /// others' changes still to merge from `root` (see `rebased_from`).
    fn committed(&mut self, version: u64, rebased: bool, root: ObjectId, committed: ObjectId) {
        if rebased {
            self.log.rebased += 1;
            self.base_version = version;
            self.base_root = committed;
            self.rebased_from = Some(root);
            return;
        }
        if committed != root {
            self.log
                .refusals
                .push(format!("push {version} committed {committed}, not {root}"));
        }
        self.base_version = version;
        self.base_root = root;
    }

    fn push_request(&mut self, root: ObjectId) -> Request {
        let plan = plan_push(&self.objects, &self.base_root, &root).expect("local trees are whole");
        let mut encoder = StreamEncoder::new();
        for id in &plan.objects {
            let object = self.objects.get(id).expect("planned from local objects");
            let frame = sync_protocol::compress_object(&object.encode());
            encoder.push(object.kind(), id, &frame).expect("a frame");
        }
        Request::Push {
            push_id: format!("c{}-p{}", self.index, self.pushes),
            base: self.base_version,
            root,
            stream: encoder.finish(),
            rebase: self.rebase,
        }
    }

    /// Sends the push it gave up on again, under its push id, until it is answered (at most
    /// `attempts` times): if it committed (then or now), that version becomes the base. False
    /// while its outcome is still unknown.
    async fn settle_unknown(&mut self, attempts: usize) -> bool {
        if self.planted == Planted::UnsettledPush {
            return true;
        }
        let Some(request) = self.unsettled.clone() else {
            return true;
        };
        let Request::Push { push_id, .. } = &request else {
            unreachable!("a push")
        };
        for _ in 0..attempts {
            match call(&self.net, self.index, request.clone()).await {
                Outcome::Lost => self.log.lost += 1,
                Outcome::Answer(Answer::Committed {
                    version,
                    root: committed,
                    rebased,
                }) => {
                    self.unsettled = None;
                    self.log.acks.push(Ack {
                        client: self.index,
                        push_id: push_id.clone(),
                        version,
                        root: committed,
                    });
                    let Request::Push { root, .. } = request else {
                        unreachable!("a push")
                    };
                    if version > self.base_version {
                        self.committed(version, rebased, root, committed);
                    }
                    return true;
                }
                Outcome::Answer(Answer::Conflict { .. }) => {
                    self.unsettled = None;
                    return true;
                }
                Outcome::Answer(other) => {
                    self.unsettled = None;
                    self.log.refusals.push(format!("settling: {other:?}"));
                    return false;
                }
            }
        }
        false
    }

    /// Pulls the head and merges local edits over it. False if the pull got no answer.
    async fn pull(&mut self) -> bool {
        if !self.settle_unknown(PUSH_ATTEMPTS).await {
            return false;
        }
        let have = self.rebased_from.unwrap_or(self.base_root);
        let answer = match call(&self.net, self.index, Request::Pull { have }).await {
            Outcome::Answer(answer) => answer,
            Outcome::Lost => {
                self.log.lost += 1;
                return false;
            }
        };
        let Answer::Pulled {
            version,
            root,
            stream,
        } = answer
        else {
            self.log.refusals.push(format!("pull: {answer:?}"));
            return false;
        };
        if let Err(problem) = self.receive(&stream) {
            self.log.refusals.push(format!("pull: {problem}"));
            return false;
        }
        let base = self.listing(&have);
        let (_, ours) = self.snapshot();
        let theirs = match flatten(&self.objects, &root) {
            Ok(listing) => listing,
            Err(error) => {
                self.log.refusals.push(format!("pulled tree: {error}"));
                return false;
            }
        };
        let outcome = merge(&base, &ours, &theirs).expect("valid listings");
        if !outcome.is_clean() {
            self.log.refusals.push(format!(
                "merge conflicts on disjoint edits: {:?}",
                outcome.conflicts
            ));
        }
        self.working = outcome
            .merged
            .iter()
            .map(|(path, file)| (path.clone(), self.read_file(file)))
            .collect();
        self.base_version = version;
        self.base_root = root;
        self.rebased_from = None;
        true
    }

    /// Takes the objects of a pull answer, verified, children before parents.
    fn receive(&mut self, stream: &[u8]) -> Result<(), String> {
        let mut decoder = StreamDecoder::new();
        decoder.feed(stream);
        while let Some(item) = decoder.next_item().map_err(|error| error.to_string())? {
            let Item::Object(frame) = item else {
                return Err("a change record in a pull without records".to_owned());
            };
            let (object, _) =
                verify_frame(&frame.id, &frame.compressed).map_err(|error| error.to_string())?;
            self.objects.insert(frame.id, object);
        }
        decoder
            .finish()
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// The working copy as a tree, its objects added to the local ones.
    fn snapshot(&mut self) -> (ObjectId, Listing) {
        let entries = self
            .working
            .iter()
            .map(|(path, bytes)| (path.clone(), EntryKind::File, bytes.clone()));
        let tree = build_tree(entries, |bytes: &[u8]| {
            let mut encoded = self.encoded.borrow_mut();
            if let Some(known) = encoded.get(bytes) {
                return known.clone();
            }
            let new = encode(bytes);
            encoded.insert(bytes.to_vec(), new.clone());
            new
        })
        .expect("a valid tree");
        self.objects.extend(tree.objects);
        (tree.root, tree.listing)
    }

    fn listing(&self, root: &ObjectId) -> Listing {
        flatten(&self.objects, root).expect("local trees are whole")
    }

    fn read_file(&self, file: &FileRef) -> Vec<u8> {
        let chunk = |id: &ObjectId| match self.objects.get(id) {
            Some(Object::Chunk(bytes)) => bytes.clone(),
            other => panic!("chunk {id} missing locally: {other:?}"),
        };
        match file.target {
            ObjectKind::Chunk => chunk(&file.id),
            _ => self
                .objects
                .file(&file.id)
                .expect("a file object")
                .chunks()
                .iter()
                .flat_map(|c| chunk(&c.id))
                .collect(),
        }
    }
}

/// A file's entry and objects.
type Encoded = (FileRef, Vec<(ObjectId, Object)>);

/// The real content-defined chunker, as the tree builder's file encoder.
fn encode(bytes: &[u8]) -> Encoded {
    let encoded = chunking::encode_file(bytes, false).expect("a file within limits");
    let objects = encoded
        .objects
        .iter()
        .map(|o| {
            (
                o.id,
                verify_frame(&o.id, &o.frame).expect("its own frame").0,
            )
        })
        .collect();
    let file = FileRef {
        kind: encoded.kind,
        target: encoded.target,
        size: encoded.size,
        id: encoded.id,
    };
    (file, objects)
}
