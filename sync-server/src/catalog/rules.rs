//! The catalog's rules, written once for both databases: the commit and its replay by push id,
//! membership and the last owner, what a new account, token, team or project is, the limits of
//! a page, and what the object index accepts and in which order it writes.
//!
//! The rules that need a transaction are async functions generic over
//! [`CatalogTransaction`], which each implementation provides in its own SQL. They take the
//! transaction as a future that opens it (`begin`), awaited only once the input has been
//! checked, so a refused request opens nothing. The rules that do not (single statements) are
//! plain functions: the implementation asks them what to write and what a failure means.
//!
//! See the module doc of [`catalog`](super) for the commit's rules as the caller sees them.

use std::collections::HashMap;
use std::time::Duration;

use sync_protocol::ObjectId;

use super::common::{Unique, db_version};
use super::error::{CatalogError, Entity, Field};
use super::transaction::{
    CatalogTransaction, NewReceipt, NewVersion, ObjectRow, PackRow, Receipt, WriteError,
};
use super::types::{
    Account, AccountId, CommitOutcome, CommitRequest, IndexedObject, NewAccount,
    PROJECT_CREATED_MESSAGE, PackRecord, Project, ProjectId, RestoreRequest, Role, SessionId, Team,
    TeamId, Timestamp, Token, TokenId, VersionNumber, VersionPage, WebSession, empty_root,
};
use super::{Catalog, Result, limits, validate};

// The commit.

/// Moves the head by compare-and-swap, or answers as the first attempt of this push id did.
/// A rebased push (`request.onto`) moves it from the head it was rebased onto instead; see
/// [`CommitRequest::onto`] for what it records.
///
/// In order: a receipt of this push id answers at once (replay); otherwise the head moves from
/// the base to base + 1 only if it is still the base. If it is not, either a concurrent
/// duplicate of this push moved it (its receipt is visible once the CAS has waited for it) or
/// another push did, and the push gets a conflict receipt, never overwriting a concurrent
/// duplicate's. If it moved, the version and the receipt are written and the version is read
/// back, all in the one transaction.
pub(super) async fn commit<T: CatalogTransaction>(
    request: &CommitRequest,
    begin: impl Future<Output = Result<T>>,
) -> Result<CommitOutcome> {
    validate::message(&request.message)?;
    // Numbers are stored signed: a base past i64::MAX names no version.
    db_version(request.base_version)?;
    // A rebased push moves the head from the head it was rebased onto, to its rebased root.
    let (from, root) = match request.onto {
        Some(onto) => (onto.head_version, onto.root),
        None => (request.base_version, request.root),
    };
    db_version(from)?;
    let next = from + 1;
    let mut transaction = begin.await?;
    if let Some(outcome) = replay(&mut transaction, request).await? {
        return Ok(outcome);
    }
    let now = Timestamp::now();
    let receipt = |committed_version| NewReceipt {
        project: request.project,
        push_id: &request.push_id,
        receipt: Receipt {
            base_version: request.base_version,
            root: request.root,
            committed_version,
        },
        created: now,
    };
    // The linearization point of every push.
    let moved = transaction
        .swap_head(request.project, from, next, root)
        .await?;
    if !moved && request.onto.is_some() {
        // The head moved again while this push was being rebased: unless a duplicate of it
        // did that, the caller rebases onto the new head, so no conflict is recorded.
        let outcome = match replay(&mut transaction, request).await? {
            Some(outcome) => outcome,
            None => {
                let (head_version, head_root) = head(&mut transaction, request.project).await?;
                CommitOutcome::Conflict {
                    head_version,
                    head_root,
                }
            }
        };
        transaction.commit().await?;
        return Ok(outcome);
    }
    if !moved {
        return lose(transaction, request, receipt(None)).await;
    }
    transaction
        .insert_version(&NewVersion {
            project: request.project,
            number: next,
            root,
            parent: Some(from),
            author: request.author,
            time: now,
            message: &request.message,
            push_id: Some(&request.push_id),
        })
        .await
        .map_err(|error| match error {
            WriteError::MissingReference => {
                CatalogError::not_found(Entity::Account, request.author)
            }
            other => other.unexpected("commit"),
        })?;
    // No other transaction of this push id can have recorded a receipt: one that lost the CAS
    // waits for this one's row lock before it records anything.
    if !transaction.insert_receipt(&receipt(Some(next))).await? {
        return Err(CatalogError::database(
            "commit",
            "a receipt of this push id appeared while it held the head",
        ));
    }
    let version = transaction
        .version(request.project, next)
        .await?
        .ok_or_else(|| {
            CatalogError::corrupt("versions", "the version just written cannot be read back")
        })?;
    transaction.commit().await?;
    Ok(CommitOutcome::Committed {
        version,
        replayed: false,
        rebased: next != request.base_version + 1,
    })
}

/// The end of a commit whose compare-and-swap failed: the head is no longer its base.
async fn lose<T: CatalogTransaction>(
    mut transaction: T,
    request: &CommitRequest,
    conflict: NewReceipt<'_>,
) -> Result<CommitOutcome> {
    // A concurrent duplicate of this push may have committed while this one waited on the
    // head's row lock: its receipt is visible now, and its version is the answer.
    if let Some(outcome) = replay(&mut transaction, request).await? {
        return Ok(outcome);
    }
    let (head_version, head_root) = head(&mut transaction, request.project).await?;
    if !transaction.insert_receipt(&conflict).await? {
        // A concurrent duplicate that also lost recorded the conflict first: answer as it does.
        if let Some(outcome) = replay(&mut transaction, request).await? {
            return Ok(outcome);
        }
    }
    transaction.commit().await?;
    Ok(CommitOutcome::Conflict {
        head_version,
        head_root,
    })
}

/// The answer recorded for this push id, if it has been seen: the version it committed, marked
/// replayed, or a conflict with the head as it is now. The same push id with another base or
/// root is [`CatalogError::PushIdReused`].
async fn replay<T: CatalogTransaction>(
    transaction: &mut T,
    request: &CommitRequest,
) -> Result<Option<CommitOutcome>> {
    let Some(receipt) = transaction
        .receipt(request.project, &request.push_id)
        .await?
    else {
        return Ok(None);
    };
    if receipt.base_version != request.base_version || receipt.root != request.root {
        return Err(CatalogError::PushIdReused {
            push_id: request.push_id.clone(),
            base_version: receipt.base_version,
            root: receipt.root,
        });
    }
    let outcome = match receipt.committed_version {
        Some(number) => {
            let version = transaction
                .version(request.project, number)
                .await?
                .ok_or_else(|| {
                    CatalogError::corrupt("push_receipts", "receipt names a missing version")
                })?;
            // A rebased push's version is not the one after its base.
            CommitOutcome::Committed {
                rebased: version.number != receipt.base_version + 1,
                version,
                replayed: true,
            }
        }
        None => {
            let (head_version, head_root) = head(transaction, request.project).await?;
            CommitOutcome::Conflict {
                head_version,
                head_root,
            }
        }
    };
    Ok(Some(outcome))
}

async fn head<T: CatalogTransaction>(
    transaction: &mut T,
    project: ProjectId,
) -> Result<(VersionNumber, ObjectId)> {
    transaction
        .head(project)
        .await?
        .ok_or_else(|| CatalogError::not_found(Entity::Project, project))
}

/// Restores an old version: a commit on the request's base whose root is that version's root.
/// Not a transaction of its own: the commit's compare-and-swap is what decides.
pub(super) async fn restore<C: Catalog + ?Sized>(
    catalog: &C,
    request: RestoreRequest,
) -> Result<CommitOutcome> {
    let old = catalog
        .version(request.project, request.version)
        .await?
        .ok_or_else(|| {
            CatalogError::not_found(
                Entity::Version,
                format!("{} of project {}", request.version, request.project),
            )
        })?;
    let message = request
        .message
        .unwrap_or_else(|| format!("Restore version {}", request.version));
    catalog
        .commit(CommitRequest {
            project: request.project,
            push_id: request.push_id,
            base_version: request.base_version,
            root: old.root,
            author: request.author,
            message,
            onto: None,
        })
        .await
}

// Teams and members.

/// Creates a team with `owner` as its first member, role owner.
pub(super) async fn create_team<T: CatalogTransaction>(
    name: &str,
    owner: AccountId,
    begin: impl Future<Output = Result<T>>,
) -> Result<Team> {
    validate::text(Field::TeamName, name, limits::MAX_NAME_LEN)?;
    let team = Team {
        id: TeamId::random(),
        name: name.to_owned(),
        created: Timestamp::now(),
    };
    let mut transaction = begin.await?;
    transaction
        .insert_team(&team)
        .await
        .map_err(|error| match error {
            WriteError::Taken(unique) => unique.error(&team.name),
            other => other.unexpected("create team"),
        })?;
    transaction
        .upsert_membership(team.id, owner, Role::Owner)
        .await
        .map_err(|error| match error {
            WriteError::MissingReference => CatalogError::not_found(Entity::Account, owner),
            other => other.unexpected("create team"),
        })?;
    transaction.commit().await?;
    Ok(team)
}

/// Adds a member or changes their role; demoting the last owner is
/// [`CatalogError::LastOwner`].
pub(super) async fn set_member<T: CatalogTransaction>(
    team: TeamId,
    account: AccountId,
    role: Role,
    begin: impl Future<Output = Result<T>>,
) -> Result<()> {
    let mut transaction = begin.await?;
    if role != Role::Owner {
        ensure_other_owner(&mut transaction, team, account).await?;
    }
    transaction
        .upsert_membership(team, account, role)
        .await
        .map_err(|error| match error {
            WriteError::MissingReference => {
                CatalogError::not_found(Entity::Membership, format!("{team}/{account}"))
            }
            other => other.unexpected("set member"),
        })?;
    transaction.commit().await
}

/// Removes a member; a non-member is [`CatalogError::NotFound`] and the last owner
/// [`CatalogError::LastOwner`].
pub(super) async fn remove_member<T: CatalogTransaction>(
    team: TeamId,
    account: AccountId,
    begin: impl Future<Output = Result<T>>,
) -> Result<()> {
    let mut transaction = begin.await?;
    ensure_other_owner(&mut transaction, team, account).await?;
    if !transaction.delete_membership(team, account).await? {
        return Err(CatalogError::not_found(
            Entity::Membership,
            format!("{team}/{account}"),
        ));
    }
    transaction.commit().await
}

/// Fails with [`CatalogError::LastOwner`] if `account` is the team's only owner, so demoting or
/// removing it would leave the team unmanaged. The owners stay locked until the transaction
/// ends, so two concurrent demotions of the last two owners cannot both pass.
async fn ensure_other_owner<T: CatalogTransaction>(
    transaction: &mut T,
    team: TeamId,
    account: AccountId,
) -> Result<()> {
    let owners = transaction.lock_owners(team).await?;
    if owners.contains(&account) && owners.len() <= 1 {
        return Err(CatalogError::LastOwner {
            team: team.to_string(),
        });
    }
    Ok(())
}

// Projects.

/// Creates a project whose head is version 0, the empty dir, and writes that version 0 with
/// `creator` as its author.
pub(super) async fn create_project<T: CatalogTransaction>(
    team: TeamId,
    name: &str,
    creator: AccountId,
    begin: impl Future<Output = Result<T>>,
) -> Result<Project> {
    validate::text(Field::ProjectName, name, limits::MAX_NAME_LEN)?;
    let project = Project {
        id: ProjectId::random(),
        team,
        name: name.to_owned(),
        head_version: 0,
        head_root: empty_root(),
        created: Timestamp::now(),
    };
    let mut transaction = begin.await?;
    transaction
        .insert_project(&project)
        .await
        .map_err(|error| match error {
            WriteError::Taken(unique) => unique.error(&project.name),
            WriteError::MissingReference => CatalogError::not_found(Entity::Team, team),
            WriteError::Failed(error) => error,
        })?;
    transaction
        .insert_version(&NewVersion {
            project: project.id,
            number: project.head_version,
            root: project.head_root,
            parent: None,
            author: creator,
            time: project.created,
            message: PROJECT_CREATED_MESSAGE,
            push_id: None,
        })
        .await
        .map_err(|error| match error {
            WriteError::MissingReference => CatalogError::not_found(Entity::Account, creator),
            other => other.unexpected("create project"),
        })?;
    transaction.commit().await?;
    Ok(project)
}

// The object index.

/// Indexes a durable pack and the objects in it, in one transaction: the pack's row (kept if it
/// is there), then a row for every object not yet indexed (one already indexed keeps its first
/// location), and every object named touched now, new or not.
pub(super) async fn index_pack<T: CatalogTransaction>(
    project: ProjectId,
    pack: &PackRecord,
    objects: &[IndexedObject],
    begin: impl Future<Output = Result<T>>,
) -> Result<()> {
    let (pack_row, rows) = index_rows(pack, objects)?;
    let now = Timestamp::now();
    let mut transaction = begin.await?;
    insert_pack(&mut transaction, project, &pack_row, "index pack").await?;
    if !rows.is_empty() {
        transaction
            .insert_objects(project, pack.id, &rows, now)
            .await?;
    }
    transaction.commit().await
}

/// Compaction's move: records the new pack and moves the rows of `moved` that still exist into
/// it, in one transaction. A row garbage collection removed meanwhile stays removed; a moved
/// row keeps its `touched`, since being copied is not being referenced. How many rows moved.
pub(super) async fn relocate<T: CatalogTransaction>(
    project: ProjectId,
    pack: &PackRecord,
    moved: &[IndexedObject],
    begin: impl Future<Output = Result<T>>,
) -> Result<u64> {
    let (pack_row, rows) = index_rows(pack, moved)?;
    let mut transaction = begin.await?;
    insert_pack(&mut transaction, project, &pack_row, "relocate").await?;
    let moved = if rows.is_empty() {
        0
    } else {
        transaction.move_objects(project, pack.id, &rows).await?
    };
    transaction.commit().await?;
    Ok(moved)
}

async fn insert_pack<T: CatalogTransaction>(
    transaction: &mut T,
    project: ProjectId,
    pack: &PackRow,
    operation: &'static str,
) -> Result<()> {
    transaction
        .insert_pack(project, pack)
        .await
        .map_err(|error| match error {
            WriteError::MissingReference => CatalogError::not_found(Entity::Project, project),
            other => other.unexpected(operation),
        })
}

/// The rows to write for `pack` and `objects`, checked: every object names `pack`, its frame
/// lies within the pack, and every number fits the databases' signed 64-bit integers (see
/// [`limits::MAX_INDEXED_VALUE`]). The object rows are sorted by id, the first of each id kept:
/// one PostgreSQL statement may not write a row twice, and writers that all lock rows in id
/// order cannot deadlock one another.
fn index_rows(pack: &PackRecord, objects: &[IndexedObject]) -> Result<(PackRow, Vec<ObjectRow>)> {
    let Some(length) = stored(pack.length) else {
        return Err(CatalogError::Invalid {
            field: Field::Pack,
            reason: format!(
                "pack {} is {} bytes, past the largest storable length {}",
                pack.id,
                pack.length,
                limits::MAX_INDEXED_VALUE
            ),
        });
    };
    let pack_row = PackRow {
        id: pack.id,
        length,
        object_count: i64::from(pack.objects),
        created: pack.created,
    };
    let invalid = |object: &IndexedObject, reason: String| CatalogError::Invalid {
        field: Field::IndexedObject,
        reason: format!("object {}: {reason}", object.id),
    };
    let mut rows = Vec::with_capacity(objects.len());
    for object in objects {
        if object.pack != pack.id {
            return Err(invalid(
                object,
                format!("it names pack {}, not pack {}", object.pack, pack.id),
            ));
        }
        let within = object
            .offset
            .checked_add(u64::from(object.length))
            .is_some_and(|end| end <= pack.length);
        let (Some(offset), true) = (stored(object.offset), within) else {
            return Err(invalid(
                object,
                format!(
                    "its frame ({} bytes at {}) ends past the pack's {} bytes",
                    object.length, object.offset, pack.length
                ),
            ));
        };
        let Some(size) = stored(object.size) else {
            return Err(invalid(
                object,
                format!(
                    "its size {} is past the largest storable {}",
                    object.size,
                    limits::MAX_INDEXED_VALUE
                ),
            ));
        };
        rows.push(ObjectRow {
            id: object.id,
            offset,
            length: i64::from(object.length),
            kind: object.kind,
            size,
        });
    }
    // A stable sort: of one id named twice, the first stays first and is kept.
    rows.sort_by_key(|row| row.id);
    rows.dedup_by_key(|row| row.id);
    Ok((pack_row, rows))
}

/// A number as the databases store it, if it fits.
fn stored(value: u64) -> Option<i64> {
    i64::try_from(value).ok()
}

/// The ids a lookup or removal asks the database for: sorted, each once, so that a statement
/// that locks the rows it finds locks them in id order, as every writer of the index does.
pub(super) fn lookup_ids(ids: &[ObjectId]) -> Vec<ObjectId> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// The answer to a lookup of `ids`: for each, in their order, its row among `found` if any.
pub(super) fn in_request_order(
    ids: &[ObjectId],
    found: Vec<IndexedObject>,
) -> Vec<Option<IndexedObject>> {
    let found: HashMap<ObjectId, IndexedObject> = found
        .into_iter()
        .map(|object| (object.id, object))
        .collect();
    ids.iter().map(|id| found.get(id).copied()).collect()
}

// Accounts and tokens: single statements, so the implementations run them without a
// transaction and ask these what to write and what a refusal means.

/// The account to store for `account`: its input checked, a fresh id, created now.
pub(super) fn new_account(account: &NewAccount) -> Result<Account> {
    validate::text(Field::AccountName, &account.name, limits::MAX_NAME_LEN)?;
    validate::text(Field::Email, &account.email, limits::MAX_EMAIL_LEN)?;
    validate::password_hash(&account.password_hash)?;
    Ok(Account {
        id: AccountId::random(),
        name: account.name.clone(),
        email: account.email.clone(),
        created: Timestamp::now(),
    })
}

/// What a refused account insert means: a taken name or email.
pub(super) fn account_not_created(error: WriteError, account: &NewAccount) -> CatalogError {
    match error {
        WriteError::Taken(Unique::AccountEmail) => Unique::AccountEmail.error(&account.email),
        WriteError::Taken(unique) => unique.error(&account.name),
        other => other.unexpected("create account"),
    }
}

/// The token to store for `account`: its label checked, a fresh id, created now.
pub(super) fn new_token(account: AccountId, label: &str) -> Result<Token> {
    validate::text(Field::TokenLabel, label, limits::MAX_TOKEN_LABEL_LEN)?;
    Ok(Token {
        id: TokenId::random(),
        account,
        label: label.to_owned(),
        created: Timestamp::now(),
        last_used: None,
        revoked: None,
    })
}

/// A new browser session of `account`, created now and valid until `expires`.
pub(super) fn new_session(account: AccountId, expires: Timestamp) -> WebSession {
    WebSession {
        id: SessionId::random(),
        account,
        created: Timestamp::now(),
        expires,
    }
}

/// What a refused token (or session) insert means: a secret already stored (never echoed) or a missing
/// account.
pub(super) fn token_not_created(error: WriteError, account: AccountId) -> CatalogError {
    match error {
        WriteError::Taken(unique) => unique.error(""),
        WriteError::MissingReference => CatalogError::not_found(Entity::Account, account),
        WriteError::Failed(error) => error,
    }
}

/// Whether authenticating at `now` rewrites a token's `last_used`: at most once per
/// [`limits::TOKEN_LAST_USED_RESOLUTION`], so a request is not a write every time.
pub(super) fn touches_last_used(last_used: Option<Timestamp>, now: Timestamp) -> bool {
    let resolution =
        i64::try_from(limits::TOKEN_LAST_USED_RESOLUTION.as_millis()).unwrap_or(i64::MAX);
    last_used.is_none_or(|last_used| {
        now.unix_millis().saturating_sub(last_used.unix_millis()) >= resolution
    })
}

// Pages and cut-offs.

/// The `(before, limit)` a history page queries with: from the head when `before` is unset,
/// at most [`limits::MAX_VERSION_PAGE`] versions.
pub(super) fn version_page(page: VersionPage) -> (i64, i64) {
    let before = page
        .before
        .map_or(i64::MAX, |before| i64::try_from(before).unwrap_or(i64::MAX));
    (before, i64::from(page.limit.min(limits::MAX_VERSION_PAGE)))
}

/// The `(after, limit)` a page of all projects queries with: ids compare as text, and the empty
/// text is before every id.
pub(super) fn project_page(after: Option<ProjectId>, limit: u32) -> (String, i64) {
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    (after, i64::from(limit.min(limits::MAX_PROJECT_PAGE)))
}

/// The oldest heartbeat of a node still counted live, `max_age` before now.
pub(super) fn oldest_live_heartbeat(max_age: Duration) -> Timestamp {
    let max_age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    // No heartbeat is older than the epoch: clamping there keeps the cut-off a time both
    // databases represent.
    Timestamp::from_unix_millis(
        Timestamp::now()
            .unix_millis()
            .saturating_sub(max_age)
            .max(0),
    )
}

#[cfg(test)]
mod tests;
