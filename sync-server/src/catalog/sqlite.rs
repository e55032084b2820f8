//! The embedded catalog: SQLite through rusqlite (bundled), in one file of the data folder.
//!
//! One connection behind a mutex, used from `spawn_blocking`: a single node's catalog traffic is
//! small, and one connection makes every transaction trivially serial. WAL mode lets the file be
//! read (backups, `sqlite3`) while the server writes, and `synchronous = FULL` makes a commit
//! durable before the client hears of it. Writing transactions start with `BEGIN IMMEDIATE`, so
//! two processes on one file (which the server does not do, but tests and tools may) serialize
//! instead of failing mid-transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Params, Row, Transaction, TransactionBehavior};

use super::common::{Unique, db_version, object_id, parse, role, version_number};
use super::error::{CatalogError, Entity, Field};
use super::migrations::{self, Migration};
use super::types::{
    Account, AccountCredentials, AccountId, Authenticated, CommitOutcome, CommitRequest, Member,
    NewAccount, Node, NodeId, PROJECT_CREATED_MESSAGE, Project, ProjectId, PushId, Role, Team,
    TeamId, TeamMembership, Timestamp, Token, TokenHash, TokenId, Version, VersionNumber,
    VersionPage, VisibleProject, empty_root,
};
use super::{Catalog, Result, limits, validate};

/// How long a statement waits for another process's lock on the file before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(db("open"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(CatalogError::database(
            "open",
            format!("SQLite refused WAL mode (journal mode is {mode})"),
        ));
    }
    connection
        .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(db("open"))?;
    migrate(&mut connection)?;
    Ok(connection)
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
    for migration in migrations::SQLITE {
        match applied.get(&migration.version) {
            Some(checksum) if *checksum == migration.checksum() => continue,
            Some(_) => {
                return Err(CatalogError::Migration {
                    name: migration.name,
                    source: "the migration file changed after it was applied".into(),
                });
            }
            None => {}
        }
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

/// The unique constraint `error` violated, if that is what it is.
fn unique_violation(error: &rusqlite::Error) -> Option<Unique> {
    match error {
        rusqlite::Error::SqliteFailure(code, Some(message))
            if code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Unique::from_sqlite_message(message)
        }
        _ => None,
    }
}

fn is_foreign_key_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(code, _)
        if code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
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
    project: ProjectId,
    number: i64,
) -> Result<Option<Version>> {
    query_one(
        connection,
        "version",
        &format!("{VERSION_SELECT} WHERE versions.project_id = ?1 AND versions.number = ?2"),
        (project.to_string(), number),
        read_version,
    )
}

fn load_head(transaction: &Transaction<'_>, project: ProjectId) -> Result<Option<(i64, String)>> {
    query_one(
        transaction,
        "commit",
        "SELECT head_version, head_root FROM projects WHERE id = ?1",
        [project.to_string()],
        |row| Ok((column(row, 0)?, column(row, 1)?)),
    )
}

/// The commit transaction; see the catalog module doc for its rules.
fn commit(connection: &mut Connection, request: CommitRequest) -> Result<CommitOutcome> {
    validate::message(&request.message)?;
    let base = db_version(request.base_version)?;
    let project = request.project.to_string();
    let root = request.root.to_string();
    let push_id = request.push_id.as_str().to_owned();
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("commit"))?;
    if let Some(outcome) = replay(&transaction, &request)? {
        return Ok(outcome);
    }
    let now = Timestamp::now().unix_millis();
    let moved = transaction
        .execute(
            "UPDATE projects SET head_version = ?2 + 1, head_root = ?3
             WHERE id = ?1 AND head_version = ?2",
            (&project, base, &root),
        )
        .map_err(db("commit"))?;
    if moved == 0 {
        let Some((head_version, head_root)) = load_head(&transaction, request.project)? else {
            return Err(CatalogError::not_found(Entity::Project, request.project));
        };
        transaction
            .execute(
                "INSERT INTO push_receipts
                     (project_id, push_id, base_version, root, committed_version, created)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
                (&project, &push_id, base, &root, now),
            )
            .map_err(db("commit"))?;
        transaction.commit().map_err(db("commit"))?;
        return Ok(CommitOutcome::Conflict {
            head_version: version_number("projects", head_version)?,
            head_root: object_id("projects", &head_root)?,
        });
    }
    let number = base + 1;
    transaction
        .execute(
            "INSERT INTO versions
                 (project_id, number, root, parent, author_id, time, message, push_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            (
                &project,
                number,
                &root,
                base,
                request.author.to_string(),
                now,
                &request.message,
                &push_id,
            ),
        )
        .map_err(|error| {
            if is_foreign_key_violation(&error) {
                CatalogError::not_found(Entity::Account, request.author)
            } else {
                CatalogError::database("commit", error)
            }
        })?;
    transaction
        .execute(
            "INSERT INTO push_receipts
                 (project_id, push_id, base_version, root, committed_version, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (&project, &push_id, base, &root, number, now),
        )
        .map_err(db("commit"))?;
    let version = load_version(&transaction, request.project, number)?.ok_or_else(|| {
        CatalogError::corrupt("versions", "the version just written cannot be read back")
    })?;
    transaction.commit().map_err(db("commit"))?;
    Ok(CommitOutcome::Committed {
        version,
        replayed: false,
    })
}

/// The outcome recorded for this push id, if it has been seen.
fn replay(transaction: &Transaction<'_>, request: &CommitRequest) -> Result<Option<CommitOutcome>> {
    let receipt = query_one(
        transaction,
        "commit",
        "SELECT base_version, root, committed_version FROM push_receipts
         WHERE project_id = ?1 AND push_id = ?2",
        (request.project.to_string(), request.push_id.as_str()),
        |row| {
            Ok((
                version_number("push_receipts", column(row, 0)?)?,
                object_id("push_receipts", &column::<String>(row, 1)?)?,
                column::<Option<i64>>(row, 2)?,
            ))
        },
    )?;
    let Some((base_version, root, committed)) = receipt else {
        return Ok(None);
    };
    if base_version != request.base_version || root != request.root {
        return Err(CatalogError::PushIdReused {
            push_id: request.push_id.clone(),
            base_version,
            root,
        });
    }
    match committed {
        Some(number) => {
            let version = load_version(transaction, request.project, number)?.ok_or_else(|| {
                CatalogError::corrupt("push_receipts", "receipt names a missing version")
            })?;
            Ok(Some(CommitOutcome::Committed {
                version,
                replayed: true,
            }))
        }
        None => {
            let (head_version, head_root) = load_head(transaction, request.project)?
                .ok_or_else(|| CatalogError::not_found(Entity::Project, request.project))?;
            Ok(Some(CommitOutcome::Conflict {
                head_version: version_number("projects", head_version)?,
                head_root: object_id("projects", &head_root)?,
            }))
        }
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn create_account(&self, account: NewAccount) -> Result<Account> {
        validate::text(Field::AccountName, &account.name, limits::MAX_NAME_LEN)?;
        validate::text(Field::Email, &account.email, limits::MAX_EMAIL_LEN)?;
        validate::text(
            Field::PasswordHash,
            &account.password_hash,
            limits::MAX_PASSWORD_HASH_LEN,
        )?;
        self.run("create account", move |connection| {
            let created = Account {
                id: AccountId::random(),
                name: account.name.clone(),
                email: account.email.clone(),
                created: Timestamp::now(),
            };
            connection
                .execute(
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
                .map_err(|error| match unique_violation(&error) {
                    Some(Unique::AccountEmail) => Unique::AccountEmail.error(&account.email),
                    Some(unique) => unique.error(&account.name),
                    None => CatalogError::database("create account", error),
                })?;
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
        validate::text(
            Field::PasswordHash,
            password_hash,
            limits::MAX_PASSWORD_HASH_LEN,
        )?;
        let password_hash = password_hash.to_owned();
        self.run("set password hash", move |connection| {
            let changed = connection
                .execute(
                    "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
                    (account.to_string(), &password_hash),
                )
                .map_err(db("set password hash"))?;
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
        validate::text(Field::TokenLabel, label, limits::MAX_TOKEN_LABEL_LEN)?;
        let label = label.to_owned();
        self.run("create token", move |connection| {
            let token = Token {
                id: TokenId::random(),
                account,
                label,
                created: Timestamp::now(),
                last_used: None,
                revoked: None,
            };
            connection
                .execute(
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
                .map_err(|error| {
                    if let Some(unique) = unique_violation(&error) {
                        unique.error("")
                    } else if is_foreign_key_violation(&error) {
                        CatalogError::not_found(Entity::Account, account)
                    } else {
                        CatalogError::database("create token", error)
                    }
                })?;
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
                        column::<Option<i64>>(row, 5)?,
                    ))
                },
            )?;
            let Some((account, token, last_used)) = found else {
                return Ok(None);
            };
            let now = Timestamp::now().unix_millis();
            let resolution = limits::TOKEN_LAST_USED_RESOLUTION.as_millis() as i64;
            if last_used.is_none_or(|last_used| now - last_used >= resolution) {
                connection
                    .execute(
                        "UPDATE tokens SET last_used = ?2 WHERE id = ?1",
                        (token.to_string(), now),
                    )
                    .map_err(db("authenticate token"))?;
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

    async fn create_team(&self, name: &str, owner: AccountId) -> Result<Team> {
        validate::text(Field::TeamName, name, limits::MAX_NAME_LEN)?;
        let name = name.to_owned();
        self.run("create team", move |connection| {
            let team = Team {
                id: TeamId::random(),
                name,
                created: Timestamp::now(),
            };
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("create team"))?;
            transaction
                .execute(
                    "INSERT INTO teams (id, name, name_key, created) VALUES (?1, ?2, ?3, ?4)",
                    (
                        team.id.to_string(),
                        &team.name,
                        validate::fold(&team.name),
                        team.created.unix_millis(),
                    ),
                )
                .map_err(|error| match unique_violation(&error) {
                    Some(unique) => unique.error(&team.name),
                    None => CatalogError::database("create team", error),
                })?;
            transaction
                .execute(
                    "INSERT INTO memberships (team_id, account_id, role) VALUES (?1, ?2, ?3)",
                    (team.id.to_string(), owner.to_string(), Role::Owner.as_str()),
                )
                .map_err(|error| {
                    if is_foreign_key_violation(&error) {
                        CatalogError::not_found(Entity::Account, owner)
                    } else {
                        CatalogError::database("create team", error)
                    }
                })?;
            transaction.commit().map_err(db("create team"))?;
            Ok(team)
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
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("set member"))?;
            if role != Role::Owner {
                ensure_other_owner(&transaction, team, account, "set member")?;
            }
            transaction
                .execute(
                    "INSERT INTO memberships (team_id, account_id, role) VALUES (?1, ?2, ?3)
                     ON CONFLICT (team_id, account_id) DO UPDATE SET role = excluded.role",
                    (team.to_string(), account.to_string(), role.as_str()),
                )
                .map_err(|error| {
                    if is_foreign_key_violation(&error) {
                        CatalogError::not_found(Entity::Membership, format!("{team}/{account}"))
                    } else {
                        CatalogError::database("set member", error)
                    }
                })?;
            transaction.commit().map_err(db("set member"))
        })
        .await
    }

    async fn remove_member(&self, team: TeamId, account: AccountId) -> Result<()> {
        self.run("remove member", move |connection| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("remove member"))?;
            ensure_other_owner(&transaction, team, account, "remove member")?;
            let removed = transaction
                .execute(
                    "DELETE FROM memberships WHERE team_id = ?1 AND account_id = ?2",
                    (team.to_string(), account.to_string()),
                )
                .map_err(db("remove member"))?;
            if removed == 0 {
                return Err(CatalogError::not_found(
                    Entity::Membership,
                    format!("{team}/{account}"),
                ));
            }
            transaction.commit().map_err(db("remove member"))
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
        validate::text(Field::ProjectName, name, limits::MAX_NAME_LEN)?;
        let name = name.to_owned();
        self.run("create project", move |connection| {
            let project = Project {
                id: ProjectId::random(),
                team,
                name,
                head_version: 0,
                head_root: empty_root(),
                created: Timestamp::now(),
            };
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("create project"))?;
            transaction
                .execute(
                    "INSERT INTO projects
                         (id, team_id, name, name_key, head_version, head_root, created)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
                    (
                        project.id.to_string(),
                        team.to_string(),
                        &project.name,
                        validate::fold(&project.name),
                        project.head_root.to_string(),
                        project.created.unix_millis(),
                    ),
                )
                .map_err(|error| {
                    if let Some(unique) = unique_violation(&error) {
                        unique.error(&project.name)
                    } else if is_foreign_key_violation(&error) {
                        CatalogError::not_found(Entity::Team, team)
                    } else {
                        CatalogError::database("create project", error)
                    }
                })?;
            transaction
                .execute(
                    "INSERT INTO versions
                         (project_id, number, root, parent, author_id, time, message, push_id)
                     VALUES (?1, 0, ?2, NULL, ?3, ?4, ?5, NULL)",
                    (
                        project.id.to_string(),
                        project.head_root.to_string(),
                        creator.to_string(),
                        project.created.unix_millis(),
                        PROJECT_CREATED_MESSAGE,
                    ),
                )
                .map_err(|error| {
                    if is_foreign_key_violation(&error) {
                        CatalogError::not_found(Entity::Account, creator)
                    } else {
                        CatalogError::database("create project", error)
                    }
                })?;
            transaction.commit().map_err(db("create project"))?;
            Ok(project)
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
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let limit = i64::from(limit.min(limits::MAX_PROJECT_PAGE));
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
        self.run("commit", move |connection| commit(connection, request))
            .await
    }

    async fn versions(&self, project: ProjectId, page: VersionPage) -> Result<Vec<Version>> {
        let limit = page.limit.min(limits::MAX_VERSION_PAGE);
        let before = match page.before {
            Some(before) => i64::try_from(before).unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        self.run("versions", move |connection| {
            query_all(
                connection,
                "versions",
                &format!(
                    "{VERSION_SELECT} WHERE versions.project_id = ?1 AND versions.number < ?2
                     ORDER BY versions.number DESC LIMIT ?3"
                ),
                (project.to_string(), before, i64::from(limit)),
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
            load_version(connection, project, number)
        })
        .await
    }

    async fn heartbeat(&self, node: NodeId, address: &str) -> Result<()> {
        validate::text(Field::NodeAddress, address, limits::MAX_NODE_ADDRESS_LEN)?;
        let address = address.to_owned();
        self.run("heartbeat", move |connection| {
            connection
                .execute(
                    "INSERT INTO nodes (id, address, heartbeat) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE
                     SET address = excluded.address, heartbeat = excluded.heartbeat",
                    (node.to_string(), &address, Timestamp::now().unix_millis()),
                )
                .map_err(db("heartbeat"))?;
            Ok(())
        })
        .await
    }

    async fn live_nodes(&self, max_age: Duration) -> Result<Vec<Node>> {
        let oldest = Timestamp::now()
            .unix_millis()
            .saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        self.run("live nodes", move |connection| {
            query_all(
                connection,
                "live nodes",
                "SELECT id, address, heartbeat FROM nodes WHERE heartbeat >= ?1 ORDER BY id",
                [oldest],
                |row| {
                    Ok(Node {
                        id: parse("nodes", &column::<String>(row, 0)?)?,
                        address: column(row, 1)?,
                        heartbeat: Timestamp::from_unix_millis(column(row, 2)?),
                    })
                },
            )
        })
        .await
    }

    async fn remove_node(&self, node: NodeId) -> Result<()> {
        self.run("remove node", move |connection| {
            connection
                .execute("DELETE FROM nodes WHERE id = ?1", [node.to_string()])
                .map_err(db("remove node"))?;
            Ok(())
        })
        .await
    }
}

/// Fails with [`CatalogError::LastOwner`] if `account` is the team's only owner, so demoting or
/// removing it would leave the team unmanaged.
fn ensure_other_owner(
    transaction: &Transaction<'_>,
    team: TeamId,
    account: AccountId,
    operation: &'static str,
) -> Result<()> {
    let (is_owner, owners): (bool, i64) = transaction
        .query_row(
            "SELECT COALESCE(MAX(account_id = ?2), 0), COUNT(*) FROM memberships
             WHERE team_id = ?1 AND role = 'owner'",
            (team.to_string(), account.to_string()),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(db(operation))?
        .unwrap_or((false, 0));
    if is_owner && owners <= 1 {
        return Err(CatalogError::LastOwner {
            team: team.to_string(),
        });
    }
    Ok(())
}
