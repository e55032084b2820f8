//! A node's push and pull handlers, as `api::sync` drives them: the same protocol machines
//! (`PushAcceptor`, `PullResponder`), the same order of steps (a look at the head, the body
//! received and checked, the acceptor's reads and stores, then the catalog's commit by the
//! shared rules), over the simulated database and an in-memory object store. Every step starts
//! with a yield, so a node can crash between any two.
//!
//! What is left out: the node's object cache (a node here reads the store every time), packs
//! and the object index (an object is stored and visible on its own, layer by layer, which is
//! the stricter order), change records, authentication.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sync_protocol::accept::{ObjectInfo, PushAcceptor, Step, ToStore};
use sync_protocol::rebase::{Rebase, RebaseOutcome, RebaseStep};
use sync_protocol::respond::{PullResponder, PullStep, StoredObject};
use sync_protocol::stream::StreamDecoder;
use sync_protocol::tree::references;
use sync_protocol::{ObjectId, verify_frame, wire};

use super::super::rules;
use super::super::types::{CommitOutcome, CommitRequest, Onto, PushId, empty_root};
use super::Planted;
use super::db::{SharedDb, SimTransaction};
use super::exec::yield_now;
use super::net::{Answer, Request};

/// The object store: durable, shared by every node, never overwritten.
#[derive(Debug, Default)]
pub(super) struct Store {
    pub objects: HashMap<ObjectId, StoredObject>,
    /// Objects stored before one of their children: the store's closure invariant broken.
    pub out_of_order: Vec<String>,
}

pub(super) type SharedStore = Rc<RefCell<Store>>;

impl Store {
    pub fn has(&self, id: &ObjectId) -> bool {
        *id == empty_root() || self.objects.contains_key(id)
    }

    fn put(&mut self, stored: &ToStore) {
        if self.objects.contains_key(&stored.id) {
            return;
        }
        let Ok((object, _)) = verify_frame(&stored.id, &stored.frame) else {
            self.out_of_order.push(format!(
                "{} stored with a frame that does not verify",
                stored.id
            ));
            return;
        };
        for child in references(&object) {
            if !self.has(&child) {
                self.out_of_order
                    .push(format!("{} stored before its child {child}", stored.id));
            }
        }
        let frame = stored.frame.clone();
        self.objects
            .insert(stored.id, StoredObject { object, frame });
    }
}

/// `api::sync::rebase::MAX_REBASE_ATTEMPTS`.
const MAX_REBASE_ATTEMPTS: usize = 8;

/// What a node works with: nothing of its own survives a crash.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub db: SharedDb,
    pub store: SharedStore,
    pub planted: Planted,
}

impl Node {
    pub async fn handle(self, request: Request) -> Answer {
        match request {
            Request::Push {
                push_id,
                base,
                root,
                stream,
                rebase,
            } => self.push(push_id, base, root, stream, rebase).await,
            Request::Pull { have } => self.pull(have).await,
        }
    }

    /// `api::sync::commit_version`: a stale base is answered by the catalog (a conflict or a
    /// replay) and nothing is stored; else the acceptor checks and stores, then the commit.
    /// With `rebase`, a stale base whose tree is stored is accepted against that tree and
    /// rebased onto the head (`api::sync::rebase`).
    async fn push(
        self,
        push_id: String,
        base: u64,
        root: ObjectId,
        stream: Vec<u8>,
        rebase: bool,
    ) -> Answer {
        yield_now().await;
        let (head_version, head_root, project, author) = {
            let db = self.db.borrow();
            (db.head.0, db.head.1, db.project, db.author)
        };
        let push_id = match PushId::new(&push_id) {
            Ok(push_id) => push_id,
            Err(error) => return Answer::Refused(error.to_string()),
        };
        let request = CommitRequest {
            project,
            push_id,
            base_version: base,
            root,
            author,
            message: String::new(),
            onto: None,
        };
        let base_root = match rebase {
            true if head_version == base => Some(head_root),
            true => self.base_root(base),
            false => None,
        };
        let mut acceptor = PushAcceptor::version(base_root.unwrap_or(head_root), root);
        yield_now().await;
        if let Err(refused) = receive(&mut acceptor, &stream) {
            return Answer::Refused(refused);
        }
        if head_version != base && base_root.is_none() {
            return self.commit(&request).await;
        }
        let deferred = match self.accept(acceptor).await {
            Ok(deferred) => deferred,
            Err(refused) => return Answer::Refused(refused),
        };
        let answer = match base_root {
            Some(base_root) => {
                self.commit_rebasing(request, base_root, (head_version, head_root))
                    .await
            }
            None => self.commit(&request).await,
        };
        // Only with the planted bug: what should have been stored before the commit.
        for layer in deferred {
            yield_now().await;
            let mut store = self.store.borrow_mut();
            for object in &layer {
                store.put(object);
            }
        }
        answer
    }

    /// `api::sync::accept`: drives the acceptor over the store. Returns the layers it did not
    /// store (only with [`Planted::StoreAfterCommit`]).
    async fn accept(&self, mut acceptor: PushAcceptor) -> Result<Vec<Vec<ToStore>>, String> {
        let mut deferred = Vec::new();
        loop {
            yield_now().await;
            let step = acceptor.step().map_err(|r| r.to_string())?;
            match step {
                Step::Read(ids) => {
                    for id in ids {
                        let object = self.stored(&id).map(|stored| stored.object);
                        acceptor.provide(id, object).map_err(|r| r.to_string())?;
                    }
                }
                Step::Stat(ids) => {
                    for id in ids {
                        let info = self
                            .stored(&id)
                            .map(|stored| ObjectInfo::of(&stored.object));
                        acceptor.provide_info(id, info).map_err(|r| r.to_string())?;
                    }
                }
                Step::Compute => acceptor.compute().map_err(|r| r.to_string())?,
                Step::Store(layers) if self.planted == Planted::StoreAfterCommit => {
                    deferred.extend(layers);
                }
                Step::Store(layers) => {
                    // Each layer durable before the next: a crash between two leaves only
                    // objects whose children are stored.
                    for layer in layers {
                        yield_now().await;
                        let mut store = self.store.borrow_mut();
                        for object in &layer {
                            store.put(object);
                        }
                    }
                }
                Step::Done(_) => return Ok(deferred),
            }
        }
    }

    /// `api::sync::rebase::base_root`: the root of version `base`, if its tree is stored.
    fn base_root(&self, base: u64) -> Option<ObjectId> {
        let root = self
            .db
            .borrow()
            .versions
            .iter()
            .find(|row| row.number == base)
            .map(|row| row.root)?;
        self.store.borrow().has(&root).then_some(root)
    }

    /// `api::sync::rebase::commit_rebasing`: commits on the head read (the push's base or, rebased,
    /// a later head), again on a head that moved meanwhile, at most `MAX_REBASE_ATTEMPTS`
    /// times; an overlap or a head that kept moving records the conflict.
    async fn commit_rebasing(
        &self,
        request: CommitRequest,
        base_root: ObjectId,
        mut head: (u64, ObjectId),
    ) -> Answer {
        for attempt in 0..MAX_REBASE_ATTEMPTS {
            if attempt > 0 {
                yield_now().await;
                head = self.db.borrow().head;
            }
            let onto = if head.0 == request.base_version {
                Onto {
                    head_version: head.0,
                    root: request.root,
                }
            } else {
                match self.rebase(base_root, request.root, head.1).await {
                    Ok(Some(root)) => Onto {
                        head_version: head.0,
                        root,
                    },
                    Ok(None) => break,
                    Err(refused) => return Answer::Refused(refused),
                }
            };
            let attempt = CommitRequest {
                onto: Some(onto),
                ..request.clone()
            };
            match self.commit(&attempt).await {
                Answer::Conflict { version, .. } if version != onto.head_version => continue,
                answer => return answer,
            }
        }
        self.commit(&request).await
    }

    /// `api::sync::rebase::rebase`: the rebase machine over the store, its new dirs stored
    /// children first; `None` on an overlap.
    async fn rebase(
        &self,
        base_root: ObjectId,
        pushed_root: ObjectId,
        head_root: ObjectId,
    ) -> Result<Option<ObjectId>, String> {
        let mut rebase = Rebase::new(base_root, pushed_root, head_root);
        let patched = loop {
            yield_now().await;
            match rebase.step().map_err(|error| format!("rebase: {error}"))? {
                RebaseStep::Read(ids) => {
                    for id in ids {
                        let object = self
                            .stored(&id)
                            .ok_or_else(|| format!("rebase: {}", rebase.missing(&id)))?;
                        rebase
                            .provide(id, object.object)
                            .map_err(|error| format!("rebase: {error}"))?;
                    }
                }
                RebaseStep::Done(RebaseOutcome::Overlap(_)) => return Ok(None),
                RebaseStep::Done(RebaseOutcome::Rebased(patched)) => break patched,
            }
        };
        for (id, object) in &patched.dirs {
            yield_now().await;
            self.store.borrow_mut().put(&ToStore {
                id: *id,
                info: ObjectInfo::of(object),
                frame: sync_protocol::compress_object(&object.encode()).into(),
            });
        }
        Ok(Some(patched.root))
    }

    fn stored(&self, id: &ObjectId) -> Option<StoredObject> {
        self.store.borrow().objects.get(id).cloned()
    }

    /// The catalog's commit, by the shared rules, in a transaction of the simulated database.
    async fn commit(&self, request: &CommitRequest) -> Answer {
        let db = self.db.clone();
        match rules::commit(request, async move { Ok(SimTransaction::begin(&db)) }).await {
            Ok(CommitOutcome::Committed {
                version, rebased, ..
            }) => Answer::Committed {
                version: version.number,
                root: version.root,
                rebased,
            },
            Ok(CommitOutcome::Conflict {
                head_version,
                head_root,
            }) => Answer::Conflict {
                version: head_version,
                root: head_root,
            },
            Err(error) => Answer::Refused(format!("commit: {error}")),
        }
    }

    /// `api::sync::pull`: the head, and what the client lacks of it.
    async fn pull(self, have: ObjectId) -> Answer {
        yield_now().await;
        let (version, root) = self.db.borrow().head;
        let mut responder = PullResponder::new(have, root, false);
        loop {
            yield_now().await;
            match responder.step() {
                Ok(PullStep::Read(ids)) => {
                    for id in ids {
                        if let Err(rejection) = responder.provide(id, self.stored(&id)) {
                            return Answer::Refused(format!("pull: {rejection}"));
                        }
                    }
                }
                Ok(PullStep::Compute) => {
                    return match responder.compute() {
                        Ok(answer) => Answer::Pulled {
                            version,
                            root,
                            stream: answer.stream,
                        },
                        Err(rejection) => Answer::Refused(format!("pull: {rejection}")),
                    };
                }
                Err(rejection) => return Answer::Refused(format!("pull: {rejection}")),
            }
        }
    }
}

/// Feeds a push body to the acceptor, as `api::sync::receive` does.
fn receive(acceptor: &mut PushAcceptor, stream: &[u8]) -> Result<(), String> {
    let mut decoder = StreamDecoder::new();
    decoder.feed(stream);
    while let Some(item) = decoder
        .next_item()
        .map_err(|error| wire::Problem::from(&error).to_string())?
    {
        acceptor.receive(item).map_err(|r| r.to_string())?;
    }
    decoder
        .finish()
        .map(|_| ())
        .map_err(|error| wire::Problem::from(&error).to_string())
}
