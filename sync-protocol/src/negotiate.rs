//! The resume negotiation: which objects of a tree does the server not have yet?
//!
//! Used by a client that wants to upload root R without a usable base (a fresh project, a lost
//! local cache) or that resumes an interrupted upload. The client asks "which of these ids are
//! missing?" top-down, in batches of at most [`NEGOTIATE_BATCH_SIZE`]: first `[R]`, then the
//! children of every missing dir (and the chunks of every missing file object). An id the server
//! has prunes its whole subtree, because the server stores an object only after everything it
//! references (the closure invariant). The result is exactly the missing objects, in an order the
//! server accepts as an upload: children first.
//!
//! The client side is a typestate machine: [`Asking`] holds a question; answering it
//! ([`Asking::answer`], whose errors are [`AnswerError`]) gives either the next [`Asking`] or the
//! finished [`Negotiated`]. The server side is one function, [`answer_question`].

use std::collections::{HashMap, HashSet, VecDeque};

use crate::id::ObjectId;
use crate::limits::MAX_PATH_DEPTH;
use crate::object::ObjectKind;
use crate::tree::{ObjectSource, empty_dir_id};

/// The most ids one question may hold. The server rejects a larger one.
pub const NEGOTIATE_BATCH_SIZE: usize = 1024;

/// What the client knows about one id it will ask or has asked about.
#[derive(Debug, Clone, Copy)]
struct Asked {
    kind: ObjectKind,
    /// 0 for the root; entries of a dir at depth d are at d + 1.
    depth: usize,
}

#[derive(Debug)]
struct State {
    root: ObjectId,
    /// Ids found but not yet put into a question, oldest first (so the walk is top-down).
    queue: VecDeque<ObjectId>,
    /// Every id ever queued, so each is asked about once.
    known: HashMap<ObjectId, Asked>,
    /// The missing ids, each with the ids it references.
    missing: HashMap<ObjectId, Vec<ObjectId>>,
    rounds: usize,
}

/// The client waiting for the answer to a question.
#[derive(Debug)]
pub struct Asking {
    state: State,
    question: Vec<ObjectId>,
}

/// The next step after an answer.
#[derive(Debug)]
pub enum Step {
    Ask(Asking),
    Done(Negotiated),
}

/// The negotiation's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    root: ObjectId,
    upload_order: Vec<ObjectId>,
    rounds: usize,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("the server says {id} is missing, but it was not in the question")]
    NotAsked { id: ObjectId },
    /// The client's own object cache lacks an object of the tree it wants to upload.
    #[error("the server is missing {kind:?} {id}, and so is the local object cache")]
    LocalMissing { id: ObjectId, kind: ObjectKind },
    #[error("dir {id} has entries deeper than {MAX_PATH_DEPTH} levels")]
    TooDeep { id: ObjectId },
}

/// Why the server refuses a question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuestionError {
    #[error("a question may hold at most {NEGOTIATE_BATCH_SIZE} ids, this one holds {len}")]
    TooLarge { len: usize },
}

impl Asking {
    /// Starts negotiating the upload of the tree under `root`.
    pub fn start(root: ObjectId) -> Self {
        let known = HashMap::from([(
            root,
            Asked {
                kind: ObjectKind::Dir,
                depth: 0,
            },
        )]);
        Self {
            state: State {
                root,
                queue: VecDeque::new(),
                known,
                missing: HashMap::new(),
                rounds: 0,
            },
            question: vec![root],
        }
    }

    /// The ids to ask the server about: at most [`NEGOTIATE_BATCH_SIZE`], never empty.
    pub fn question(&self) -> &[ObjectId] {
        &self.question
    }

    /// Rounds answered so far.
    pub fn rounds(&self) -> usize {
        self.state.rounds
    }

    /// Takes the server's answer: the ids of the question it does not have. Reads the dirs and
    /// file objects among them from `local` to find what to ask next.
    pub fn answer(
        mut self,
        missing: &[ObjectId],
        local: &impl ObjectSource,
    ) -> Result<Step, AnswerError> {
        let asked: HashSet<ObjectId> = self.question.iter().copied().collect();
        let state = &mut self.state;
        state.rounds += 1;
        for id in missing {
            if !asked.contains(id) {
                return Err(AnswerError::NotAsked { id: *id });
            }
            if state.missing.contains_key(id) {
                continue;
            }
            // Every asked id is known; the fallback only keeps this free of panics.
            let Asked { kind, depth } = state.known.get(id).copied().unwrap_or(Asked {
                kind: ObjectKind::Chunk,
                depth: 0,
            });
            let children: Vec<(ObjectId, ObjectKind)> = match kind {
                ObjectKind::Chunk => Vec::new(),
                ObjectKind::File => local
                    .file(id)
                    .ok_or(AnswerError::LocalMissing { id: *id, kind })?
                    .chunks()
                    .iter()
                    .map(|chunk| (chunk.id, ObjectKind::Chunk))
                    .collect(),
                // The empty dir is known without a local copy; it has no children to ask about.
                ObjectKind::Dir if *id == empty_dir_id() => Vec::new(),
                ObjectKind::Dir => {
                    let dir = local
                        .dir(id)
                        .ok_or(AnswerError::LocalMissing { id: *id, kind })?;
                    if !dir.entries().is_empty() && depth + 1 > MAX_PATH_DEPTH {
                        return Err(AnswerError::TooDeep { id: *id });
                    }
                    dir.entries()
                        .iter()
                        .map(|entry| (entry.id, entry.target))
                        .collect()
                }
            };
            for (child, child_kind) in &children {
                if !state.known.contains_key(child) {
                    state.known.insert(
                        *child,
                        Asked {
                            kind: *child_kind,
                            depth: depth + 1,
                        },
                    );
                    state.queue.push_back(*child);
                }
            }
            state
                .missing
                .insert(*id, children.into_iter().map(|(child, _)| child).collect());
        }
        let take = state.queue.len().min(NEGOTIATE_BATCH_SIZE);
        let question: Vec<ObjectId> = state.queue.drain(..take).collect();
        if question.is_empty() {
            Ok(Step::Done(Negotiated::from_state(self.state)))
        } else {
            self.question = question;
            Ok(Step::Ask(self))
        }
    }
}

impl Negotiated {
    fn from_state(state: State) -> Self {
        // Post-order over the missing objects from the root: each comes after all it references.
        let mut upload_order = Vec::with_capacity(state.missing.len());
        let mut emitted = HashSet::new();
        if state.missing.contains_key(&state.root) {
            let mut stack = vec![(state.root, 0usize)];
            while let Some((id, next_child)) = stack.pop() {
                let children = state.missing.get(&id).map_or(&[][..], Vec::as_slice);
                match children.get(next_child) {
                    Some(child) => {
                        stack.push((id, next_child + 1));
                        if state.missing.contains_key(child) && !emitted.contains(child) {
                            stack.push((*child, 0));
                        }
                    }
                    None => {
                        if emitted.insert(id) {
                            upload_order.push(id);
                        }
                    }
                }
            }
        }
        Self {
            root: state.root,
            upload_order,
            rounds: state.rounds,
        }
    }

    pub fn root(&self) -> ObjectId {
        self.root
    }

    /// Exactly the objects the server is missing, children first.
    pub fn upload_order(&self) -> &[ObjectId] {
        &self.upload_order
    }

    pub fn into_upload_order(self) -> Vec<ObjectId> {
        self.upload_order
    }

    /// Question-and-answer rounds it took.
    pub fn rounds(&self) -> usize {
        self.rounds
    }
}

/// The server's side: the ids of `question` that `has` says are not stored.
pub fn answer_question(
    question: &[ObjectId],
    has: impl Fn(&ObjectId) -> bool,
) -> Result<Vec<ObjectId>, QuestionError> {
    if question.len() > NEGOTIATE_BATCH_SIZE {
        return Err(QuestionError::TooLarge {
            len: question.len(),
        });
    }
    Ok(question.iter().filter(|id| !has(id)).copied().collect())
}

/// Runs a whole negotiation, with `ask` standing for one round trip to the server.
pub fn negotiate<E>(
    local: &impl ObjectSource,
    root: ObjectId,
    mut ask: impl FnMut(&[ObjectId]) -> Result<Vec<ObjectId>, E>,
) -> Result<Negotiated, NegotiateError<E>> {
    let mut asking = Asking::start(root);
    loop {
        let missing = ask(asking.question()).map_err(NegotiateError::Ask)?;
        match asking.answer(&missing, local)? {
            Step::Ask(next) => asking = next,
            Step::Done(done) => return Ok(done),
        }
    }
}

/// Why [`negotiate`] failed: the round trip or the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError<E> {
    #[error("asking the server failed: {0}")]
    Ask(E),
    #[error(transparent)]
    Answer(#[from] AnswerError),
}
