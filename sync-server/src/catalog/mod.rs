//! The catalog: accounts, tokens, teams, projects, every project's head and history, push
//! receipts, cluster nodes and every project's object index (DESIGN section 4).
//!
//! One trait, [`Catalog`], with two implementations that pass one conformance suite
//! (`sync-server/tests/catalog_conformance.rs`):
//!
//! - [`PostgresCatalog`]: tokio-postgres over a deadpool pool, for clusters. The schema is the
//!   SQL files in `migrations/`, applied in order at start under a `pg_advisory_xact_lock`, so many
//!   nodes may start at once.
//! - [`SqliteCatalog`]: rusqlite (bundled) in one file of the data folder, WAL mode, for the
//!   single-node default. Its schema is `migrations/sqlite/`. Blocking calls run on
//!   `spawn_blocking`.
//!
//! The trait uses `async-trait` so the server can hold an `Arc<dyn Catalog>` and pick the
//! implementation from its configuration at run time.
//!
//! The rules are written once, in `rules.rs`: the commit and its replay, membership and the
//! last owner, what a new account, token, team or project is, and what a refused write means.
//! Those that need a transaction are generic over `CatalogTransaction` (`transaction.rs`), a
//! crate-private trait of one-statement primitives (read a receipt, compare-and-swap the head,
//! insert a version, lock the owners...) that each implementation writes in its SQL. What stays
//! in `postgres.rs` and `sqlite.rs` is SQL, row readers and the way each runs a transaction.
//!
//! # The commit, the one write that matters
//!
//! [`Catalog::commit`] is one transaction: a conditional update of the project's head
//! (`WHERE head_version = base`), the insert of the version row and the insert of the push
//! receipt. It is the linearization point of every push (DESIGN section 1), so:
//!
//! - a stale base gets [`CommitOutcome::Conflict`] carrying the current head, and writes only
//!   the receipt (unless a concurrent copy of the same push recorded it first: then it answers
//!   as that copy did);
//! - a retry with the same push id (same base and root) gets the original outcome, marked
//!   `replayed`, and never commits twice; a committed receipt returns the committed version, a
//!   conflict receipt returns a conflict with the head as it is now;
//! - the same push id with a different base or root is [`CatalogError::PushIdReused`].
//!
//! # The object index
//!
//! Per project, every stored object's place: the pack holding its frame (`store::pack`), the
//! frame's offset and length there, and the object's kind and size ([`IndexedObject`]), beside
//! a row per pack ([`PackRecord`]). "Which of these are stored", the push acceptor's kind and
//! size questions and closure checks are one [`Catalog::locate`] instead of a store request per
//! object. The rules:
//!
//! - Index rows are written ([`Catalog::index_pack`]) only once their pack is durable: the
//!   caller's duty, since the catalog never sees the store.
//! - An object indexed twice keeps its first location; only compaction
//!   ([`Catalog::relocate`]) moves it.
//! - A project never sees another's index: every query is scoped by project, and an id
//!   indexed in one project is unknown in the others.
//! - Every row has a `touched` time, set when a pack indexes the object and when a push looks
//!   it up with `touch`. Garbage collection ([`Catalog::unindex`]) removes only rows untouched
//!   since its cut-off, so an object a push is still referencing (or has just uploaded again)
//!   survives a collection that decided to drop it. Times are the node's clock, like every
//!   time in the catalog; the collector's grace period must exceed clock skew plus the longest
//!   push.
//! - A pack's row goes ([`Catalog::forget_pack`]) only when no object row names it.
//! - Projects from before packs keep their objects one stored value per object until converted:
//!   [`Catalog::legacy_layout`] says which layout a project is in, [`Catalog::set_packed`]
//!   records the conversion.
//!
//! Writers lock rows in object id order (PostgreSQL), so pushes, lookups and collection running
//! at once on one project wait for one another but never deadlock.
//!
//! Names (account, email, team, and project within its team) are unique ignoring case: the
//! catalog stores a lowercase key beside each (Rust's `str::to_lowercase`, so both databases
//! fold identically).

mod common;
mod error;
pub mod limits;
mod listen;
mod migrations;
mod postgres;
mod rules;
#[cfg(test)]
mod simulation;
mod sqlite;
mod transaction;
mod types;
mod validate;

use std::time::Duration;

use async_trait::async_trait;
use sync_protocol::ObjectId;

pub use error::{CatalogError, Entity, Field};
pub use listen::{ACCESS_CHANNEL, CatalogListener, HEADS_CHANNEL, HeadNotification, Notification};
pub use postgres::{PostgresCatalog, PostgresSettings};
pub use sqlite::SqliteCatalog;
pub use types::{
    Account, AccountCredentials, AccountId, Authenticated, CommitOutcome, CommitRequest,
    IndexedObject, Member, NewAccount, Node, NodeId, NodeStats, NodeStatus, Onto,
    PROJECT_CREATED_MESSAGE, PackId, PackRecord, ParseCatalogIdError, Project, ProjectId, PushId,
    RestoreRequest, Role, SessionId, SignedIn, Team, TeamId, TeamMembership, Timestamp, Token,
    TokenHash, TokenId, Version, VersionNumber, VersionPage, VisibleProject, WebSession,
    empty_root,
};
/// The rule a version message follows, for callers that check it before doing any work.
pub use validate::message as validate_message;

/// Shorthand for catalog results.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Everything the server keeps in its database. See the module doc for the commit's rules.
///
/// Lookups that find nothing return `Ok(None)` (or an empty list); writes that need a row that
/// does not exist return [`CatalogError::NotFound`]. Access control is the caller's: the catalog
/// answers [`Catalog::project_role`], the API decides.
#[async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug {
    // Accounts.

    /// Creates an account. A taken name or email is [`CatalogError::AlreadyExists`].
    async fn create_account(&self, account: NewAccount) -> Result<Account>;

    async fn account(&self, id: AccountId) -> Result<Option<Account>>;

    /// The account whose name or email equals `login`, ignoring case, with its password hash.
    async fn account_credentials(&self, login: &str) -> Result<Option<AccountCredentials>>;

    /// Replaces an account's password hash (a PHC string).
    async fn set_password_hash(&self, account: AccountId, password_hash: &str) -> Result<()>;

    // Tokens.

    /// Stores a new token for `account`. Only the hash of its secret is kept.
    async fn create_token(
        &self,
        account: AccountId,
        label: &str,
        secret_hash: TokenHash,
    ) -> Result<Token>;

    /// The owner of the unrevoked token with this secret hash, touching its `last_used` (at most
    /// once per [`limits::TOKEN_LAST_USED_RESOLUTION`]).
    async fn authenticate_token(&self, secret_hash: &TokenHash) -> Result<Option<Authenticated>>;

    /// An account's tokens, revoked ones included, oldest first.
    async fn tokens(&self, account: AccountId) -> Result<Vec<Token>>;

    /// Revokes one of `account`'s tokens. Revoking twice keeps the first time; another account's
    /// token is [`CatalogError::NotFound`].
    async fn revoke_token(&self, account: AccountId, token: TokenId) -> Result<()>;

    // Browser sessions (the account pages).

    /// Stores a session for `account`, valid until `expires`; only the hash of its secret is
    /// kept. The account's expired sessions are deleted on the way.
    async fn create_session(
        &self,
        account: AccountId,
        secret_hash: TokenHash,
        expires: Timestamp,
    ) -> Result<WebSession>;

    /// The session with this secret hash and its account, if it has not expired.
    async fn session(&self, secret_hash: &TokenHash) -> Result<Option<SignedIn>>;

    /// `account`'s unexpired sessions, oldest first.
    async fn sessions(&self, account: AccountId) -> Result<Vec<WebSession>>;

    /// Ends (deletes) one session: sign-out. An unknown or ended session is not an error.
    async fn end_session(&self, secret_hash: &TokenHash) -> Result<()>;

    /// Ends every session of `account` (sign out everywhere; a password change). How many.
    async fn end_sessions(&self, account: AccountId) -> Result<u64>;

    // Teams.

    /// Creates a team with `owner` as its first member, role owner, in one transaction.
    async fn create_team(&self, name: &str, owner: AccountId) -> Result<Team>;

    async fn team(&self, id: TeamId) -> Result<Option<Team>>;

    /// The team with this name, ignoring case.
    async fn team_by_name(&self, name: &str) -> Result<Option<Team>>;

    /// The teams `account` belongs to, with its role in each, by name.
    async fn teams_of(&self, account: AccountId) -> Result<Vec<TeamMembership>>;

    /// Adds a member or changes their role. Demoting the last owner is
    /// [`CatalogError::LastOwner`].
    async fn set_member(&self, team: TeamId, account: AccountId, role: Role) -> Result<()>;

    /// Removes a member; a non-member is [`CatalogError::NotFound`] and removing the last owner
    /// is [`CatalogError::LastOwner`].
    async fn remove_member(&self, team: TeamId, account: AccountId) -> Result<()>;

    /// A team's members, by account name.
    async fn members(&self, team: TeamId) -> Result<Vec<Member>>;

    /// `account`'s role in `team`, if it is a member.
    async fn team_role(&self, team: TeamId, account: AccountId) -> Result<Option<Role>>;

    // Projects.

    /// Creates a project whose head is version 0, the empty dir ([`empty_root`]), and writes
    /// that version 0 with `creator` as author, in one transaction. A name taken in the team
    /// (ignoring case) is [`CatalogError::AlreadyExists`].
    async fn create_project(&self, team: TeamId, name: &str, creator: AccountId)
    -> Result<Project>;

    /// A project and its current head.
    async fn project(&self, id: ProjectId) -> Result<Option<Project>>;

    /// The project of `team` with this name, ignoring case.
    async fn project_by_name(&self, team: TeamId, name: &str) -> Result<Option<Project>>;

    /// Every project `account` may see (through its teams), with its role there, by team id and
    /// project name.
    async fn projects_visible_to(&self, account: AccountId) -> Result<Vec<VisibleProject>>;

    /// `account`'s role on `project`, through the project's team; `None` if it may not see it
    /// (or the project does not exist: the API must answer both alike).
    async fn project_role(&self, account: AccountId, project: ProjectId) -> Result<Option<Role>>;

    /// The project with `account`'s role on it, in one query: what an authorized request on a
    /// project needs. `None` both when it does not exist and when `account` may not see it.
    async fn project_for(
        &self,
        account: AccountId,
        project: ProjectId,
    ) -> Result<Option<VisibleProject>>;

    /// Every project, by id, a page at a time: for fsck and GC, not for users. Pass the last id
    /// of a page as `after` to get the next; at most [`limits::MAX_PROJECT_PAGE`] per page.
    async fn all_projects(&self, after: Option<ProjectId>, limit: u32) -> Result<Vec<Project>>;

    // History.

    /// Moves the head, atomically and idempotently: see the module doc.
    async fn commit(&self, request: CommitRequest) -> Result<CommitOutcome>;

    /// A page of a project's history, newest first.
    async fn versions(&self, project: ProjectId, page: VersionPage) -> Result<Vec<Version>>;

    /// Every version of a project, newest first, read a page at a time: what fsck and
    /// garbage collection walk.
    async fn all_versions(&self, project: ProjectId) -> Result<Vec<Version>> {
        let mut all: Vec<Version> = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .versions(
                    project,
                    VersionPage {
                        before,
                        limit: limits::MAX_VERSION_PAGE,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(last.number);
            let done = last.number == 0;
            all.extend(page);
            if done {
                break;
            }
        }
        Ok(all)
    }

    /// One version of a project.
    async fn version(&self, project: ProjectId, number: VersionNumber) -> Result<Option<Version>>;

    /// Retention: deletes the versions of `project` made before `older_than`, the head
    /// excepted (it is always kept). How many went. Their objects become garbage for the next
    /// collection unless a kept version shares them.
    async fn drop_versions(&self, project: ProjectId, older_than: Timestamp) -> Result<u64>;

    /// Restores an old version: a commit on `base_version` whose root is that version's root.
    /// An unknown version is [`CatalogError::NotFound`].
    async fn restore(&self, request: RestoreRequest) -> Result<CommitOutcome> {
        rules::restore(self, request).await
    }

    // The object index (see the module doc).

    /// Indexes a durable pack of `project` and the objects in it, in one transaction: the
    /// pack's row (indexing the same pack again is fine: the first row stays), then a row for
    /// every object of `objects` not yet indexed in the project (one already indexed keeps its
    /// first location, an id named twice its first), and every object named touched now, new
    /// or not. Every object must name `pack` and lie within it, and numbers must fit
    /// [`limits::MAX_INDEXED_VALUE`]: otherwise [`CatalogError::Invalid`] and nothing is
    /// written. An unknown project is [`CatalogError::NotFound`].
    async fn index_pack(
        &self,
        project: ProjectId,
        pack: &PackRecord,
        objects: &[IndexedObject],
    ) -> Result<()>;

    /// Where each of `ids` is stored in `project`, in the order of `ids` (`None`: not indexed
    /// here, whether or not another project has it), in one query however many there are. With
    /// `touch`, the rows found are touched now in the same statement (SQLite: transaction):
    /// what keeps an object a push references safe from a collection running meanwhile.
    async fn locate(
        &self,
        project: ProjectId,
        ids: &[ObjectId],
        touch: bool,
    ) -> Result<Vec<Option<IndexedObject>>>;

    /// The packs indexed for `project`, oldest first.
    async fn packs(&self, project: ProjectId) -> Result<Vec<PackRecord>>;

    /// The index rows that name `pack`, in frame order: what compaction copies out of it.
    async fn pack_objects(&self, project: ProjectId, pack: PackId) -> Result<Vec<IndexedObject>>;

    /// Garbage collection's recent objects: the ids of `project`'s rows touched at or after
    /// `since` (indexed or referenced by a push since then). They and everything they reach
    /// are kept, since a push in flight may be about to commit a version naming them.
    async fn touched_since(&self, project: ProjectId, since: Timestamp) -> Result<Vec<ObjectId>>;

    /// Garbage collection: removes the rows of `ids` untouched since `untouched_since` (their
    /// `touched` strictly older). A row touched at or after the cut-off stays: a push that
    /// indexed or referenced it meanwhile keeps it. How many rows went.
    async fn unindex(
        &self,
        project: ProjectId,
        ids: &[ObjectId],
        untouched_since: Timestamp,
    ) -> Result<u64>;

    /// Compaction: records `pack` (as [`Catalog::index_pack`] does) and moves every row of
    /// `moved` that still exists to its place in it, in one transaction. Each of `moved` must
    /// name `pack` and lie within it. Kinds, sizes and `touched` stay as they are; rows removed
    /// meanwhile are not brought back. How many rows moved.
    async fn relocate(
        &self,
        project: ProjectId,
        pack: &PackRecord,
        moved: &[IndexedObject],
    ) -> Result<u64>;

    /// Removes `pack`'s row if no object row names it, and in the same transaction records it
    /// as dead since now (see [`Catalog::dead_packs`]). True if it went; false if rows still
    /// name it or it was not indexed.
    async fn forget_pack(&self, project: ProjectId, pack: PackId) -> Result<bool>;

    /// Records packs found in the object store but not indexed (a node died between writing a
    /// pack and indexing it) as dead since `since`. A pack that is indexed, or already recorded
    /// dead, is left as it is. How many were recorded.
    async fn note_dead_packs(
        &self,
        project: ProjectId,
        packs: &[PackId],
        since: Timestamp,
    ) -> Result<u64>;

    /// `project`'s dead packs, with since when each has been dead, oldest first.
    async fn dead_packs(&self, project: ProjectId) -> Result<Vec<(PackId, Timestamp)>>;

    /// Removes the dead-pack rows of `packs` (their stored packs have been deleted). How many
    /// went.
    async fn drop_dead_packs(&self, project: ProjectId, packs: &[PackId]) -> Result<u64>;

    /// Whether `project`'s objects are still in the layout from before packs (one stored value
    /// per object): true for projects that existed when the object index came, false for
    /// projects created since and for converted ones. `None` if there is no such project.
    async fn legacy_layout(&self, project: ProjectId) -> Result<Option<bool>>;

    /// Records that `project`'s objects are now all packed and indexed (the conversion
    /// command's last step). Setting it twice is fine; an unknown project is
    /// [`CatalogError::NotFound`].
    async fn set_packed(&self, project: ProjectId) -> Result<()>;

    // Cluster.

    /// Registers `node` with `status`, or refreshes its status and heartbeat to now.
    async fn heartbeat(&self, node: NodeId, status: &NodeStatus) -> Result<()>;

    /// Every registered node, live or not, by id.
    async fn nodes(&self) -> Result<Vec<Node>>;

    /// Nodes whose last heartbeat is at most `max_age` old, by id.
    async fn live_nodes(&self, max_age: Duration) -> Result<Vec<Node>> {
        let oldest = rules::oldest_live_heartbeat(max_age);
        let mut nodes = self.nodes().await?;
        nodes.retain(|node| node.heartbeat >= oldest);
        Ok(nodes)
    }

    /// Unregisters a node (on clean shutdown). An unknown node is not an error.
    async fn remove_node(&self, node: NodeId) -> Result<()>;

    /// Unregisters the nodes whose last heartbeat is more than `max_age` old (nodes that died
    /// without leaving), returning how many.
    async fn forget_nodes(&self, max_age: Duration) -> Result<u64>;
}
