//! Push and pull planning: which objects travel, in which order. Thin layers over
//! [`crate::diff`], with errors that say what the caller should do next.
//!
//! - Push (client): from the base root (the last version it synced) to its new root, the objects
//!   to send are those reachable from the new root and not from the base, children first, so the
//!   server can check the closure of each object as it arrives.
//! - Pull (server): from the client's have root to the wanted root, the same walk with the sides
//!   swapped. A pull whose want equals its have plans nothing and reads nothing.
//!
//! Both come as a function over an [`ObjectSource`] and as a [`DiffWalk`] the caller drives itself
//! (the server, fetching each batch from its object store in one request) and then turns into a
//! plan with `from_diff`.

use crate::diff::{Change, Diff, DiffError, Side, diff};
use crate::id::ObjectId;
use crate::tree::{ObjectSource, PathError};

/// What a client sends in a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    pub base_root: ObjectId,
    pub new_root: ObjectId,
    /// The objects to send, children first.
    pub objects: Vec<ObjectId>,
    /// The paths the push changes, for the client's summary.
    pub changes: Vec<Change>,
    pub dirs_read: usize,
    pub files_read: usize,
}

impl PushPlan {
    /// The plan of a diff from `base_root` to `new_root` that the caller drove itself.
    pub fn from_diff(base_root: ObjectId, new_root: ObjectId, diff: Diff) -> Self {
        Self {
            base_root,
            new_root,
            objects: diff.new_objects,
            changes: diff.changes,
            dirs_read: diff.dirs_read,
            files_read: diff.files_read,
        }
    }

    /// Nothing changed: the push would only repeat the base.
    pub fn is_empty(&self) -> bool {
        self.base_root == self.new_root
    }
}

/// Why a push could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushPlanError {
    /// Part of the base tree is not in the local object cache. Fall back to the resume
    /// negotiation ([`crate::negotiate`]), which needs no base.
    #[error("base object {id} is not in the local object cache; negotiate instead")]
    BaseUnavailable { id: ObjectId },
    /// Part of the new tree is not in the local object cache: the caller built it incompletely.
    #[error("object {id} of the new tree is not in the local object cache")]
    NewTreeIncomplete { id: ObjectId },
    #[error("the tree breaks a path limit: {0}")]
    Path(PathError),
    #[error("the diff under the push failed: {0}")]
    Diff(DiffError),
}

impl From<DiffError> for PushPlanError {
    fn from(error: DiffError) -> Self {
        match error {
            DiffError::Missing {
                id,
                side: Side::Old,
            } => Self::BaseUnavailable { id },
            DiffError::Missing { id, .. } => Self::NewTreeIncomplete { id },
            DiffError::Path(error) => Self::Path(error),
            other => Self::Diff(other),
        }
    }
}

/// Plans a push of `new_root` on top of `base_root`, reading both trees from `local`.
pub fn plan_push(
    local: &impl ObjectSource,
    base_root: &ObjectId,
    new_root: &ObjectId,
) -> Result<PushPlan, PushPlanError> {
    let diff = diff(local, base_root, new_root)?;
    Ok(PushPlan::from_diff(*base_root, *new_root, diff))
}
