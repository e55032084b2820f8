//! The primitive operations of one catalog transaction: what the shared rules
//! ([`rules`](super::rules)) need from a database, and all that the two implementations write
//! twice.
//!
//! Each method is one SQL statement in the backend's dialect; none of them decides anything.
//! [`PostgresCatalog`](super::PostgresCatalog) implements the trait over a tokio-postgres
//! transaction (every method a round trip, statements prepared once per connection), and
//! [`SqliteCatalog`](super::SqliteCatalog) over a rusqlite transaction, where every method is
//! synchronous behind an `async fn` that never waits, so the rules run inside its
//! `spawn_blocking` closure without another thread.
//!
//! Dropping a transaction without [`CatalogTransaction::commit`] rolls it back (both drivers do
//! so on drop), which is how a rule that fails half-way writes nothing.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use sync_protocol::{ObjectId, ObjectKind};

use super::Result;
use super::common::Unique;
use super::error::CatalogError;
use super::types::{
    AccountId, PackId, Project, ProjectId, PushId, Role, Team, TeamId, Timestamp, Version,
    VersionNumber,
};

/// A push receipt as stored: what the push asked for and, if it committed, the version it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Receipt {
    pub base_version: VersionNumber,
    pub root: ObjectId,
    /// `None` for a push that lost the compare-and-swap.
    pub committed_version: Option<VersionNumber>,
}

/// A push receipt to record.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewReceipt<'a> {
    pub project: ProjectId,
    pub push_id: &'a PushId,
    pub receipt: Receipt,
    pub created: Timestamp,
}

/// A version row to write. The author's name is not stored with it: it is joined in on reading.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewVersion<'a> {
    pub project: ProjectId,
    pub number: VersionNumber,
    pub root: ObjectId,
    pub parent: Option<VersionNumber>,
    pub author: AccountId,
    pub time: Timestamp,
    pub message: &'a str,
    pub push_id: Option<&'a PushId>,
}

/// A pack row to write, its numbers checked to fit the databases' signed integers by
/// [`rules`](super::rules).
#[derive(Debug, Clone, Copy)]
pub(super) struct PackRow {
    pub id: PackId,
    pub length: i64,
    pub object_count: i64,
    pub created: Timestamp,
}

/// An object index row to write, checked like [`PackRow`]. Its pack is the one it is written
/// with.
#[derive(Debug, Clone, Copy)]
pub(super) struct ObjectRow {
    pub id: ObjectId,
    pub offset: i64,
    pub length: i64,
    pub kind: ObjectKind,
    pub size: i64,
}

/// Why a write failed. The database only says which constraint it refused; what that means to
/// the caller (a taken name, a missing account or team) is the rule's to say.
#[derive(Debug)]
pub(super) enum WriteError {
    /// A named unique constraint of the schema.
    Taken(Unique),
    /// A foreign key: a row the write refers to does not exist.
    MissingReference,
    /// Anything else, already a [`CatalogError`] naming the operation.
    Failed(CatalogError),
}

impl WriteError {
    /// The error for a write where no constraint violation is expected to mean anything: every
    /// refusal is a database failure of `operation`.
    pub fn unexpected(self, operation: &'static str) -> CatalogError {
        match self {
            Self::Taken(unique) => {
                CatalogError::database(operation, format!("unexpected unique violation {unique:?}"))
            }
            Self::MissingReference => {
                CatalogError::database(operation, "unexpected foreign key violation")
            }
            Self::Failed(error) => error,
        }
    }
}

impl From<CatalogError> for WriteError {
    fn from(error: CatalogError) -> Self {
        Self::Failed(error)
    }
}

/// One open transaction. See the module doc.
///
/// `async fn` in a crate-private trait: the rules are generic over it, so every call is
/// statically dispatched and nothing is boxed, and the futures are `Send` wherever the
/// backend's are (PostgreSQL's are; SQLite's never leave their thread).
pub(super) trait CatalogTransaction {
    /// The receipt of `push_id` in `project`, if this push has been seen.
    async fn receipt(&mut self, project: ProjectId, push_id: &PushId) -> Result<Option<Receipt>>;

    /// `project`'s head (version and root), or `None` if there is no such project.
    async fn head(&mut self, project: ProjectId) -> Result<Option<(VersionNumber, ObjectId)>>;

    /// The compare-and-swap: moves `project`'s head from version `from` to version `to` with
    /// `root`, only if its head is still `from`. True if it moved. In PostgreSQL this waits for
    /// the row lock of a concurrent commit and re-checks against the head it committed.
    async fn swap_head(
        &mut self,
        project: ProjectId,
        from: VersionNumber,
        to: VersionNumber,
        root: ObjectId,
    ) -> Result<bool>;

    /// Writes a version row. A missing author is [`WriteError::MissingReference`].
    async fn insert_version(&mut self, version: &NewVersion<'_>) -> Result<(), WriteError>;

    /// Records a receipt unless this push id already has one in this project (never
    /// overwriting it). True if it was recorded.
    async fn insert_receipt(&mut self, receipt: &NewReceipt<'_>) -> Result<bool>;

    /// One version of a project, with its author's name.
    async fn version(
        &mut self,
        project: ProjectId,
        number: VersionNumber,
    ) -> Result<Option<Version>>;

    /// Writes a team row. A taken name is [`WriteError::Taken`].
    async fn insert_team(&mut self, team: &Team) -> Result<(), WriteError>;

    /// The accounts that own `team`, held until the transaction ends so that no concurrent
    /// transaction can demote or remove one of them meanwhile (PostgreSQL: `FOR UPDATE` on
    /// their rows; SQLite: its transactions take the write lock when they begin).
    async fn lock_owners(&mut self, team: TeamId) -> Result<Vec<AccountId>>;

    /// Adds `account` to `team` with `role`, or changes its role. A missing team or account is
    /// [`WriteError::MissingReference`].
    async fn upsert_membership(
        &mut self,
        team: TeamId,
        account: AccountId,
        role: Role,
    ) -> Result<(), WriteError>;

    /// Removes `account` from `team`. True if it was a member.
    async fn delete_membership(&mut self, team: TeamId, account: AccountId) -> Result<bool>;

    /// Writes a project row. A name taken in the team is [`WriteError::Taken`], a missing team
    /// [`WriteError::MissingReference`].
    async fn insert_project(&mut self, project: &Project) -> Result<(), WriteError>;

    /// Records `pack` for `project` unless it is recorded already (the first record stays). A
    /// missing project is [`WriteError::MissingReference`]. In PostgreSQL the pack's row stays
    /// locked until the transaction ends, so a concurrent forget of the pack waits, then sees
    /// the objects this transaction indexed in it and keeps it.
    async fn insert_pack(&mut self, project: ProjectId, pack: &PackRow) -> Result<(), WriteError>;

    /// Indexes `objects` in `pack`, which is recorded: an object not yet indexed gets its row,
    /// one already indexed keeps its location, and every one's `touched` becomes at least
    /// `now`. `objects` is sorted by id with no id twice, so rows are locked in id order.
    async fn insert_objects(
        &mut self,
        project: ProjectId,
        pack: PackId,
        objects: &[ObjectRow],
        now: Timestamp,
    ) -> Result<()>;

    /// Moves the rows of `objects` that exist to their place in `pack`, which is recorded;
    /// their kind, size and `touched` stay. `objects` is sorted by id with no id twice. How
    /// many rows moved.
    async fn move_objects(
        &mut self,
        project: ProjectId,
        pack: PackId,
        objects: &[ObjectRow],
    ) -> Result<u64>;

    /// Makes everything this transaction wrote durable and visible.
    async fn commit(self) -> Result<()>;
}

/// Runs a rule to its end on this thread, over a transaction whose methods never wait (SQLite's
/// are blocking calls that have finished when they return): the future is ready at its first
/// poll, so it needs no executor and no other thread. One that is not is an error, not a hang.
pub(super) fn run_rule<T>(
    operation: &'static str,
    rule: impl Future<Output = Result<T>>,
) -> Result<T> {
    let mut rule = pin!(rule);
    match rule.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(CatalogError::database(
            operation,
            "a catalog rule waited, over a transaction that never waits",
        )),
    }
}
