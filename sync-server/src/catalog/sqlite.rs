//! The embedded catalog: SQLite through rusqlite (bundled), in one file of the data folder.
//!
//! One connection behind a mutex, used from `spawn_blocking`: a single node's catalog traffic is
//! small, and one connection makes every transaction trivially serial. WAL mode lets the file be
//! read (backups, `sqlite3`) while the server writes, and `synchronous = FULL` makes a commit
//! durable before the client hears of it. Writing transactions start with `BEGIN IMMEDIATE`, so
//! two processes on one file (which the server does not do, but tests and tools may) serialize
//! instead of failing mid-transaction.
//!
//! The rules (commit, membership, new teams and projects) are the shared ones of
//! [`rules`](super::rules), run inside the `spawn_blocking` closure over [`SqliteTransaction`],
//! whose methods are synchronous; this file is their SQL, and the queries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, Params, Row, Transaction, TransactionBehavior};
use sync_protocol::ObjectId;

use super::common::{
    OBJECT_COLUMNS, PACK_COLUMNS, Unique, bytes32, db_version, indexed_object, object_id,
    pack_record, parse, role, version_number,
};
use super::error::{CatalogError, Entity};
use super::migrations::{self, Migration};
use super::transaction::{
    CatalogTransaction, NewReceipt, NewVersion, ObjectRow, PackRow, Receipt, WriteError, run_rule,
};
use super::types::{
    Account, AccountCredentials, AccountId, Authenticated, CommitOutcome, CommitRequest,
    IndexedObject, Member, NewAccount, Node, NodeId, NodeStats, NodeStatus, PackId, PackRecord,
    Project, ProjectId, PushId, Role, SignedIn, Team, TeamId, TeamMembership, Timestamp, Token,
    TokenHash, TokenId, Version, VersionNumber, VersionPage, VisibleProject, WebSession,
};
use super::{Catalog, Result, rules, validate};

/// How long a statement waits for another process's lock on the file before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection: every statement this file runs, so none is
/// prepared twice (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 96;

/// How many ids one statement of a lookup or removal binds. SQLite binds at most 32,766
/// variables (999 before 3.32); chunks of a few hundred keep each statement small to prepare
/// while 10,000 ids take 20 statements. Every chunk binds exactly this many (the last one
/// repeats its last id), so one prepared statement serves them all.
const ID_CHUNK: usize = 500;

/// The SQLite catalog. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog file at `path` and applies pending migrations.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let opened = path.clone();
        let connection = tokio::task::spawn_blocking(move || open_connection(&opened))
            .await
            .map_err(|error| CatalogError::database("open", error))??;
        Ok(Self {
            path,
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies pending migrations. [`SqliteCatalog::open`] already did; running it again is a
    /// no-op.
    pub async fn migrate(&self) -> Result<()> {
        self.run("migrate", migrate).await
    }

    /// Runs `work` on the connection, off the async workers.
    async fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open (rusqlite rolls back
            // on drop), so a poisoned lock is still a usable connection.
            let mut connection = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|error| CatalogError::database(operation, error))?
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|error| CatalogError::database("open", error))?;
    }
    let mut connection = Connection::open(path).map_err(db("open"))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(db("open"))?;
    let mode = wal_mode(&connection)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(CatalogError::database(
            "open",
            format!("SQLite refused WAL mode (journal mode is {mode})"),
        ));
    }
    connection
        .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(db("open"))?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate(&mut connection)?;
    Ok(connection)
}

/// Switches `connection` to WAL, waiting up to [`BUSY_TIMEOUT`] for the lock the switch
/// needs: SQLite answers `SQLITE_BUSY` at once, without its busy handler, while another
/// connection holds a write lock (as a node migrating the new database does while others
/// start), so the wait is ours. The journal mode it ends in.
fn wal_mode(connection: &Connection) -> Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            answer => return answer.map_err(db("open")),
        }
    }
}

fn migrate(connection: &mut Connection) -> Result<()> {
    let failed = |migration: &Migration, error: rusqlite::Error| CatalogError::Migration {
        name: migration.name,
        source: Box::new(error),
    };
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("migrate"))?;
    transaction
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version  INTEGER PRIMARY KEY,
                 name     TEXT NOT NULL,
                 checksum TEXT NOT NULL,
                 applied  INTEGER NOT NULL
             ) STRICT",
        )
        .map_err(db("migrate"))?;
    let applied: HashMap<i64, String> = {
        let mut statement = transaction
            .prepare("SELECT version, checksum FROM schema_migrations")
            .map_err(db("migrate"))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(db("migrate"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("migrate"))?
    };
    for migration in migrations::pending(migrations::SQLITE, &applied)? {
        transaction
            .execute_batch(migration.sql)
            .map_err(|error| failed(migration, error))?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied)
                 VALUES (?1, ?2, ?3, ?4)",
                (
                    migration.version,
                    migration.name,
                    migration.checksum(),
                    Timestamp::now().unix_millis(),
                ),
            )
            .map_err(|error| failed(migration, error))?;
    }
    transaction.commit().map_err(db("migrate"))
}

fn db(operation: &'static str) -> impl Fn(rusqlite::Error) -> CatalogError {
    move |error| CatalogError::database(operation, error)
}

/// A failed write as the rules see it: which constraint SQLite refused, if any.
fn write_error(operation: &'static str, error: rusqlite::Error) -> WriteError {
    if let rusqlite::Error::SqliteFailure(code, message) = &error {
        if code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY {
            return WriteError::MissingReference;
        }
        if code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            && let Some(unique) = message.as_deref().and_then(Unique::from_sqlite_message)
        {
            return WriteError::Taken(unique);
        }
    }
    WriteError::Failed(CatalogError::database(operation, error))
}

/// Runs one write, its statement prepared once per connection.
fn execute(
    connection: &Connection,
    operation: &'static str,
    sql: &str,
    params: impl Params,
) -> Result<usize, WriteError> {
    let mut statement = connection
        .prepare_cached(sql)
        .map_err(|error| write_error(operation, error))?;
    statement
        .execute(params)
        .map_err(|error| write_error(operation, error))
}

/// Runs a query and converts every row, with errors that name the operation.
fn query_all<T>(
    connection: &Connection,
    operation: &'static str,
    sql: &str,
    params: impl Params,
    convert: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut statement = connection.prepare_cached(sql).map_err(db(operation))?;
    let mut rows = statement.query(params).map_err(db(operation))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(operation))? {
        out.push(convert(row)?);
    }
    Ok(out)
}

fn query_one<T>(
    connection: &Connection,
    operation: &'static str,
    sql: &str,
    params: impl Params,
    convert: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut statement = connection.prepare_cached(sql).map_err(db(operation))?;
    let mut rows = statement.query(params).map_err(db(operation))?;
    match rows.next().map_err(db(operation))? {
        Some(row) => convert(row).map(Some),
        None => Ok(None),
    }
}

fn column<T: rusqlite::types::FromSql>(row: &Row<'_>, index: usize) -> Result<T> {
    row.get(index).map_err(db("read row"))
}

const ACCOUNT_COLUMNS: &str = "accounts.id, accounts.name, accounts.email, accounts.created";

/// Reads the four [`ACCOUNT_COLUMNS`] starting at `start`.
fn read_account(row: &Row<'_>, start: usize) -> Result<Account> {
    Ok(Account {
        id: parse("accounts", &column::<String>(row, start)?)?,
        name: column(row, start + 1)?,
        email: column(row, start + 2)?,
        created: Timestamp::from_unix_millis(column(row, start + 3)?),
    })
}

const TOKEN_COLUMNS: &str = "id, account_id, label, created, last_used, revoked";

fn read_token(row: &Row<'_>) -> Result<Token> {
    Ok(Token {
        id: parse("tokens", &column::<String>(row, 0)?)?,
        account: parse("tokens", &column::<String>(row, 1)?)?,
        label: column(row, 2)?,
        created: Timestamp::from_unix_millis(column(row, 3)?),
        last_used: column::<Option<i64>>(row, 4)?.map(Timestamp::from_unix_millis),
        revoked: column::<Option<i64>>(row, 5)?.map(Timestamp::from_unix_millis),
    })
}

const SESSION_COLUMNS: &str =
    "web_sessions.id, web_sessions.account_id, web_sessions.created, web_sessions.expires";

fn read_session(row: &Row<'_>, start: usize) -> Result<WebSession> {
    Ok(WebSession {
        id: parse("web_sessions", &column::<String>(row, start)?)?,
        account: parse("web_sessions", &column::<String>(row, start + 1)?)?,
        created: Timestamp::from_unix_millis(column(row, start + 2)?),
        expires: Timestamp::from_unix_millis(column(row, start + 3)?),
    })
}

const TEAM_COLUMNS: &str = "teams.id, teams.name, teams.created";

fn read_team(row: &Row<'_>, start: usize) -> Result<Team> {
    Ok(Team {
        id: parse("teams", &column::<String>(row, start)?)?,
        name: column(row, start + 1)?,
        created: Timestamp::from_unix_millis(column(row, start + 2)?),
    })
}

const PROJECT_COLUMNS: &str = "projects.id, projects.team_id, projects.name, \
    projects.head_version, projects.head_root, projects.created";

fn read_project(row: &Row<'_>, start: usize) -> Result<Project> {
    Ok(Project {
        id: parse("projects", &column::<String>(row, start)?)?,
        team: parse("projects", &column::<String>(row, start + 1)?)?,
        name: column(row, start + 2)?,
        head_version: version_number("projects", column(row, start + 3)?)?,
        head_root: object_id("projects", &column::<String>(row, start + 4)?)?,
        created: Timestamp::from_unix_millis(column(row, start + 5)?),
    })
}

const VERSION_SELECT: &str = "SELECT versions.project_id, versions.number, versions.root, \
    versions.parent, versions.author_id, accounts.name, versions.time, versions.message, \
    versions.push_id FROM versions JOIN accounts ON accounts.id = versions.author_id";

fn read_version(row: &Row<'_>) -> Result<Version> {
    Ok(Version {
        project: parse("versions", &column::<String>(row, 0)?)?,
        number: version_number("versions", column(row, 1)?)?,
        root: object_id("versions", &column::<String>(row, 2)?)?,
        parent: column::<Option<i64>>(row, 3)?
            .map(|parent| version_number("versions", parent))
            .transpose()?,
        author: parse("versions", &column::<String>(row, 4)?)?,
        author_name: column(row, 5)?,
        time: Timestamp::from_unix_millis(column(row, 6)?),
        message: column(row, 7)?,
        push_id: column::<Option<String>>(row, 8)?
            .map(|push_id| parse::<PushId>("versions", &push_id))
            .transpose()?,
    })
}

fn load_version(
    connection: &Connection,
    operation: &'static str,
    project: ProjectId,
    number: i64,
) -> Result<Option<Version>> {
    query_one(
        connection,
        operation,
        &format!("{VERSION_SELECT} WHERE versions.project_id = ?1 AND versions.number = ?2"),
        (project.to_string(), number),
        read_version,
    )
}

/// Reads a stored id's bytes without copying them.
fn blob<'r>(row: &'r Row<'_>, index: usize) -> Result<&'r [u8]> {
    row.get_ref(index)
        .map_err(db("read row"))?
        .as_blob()
        .map_err(|error| CatalogError::database("read row", error))
}

fn read_object(row: &Row<'_>) -> Result<IndexedObject> {
    indexed_object(
        blob(row, 0)?,
        blob(row, 1)?,
        column(row, 2)?,
        column(row, 3)?,
        column(row, 4)?,
        column(row, 5)?,
    )
}

fn read_pack(row: &Row<'_>) -> Result<PackRecord> {
    pack_record(
        blob(row, 0)?,
        column(row, 1)?,
        column(row, 2)?,
        Timestamp::from_unix_millis(column(row, 3)?),
    )
}

/// `?{first}, ?{first + 1}, ...`: the placeholders of one chunk of [`ID_CHUNK`] ids.
fn id_placeholders(first: usize) -> String {
    (first..first + ID_CHUNK)
        .map(|index| format!("?{index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A lookup of one chunk of ids: ?1 the project.
static LOCATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE project_id = ?1 AND id IN ({})",
        id_placeholders(2)
    )
});

/// A touching lookup of one chunk of ids: ?1 the project, ?2 now.
static LOCATE_AND_TOUCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE objects SET touched = MAX(touched, ?2) WHERE project_id = ?1 AND id IN ({})
         RETURNING {OBJECT_COLUMNS}",
        id_placeholders(3)
    )
});

/// A removal of one chunk of ids: ?1 the project, ?2 the cut-off.
static UNINDEX: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM objects WHERE project_id = ?1 AND touched < ?2 AND id IN ({})",
        id_placeholders(3)
    )
});

/// Runs `sql`, a statement over one chunk of ids (see [`ID_CHUNK`]) after the parameters
/// `params`, on every chunk of `ids`, and converts the rows it returns. Returns the rows and
/// how many rows the statements changed.
fn by_chunks<T>(
    connection: &Connection,
    operation: &'static str,
    sql: &str,
    params: &[&dyn ToSql],
    ids: &[ObjectId],
    convert: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<(Vec<T>, u64)> {
    let mut statement = connection.prepare_cached(sql).map_err(db(operation))?;
    for (index, param) in params.iter().enumerate() {
        statement
            .raw_bind_parameter(index + 1, param)
            .map_err(db(operation))?;
    }
    let mut out = Vec::new();
    let mut changed = 0;
    for chunk in ids.chunks(ID_CHUNK) {
        let Some(last) = chunk.last() else { continue };
        let padding = std::iter::repeat_n(last, ID_CHUNK - chunk.len());
        for (index, id) in chunk.iter().chain(padding).enumerate() {
            statement
                .raw_bind_parameter(params.len() + 1 + index, &id.as_bytes()[..])
                .map_err(db(operation))?;
        }
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next().map_err(db(operation))? {
            out.push(convert(row)?);
        }
        drop(rows);
        changed += connection.changes();
    }
    Ok((out, changed))
}

/// One transaction driven by the shared rules. It begins IMMEDIATE, taking the file's write
/// lock at once, so it is serial with every other writer: what the rules guard against in
/// PostgreSQL (a concurrent duplicate committing meanwhile) cannot happen here, and the same
/// rules hold all the same.
struct SqliteTransaction<'c> {
    transaction: Transaction<'c>,
    /// The catalog operation it serves, named in its errors.
    operation: &'static str,
}

impl<'c> SqliteTransaction<'c> {
    /// Async only to be the `begin` a rule awaits; it never waits.
    async fn begin(connection: &'c mut Connection, operation: &'static str) -> Result<Self> {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(operation))?;
        Ok(Self {
            transaction,
            operation,
        })
    }

    /// A statement whose only refusals are failures.
    fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        execute(&self.transaction, self.operation, sql, params)
            .map_err(|error| error.unexpected(self.operation))
    }
}

impl CatalogTransaction for SqliteTransaction<'_> {
    async fn receipt(&mut self, project: ProjectId, push_id: &PushId) -> Result<Option<Receipt>> {
        query_one(
            &self.transaction,
            self.operation,
            "SELECT base_version, root, committed_version FROM push_receipts
             WHERE project_id = ?1 AND push_id = ?2",
            (project.to_string(), push_id.as_str()),
            |row| {
                Ok(Receipt {
                    base_version: version_number("push_receipts", column(row, 0)?)?,
                    root: object_id("push_receipts", &column::<String>(row, 1)?)?,
                    committed_version: column::<Option<i64>>(row, 2)?
                        .map(|number| version_number("push_receipts", number))
                        .transpose()?,
                })
            },
        )
    }

    async fn head(&mut self, project: ProjectId) -> Result<Option<(VersionNumber, ObjectId)>> {
        query_one(
            &self.transaction,
            self.operation,
            "SELECT head_version, head_root FROM projects WHERE id = ?1",
            [project.to_string()],
            |row| {
                Ok((
                    version_number("projects", column(row, 0)?)?,
                    object_id("projects", &column::<String>(row, 1)?)?,
                ))
            },
        )
    }

    async fn swap_head(
        &mut self,
        project: ProjectId,
        from: VersionNumber,
        to: VersionNumber,
        root: ObjectId,
    ) -> Result<bool> {
        let moved = self.execute(
            "UPDATE projects SET head_version = ?3, head_root = ?4
             WHERE id = ?1 AND head_version = ?2",
            (
                project.to_string(),
                db_version(from)?,
                db_version(to)?,
                root.to_string(),
            ),
        )?;
        Ok(moved > 0)
    }

    async fn insert_version(&mut self, version: &NewVersion<'_>) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            "INSERT INTO versions
                 (project_id, number, root, parent, author_id, time, message, push_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            (
                version.project.to_string(),
                db_version(version.number)?,
                version.root.to_string(),
                version.parent.map(db_version).transpose()?,
                version.author.to_string(),
                version.time.unix_millis(),
                version.message,
                version.push_id.map(PushId::as_str),
            ),
        )?;
        Ok(())
    }

    async fn insert_receipt(&mut self, receipt: &NewReceipt<'_>) -> Result<bool> {
        let recorded = self.execute(
            "INSERT INTO push_receipts
                 (project_id, push_id, base_version, root, committed_version, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (project_id, push_id) DO NOTHING",
            (
                receipt.project.to_string(),
                receipt.push_id.as_str(),
                db_version(receipt.receipt.base_version)?,
                receipt.receipt.root.to_string(),
                receipt
                    .receipt
                    .committed_version
                    .map(db_version)
                    .transpose()?,
                receipt.created.unix_millis(),
            ),
        )?;
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
    }

    async fn insert_team(&mut self, team: &Team) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            "INSERT INTO teams (id, name, name_key, created) VALUES (?1, ?2, ?3, ?4)",
            (
                team.id.to_string(),
                &team.name,
                validate::fold(&team.name),
                team.created.unix_millis(),
            ),
        )?;
        Ok(())
    }

    async fn lock_owners(&mut self, team: TeamId) -> Result<Vec<AccountId>> {
        // No row locks in SQLite: the transaction already holds the write lock.
        query_all(
            &self.transaction,
            self.operation,
            "SELECT account_id FROM memberships WHERE team_id = ?1 AND role = ?2",
            (team.to_string(), Role::Owner.as_str()),
            |row| parse("memberships", &column::<String>(row, 0)?),
        )
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
            "INSERT INTO memberships (team_id, account_id, role) VALUES (?1, ?2, ?3)
             ON CONFLICT (team_id, account_id) DO UPDATE SET role = excluded.role",
            (team.to_string(), account.to_string(), role.as_str()),
        )?;
        Ok(())
    }

    async fn delete_membership(&mut self, team: TeamId, account: AccountId) -> Result<bool> {
        let removed = self.execute(
            "DELETE FROM memberships WHERE team_id = ?1 AND account_id = ?2",
            (team.to_string(), account.to_string()),
        )?;
        Ok(removed > 0)
    }

    async fn insert_project(&mut self, project: &Project) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            // Not legacy: see the PostgreSQL twin.
            "INSERT INTO projects
                 (id, team_id, name, name_key, head_version, head_root, created, legacy_layout)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            (
                project.id.to_string(),
                project.team.to_string(),
                &project.name,
                validate::fold(&project.name),
                db_version(project.head_version)?,
                project.head_root.to_string(),
                project.created.unix_millis(),
            ),
        )?;
        Ok(())
    }

    async fn insert_pack(&mut self, project: ProjectId, pack: &PackRow) -> Result<(), WriteError> {
        execute(
            &self.transaction,
            self.operation,
            "INSERT INTO packs (project_id, id, length, object_count, created)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project_id, id) DO NOTHING",
            (
                project.to_string(),
                &pack.id.as_bytes()[..],
                pack.length,
                pack.object_count,
                pack.created.unix_millis(),
            ),
        )?;
        Ok(())
    }

    async fn insert_objects(
        &mut self,
        project: ProjectId,
        pack: PackId,
        objects: &[ObjectRow],
        now: Timestamp,
    ) -> Result<()> {
        // One prepared statement, run once per row inside the transaction: SQLite has no round
        // trips to save, and the transaction makes it one write to the file.
        let mut statement = self
            .transaction
            .prepare_cached(
                "INSERT INTO objects
                     (project_id, id, pack_id, frame_offset, frame_length, kind, size, touched)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (project_id, id) DO UPDATE SET touched = MAX(touched, ?8)",
            )
            .map_err(db(self.operation))?;
        let project = project.to_string();
        for row in objects {
            statement
                .execute((
                    &project,
                    &row.id.as_bytes()[..],
                    &pack.as_bytes()[..],
                    row.offset,
                    row.length,
                    i64::from(row.kind.tag()),
                    row.size,
                    now.unix_millis(),
                ))
                .map_err(db(self.operation))?;
        }
        Ok(())
    }

    async fn move_objects(
        &mut self,
        project: ProjectId,
        pack: PackId,
        objects: &[ObjectRow],
    ) -> Result<u64> {
        let mut statement = self
            .transaction
            .prepare_cached(
                "UPDATE objects SET pack_id = ?3, frame_offset = ?4, frame_length = ?5
                 WHERE project_id = ?1 AND id = ?2",
            )
            .map_err(db(self.operation))?;
        let project = project.to_string();
        let mut moved = 0;
        for row in objects {
            moved += statement
                .execute((
                    &project,
                    &row.id.as_bytes()[..],
                    &pack.as_bytes()[..],
                    row.offset,
                    row.length,
                ))
                .map_err(db(self.operation))?;
        }
        Ok(moved as u64)
    }

    async fn commit(self) -> Result<()> {
        self.transaction.commit().map_err(db(self.operation))
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn create_account(&self, account: NewAccount) -> Result<Account> {
        let created = rules::new_account(&account)?;
        self.run("create account", move |connection| {
            execute(
                connection,
                "create account",
                "INSERT INTO accounts
                     (id, name, name_key, email, email_key, password_hash, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                (
                    created.id.to_string(),
                    &account.name,
                    validate::fold(&account.name),
                    &account.email,
                    validate::fold(&account.email),
                    &account.password_hash,
                    created.created.unix_millis(),
                ),
            )
            .map_err(|error| rules::account_not_created(error, &account))?;
            Ok(created)
        })
        .await
    }

    async fn account(&self, id: AccountId) -> Result<Option<Account>> {
        self.run("account", move |connection| {
            query_one(
                connection,
                "account",
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                [id.to_string()],
                |row| read_account(row, 0),
            )
        })
        .await
    }

    async fn account_credentials(&self, login: &str) -> Result<Option<AccountCredentials>> {
        if !validate::could_be_a_name(login) {
            return Ok(None);
        }
        let key = validate::fold(login);
        self.run("account credentials", move |connection| {
            query_one(
                connection,
                "account credentials",
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts
                     WHERE name_key = ?1 OR email_key = ?1
                     ORDER BY name_key = ?1 DESC LIMIT 1"
                ),
                [key],
                |row| {
                    Ok(AccountCredentials {
                        account: read_account(row, 0)?,
                        password_hash: column(row, 4)?,
                    })
                },
            )
        })
        .await
    }

    async fn set_password_hash(&self, account: AccountId, password_hash: &str) -> Result<()> {
        validate::password_hash(password_hash)?;
        let password_hash = password_hash.to_owned();
        self.run("set password hash", move |connection| {
            let changed = execute(
                connection,
                "set password hash",
                "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
                (account.to_string(), &password_hash),
            )
            .map_err(|error| error.unexpected("set password hash"))?;
            if changed == 0 {
                return Err(CatalogError::not_found(Entity::Account, account));
            }
            Ok(())
        })
        .await
    }

    async fn create_token(
        &self,
        account: AccountId,
        label: &str,
        secret_hash: TokenHash,
    ) -> Result<Token> {
        let token = rules::new_token(account, label)?;
        self.run("create token", move |connection| {
            execute(
                connection,
                "create token",
                "INSERT INTO tokens (id, account_id, label, secret_hash, created)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (
                    token.id.to_string(),
                    account.to_string(),
                    &token.label,
                    &secret_hash.as_bytes()[..],
                    token.created.unix_millis(),
                ),
            )
            .map_err(|error| rules::token_not_created(error, account))?;
            Ok(token)
        })
        .await
    }

    async fn authenticate_token(&self, secret_hash: &TokenHash) -> Result<Option<Authenticated>> {
        let secret_hash = *secret_hash;
        self.run("authenticate token", move |connection| {
            let found = query_one(
                connection,
                "authenticate token",
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, tokens.id, tokens.last_used
                     FROM tokens JOIN accounts ON accounts.id = tokens.account_id
                     WHERE tokens.secret_hash = ?1 AND tokens.revoked IS NULL"
                ),
                [&secret_hash.as_bytes()[..]],
                |row| {
                    Ok((
                        read_account(row, 0)?,
                        parse::<TokenId>("tokens", &column::<String>(row, 4)?)?,
                        column::<Option<i64>>(row, 5)?.map(Timestamp::from_unix_millis),
                    ))
                },
            )?;
            let Some((account, token, last_used)) = found else {
                return Ok(None);
            };
            let now = Timestamp::now();
            if rules::touches_last_used(last_used, now) {
                execute(
                    connection,
                    "authenticate token",
                    "UPDATE tokens SET last_used = ?2 WHERE id = ?1",
                    (token.to_string(), now.unix_millis()),
                )
                .map_err(|error| error.unexpected("authenticate token"))?;
            }
            Ok(Some(Authenticated { account, token }))
        })
        .await
    }

    async fn tokens(&self, account: AccountId) -> Result<Vec<Token>> {
        self.run("tokens", move |connection| {
            query_all(
                connection,
                "tokens",
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE account_id = ?1
                     ORDER BY created, id"
                ),
                [account.to_string()],
                read_token,
            )
        })
        .await
    }

    async fn revoke_token(&self, account: AccountId, token: TokenId) -> Result<()> {
        self.run("revoke token", move |connection| {
            let found = connection
                .execute(
                    "UPDATE tokens SET revoked = COALESCE(revoked, ?3)
                     WHERE id = ?1 AND account_id = ?2",
                    (
                        token.to_string(),
                        account.to_string(),
                        Timestamp::now().unix_millis(),
                    ),
                )
                .map_err(db("revoke token"))?;
            if found == 0 {
                return Err(CatalogError::not_found(Entity::Token, token));
            }
            Ok(())
        })
        .await
    }

    async fn create_session(
        &self,
        account: AccountId,
        secret_hash: TokenHash,
        expires: Timestamp,
    ) -> Result<WebSession> {
        let session = rules::new_session(account, expires);
        self.run("create session", move |connection| {
            execute(
                connection,
                "create session",
                "DELETE FROM web_sessions WHERE account_id = ?1 AND expires <= ?2",
                (account.to_string(), session.created.unix_millis()),
            )
            .map_err(|error| error.unexpected("create session"))?;
            execute(
                connection,
                "create session",
                "INSERT INTO web_sessions (id, account_id, secret_hash, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (
                    session.id.to_string(),
                    account.to_string(),
                    &secret_hash.as_bytes()[..],
                    session.created.unix_millis(),
                    session.expires.unix_millis(),
                ),
            )
            .map_err(|error| rules::token_not_created(error, account))?;
            Ok(session)
        })
        .await
    }

    async fn session(&self, secret_hash: &TokenHash) -> Result<Option<SignedIn>> {
        let secret_hash = *secret_hash;
        self.run("session", move |connection| {
            query_one(
                connection,
                "session",
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, {SESSION_COLUMNS}
                     FROM web_sessions JOIN accounts ON accounts.id = web_sessions.account_id
                     WHERE web_sessions.secret_hash = ?1 AND web_sessions.expires > ?2"
                ),
                (&secret_hash.as_bytes()[..], Timestamp::now().unix_millis()),
                |row| {
                    Ok(SignedIn {
                        account: read_account(row, 0)?,
                        session: read_session(row, 4)?,
                    })
                },
            )
        })
        .await
    }

    async fn sessions(&self, account: AccountId) -> Result<Vec<WebSession>> {
        self.run("sessions", move |connection| {
            query_all(
                connection,
                "sessions",
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM web_sessions
                     WHERE account_id = ?1 AND expires > ?2 ORDER BY created, id"
                ),
                (account.to_string(), Timestamp::now().unix_millis()),
                |row| read_session(row, 0),
            )
        })
        .await
    }

    async fn end_session(&self, secret_hash: &TokenHash) -> Result<()> {
        let secret_hash = *secret_hash;
        self.run("end session", move |connection| {
            execute(
                connection,
                "end session",
                "DELETE FROM web_sessions WHERE secret_hash = ?1",
                [&secret_hash.as_bytes()[..]],
            )
            .map_err(|error| error.unexpected("end session"))?;
            Ok(())
        })
        .await
    }

    async fn end_sessions(&self, account: AccountId) -> Result<u64> {
        self.run("end sessions", move |connection| {
            let ended = execute(
                connection,
                "end sessions",
                "DELETE FROM web_sessions WHERE account_id = ?1",
                [account.to_string()],
            )
            .map_err(|error| error.unexpected("end sessions"))?;
            Ok(ended as u64)
        })
        .await
    }

    async fn create_team(&self, name: &str, owner: AccountId) -> Result<Team> {
        let name = name.to_owned();
        self.run("create team", move |connection| {
            let begin = SqliteTransaction::begin(connection, "create team");
            run_rule("create team", rules::create_team(&name, owner, begin))
        })
        .await
    }

    async fn team(&self, id: TeamId) -> Result<Option<Team>> {
        self.run("team", move |connection| {
            query_one(
                connection,
                "team",
                &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = ?1"),
                [id.to_string()],
                |row| read_team(row, 0),
            )
        })
        .await
    }

    async fn team_by_name(&self, name: &str) -> Result<Option<Team>> {
        if !validate::could_be_a_name(name) {
            return Ok(None);
        }
        let key = validate::fold(name);
        self.run("team by name", move |connection| {
            query_one(
                connection,
                "team by name",
                &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE name_key = ?1"),
                [key],
                |row| read_team(row, 0),
            )
        })
        .await
    }

    async fn teams_of(&self, account: AccountId) -> Result<Vec<TeamMembership>> {
        self.run("teams of account", move |connection| {
            query_all(
                connection,
                "teams of account",
                &format!(
                    "SELECT {TEAM_COLUMNS}, memberships.role
                     FROM memberships JOIN teams ON teams.id = memberships.team_id
                     WHERE memberships.account_id = ?1 ORDER BY teams.name_key"
                ),
                [account.to_string()],
                |row| {
                    Ok(TeamMembership {
                        team: read_team(row, 0)?,
                        role: role("memberships", &column::<String>(row, 3)?)?,
                    })
                },
            )
        })
        .await
    }

    async fn set_member(&self, team: TeamId, account: AccountId, role: Role) -> Result<()> {
        self.run("set member", move |connection| {
            let begin = SqliteTransaction::begin(connection, "set member");
            run_rule("set member", rules::set_member(team, account, role, begin))
        })
        .await
    }

    async fn remove_member(&self, team: TeamId, account: AccountId) -> Result<()> {
        self.run("remove member", move |connection| {
            let begin = SqliteTransaction::begin(connection, "remove member");
            run_rule("remove member", rules::remove_member(team, account, begin))
        })
        .await
    }

    async fn members(&self, team: TeamId) -> Result<Vec<Member>> {
        self.run("members", move |connection| {
            query_all(
                connection,
                "members",
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, memberships.role
                     FROM memberships JOIN accounts ON accounts.id = memberships.account_id
                     WHERE memberships.team_id = ?1 ORDER BY accounts.name_key"
                ),
                [team.to_string()],
                |row| {
                    Ok(Member {
                        account: read_account(row, 0)?,
                        role: role("memberships", &column::<String>(row, 4)?)?,
                    })
                },
            )
        })
        .await
    }

    async fn team_role(&self, team: TeamId, account: AccountId) -> Result<Option<Role>> {
        self.run("team role", move |connection| {
            query_one(
                connection,
                "team role",
                "SELECT role FROM memberships WHERE team_id = ?1 AND account_id = ?2",
                (team.to_string(), account.to_string()),
                |row| role("memberships", &column::<String>(row, 0)?),
            )
        })
        .await
    }

    async fn create_project(
        &self,
        team: TeamId,
        name: &str,
        creator: AccountId,
    ) -> Result<Project> {
        let name = name.to_owned();
        self.run("create project", move |connection| {
            let begin = SqliteTransaction::begin(connection, "create project");
            run_rule(
                "create project",
                rules::create_project(team, &name, creator, begin),
            )
        })
        .await
    }

    async fn project(&self, id: ProjectId) -> Result<Option<Project>> {
        self.run("project", move |connection| {
            query_one(
                connection,
                "project",
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?1"),
                [id.to_string()],
                |row| read_project(row, 0),
            )
        })
        .await
    }

    async fn project_by_name(&self, team: TeamId, name: &str) -> Result<Option<Project>> {
        if !validate::could_be_a_name(name) {
            return Ok(None);
        }
        let key = validate::fold(name);
        self.run("project by name", move |connection| {
            query_one(
                connection,
                "project by name",
                &format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects WHERE team_id = ?1 AND name_key = ?2"
                ),
                (team.to_string(), key),
                |row| read_project(row, 0),
            )
        })
        .await
    }

    async fn projects_visible_to(&self, account: AccountId) -> Result<Vec<VisibleProject>> {
        self.run("projects visible to account", move |connection| {
            query_all(
                connection,
                "projects visible to account",
                &format!(
                    "SELECT {PROJECT_COLUMNS}, memberships.role
                     FROM memberships JOIN projects ON projects.team_id = memberships.team_id
                     WHERE memberships.account_id = ?1
                     ORDER BY projects.team_id, projects.name_key"
                ),
                [account.to_string()],
                |row| {
                    Ok(VisibleProject {
                        project: read_project(row, 0)?,
                        role: role("memberships", &column::<String>(row, 6)?)?,
                    })
                },
            )
        })
        .await
    }

    async fn project_role(&self, account: AccountId, project: ProjectId) -> Result<Option<Role>> {
        self.run("project role", move |connection| {
            query_one(
                connection,
                "project role",
                "SELECT memberships.role
                 FROM projects JOIN memberships ON memberships.team_id = projects.team_id
                 WHERE projects.id = ?1 AND memberships.account_id = ?2",
                (project.to_string(), account.to_string()),
                |row| role("memberships", &column::<String>(row, 0)?),
            )
        })
        .await
    }

    async fn project_for(
        &self,
        account: AccountId,
        project: ProjectId,
    ) -> Result<Option<VisibleProject>> {
        self.run("project for account", move |connection| {
            query_one(
                connection,
                "project for account",
                &format!(
                    "SELECT {PROJECT_COLUMNS}, memberships.role
                     FROM projects JOIN memberships ON memberships.team_id = projects.team_id
                     WHERE projects.id = ?1 AND memberships.account_id = ?2"
                ),
                (project.to_string(), account.to_string()),
                |row| {
                    Ok(VisibleProject {
                        project: read_project(row, 0)?,
                        role: role("memberships", &column::<String>(row, 6)?)?,
                    })
                },
            )
        })
        .await
    }

    async fn all_projects(&self, after: Option<ProjectId>, limit: u32) -> Result<Vec<Project>> {
        let (after, limit) = rules::project_page(after, limit);
        self.run("all projects", move |connection| {
            query_all(
                connection,
                "all projects",
                &format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects WHERE id > ?1 ORDER BY id LIMIT ?2"
                ),
                (after, limit),
                |row| read_project(row, 0),
            )
        })
        .await
    }

    async fn commit(&self, request: CommitRequest) -> Result<CommitOutcome> {
        self.run("commit", move |connection| {
            let begin = SqliteTransaction::begin(connection, "commit");
            run_rule("commit", rules::commit(&request, begin))
        })
        .await
    }

    async fn versions(&self, project: ProjectId, page: VersionPage) -> Result<Vec<Version>> {
        let (before, limit) = rules::version_page(page);
        self.run("versions", move |connection| {
            query_all(
                connection,
                "versions",
                &format!(
                    "{VERSION_SELECT} WHERE versions.project_id = ?1 AND versions.number < ?2
                     ORDER BY versions.number DESC LIMIT ?3"
                ),
                (project.to_string(), before, limit),
                read_version,
            )
        })
        .await
    }

    async fn version(&self, project: ProjectId, number: VersionNumber) -> Result<Option<Version>> {
        let Ok(number) = i64::try_from(number) else {
            return Ok(None);
        };
        self.run("version", move |connection| {
            load_version(connection, "version", project, number)
        })
        .await
    }

    async fn index_pack(
        &self,
        project: ProjectId,
        pack: &PackRecord,
        objects: &[IndexedObject],
    ) -> Result<()> {
        let pack = *pack;
        let objects = objects.to_vec();
        self.run("index pack", move |connection| {
            let begin = SqliteTransaction::begin(connection, "index pack");
            run_rule(
                "index pack",
                rules::index_pack(project, &pack, &objects, begin),
            )
        })
        .await
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
        let found = self
            .run("locate", move |connection| {
                let project = project.to_string();
                if touch {
                    let transaction = connection
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(db("locate"))?;
                    let now = Timestamp::now().unix_millis();
                    let (found, _) = by_chunks(
                        &transaction,
                        "locate",
                        &LOCATE_AND_TOUCH,
                        &[&project, &now],
                        &lookup,
                        read_object,
                    )?;
                    transaction.commit().map_err(db("locate"))?;
                    Ok(found)
                } else {
                    // One read transaction: every chunk sees the same index.
                    let transaction = connection.transaction().map_err(db("locate"))?;
                    let (found, _) = by_chunks(
                        &transaction,
                        "locate",
                        &LOCATE,
                        &[&project],
                        &lookup,
                        read_object,
                    )?;
                    transaction.commit().map_err(db("locate"))?;
                    Ok(found)
                }
            })
            .await?;
        Ok(rules::in_request_order(ids, found))
    }

    async fn packs(&self, project: ProjectId) -> Result<Vec<PackRecord>> {
        self.run("packs", move |connection| {
            query_all(
                connection,
                "packs",
                &format!(
                    "SELECT {PACK_COLUMNS} FROM packs WHERE project_id = ?1 ORDER BY created, id"
                ),
                [project.to_string()],
                read_pack,
            )
        })
        .await
    }

    async fn pack_objects(&self, project: ProjectId, pack: PackId) -> Result<Vec<IndexedObject>> {
        self.run("pack objects", move |connection| {
            query_all(
                connection,
                "pack objects",
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE project_id = ?1 AND pack_id = ?2
                     ORDER BY frame_offset, id"
                ),
                (project.to_string(), &pack.as_bytes()[..]),
                read_object,
            )
        })
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
        self.run("unindex", move |connection| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("unindex"))?;
            let (_, removed) = by_chunks(
                &transaction,
                "unindex",
                &UNINDEX,
                &[&project.to_string(), &untouched_since.unix_millis()],
                &lookup,
                |_| Ok(()),
            )?;
            transaction.commit().map_err(db("unindex"))?;
            Ok(removed)
        })
        .await
    }

    async fn relocate(
        &self,
        project: ProjectId,
        pack: &PackRecord,
        moved: &[IndexedObject],
    ) -> Result<u64> {
        let pack = *pack;
        let moved = moved.to_vec();
        self.run("relocate", move |connection| {
            let begin = SqliteTransaction::begin(connection, "relocate");
            run_rule("relocate", rules::relocate(project, &pack, &moved, begin))
        })
        .await
    }

    async fn forget_pack(&self, project: ProjectId, pack: PackId) -> Result<bool> {
        self.run("forget pack", move |connection| {
            let transaction = connection.transaction().map_err(db("forget pack"))?;
            let removed = execute(
                &transaction,
                "forget pack",
                "DELETE FROM packs WHERE project_id = ?1 AND id = ?2
                     AND NOT EXISTS (
                         SELECT 1 FROM objects WHERE project_id = ?1 AND pack_id = ?2
                     )",
                (project.to_string(), &pack.as_bytes()[..]),
            );
            let removed = match removed {
                Ok(removed) => removed > 0,
                // Not reached while writers are serial; kept alike with PostgreSQL.
                Err(WriteError::MissingReference) => false,
                Err(other) => return Err(other.unexpected("forget pack")),
            };
            if removed {
                execute(
                    &transaction,
                    "forget pack",
                    "INSERT INTO dead_packs (project_id, id, since) VALUES (?1, ?2, ?3)
                     ON CONFLICT (project_id, id) DO NOTHING",
                    (
                        project.to_string(),
                        &pack.as_bytes()[..],
                        Timestamp::now().unix_millis(),
                    ),
                )
                .map_err(|error| error.unexpected("forget pack"))?;
            }
            transaction.commit().map_err(db("forget pack"))?;
            Ok(removed)
        })
        .await
    }

    async fn drop_versions(&self, project: ProjectId, older_than: Timestamp) -> Result<u64> {
        self.run("drop versions", move |connection| {
            execute(
                connection,
                "drop versions",
                "DELETE FROM versions WHERE project_id = ?1 AND time < ?2
                     AND number < (SELECT head_version FROM projects WHERE id = ?1)",
                (project.to_string(), older_than.unix_millis()),
            )
            .map(|dropped| dropped as u64)
            .map_err(|error| error.unexpected("drop versions"))
        })
        .await
    }

    async fn touched_since(&self, project: ProjectId, since: Timestamp) -> Result<Vec<ObjectId>> {
        self.run("touched since", move |connection| {
            query_all(
                connection,
                "touched since",
                "SELECT id FROM objects WHERE project_id = ?1 AND touched >= ?2",
                (project.to_string(), since.unix_millis()),
                |row| Ok(ObjectId::from_bytes(bytes32("objects", blob(row, 0)?)?)),
            )
        })
        .await
    }

    async fn note_dead_packs(
        &self,
        project: ProjectId,
        packs: &[PackId],
        since: Timestamp,
    ) -> Result<u64> {
        let packs = packs.to_vec();
        self.run("note dead packs", move |connection| {
            let transaction = connection.transaction().map_err(db("note dead packs"))?;
            let mut noted = 0;
            for pack in &packs {
                noted += execute(
                    &transaction,
                    "note dead packs",
                    "INSERT INTO dead_packs (project_id, id, since)
                     SELECT ?1, ?2, ?3
                     WHERE NOT EXISTS (SELECT 1 FROM packs WHERE project_id = ?1 AND id = ?2)
                     ON CONFLICT (project_id, id) DO NOTHING",
                    (
                        project.to_string(),
                        &pack.as_bytes()[..],
                        since.unix_millis(),
                    ),
                )
                .map_err(|error| match error {
                    WriteError::MissingReference => {
                        CatalogError::not_found(Entity::Project, project)
                    }
                    other => other.unexpected("note dead packs"),
                })? as u64;
            }
            transaction.commit().map_err(db("note dead packs"))?;
            Ok(noted)
        })
        .await
    }

    async fn dead_packs(&self, project: ProjectId) -> Result<Vec<(PackId, Timestamp)>> {
        self.run("dead packs", move |connection| {
            query_all(
                connection,
                "dead packs",
                "SELECT id, since FROM dead_packs WHERE project_id = ?1 ORDER BY since, id",
                [project.to_string()],
                |row| {
                    let id = PackId::from_bytes(bytes32("dead_packs", blob(row, 0)?)?);
                    Ok((id, Timestamp::from_unix_millis(column(row, 1)?)))
                },
            )
        })
        .await
    }

    async fn drop_dead_packs(&self, project: ProjectId, packs: &[PackId]) -> Result<u64> {
        let packs = packs.to_vec();
        self.run("drop dead packs", move |connection| {
            let transaction = connection.transaction().map_err(db("drop dead packs"))?;
            let mut dropped = 0;
            for pack in &packs {
                dropped += execute(
                    &transaction,
                    "drop dead packs",
                    "DELETE FROM dead_packs WHERE project_id = ?1 AND id = ?2",
                    (project.to_string(), &pack.as_bytes()[..]),
                )
                .map_err(|error| error.unexpected("drop dead packs"))?
                    as u64;
            }
            transaction.commit().map_err(db("drop dead packs"))?;
            Ok(dropped)
        })
        .await
    }

    async fn legacy_layout(&self, project: ProjectId) -> Result<Option<bool>> {
        self.run("legacy layout", move |connection| {
            query_one(
                connection,
                "legacy layout",
                "SELECT legacy_layout FROM projects WHERE id = ?1",
                [project.to_string()],
                |row| column::<bool>(row, 0),
            )
        })
        .await
    }

    async fn set_packed(&self, project: ProjectId) -> Result<()> {
        self.run("set packed", move |connection| {
            let found = execute(
                connection,
                "set packed",
                "UPDATE projects SET legacy_layout = 0 WHERE id = ?1",
                [project.to_string()],
            )
            .map_err(|error| error.unexpected("set packed"))?;
            if found == 0 {
                return Err(CatalogError::not_found(Entity::Project, project));
            }
            Ok(())
        })
        .await
    }

    async fn heartbeat(&self, node: NodeId, status: &NodeStatus) -> Result<()> {
        validate::node_status(status)?;
        let status = status.clone();
        self.run("heartbeat", move |connection| {
            execute(
                connection,
                "heartbeat",
                "INSERT INTO nodes (id, address, version, started, draining, stats, heartbeat)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE
                 SET address = excluded.address, version = excluded.version,
                     started = excluded.started, draining = excluded.draining,
                     stats = excluded.stats, heartbeat = excluded.heartbeat",
                (
                    node.to_string(),
                    &status.address,
                    &status.version,
                    status.started.unix_millis(),
                    status.draining,
                    status.stats.to_json(),
                    Timestamp::now().unix_millis(),
                ),
            )
            .map_err(|error| error.unexpected("heartbeat"))?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        self.run("nodes", move |connection| {
            query_all(
                connection,
                "nodes",
                "SELECT id, address, version, started, draining, stats, heartbeat
                 FROM nodes ORDER BY id",
                [],
                |row| {
                    Ok(Node {
                        id: parse("nodes", &column::<String>(row, 0)?)?,
                        status: NodeStatus {
                            address: column(row, 1)?,
                            version: column(row, 2)?,
                            started: Timestamp::from_unix_millis(column(row, 3)?),
                            draining: column(row, 4)?,
                            stats: NodeStats::from_json(&column::<String>(row, 5)?)?,
                        },
                        heartbeat: Timestamp::from_unix_millis(column(row, 6)?),
                    })
                },
            )
        })
        .await
    }

    async fn forget_nodes(&self, max_age: Duration) -> Result<u64> {
        let oldest = rules::oldest_live_heartbeat(max_age).unix_millis();
        self.run("forget nodes", move |connection| {
            let forgotten = execute(
                connection,
                "forget nodes",
                "DELETE FROM nodes WHERE heartbeat < ?1",
                [oldest],
            )
            .map_err(|error| error.unexpected("forget nodes"))?;
            Ok(forgotten as u64)
        })
        .await
    }

    async fn remove_node(&self, node: NodeId) -> Result<()> {
        self.run("remove node", move |connection| {
            execute(
                connection,
                "remove node",
                "DELETE FROM nodes WHERE id = ?1",
                [node.to_string()],
            )
            .map_err(|error| error.unexpected("remove node"))?;
            Ok(())
        })
        .await
    }
}
