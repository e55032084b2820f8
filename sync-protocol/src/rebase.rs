//! The server-side rebase of a push, sans I/O: a push built on a base that is no longer the head
//! is committed on top of the head when the two touched different paths.
//!
//! [`Rebase`] diffs the push's base root against the pushed root (the push's changes) and against
//! the head root (everything committed since the base), decides with [`rebase_changes`] whether
//! they overlap, and if not rebuilds the head's dirs along the push's changed paths with a
//! [`TreePatch`]. Like [`DiffWalk`] and [`TreePatch`] it is batch-driven: [`RebaseStep::Read`]
//! names stored objects (dirs, and file objects in a diff's last phase) and
//! [`Rebase::provide`] takes them.
//!
//! # What overlaps
//!
//! Changes are compared per listing path (a file or an empty dir). A change both sides made
//! identically (the same entry, or both removed it) is no conflict and is left out of both
//! sides. What remains overlaps when one side changed a path that the other side changed too,
//! or that lies inside or above a path the other side changed (a file against a folder holding
//! it). Anything else cannot interact: the result is the head with the push's remaining changes
//! applied, which is what the three-way merge of the three trees would give (the property tests
//! hold it to `merge`).
//!
//! A rebased tree the format would refuse (two names equal up to case in one dir, a dir past its
//! entry limit) is an overlap too: the client's pull and merge deal with it as with any
//! conflict. The rebased tree needs no path check: each of its paths is a path of the head or of
//! the pushed tree, both already checked.

use std::collections::BTreeMap;

use crate::diff::{Change, DiffError, DiffWalk};
use crate::id::ObjectId;
use crate::object::{Object, ObjectKind};
use crate::patch::{PatchError, Patched, TreePatch};
use crate::tree::{FileRef, Path, first_key_under};

/// One side's change at a path: the entry before and after (`None`: nothing there).
pub type PathChange = (Option<FileRef>, Option<FileRef>);

/// Changes by path, one per path (a file that became an empty dir is one change).
pub type PathChanges = BTreeMap<Path, PathChange>;

/// Folds a diff's changes into one change per path.
pub fn by_path(changes: &[Change]) -> PathChanges {
    let mut paths = PathChanges::new();
    for change in changes {
        let slot = paths
            .entry(change.path().clone())
            .or_insert((change.before().copied(), None));
        if let Some(after) = change.after() {
            slot.1 = Some(*after);
        }
    }
    paths
}

/// What [`rebase_changes`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The push's changes the head does not already have, by path: each path's new entry, or
    /// `None` for a removal. Empty when the head already holds every change of the push.
    Apply(BTreeMap<Path, Option<FileRef>>),
    /// A path the push changed that the head changed differently, or that lies inside or above
    /// one the head changed.
    Overlap(Path),
}

/// Decides whether the push's changes (`pushed`, from the common base) can be applied to a head
/// that made the changes `head` since that base. See the module doc.
pub fn rebase_changes(pushed: &PathChanges, head: &PathChanges) -> Decision {
    let same = |path: &Path, change: &PathChange, other: &PathChanges| {
        other.get(path).is_some_and(|theirs| theirs.1 == change.1)
    };
    let head_only: PathChanges = head
        .iter()
        .filter(|(path, change)| !same(path, change, pushed))
        .map(|(path, change)| (path.clone(), *change))
        .collect();
    let mut apply = BTreeMap::new();
    for (path, change) in pushed {
        if same(path, change, head) {
            continue;
        }
        if let Some(overlap) = touched(&head_only, path) {
            return Decision::Overlap(overlap);
        }
        apply.insert(path.clone(), change.1);
    }
    Decision::Apply(apply)
}

/// A path of `changes` that is `path`, one of its ancestors or one of its descendants.
fn touched(changes: &PathChanges, path: &Path) -> Option<Path> {
    if changes.contains_key(path) {
        return Some(path.clone());
    }
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        if changes.contains_key(&dir) {
            return Some(dir);
        }
        ancestor = dir.parent();
    }
    first_key_under(changes, path).cloned()
}

/// What the driver does next.
#[derive(Debug)]
pub enum RebaseStep {
    /// Read these stored objects and give each to [`Rebase::provide`]; all of the kind
    /// [`Rebase::wanted_kind`].
    Read(Vec<ObjectId>),
    /// The rebase is decided.
    Done(RebaseOutcome),
}

/// How a rebase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebaseOutcome {
    /// The new tree: its root and the dirs it needs that may not be stored yet, children
    /// first. With nothing left to apply, the head's root and no dirs.
    Rebased(Patched),
    /// The push and the head changed the same path (or a path and a folder holding it): the
    /// push gets the conflict answer.
    Overlap(Path),
}

/// Why a rebase failed: the store lacks an object of a stored version, or the driver provided
/// what was not asked for. Never the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RebaseError {
    #[error("diff: {0}")]
    Diff(#[from] DiffError),
    #[error("patch: {0}")]
    Patch(PatchError),
    #[error("object {id} was provided but not asked for, or is not a dir")]
    NotWanted { id: ObjectId },
    #[error("the rebase is over")]
    Over,
}

#[derive(Debug)]
enum State {
    /// Diffing the base against the pushed root.
    Pushed {
        walk: DiffWalk,
        head_root: ObjectId,
        base_root: ObjectId,
    },
    /// Diffing the base against the head root.
    Head {
        walk: DiffWalk,
        pushed: PathChanges,
    },
    /// Reading the head's dirs along the paths to change.
    Patching {
        patch: TreePatch,
        apply: BTreeMap<Path, Option<FileRef>>,
    },
    Over,
}

/// The rebase machine. Loop on [`Rebase::step`], providing what [`RebaseStep::Read`] asks for,
/// until [`RebaseStep::Done`].
#[derive(Debug)]
pub struct Rebase {
    state: State,
    head_root: ObjectId,
}

impl Rebase {
    /// A rebase onto `head_root` of the push from `base_root` to `pushed_root`. Every object of
    /// the three trees must be stored.
    pub fn new(base_root: ObjectId, pushed_root: ObjectId, head_root: ObjectId) -> Self {
        Self {
            state: State::Pushed {
                walk: DiffWalk::new(base_root, pushed_root),
                head_root,
                base_root,
            },
            head_root,
        }
    }

    /// The kind of the objects the current [`RebaseStep::Read`] names.
    pub fn wanted_kind(&self) -> Option<ObjectKind> {
        match &self.state {
            State::Pushed { walk, .. } | State::Head { walk, .. } => walk.wanted_kind(),
            State::Patching { .. } => Some(ObjectKind::Dir),
            State::Over => None,
        }
    }

    /// The next step: objects to read, or the outcome.
    pub fn step(&mut self) -> Result<RebaseStep, RebaseError> {
        loop {
            match &mut self.state {
                State::Pushed { walk, .. } | State::Head { walk, .. } if !walk.is_done() => {
                    return Ok(RebaseStep::Read(walk.wants().to_vec()));
                }
                State::Patching { patch, .. } if !patch.is_done() => {
                    return Ok(RebaseStep::Read(patch.wants().to_vec()));
                }
                State::Over => return Err(RebaseError::Over),
                _ => {}
            }
            match std::mem::replace(&mut self.state, State::Over) {
                State::Pushed {
                    walk,
                    head_root,
                    base_root,
                } => {
                    let pushed = by_path(&walk.finish()?.changes);
                    self.state = State::Head {
                        walk: DiffWalk::new(base_root, head_root),
                        pushed,
                    };
                }
                State::Head { walk, pushed } => {
                    let head = by_path(&walk.finish()?.changes);
                    match rebase_changes(&pushed, &head) {
                        Decision::Overlap(path) => {
                            return Ok(RebaseStep::Done(RebaseOutcome::Overlap(path)));
                        }
                        Decision::Apply(apply) if apply.is_empty() => {
                            return Ok(RebaseStep::Done(RebaseOutcome::Rebased(Patched {
                                root: self.head_root,
                                dirs: Vec::new(),
                                dirs_read: 0,
                            })));
                        }
                        Decision::Apply(apply) => {
                            let paths = apply.keys().cloned().collect();
                            let patch = TreePatch::new(self.head_root, paths)
                                .map_err(RebaseError::Patch)?;
                            self.state = State::Patching { patch, apply };
                        }
                    }
                }
                State::Patching { patch, apply } => {
                    return match patch.finish(&apply) {
                        Ok(patched) => Ok(RebaseStep::Done(RebaseOutcome::Rebased(patched))),
                        // Changes that do not make a valid tree together: a conflict for the
                        // client's merge to resolve, never a broken version.
                        Err(
                            error @ (PatchError::InvalidDir { .. }
                            | PatchError::PathConflict { .. }),
                        ) => {
                            // The root dir's path is "", which names no path: the first change
                            // stands for it.
                            let place = match &error {
                                PatchError::InvalidDir { path, .. }
                                | PatchError::PathConflict { path } => Path::new(path).ok(),
                                _ => None,
                            };
                            match place.or_else(|| apply.keys().next().cloned()) {
                                Some(path) => Ok(RebaseStep::Done(RebaseOutcome::Overlap(path))),
                                None => Err(RebaseError::Patch(error)),
                            }
                        }
                        Err(error) => Err(RebaseError::Patch(error)),
                    };
                }
                State::Over => return Err(RebaseError::Over),
            }
        }
    }

    /// Gives one stored object the current [`RebaseStep::Read`] asked for.
    pub fn provide(&mut self, id: ObjectId, object: Object) -> Result<(), RebaseError> {
        let result = match (&mut self.state, object) {
            (State::Pushed { walk, .. } | State::Head { walk, .. }, object) => {
                walk.provide(id, object).map_err(RebaseError::from)
            }
            (State::Patching { patch, .. }, Object::Dir(dir)) => {
                patch.provide(id, dir).map_err(RebaseError::Patch)
            }
            _ => Err(RebaseError::NotWanted { id }),
        };
        if result.is_err() {
            self.state = State::Over;
        }
        result
    }

    /// The error to return when the store lacks an object the current step asked for.
    pub fn missing(&self, id: &ObjectId) -> RebaseError {
        match &self.state {
            State::Pushed { walk, .. } | State::Head { walk, .. } => walk.missing(id).into(),
            _ => RebaseError::Diff(DiffError::Missing {
                id: *id,
                side: crate::diff::Side::Old,
            }),
        }
    }
}

/// Runs a whole [`Rebase`] over an [`ObjectSource`](crate::tree::ObjectSource).
pub fn rebase(
    source: &impl crate::tree::ObjectSource,
    base_root: ObjectId,
    pushed_root: ObjectId,
    head_root: ObjectId,
) -> Result<RebaseOutcome, RebaseError> {
    let mut rebase = Rebase::new(base_root, pushed_root, head_root);
    loop {
        match rebase.step()? {
            RebaseStep::Read(ids) => {
                let kind = rebase.wanted_kind();
                for id in ids {
                    let object = match kind {
                        Some(ObjectKind::File) => source.file(&id).map(Object::File),
                        _ => source.dir(&id).map(Object::Dir),
                    };
                    let object = object.ok_or_else(|| rebase.missing(&id))?;
                    rebase.provide(id, object)?;
                }
            }
            RebaseStep::Done(outcome) => return Ok(outcome),
        }
    }
}
