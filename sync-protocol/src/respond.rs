//! The server half of a pull, sans I/O: [`PullResponder`] decides which stored objects a client
//! that has `have` needs for `want`, and shapes the answer: the objects' frames children first,
//! or, for a small change to a client that can apply them, change records.
//!
//! Like [`crate::accept::PushAcceptor`], it says what it needs as [`PullStep`]s and a driver
//! (the server's handler, or the simulation test) fetches it from a store.
//!
//! - The walk is [`crate::diff::DiffWalk`] from `have` to `want`: it reads only changed dirs, so
//!   its cost grows with the change. A `have` the project does not hold (another server's root,
//!   a wiped store) is answered as if the client had nothing.
//! - The objects the walk did not read (chunks, unchanged file objects of moved files) are read
//!   in one more batch.
//! - A change of 1 to [`wire::MAX_RECORDS`] paths against the client's own `have` goes as
//!   change records when the client asked for them: one record per changed path, one-chunk
//!   files inline (as a zstd delta against the chunk the client had at that path when there
//!   was one), and the new objects that are not dirs; the client rebuilds the dirs.

use std::collections::{HashMap, HashSet};
use std::fmt;

use bytes::Bytes;

use crate::compress::{compress_object, decompress_object, max_encoded_len};
use crate::diff::{Change, DiffError, DiffWalk, Side};
use crate::id::ObjectId;
use crate::object::{Dir, Object, ObjectKind};
use crate::patch::{encode_content, records_of_changes};
use crate::stream::{StreamEncoder, StreamError};
use crate::tree::empty_dir_id;
use crate::wire;

/// A stored object as the store returns it: decoded (and verified) and its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub object: Object,
    pub frame: Bytes,
}

/// What the responder needs next.
#[derive(Debug)]
pub enum PullStep {
    /// Read these stored objects and give each to [`PullResponder::provide`] (`None` when it is
    /// not stored).
    Read(Vec<ObjectId>),
    /// Call [`PullResponder::compute`], which gives the answer: compressing and encoding it
    /// is CPU work.
    Compute,
}

/// A pull's answer body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullAnswer {
    /// The object stream.
    pub stream: Vec<u8>,
    /// Frames and records in it.
    pub items: u32,
    /// True when it holds change records.
    pub records: bool,
}

/// Why a pull cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullRejection {
    /// The wanted root is not stored in this project.
    RootMissing(ObjectId),
    /// The wanted root is not a dir.
    RootNotDir(ObjectId),
    /// A stored version is not whole: the store broke its invariant.
    Integrity(String),
    /// The answer could not be encoded.
    Encode(Box<StreamError>),
}

impl fmt::Display for PullRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RootMissing(_) => f.write_str("the wanted root is not stored in this project"),
            Self::RootNotDir(_) => f.write_str("the wanted root is not a dir"),
            Self::Integrity(detail) => write!(f, "a stored version is not whole: {detail}"),
            Self::Encode(error) => write!(f, "encoding the answer: {error}"),
        }
    }
}

impl std::error::Error for PullRejection {}

#[derive(Debug)]
enum State {
    Walking {
        walk: Box<DiffWalk>,
        asked: HashSet<ObjectId>,
    },
    /// The new objects the walk did not read.
    Rest {
        new_objects: Vec<ObjectId>,
        changes: Vec<Change>,
        asked: HashSet<ObjectId>,
    },
    /// The client's old chunks, the dictionaries of delta records.
    Dictionaries {
        new_objects: Vec<ObjectId>,
        changes: Vec<Change>,
        asked: HashSet<ObjectId>,
    },
    Encoding {
        new_objects: Vec<ObjectId>,
        changes: Vec<Change>,
        compact: bool,
    },
    Done,
    Failed,
}

/// The pull responder. Loop on [`PullResponder::step`], doing what each [`PullStep`] asks,
/// until [`PullStep::Done`] or a [`PullRejection`].
#[derive(Debug)]
pub struct PullResponder {
    want: ObjectId,
    have: ObjectId,
    records: bool,
    state: State,
    /// Every object read, with its frame; dictionaries by id.
    read: HashMap<ObjectId, StoredObject>,
    dictionaries: HashMap<ObjectId, Vec<u8>>,
    /// Ids asked for by a walk that was restarted: their answers are dropped.
    abandoned: HashSet<ObjectId>,
}

impl PullResponder {
    /// A pull of `want` by a client that has `have` (the empty project when it has nothing).
    /// `records`: the client can rebuild dirs from change records applied to its listing of
    /// `have`.
    pub fn new(have: ObjectId, want: ObjectId, records: bool) -> Self {
        Self {
            want,
            have,
            records,
            state: State::Walking {
                walk: Box::new(DiffWalk::new(have, want)),
                asked: HashSet::new(),
            },
            read: HashMap::new(),
            dictionaries: HashMap::new(),
            abandoned: HashSet::new(),
        }
    }

    /// The root the client's answer is against: `have`, or the empty project when the project
    /// does not hold `have`.
    pub fn have(&self) -> ObjectId {
        self.have
    }

    /// The next thing to do.
    pub fn step(&mut self) -> Result<PullStep, PullRejection> {
        let result = self.advance();
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Gives a stored object asked for by [`PullStep::Read`]; `None` when it is not stored.
    pub fn provide(
        &mut self,
        id: ObjectId,
        object: Option<StoredObject>,
    ) -> Result<(), PullRejection> {
        let result = self.take(id, object);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Encodes the answer, as [`PullStep::Compute`] asked.
    pub fn compute(&mut self) -> Result<PullAnswer, PullRejection> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let State::Encoding {
            new_objects,
            changes,
            compact,
        } = state
        else {
            self.state = State::Failed;
            return Err(PullRejection::Integrity(
                "compute called when nothing was to encode".to_owned(),
            ));
        };
        let encoded = if compact {
            self.encode_records(&new_objects, &changes)
        } else {
            self.encode_objects(&new_objects)
        };
        encoded.map_err(|error| {
            self.state = State::Failed;
            PullRejection::Encode(Box::new(error))
        })
    }

    fn take(&mut self, id: ObjectId, object: Option<StoredObject>) -> Result<(), PullRejection> {
        let was_asked = match &mut self.state {
            State::Walking { asked, .. }
            | State::Rest { asked, .. }
            | State::Dictionaries { asked, .. } => asked.remove(&id),
            _ => false,
        };
        if !was_asked && self.abandoned.remove(&id) {
            return Ok(());
        }
        if !was_asked {
            return Err(PullRejection::Integrity(format!(
                "object {id} was provided but not asked for"
            )));
        }
        match &mut self.state {
            State::Walking { walk, .. } => {
                let Some(stored) = object else {
                    let error = walk.missing(&id);
                    return self.walk_failed(error);
                };
                let decoded = stored.object.clone();
                self.read.insert(id, stored);
                match walk.provide(id, decoded) {
                    Ok(()) => Ok(()),
                    Err(error) => self.walk_failed(error),
                }
            }
            State::Rest { .. } => match object {
                Some(stored) => {
                    self.read.insert(id, stored);
                    Ok(())
                }
                None => Err(PullRejection::Integrity(format!(
                    "object {id} of the wanted version is not stored"
                ))),
            },
            State::Dictionaries { .. } => {
                // A missing dictionary only costs bytes: the content goes whole.
                if let Some(StoredObject {
                    object: object @ Object::Chunk(_),
                    ..
                }) = object
                {
                    self.dictionaries.insert(id, object.encode());
                }
                Ok(())
            }
            _ => unreachable!("only these states ask"),
        }
    }

    /// A walk error: a `have` the project lacks restarts the walk against nothing; anything
    /// else ends the pull.
    fn walk_failed(&mut self, error: DiffError) -> Result<(), PullRejection> {
        match error {
            DiffError::Missing {
                side: Side::Old, ..
            } if self.have != empty_dir_id() => {
                self.have = empty_dir_id();
                self.read.clear();
                if let State::Walking { asked, .. } = &mut self.state {
                    self.abandoned.extend(asked.drain());
                }
                self.state = State::Walking {
                    walk: Box::new(DiffWalk::new(self.have, self.want)),
                    asked: HashSet::new(),
                };
                Ok(())
            }
            DiffError::Missing { id, .. } if id == self.want => Err(PullRejection::RootMissing(id)),
            DiffError::WrongKind { id, .. } if id == self.want => {
                Err(PullRejection::RootNotDir(id))
            }
            other => Err(PullRejection::Integrity(other.to_string())),
        }
    }

    fn advance(&mut self) -> Result<PullStep, PullRejection> {
        loop {
            match &mut self.state {
                State::Walking { walk, asked } => {
                    if !asked.is_empty() {
                        return Ok(PullStep::Read(asked.iter().copied().collect()));
                    }
                    if !walk.is_done() {
                        let wants = walk.wants().to_vec();
                        asked.extend(wants.iter().copied());
                        return Ok(PullStep::Read(wants));
                    }
                    let State::Walking { walk, .. } =
                        std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    let diff = walk
                        .finish()
                        .map_err(|error| PullRejection::Integrity(error.to_string()))?;
                    let empty = empty_dir_id();
                    if diff.new_objects.contains(&empty) {
                        // Never required in the store: every node can make it.
                        let object = Object::Dir(Dir::empty());
                        let frame = Bytes::from(compress_object(&object.encode()));
                        self.read.insert(empty, StoredObject { object, frame });
                    }
                    let asked = diff
                        .new_objects
                        .iter()
                        .filter(|id| !self.read.contains_key(id))
                        .copied()
                        .collect();
                    self.state = State::Rest {
                        new_objects: diff.new_objects,
                        changes: diff.changes,
                        asked,
                    };
                }
                State::Rest { asked, .. } if !asked.is_empty() => {
                    return Ok(PullStep::Read(asked.iter().copied().collect()));
                }
                State::Rest { .. } => {
                    let State::Rest {
                        new_objects,
                        changes,
                        ..
                    } = std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    let compact = self.records
                        && self.have != empty_dir_id()
                        && !changes.is_empty()
                        && changes.len() <= wire::MAX_RECORDS;
                    if compact {
                        let asked = self.dictionary_ids(&changes);
                        self.state = State::Dictionaries {
                            new_objects,
                            changes,
                            asked,
                        };
                    } else {
                        self.state = State::Encoding {
                            new_objects,
                            changes,
                            compact,
                        };
                    }
                }
                State::Dictionaries { asked, .. } if !asked.is_empty() => {
                    return Ok(PullStep::Read(asked.iter().copied().collect()));
                }
                State::Dictionaries { .. } => {
                    let State::Dictionaries {
                        new_objects,
                        changes,
                        ..
                    } = std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    self.state = State::Encoding {
                        new_objects,
                        changes,
                        compact: true,
                    };
                }
                State::Encoding { .. } => return Ok(PullStep::Compute),
                State::Done | State::Failed => {
                    return Err(PullRejection::Integrity(
                        "the pull is already answered".to_owned(),
                    ));
                }
            }
        }
    }

    /// The client's old chunk at each path that stays a one-chunk file with new content.
    fn dictionary_ids(&self, changes: &[Change]) -> HashSet<ObjectId> {
        changes
            .iter()
            .filter_map(|change| match change {
                Change::Modified { old, new, .. }
                    if old.target == ObjectKind::Chunk
                        && new.target == ObjectKind::Chunk
                        && self.read.contains_key(&new.id) =>
                {
                    Some(old.id)
                }
                _ => None,
            })
            .collect()
    }

    fn encode_objects(&self, new_objects: &[ObjectId]) -> Result<PullAnswer, StreamError> {
        self.encode(&[], new_objects, |_, _| false)
    }

    /// Records for the changes, then the new objects that are neither dirs (the client
    /// rebuilds them) nor inlined.
    fn encode_records(
        &self,
        new_objects: &[ObjectId],
        changes: &[Change],
    ) -> Result<PullAnswer, StreamError> {
        let mut inlined = HashSet::new();
        let records = records_of_changes(changes, |_, new, old| {
            // Only one-chunk files go inline; a file object and its chunks go as frames.
            let stored = self.read.get(&new.id)?;
            let encoded =
                decompress_object(&stored.frame, max_encoded_len(ObjectKind::Chunk)).ok()?;
            let dictionary = old
                .filter(|old| old.target == ObjectKind::Chunk)
                .and_then(|old| self.dictionaries.get(&old.id));
            inlined.insert(new.id);
            Some((
                dictionary.is_some(),
                encode_content(&encoded, dictionary.map(Vec::as_slice)),
            ))
        });
        self.encode(&records, new_objects, |id, kind| {
            kind == ObjectKind::Dir || inlined.contains(id)
        })
    }

    /// A stream of `records`, then the frames of `new_objects` that `skip` keeps out.
    fn encode(
        &self,
        records: &[crate::patch::Record],
        new_objects: &[ObjectId],
        skip: impl Fn(&ObjectId, ObjectKind) -> bool,
    ) -> Result<PullAnswer, StreamError> {
        let mut encoder = StreamEncoder::new();
        for record in records {
            encoder.push_record(record)?;
        }
        for id in new_objects {
            let Some(stored) = self.read.get(id) else {
                continue;
            };
            let kind = stored.object.kind();
            if !skip(id, kind) {
                encoder.push(kind, id, &stored.frame)?;
            }
        }
        Ok(PullAnswer {
            items: encoder.frame_count(),
            stream: encoder.finish(),
            records: !records.is_empty(),
        })
    }
}

/// Runs a whole pull over an in-memory source: `get(id)` gives a stored object. For tests and
/// the simulation, where every read is at hand.
pub fn respond(
    have: ObjectId,
    want: ObjectId,
    records: bool,
    mut get: impl FnMut(&ObjectId) -> Option<StoredObject>,
) -> Result<PullAnswer, PullRejection> {
    let mut responder = PullResponder::new(have, want, records);
    loop {
        match responder.step()? {
            PullStep::Read(ids) => {
                for id in ids {
                    let object = get(&id);
                    responder.provide(id, object)?;
                }
            }
            PullStep::Compute => return responder.compute(),
        }
    }
}
