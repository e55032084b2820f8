//! The cluster catalog: PostgreSQL through tokio-postgres and a deadpool pool.
//!
//! The rules (commit, membership, new teams and projects) are the shared ones of
//! [`rules`](super::rules); this file is their SQL: [`PostgresTransaction`] implements
//! [`CatalogTransaction`], and the reads and single-statement writes are queries here.
//!
//! Transactions run at PostgreSQL's default READ COMMITTED level. The commit needs no more: its
//! compare-and-swap is one `UPDATE ... WHERE head_version = base`, which takes the project row's
//! lock and re-checks the condition against the latest committed head, so of many concurrent
//! commits on one base exactly one matches. Every statement after it sees other transactions'
//! committed push receipts, which is how a concurrent duplicate of a push finds its original.
//!
//! Connections are plain TCP (`NoTls`): the database is expected on a private network or a
//! local socket. TLS to PostgreSQL is a later addition (tokio-postgres-rustls).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sync_protocol::ObjectId;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::common::{
    OBJECT_COLUMNS, PACK_COLUMNS, Unique, bytes32, db_version, indexed_object, object_id,
    pack_record, parse, role, version_number,
};
use super::error::{CatalogError, Entity};
use super::listen::{ACCESS_CHANNEL, HEADS_CHANNEL, HeadNotification};
use super::migrations;
use super::transaction::{
    CatalogTransaction, NewReceipt, NewVersion, ObjectRow, PackRow, Receipt, WriteError,
};
use super::types::{
    Account, AccountCredentials, AccountId, Authenticated, CommitOutcome, CommitRequest,
    IndexedObject, Member, NewAccount, Node, NodeId, NodeStats, NodeStatus, PackId, PackRecord,
    Project, ProjectId, PushId, Role, SignedIn, Team, TeamId, TeamMembership, Timestamp, Token,
    TokenHash, TokenId, Version, VersionNumber, VersionPage, VisibleProject, WebSession,
};
use super::{Catalog, Result, rules, validate};

/// How to reach PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// A libpq-style URL or key-value string, e.g. `postgres://cairn@db:5432/cairn`.
    pub url: String,
    /// The most connections this node opens.
    pub pool_size: usize,
    /// How long a request waits for a free connection before failing.
    pub wait_timeout: Duration,
}

impl PostgresSettings {
    /// Settings for `url` with a pool of 16 and a 30-second wait.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            wait_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresSettings")
            .field("pool_size", &self.pool_size)
            .field("wait_timeout", &self.wait_timeout)
            .finish_non_exhaustive()
    }
}

/// The PostgreSQL catalog. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresCatalog {
    pool: Pool,
}

impl std::fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCatalog")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresCatalog {
    /// Connects and applies pending migrations (under an advisory lock, so many nodes may start
    /// at once).
    pub async fn connect(settings: &PostgresSettings) -> Result<Self> {
        let config: tokio_postgres::Config = settings
            .url
            .parse()
            .map_err(|error| CatalogError::database("connect", error))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.wait_timeout))
            .create_timeout(Some(settings.wait_timeout))
            .build()
            .map_err(|error| CatalogError::database("connect", error))?;
        let catalog = Self { pool };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Applies pending migrations. [`PostgresCatalog::connect`] already did; running it again is
    /// a no-op.
    pub async fn migrate(&self) -> Result<()> {
        let mut client = self.client("migrate").await?;
        let transaction = client.transaction().await.map_err(db("migrate"))?;
        // Held until the transaction ends: one node migrates while the others wait, then find
        // nothing left to do.
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&migrations::POSTGRES_LOCK_KEY],
            )
            .await
            .map_err(db("migrate"))?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version  BIGINT PRIMARY KEY,
                     name     TEXT NOT NULL,
                     checksum TEXT NOT NULL,
                     applied  TIMESTAMPTZ NOT NULL
                 )",
            )
            .await
            .map_err(db("migrate"))?;
        let applied: HashMap<i64, String> = transaction
            .query("SELECT version, checksum FROM schema_migrations", &[])
            .await
            .map_err(db("migrate"))?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(db("migrate"))?;
        for migration in migrations::pending(migrations::POSTGRES, &applied)? {
            let failed = |error: tokio_postgres::Error| CatalogError::Migration {
                name: migration.name,
                source: Box::new(error),
            };
            transaction
                .batch_execute(migration.sql)
                .await
                .map_err(failed)?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied)
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &migration.version,
                        &migration.name,
                        &migration.checksum(),
                        &SystemTime::now(),
                    ],
                )
                .await
                .map_err(failed)?;
        }
        transaction.commit().await.map_err(db("migrate"))
    }

    async fn client(&self, operation: &'static str) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|error| CatalogError::database(operation, error))
    }

    async fn query_all<T>(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        convert: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let client = self.client(operation).await?;
        query_all(&client, operation, sql, params, convert).await
    }

    async fn query_one<T>(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        convert: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let client = self.client(operation).await?;
        query_one(&client, operation, sql, params, convert).await
    }
}

fn db(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> CatalogError {
    move |error| CatalogError::database(operation, error)
}

/// A failed write as the rules see it: which constraint PostgreSQL refused, if any.
fn write_error(operation: &'static str, error: tokio_postgres::Error) -> WriteError {
    if let Some(db_error) = error.as_db_error() {
        if db_error.code() == &SqlState::FOREIGN_KEY_VIOLATION {
            return WriteError::MissingReference;
        }
        if db_error.code() == &SqlState::UNIQUE_VIOLATION
            && let Some(unique) = db_error.constraint().and_then(Unique::from_constraint)
        {
            return WriteError::Taken(unique);
        }
    }
    WriteError::Failed(CatalogError::database(operation, error))
}

/// Runs one write, prepared once per connection (a string statement would be prepared again
/// every time, a round trip more).
async fn execute<C: GenericClient>(
    client: &C,
    operation: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, WriteError> {
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(|error| write_error(operation, error))?;
    client
        .execute(&statement, params)
        .await
        .map_err(|error| write_error(operation, error))
}

async fn query_all<C: GenericClient, T>(
    client: &C,
    operation: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    convert: impl Fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let statement = client.prepare_cached(sql).await.map_err(db(operation))?;
    let rows = client
        .query(&statement, params)
        .await
        .map_err(db(operation))?;
    rows.iter().map(convert).collect()
}

async fn query_one<C: GenericClient, T>(
    client: &C,
    operation: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    convert: impl Fn(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let statement = client.prepare_cached(sql).await.map_err(db(operation))?;
    let row = client
        .query_opt(&statement, params)
        .await
        .map_err(db(operation))?;
    row.as_ref().map(convert).transpose()
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T> {
    row.try_get(index).map_err(db("read row"))
}

fn time(row: &Row, index: usize) -> Result<Timestamp> {
    column::<SystemTime>(row, index).map(Timestamp::from)
}

fn optional_time(row: &Row, index: usize) -> Result<Option<Timestamp>> {
    column::<Option<SystemTime>>(row, index).map(|time| time.map(Timestamp::from))
}

const ACCOUNT_COLUMNS: &str = "accounts.id, accounts.name, accounts.email, accounts.created";

fn read_account(row: &Row, start: usize) -> Result<Account> {
    Ok(Account {
        id: parse("accounts", column(row, start)?)?,
        name: column(row, start + 1)?,
        email: column(row, start + 2)?,
        created: time(row, start + 3)?,
    })
}

const TOKEN_COLUMNS: &str = "id, account_id, label, created, last_used, revoked";

fn read_token(row: &Row) -> Result<Token> {
    Ok(Token {
        id: parse("tokens", column(row, 0)?)?,
        account: parse("tokens", column(row, 1)?)?,
        label: column(row, 2)?,
        created: time(row, 3)?,
        last_used: optional_time(row, 4)?,
        revoked: optional_time(row, 5)?,
    })
}

const SESSION_COLUMNS: &str =
    "web_sessions.id, web_sessions.account_id, web_sessions.created, web_sessions.expires";

fn read_session(row: &Row, start: usize) -> Result<WebSession> {
    Ok(WebSession {
        id: parse("web_sessions", column(row, start)?)?,
        account: parse("web_sessions", column(row, start + 1)?)?,
        created: time(row, start + 2)?,
        expires: time(row, start + 3)?,
    })
}

const TEAM_COLUMNS: &str = "teams.id, teams.name, teams.created";

fn read_team(row: &Row, start: usize) -> Result<Team> {
    Ok(Team {
        id: parse("teams", column(row, start)?)?,
        name: column(row, start + 1)?,
        created: time(row, start + 2)?,
    })
}

const PROJECT_COLUMNS: &str = "projects.id, projects.team_id, projects.name, \
    projects.head_version, projects.head_root, projects.created";

fn read_project(row: &Row, start: usize) -> Result<Project> {
    Ok(Project {
        id: parse("projects", column(row, start)?)?,
        team: parse("projects", column(row, start + 1)?)?,
        name: column(row, start + 2)?,
        head_version: version_number("projects", column(row, start + 3)?)?,
        head_root: object_id("projects", column(row, start + 4)?)?,
        created: time(row, start + 5)?,
    })
}

const VERSION_SELECT: &str = "SELECT versions.project_id, versions.number, versions.root, \
    versions.parent, versions.author_id, accounts.name, versions.time, versions.message, \
    versions.push_id FROM versions JOIN accounts ON accounts.id = versions.author_id";

fn read_version(row: &Row) -> Result<Version> {
    Ok(Version {
        project: parse("versions", column(row, 0)?)?,
        number: version_number("versions", column(row, 1)?)?,
        root: object_id("versions", column(row, 2)?)?,
        parent: column::<Option<i64>>(row, 3)?
            .map(|parent| version_number("versions", parent))
            .transpose()?,
        author: parse("versions", column(row, 4)?)?,
        author_name: column(row, 5)?,
        time: time(row, 6)?,
        message: column(row, 7)?,
        push_id: column::<Option<&str>>(row, 8)?
            .map(|push_id| parse::<PushId>("versions", push_id))
            .transpose()?,
    })
}

async fn load_version<C: GenericClient>(
    client: &C,
    operation: &'static str,
    project: ProjectId,
    number: i64,
) -> Result<Option<Version>> {
    query_one(
        client,
        operation,
        &format!("{VERSION_SELECT} WHERE versions.project_id = $1 AND versions.number = $2"),
        &[&project.to_string(), &number],
        read_version,
    )
    .await
}

fn read_object(row: &Row) -> Result<IndexedObject> {
    indexed_object(
        column(row, 0)?,
        column(row, 1)?,
        column(row, 2)?,
        column(row, 3)?,
        i64::from(column::<i16>(row, 4)?),
        column(row, 5)?,
    )
}

fn read_pack(row: &Row) -> Result<PackRecord> {
    pack_record(
        column(row, 0)?,
        column(row, 1)?,
        column(row, 2)?,
        time(row, 3)?,
    )
}

/// Object ids as a `bytea[]` parameter.
fn id_array(ids: &[ObjectId]) -> Vec<&[u8]> {
    ids.iter().map(|id| &id.as_bytes()[..]).collect()
}

/// Index rows as the column arrays an `UNNEST` reads: one parameter per column, however many
/// rows, so a pack of tens of thousands of objects is one statement.
struct ObjectArrays<'a> {
    ids: Vec<&'a [u8]>,
    offsets: Vec<i64>,
    lengths: Vec<i64>,
    kinds: Vec<i16>,
    sizes: Vec<i64>,
}

impl<'a> ObjectArrays<'a> {
    fn of(rows: &'a [ObjectRow]) -> Self {
        Self {
            ids: rows.iter().map(|row| &row.id.as_bytes()[..]).collect(),
            offsets: rows.iter().map(|row| row.offset).collect(),
            lengths: rows.iter().map(|row| row.length).collect(),
            kinds: rows.iter().map(|row| i16::from(row.kind.tag())).collect(),
            sizes: rows.iter().map(|row| row.size).collect(),
        }
    }
}

/// One transaction driven by the shared rules. READ COMMITTED (see the module doc): each
/// statement sees what other transactions had committed when it started.
struct PostgresTransaction<'a> {
    transaction: deadpool_postgres::Transaction<'a>,
    /// The catalog operation it serves, named in its errors.
    operation: &'static str,
}

impl<'a> PostgresTransaction<'a> {
    async fn begin(
        client: &'a mut deadpool_postgres::Object,
        operation: &'static str,
    ) -> Result<Self> {
        let transaction = client.transaction().await.map_err(db(operation))?;
        Ok(Self {
            transaction,
            operation,
        })
    }

    /// A statement whose only refusals are failures.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        execute(&self.transaction, self.operation, sql, params)
            .await
            .map_err(|error| error.unexpected(self.operation))
    }
}

impl CatalogTransaction for PostgresTransaction<'_> {
    async fn receipt(&mut self, project: ProjectId, push_id: &PushId) -> Result<Option<Receipt>> {
        query_one(
            &self.transaction,
            self.operation,
            "SELECT base_version, root, committed_version FROM push_receipts
             WHERE project_id = $1 AND push_id = $2",
            &[&project.to_string(), &push_id.as_str()],
            |row| {
                Ok(Receipt {
                    base_version: version_number("push_receipts", column(row, 0)?)?,
                    root: object_id("push_receipts", column(row, 1)?)?,
                    committed_version: column::<Option<i64>>(row, 2)?
                        .map(|number| version_number("push_receipts", number))
                        .transpose()?,
                })
            },
        )
        .await
    }

    async fn head(&mut self, project: ProjectId) -> Result<Option<(VersionNumber, ObjectId)>> {
        query_one(
            &self.transaction,
            self.operation,
            "SELECT head_version, head_root FROM projects WHERE id = $1",
            &[&project.to_string()],
            |row| {
                Ok((
                    version_number("projects", column(row, 0)?)?,
                    object_id("projects", column(row, 1)?)?,
                ))
            },
        )
        .await
    }

    async fn swap_head(
        &mut self,
        project: ProjectId,
        from: VersionNumber,
        to: VersionNumber,
        root: ObjectId,
    ) -> Result<bool> {
        // One statement: the compare-and-swap, and the notification of the new head to every
        // node listening (PostgreSQL delivers it when, and only if, the transaction commits).
        let moved = self
            .execute(
                "WITH moved AS (
                     UPDATE projects SET head_version = $3, head_root = $4
                     WHERE id = $1 AND head_version = $2
                     RETURNING id)
                 SELECT pg_notify($5, $6) FROM moved",
                &[
                    &project.to_string(),
                    &db_version(from)?,
                    &db_version(to)?,
                    &root.to_string(),
                    &HEADS_CHANNEL,
                    &HeadNotification {
                        project,
                        version: to,
                        root,
                    }
                    .to_payload(),
                ],
            )
            .await?;
        Ok(moved > 0)
    }

    async fn insert_version(&mut self, version: &NewVersion<'_>) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            "INSERT INTO versions
                 (project_id, number, root, parent, author_id, time, message, push_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &version.project.to_string(),
                &db_version(version.number)?,
                &version.root.to_string(),
                &version.parent.map(db_version).transpose()?,
                &version.author.to_string(),
                &SystemTime::from(version.time),
                &version.message,
                &version.push_id.map(PushId::as_str),
            ],
        )
        .await?;
        Ok(())
    }

    async fn insert_receipt(&mut self, receipt: &NewReceipt<'_>) -> Result<bool> {
        let recorded = self
            .execute(
                "INSERT INTO push_receipts
                     (project_id, push_id, base_version, root, committed_version, created)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (project_id, push_id) DO NOTHING",
                &[
                    &receipt.project.to_string(),
                    &receipt.push_id.as_str(),
                    &db_version(receipt.receipt.base_version)?,
                    &receipt.receipt.root.to_string(),
                    &receipt
                        .receipt
                        .committed_version
                        .map(db_version)
                        .transpose()?,
                    &SystemTime::from(receipt.created),
                ],
            )
            .await?;
        Ok(recorded > 0)
    }

    async fn version(
        &mut self,
        project: ProjectId,
        number: VersionNumber,
    ) -> Result<Option<Version>> {
        load_version(
            &self.transaction,
            self.operation,
            project,
            db_version(number)?,
        )
        .await
    }

    async fn insert_team(&mut self, team: &Team) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            "INSERT INTO teams (id, name, name_key, created) VALUES ($1, $2, $3, $4)",
            &[
                &team.id.to_string(),
                &team.name,
                &validate::fold(&team.name),
                &SystemTime::from(team.created),
            ],
        )
        .await?;
        Ok(())
    }

    async fn lock_owners(&mut self, team: TeamId) -> Result<Vec<AccountId>> {
        // FOR UPDATE: a concurrent demotion waits here until this transaction ends, then
        // re-reads the rows it changed (an owner demoted meanwhile is no longer listed).
        query_all(
            &self.transaction,
            self.operation,
            "SELECT account_id FROM memberships WHERE team_id = $1 AND role = $2 FOR UPDATE",
            &[&team.to_string(), &Role::Owner.as_str()],
            |row| parse("memberships", column(row, 0)?),
        )
        .await
    }

    async fn upsert_membership(
        &mut self,
        team: TeamId,
        account: AccountId,
        role: Role,
    ) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            "INSERT INTO memberships (team_id, account_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (team_id, account_id) DO UPDATE SET role = excluded.role",
            &[&team.to_string(), &account.to_string(), &role.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn delete_membership(&mut self, team: TeamId, account: AccountId) -> Result<bool> {
        // The removed member's event streams on every node must check their access again.
        let removed = self
            .execute(
                "WITH gone AS (
                     DELETE FROM memberships WHERE team_id = $1 AND account_id = $2
                     RETURNING account_id)
                 SELECT pg_notify($3, account_id) FROM gone",
                &[&team.to_string(), &account.to_string(), &ACCESS_CHANNEL],
            )
            .await?;
        Ok(removed > 0)
    }

    async fn insert_project(&mut self, project: &Project) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            // Not legacy: this node stores a new project's objects in packs (the column's
            // default is for rows written by nodes that predate packs).
            "INSERT INTO projects
                 (id, team_id, name, name_key, head_version, head_root, created, legacy_layout)
             VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE)",
            &[
                &project.id.to_string(),
                &project.team.to_string(),
                &project.name,
                &validate::fold(&project.name),
                &db_version(project.head_version)?,
                &project.head_root.to_string(),
                &SystemTime::from(project.created),
            ],
        )
        .await?;
        Ok(())
    }

    async fn insert_pack(&mut self, project: ProjectId, pack: &PackRow) -> Result<(), WriteError> {
        // DO UPDATE rather than DO NOTHING: it locks the existing row, so a concurrent
        // forget_pack waits for this transaction and then finds the objects it indexed.
        execute(
            &self.transaction,
            self.operation,
            "INSERT INTO packs (project_id, id, length, object_count, created)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project_id, id) DO UPDATE SET created = packs.created",
            &[
                &project.to_string(),
                &&pack.id.as_bytes()[..],
                &pack.length,
                &pack.object_count,
                &SystemTime::from(pack.created),
            ],
        )
        .await?;
        Ok(())
    }

    async fn insert_objects(
        &mut self,
        project: ProjectId,
        pack: PackId,
        objects: &[ObjectRow],
        now: Timestamp,
    ) -> Result<()> {
        let arrays = ObjectArrays::of(objects);
        // UNNEST yields the rows in array order, which is id order: rows are locked in it.
        self.execute(
            "INSERT INTO objects
                 (project_id, id, pack_id, frame_offset, frame_length, kind, size, touched)
             SELECT $1, batch.id, $2, batch.frame_offset, batch.frame_length, batch.kind,
                    batch.size, $3
             FROM UNNEST($4::bytea[], $5::bigint[], $6::bigint[], $7::smallint[], $8::bigint[])
                 AS batch (id, frame_offset, frame_length, kind, size)
             ON CONFLICT (project_id, id)
             DO UPDATE SET touched = GREATEST(objects.touched, excluded.touched)",
            &[
                &project.to_string(),
                &&pack.as_bytes()[..],
                &SystemTime::from(now),
                &arrays.ids,
                &arrays.offsets,
                &arrays.lengths,
                &arrays.kinds,
                &arrays.sizes,
            ],
        )
        .await?;
        Ok(())
    }

    async fn move_objects(
        &mut self,
        project: ProjectId,
        pack: PackId,
        objects: &[ObjectRow],
    ) -> Result<u64> {
        let arrays = ObjectArrays::of(objects);
        // The rows are locked in id order first (the UPDATE alone would lock them in whatever
        // order its plan visits them).
        self.execute(
            "WITH batch AS (
                 SELECT * FROM UNNEST($3::bytea[], $4::bigint[], $5::bigint[])
                     AS batch (id, frame_offset, frame_length)
             ), locked AS (
                 SELECT id FROM objects WHERE project_id = $1 AND id = ANY($3)
                 ORDER BY id FOR NO KEY UPDATE
             )
             UPDATE objects
             SET pack_id = $2, frame_offset = batch.frame_offset,
                 frame_length = batch.frame_length
             FROM batch JOIN locked ON locked.id = batch.id
             WHERE objects.project_id = $1 AND objects.id = batch.id",
            &[
                &project.to_string(),
                &&pack.as_bytes()[..],
                &arrays.ids,
                &arrays.offsets,
                &arrays.lengths,
            ],
        )
        .await
    }

    async fn commit(self) -> Result<()> {
        self.transaction.commit().await.map_err(db(self.operation))
    }
}

#[async_trait]
impl Catalog for PostgresCatalog {
    async fn create_account(&self, account: NewAccount) -> Result<Account> {
        let created = rules::new_account(&account)?;
        let client = self.client("create account").await?;
        execute(
            &client,
            "create account",
            "INSERT INTO accounts
                 (id, name, name_key, email, email_key, password_hash, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &created.id.to_string(),
                &account.name,
                &validate::fold(&account.name),
                &account.email,
                &validate::fold(&account.email),
                &account.password_hash,
                &SystemTime::from(created.created),
            ],
        )
        .await
        .map_err(|error| rules::account_not_created(error, &account))?;
        Ok(created)
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        self.query_one(
            "account",
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
            &[&id.to_string()],
            |row| read_account(row, 0),
        )
        .await
    }

    async fn account_credentials(&self, login: &str) -> Result<Option<AccountCredentials>> {
        if !validate::could_be_a_name(login) {
            return Ok(None);
        }
        self.query_one(
            "account credentials",
            &format!(
                "SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts
                 WHERE name_key = $1 OR email_key = $1
                 ORDER BY name_key = $1 DESC LIMIT 1"
            ),
            &[&validate::fold(login)],
            |row| {
                Ok(AccountCredentials {
                    account: read_account(row, 0)?,
                    password_hash: column(row, 4)?,
                })
            },
        )
        .await
    }

    async fn set_password_hash(&self, account: AccountId, password_hash: &str) -> Result<()> {
        validate::password_hash(password_hash)?;
        let client = self.client("set password hash").await?;
        let changed = execute(
            &client,
            "set password hash",
            "UPDATE accounts SET password_hash = $2 WHERE id = $1",
            &[&account.to_string(), &password_hash],
        )
        .await
        .map_err(|error| error.unexpected("set password hash"))?;
        if changed == 0 {
            return Err(CatalogError::not_found(Entity::Account, account));
        }
        Ok(())
    }

    async fn create_token(
        &self,
        account: AccountId,
        label: &str,
        secret_hash: TokenHash,
    ) -> Result<Token> {
        let token = rules::new_token(account, label)?;
        let client = self.client("create token").await?;
        execute(
            &client,
            "create token",
            "INSERT INTO tokens (id, account_id, label, secret_hash, created)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &token.id.to_string(),
                &account.to_string(),
                &token.label,
                &&secret_hash.as_bytes()[..],
                &SystemTime::from(token.created),
            ],
        )
        .await
        .map_err(|error| rules::token_not_created(error, account))?;
        Ok(token)
    }

    async fn authenticate_token(&self, secret_hash: &TokenHash) -> Result<Option<Authenticated>> {
        let client = self.client("authenticate token").await?;
        let found = query_one(
            &client,
            "authenticate token",
            &format!(
                "SELECT {ACCOUNT_COLUMNS}, tokens.id, tokens.last_used
                 FROM tokens JOIN accounts ON accounts.id = tokens.account_id
                 WHERE tokens.secret_hash = $1 AND tokens.revoked IS NULL"
            ),
            &[&&secret_hash.as_bytes()[..]],
            |row| {
                Ok((
                    read_account(row, 0)?,
                    parse::<TokenId>("tokens", column(row, 4)?)?,
                    optional_time(row, 5)?,
                ))
            },
        )
        .await?;
        let Some((account, token, last_used)) = found else {
            return Ok(None);
        };
        let now = Timestamp::now();
        if rules::touches_last_used(last_used, now) {
            execute(
                &client,
                "authenticate token",
                "UPDATE tokens SET last_used = $2 WHERE id = $1",
                &[&token.to_string(), &SystemTime::from(now)],
            )
            .await
            .map_err(|error| error.unexpected("authenticate token"))?;
        }
        Ok(Some(Authenticated { account, token }))
    }

    async fn tokens(&self, account: AccountId) -> Result<Vec<Token>> {
        self.query_all(
            "tokens",
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE account_id = $1 ORDER BY created, id"
            ),
            &[&account.to_string()],
            read_token,
        )
        .await
    }

    async fn revoke_token(&self, account: AccountId, token: TokenId) -> Result<()> {
        let client = self.client("revoke token").await?;
        let found = client
            .execute(
                // The token's event streams on every node must check their access again.
                "WITH revoked AS (
                     UPDATE tokens SET revoked = COALESCE(revoked, $3)
                     WHERE id = $1 AND account_id = $2
                     RETURNING account_id)
                 SELECT pg_notify($4, account_id) FROM revoked",
                &[
                    &token.to_string(),
                    &account.to_string(),
                    &SystemTime::from(Timestamp::now()),
                    &ACCESS_CHANNEL,
                ],
            )
            .await
            .map_err(db("revoke token"))?;
        if found == 0 {
            return Err(CatalogError::not_found(Entity::Token, token));
        }
        Ok(())
    }

    async fn create_session(
        &self,
        account: AccountId,
        secret_hash: TokenHash,
        expires: Timestamp,
    ) -> Result<WebSession> {
        let session = rules::new_session(account, expires);
        let client = self.client("create session").await?;
        execute(
            &client,
            "create session",
            "WITH expired AS (
                 DELETE FROM web_sessions WHERE account_id = $2 AND expires <= $4)
             INSERT INTO web_sessions (id, account_id, secret_hash, created, expires)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.id.to_string(),
                &account.to_string(),
                &&secret_hash.as_bytes()[..],
                &SystemTime::from(session.created),
                &SystemTime::from(session.expires),
            ],
        )
        .await
        .map_err(|error| rules::token_not_created(error, account))?;
        Ok(session)
    }

    async fn session(&self, secret_hash: &TokenHash) -> Result<Option<SignedIn>> {
        self.query_one(
            "session",
            &format!(
                "SELECT {ACCOUNT_COLUMNS}, {SESSION_COLUMNS}
                 FROM web_sessions JOIN accounts ON accounts.id = web_sessions.account_id
                 WHERE web_sessions.secret_hash = $1 AND web_sessions.expires > $2"
            ),
            &[
                &&secret_hash.as_bytes()[..],
                &SystemTime::from(Timestamp::now()),
            ],
            |row| {
                Ok(SignedIn {
                    account: read_account(row, 0)?,
                    session: read_session(row, 4)?,
                })
            },
        )
        .await
    }

    async fn sessions(&self, account: AccountId) -> Result<Vec<WebSession>> {
        self.query_all(
            "sessions",
            &format!(
                "SELECT {SESSION_COLUMNS} FROM web_sessions
                 WHERE account_id = $1 AND expires > $2 ORDER BY created, id"
            ),
            &[&account.to_string(), &SystemTime::from(Timestamp::now())],
            |row| read_session(row, 0),
        )
        .await
    }

    async fn end_session(&self, secret_hash: &TokenHash) -> Result<()> {
        let client = self.client("end session").await?;
        execute(
            &client,
            "end session",
            "DELETE FROM web_sessions WHERE secret_hash = $1",
            &[&&secret_hash.as_bytes()[..]],
        )
        .await
        .map_err(|error| error.unexpected("end session"))?;
        Ok(())
    }

    async fn end_sessions(&self, account: AccountId) -> Result<u64> {
        let client = self.client("end sessions").await?;
        execute(
            &client,
            "end sessions",
            "DELETE FROM web_sessions WHERE account_id = $1",
            &[&account.to_string()],
        )
        .await
        .map_err(|error| error.unexpected("end sessions"))
    }

    async fn create_team(&self, name: &str, owner: AccountId) -> Result<Team> {
        let mut client = self.client("create team").await?;
        let begin = PostgresTransaction::begin(&mut client, "create team");
        rules::create_team(name, owner, begin).await
    }

    async fn team(&self, id: TeamId) -> Result<Option<Team>> {
        self.query_one(
            "team",
            &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1"),
            &[&id.to_string()],
            |row| read_team(row, 0),
        )
        .await
    }

    async fn team_by_name(&self, name: &str) -> Result<Option<Team>> {
        if !validate::could_be_a_name(name) {
            return Ok(None);
        }
        self.query_one(
            "team by name",
            &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE name_key = $1"),
            &[&validate::fold(name)],
            |row| read_team(row, 0),
        )
        .await
    }

    async fn teams_of(&self, account: AccountId) -> Result<Vec<TeamMembership>> {
        self.query_all(
            "teams of account",
            &format!(
                "SELECT {TEAM_COLUMNS}, memberships.role
                 FROM memberships JOIN teams ON teams.id = memberships.team_id
                 WHERE memberships.account_id = $1 ORDER BY teams.name_key"
            ),
            &[&account.to_string()],
            |row| {
                Ok(TeamMembership {
                    team: read_team(row, 0)?,
                    role: role("memberships", column(row, 3)?)?,
                })
            },
        )
        .await
    }

    async fn set_member(&self, team: TeamId, account: AccountId, role: Role) -> Result<()> {
        let mut client = self.client("set member").await?;
        let begin = PostgresTransaction::begin(&mut client, "set member");
        rules::set_member(team, account, role, begin).await
    }

    async fn remove_member(&self, team: TeamId, account: AccountId) -> Result<()> {
        let mut client = self.client("remove member").await?;
        let begin = PostgresTransaction::begin(&mut client, "remove member");
        rules::remove_member(team, account, begin).await
    }

    async fn members(&self, team: TeamId) -> Result<Vec<Member>> {
        self.query_all(
            "members",
            &format!(
                "SELECT {ACCOUNT_COLUMNS}, memberships.role
                 FROM memberships JOIN accounts ON accounts.id = memberships.account_id
                 WHERE memberships.team_id = $1 ORDER BY accounts.name_key"
            ),
            &[&team.to_string()],
            |row| {
                Ok(Member {
                    account: read_account(row, 0)?,
                    role: role("memberships", column(row, 4)?)?,
                })
            },
        )
        .await
    }

    async fn team_role(&self, team: TeamId, account: AccountId) -> Result<Option<Role>> {
        self.query_one(
            "team role",
            "SELECT role FROM memberships WHERE team_id = $1 AND account_id = $2",
            &[&team.to_string(), &account.to_string()],
            |row| role("memberships", column(row, 0)?),
        )
        .await
    }

    async fn create_project(
        &self,
        team: TeamId,
        name: &str,
        creator: AccountId,
    ) -> Result<Project> {
        let mut client = self.client("create project").await?;
        let begin = PostgresTransaction::begin(&mut client, "create project");
        rules::create_project(team, name, creator, begin).await
    }

    async fn project(&self, id: ProjectId) -> Result<Option<Project>> {
        self.query_one(
            "project",
            &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"),
            &[&id.to_string()],
            |row| read_project(row, 0),
        )
        .await
    }

    async fn project_by_name(&self, team: TeamId, name: &str) -> Result<Option<Project>> {
        if !validate::could_be_a_name(name) {
            return Ok(None);
        }
        self.query_one(
            "project by name",
            &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE team_id = $1 AND name_key = $2"),
            &[&team.to_string(), &validate::fold(name)],
            |row| read_project(row, 0),
        )
        .await
    }

    async fn projects_visible_to(&self, account: AccountId) -> Result<Vec<VisibleProject>> {
        self.query_all(
            "projects visible to account",
            &format!(
                "SELECT {PROJECT_COLUMNS}, memberships.role
                 FROM memberships JOIN projects ON projects.team_id = memberships.team_id
                 WHERE memberships.account_id = $1
                 ORDER BY projects.team_id, projects.name_key"
            ),
            &[&account.to_string()],
            |row| {
                Ok(VisibleProject {
                    project: read_project(row, 0)?,
                    role: role("memberships", column(row, 6)?)?,
                })
            },
        )
        .await
    }

    async fn project_role(&self, account: AccountId, project: ProjectId) -> Result<Option<Role>> {
        self.query_one(
            "project role",
            "SELECT memberships.role
             FROM projects JOIN memberships ON memberships.team_id = projects.team_id
             WHERE projects.id = $1 AND memberships.account_id = $2",
            &[&project.to_string(), &account.to_string()],
            |row| role("memberships", column(row, 0)?),
        )
        .await
    }

    async fn project_for(
        &self,
        account: AccountId,
        project: ProjectId,
    ) -> Result<Option<VisibleProject>> {
        self.query_one(
            "project for account",
            &format!(
                "SELECT {PROJECT_COLUMNS}, memberships.role
                 FROM projects JOIN memberships ON memberships.team_id = projects.team_id
                 WHERE projects.id = $1 AND memberships.account_id = $2"
            ),
            &[&project.to_string(), &account.to_string()],
            |row| {
                Ok(VisibleProject {
                    project: read_project(row, 0)?,
                    role: role("memberships", column(row, 6)?)?,
                })
            },
        )
        .await
    }

    async fn all_projects(&self, after: Option<ProjectId>, limit: u32) -> Result<Vec<Project>> {
        let (after, limit) = rules::project_page(after, limit);
        self.query_all(
            "all projects",
            &format!(
                "SELECT {PROJECT_COLUMNS} FROM projects
                 WHERE id COLLATE \"C\" > $1 ORDER BY id COLLATE \"C\" LIMIT $2"
            ),
            &[&after, &limit],
            |row| read_project(row, 0),
        )
        .await
    }

    async fn commit(&self, request: CommitRequest) -> Result<CommitOutcome> {
        let mut client = self.client("commit").await?;
        let begin = PostgresTransaction::begin(&mut client, "commit");
        rules::commit(&request, begin).await
    }

    async fn versions(&self, project: ProjectId, page: VersionPage) -> Result<Vec<Version>> {
        let (before, limit) = rules::version_page(page);
        self.query_all(
            "versions",
            &format!(
                "{VERSION_SELECT} WHERE versions.project_id = $1 AND versions.number < $2
                 ORDER BY versions.number DESC LIMIT $3"
            ),
            &[&project.to_string(), &before, &limit],
            read_version,
        )
        .await
    }

    async fn version(&self, project: ProjectId, number: VersionNumber) -> Result<Option<Version>> {
        let Ok(number) = i64::try_from(number) else {
            return Ok(None);
        };
        let client = self.client("version").await?;
        load_version(&client, "version", project, number).await
    }

    async fn index_pack(
        &self,
        project: ProjectId,
        pack: &PackRecord,
        objects: &[IndexedObject],
    ) -> Result<()> {
        let mut client = self.client("index pack").await?;
        let begin = PostgresTransaction::begin(&mut client, "index pack");
        rules::index_pack(project, pack, objects, begin).await
    }

    async fn locate(
        &self,
        project: ProjectId,
        ids: &[ObjectId],
        touch: bool,
    ) -> Result<Vec<Option<IndexedObject>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let lookup = rules::lookup_ids(ids);
        let keys = id_array(&lookup);
        let project_id = project.to_string();
        let found = if touch {
            // One statement, so one round trip: lock the rows found in id order, touch them and
            // return them.
            self.query_all(
                "locate",
                &format!(
                    "WITH found AS (
                         SELECT id FROM objects WHERE project_id = $1 AND id = ANY($2)
                         ORDER BY id FOR NO KEY UPDATE
                     )
                     UPDATE objects SET touched = GREATEST(objects.touched, $3)
                     FROM found WHERE objects.project_id = $1 AND objects.id = found.id
                     RETURNING {OBJECT_COLUMNS}"
                ),
                &[&project_id, &keys, &SystemTime::from(Timestamp::now())],
                read_object,
            )
            .await?
        } else {
            self.query_all(
                "locate",
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects
                     WHERE objects.project_id = $1 AND objects.id = ANY($2)"
                ),
                &[&project_id, &keys],
                read_object,
            )
            .await?
        };
        Ok(rules::in_request_order(ids, found))
    }

    async fn packs(&self, project: ProjectId) -> Result<Vec<PackRecord>> {
        self.query_all(
            "packs",
            &format!("SELECT {PACK_COLUMNS} FROM packs WHERE project_id = $1 ORDER BY created, id"),
            &[&project.to_string()],
            read_pack,
        )
        .await
    }

    async fn pack_objects(&self, project: ProjectId, pack: PackId) -> Result<Vec<IndexedObject>> {
        self.query_all(
            "pack objects",
            &format!(
                "SELECT {OBJECT_COLUMNS} FROM objects
                 WHERE objects.project_id = $1 AND objects.pack_id = $2
                 ORDER BY objects.frame_offset, objects.id"
            ),
            &[&project.to_string(), &&pack.as_bytes()[..]],
            read_object,
        )
        .await
    }

    async fn unindex(
        &self,
        project: ProjectId,
        ids: &[ObjectId],
        untouched_since: Timestamp,
    ) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let lookup = rules::lookup_ids(ids);
        let client = self.client("unindex").await?;
        // Locked in id order first. A row a push touches meanwhile is re-read once its lock is
        // free and, touched after the cut-off, stays.
        execute(
            &client,
            "unindex",
            "WITH doomed AS (
                 SELECT id FROM objects
                 WHERE project_id = $1 AND id = ANY($2) AND touched < $3
                 ORDER BY id FOR UPDATE
             )
             DELETE FROM objects USING doomed
             WHERE objects.project_id = $1 AND objects.id = doomed.id
                 AND objects.touched < $3",
            &[
                &project.to_string(),
                &id_array(&lookup),
                &SystemTime::from(untouched_since),
            ],
        )
        .await
        .map_err(|error| error.unexpected("unindex"))
    }

    async fn relocate(
        &self,
        project: ProjectId,
        pack: &PackRecord,
        moved: &[IndexedObject],
    ) -> Result<u64> {
        let mut client = self.client("relocate").await?;
        let begin = PostgresTransaction::begin(&mut client, "relocate");
        rules::relocate(project, pack, moved, begin).await
    }

    async fn forget_pack(&self, project: ProjectId, pack: PackId) -> Result<bool> {
        let client = self.client("forget pack").await?;
        // One statement: the pack's row goes and its dead row comes together.
        let removed = execute(
            &client,
            "forget pack",
            "WITH gone AS (
                 DELETE FROM packs WHERE project_id = $1 AND id = $2
                     AND NOT EXISTS (
                         SELECT 1 FROM objects WHERE project_id = $1 AND pack_id = $2
                     )
                 RETURNING id
             )
             INSERT INTO dead_packs (project_id, id, since)
             SELECT $1, id, $3 FROM gone
             ON CONFLICT (project_id, id) DO UPDATE SET since = dead_packs.since",
            &[
                &project.to_string(),
                &&pack.as_bytes()[..],
                &SystemTime::from(Timestamp::now()),
            ],
        )
        .await;
        match removed {
            Ok(removed) => Ok(removed > 0),
            // Rows naming it were committed while this statement waited for the pack's lock:
            // the foreign key keeps it.
            Err(WriteError::MissingReference) => Ok(false),
            Err(other) => Err(other.unexpected("forget pack")),
        }
    }

    async fn drop_versions(&self, project: ProjectId, older_than: Timestamp) -> Result<u64> {
        let client = self.client("drop versions").await?;
        execute(
            &client,
            "drop versions",
            "DELETE FROM versions WHERE project_id = $1 AND time < $2
                 AND number < (SELECT head_version FROM projects WHERE id = $1)",
            &[&project.to_string(), &SystemTime::from(older_than)],
        )
        .await
        .map_err(|error| error.unexpected("drop versions"))
    }

    async fn touched_since(&self, project: ProjectId, since: Timestamp) -> Result<Vec<ObjectId>> {
        self.query_all(
            "touched since",
            "SELECT id FROM objects WHERE project_id = $1 AND touched >= $2",
            &[&project.to_string(), &SystemTime::from(since)],
            |row| Ok(ObjectId::from_bytes(bytes32("objects", column(row, 0)?)?)),
        )
        .await
    }

    async fn note_dead_packs(
        &self,
        project: ProjectId,
        packs: &[PackId],
        since: Timestamp,
    ) -> Result<u64> {
        if packs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&[u8]> = packs.iter().map(|pack| &pack.as_bytes()[..]).collect();
        let client = self.client("note dead packs").await?;
        execute(
            &client,
            "note dead packs",
            "INSERT INTO dead_packs (project_id, id, since)
             SELECT $1, candidate.id, $3 FROM UNNEST($2::bytea[]) AS candidate (id)
             WHERE NOT EXISTS (
                 SELECT 1 FROM packs WHERE project_id = $1 AND packs.id = candidate.id
             )
             ON CONFLICT (project_id, id) DO NOTHING",
            &[&project.to_string(), &ids, &SystemTime::from(since)],
        )
        .await
        .map_err(|error| match error {
            WriteError::MissingReference => CatalogError::not_found(Entity::Project, project),
            other => other.unexpected("note dead packs"),
        })
    }

    async fn dead_packs(&self, project: ProjectId) -> Result<Vec<(PackId, Timestamp)>> {
        self.query_all(
            "dead packs",
            "SELECT id, since FROM dead_packs WHERE project_id = $1 ORDER BY since, id",
            &[&project.to_string()],
            |row| {
                let id = PackId::from_bytes(bytes32("dead_packs", column(row, 0)?)?);
                Ok((id, time(row, 1)?))
            },
        )
        .await
    }

    async fn drop_dead_packs(&self, project: ProjectId, packs: &[PackId]) -> Result<u64> {
        if packs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&[u8]> = packs.iter().map(|pack| &pack.as_bytes()[..]).collect();
        let client = self.client("drop dead packs").await?;
        execute(
            &client,
            "drop dead packs",
            "DELETE FROM dead_packs WHERE project_id = $1 AND id = ANY($2)",
            &[&project.to_string(), &ids],
        )
        .await
        .map_err(|error| error.unexpected("drop dead packs"))
    }

    async fn legacy_layout(&self, project: ProjectId) -> Result<Option<bool>> {
        self.query_one(
            "legacy layout",
            "SELECT legacy_layout FROM projects WHERE id = $1",
            &[&project.to_string()],
            |row| column(row, 0),
        )
        .await
    }

    async fn set_packed(&self, project: ProjectId) -> Result<()> {
        let client = self.client("set packed").await?;
        let found = execute(
            &client,
            "set packed",
            "UPDATE projects SET legacy_layout = FALSE WHERE id = $1",
            &[&project.to_string()],
        )
        .await
        .map_err(|error| error.unexpected("set packed"))?;
        if found == 0 {
            return Err(CatalogError::not_found(Entity::Project, project));
        }
        Ok(())
    }

    async fn heartbeat(&self, node: NodeId, status: &NodeStatus) -> Result<()> {
        validate::node_status(status)?;
        let client = self.client("heartbeat").await?;
        execute(
            &client,
            "heartbeat",
            "INSERT INTO nodes (id, address, version, started, draining, stats, heartbeat)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE
             SET address = excluded.address, version = excluded.version,
                 started = excluded.started, draining = excluded.draining,
                 stats = excluded.stats, heartbeat = excluded.heartbeat",
            &[
                &node.to_string(),
                &status.address,
                &status.version,
                &SystemTime::from(status.started),
                &status.draining,
                &status.stats.to_json(),
                &SystemTime::from(Timestamp::now()),
            ],
        )
        .await
        .map_err(|error| error.unexpected("heartbeat"))?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        self.query_all(
            "nodes",
            "SELECT id, address, version, started, draining, stats, heartbeat
             FROM nodes ORDER BY id",
            &[],
            |row| {
                Ok(Node {
                    id: parse("nodes", column(row, 0)?)?,
                    status: NodeStatus {
                        address: column(row, 1)?,
                        version: column(row, 2)?,
                        started: time(row, 3)?,
                        draining: column(row, 4)?,
                        stats: NodeStats::from_json(column(row, 5)?)?,
                    },
                    heartbeat: time(row, 6)?,
                })
            },
        )
        .await
    }

    async fn forget_nodes(&self, max_age: Duration) -> Result<u64> {
        let oldest = SystemTime::from(rules::oldest_live_heartbeat(max_age));
        let client = self.client("forget nodes").await?;
        execute(
            &client,
            "forget nodes",
            "DELETE FROM nodes WHERE heartbeat < $1",
            &[&oldest],
        )
        .await
        .map_err(|error| error.unexpected("forget nodes"))
    }

    async fn remove_node(&self, node: NodeId) -> Result<()> {
        let client = self.client("remove node").await?;
        execute(
            &client,
            "remove node",
            "DELETE FROM nodes WHERE id = $1",
            &[&node.to_string()],
        )
        .await
        .map_err(|error| error.unexpected("remove node"))?;
        Ok(())
    }
}
