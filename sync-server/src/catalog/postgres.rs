//! The cluster catalog: PostgreSQL through tokio-postgres and a deadpool pool.
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
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::common::{Unique, db_version, object_id, parse, role, version_number};
use super::error::{CatalogError, Entity, Field};
use super::migrations;
use super::types::{
    Account, AccountCredentials, AccountId, Authenticated, CommitOutcome, CommitRequest, Member,
    NewAccount, Node, NodeId, PROJECT_CREATED_MESSAGE, Project, ProjectId, PushId, Role, Team,
    TeamId, TeamMembership, Timestamp, Token, TokenHash, TokenId, Version, VersionNumber,
    VersionPage, VisibleProject, empty_root,
};
use super::{Catalog, Result, limits, validate};

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
        for migration in migrations::POSTGRES {
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

/// The unique constraint `error` violated, if that is what it is.
fn unique_violation(error: &tokio_postgres::Error) -> Option<Unique> {
    let db_error = error.as_db_error()?;
    if db_error.code() != &SqlState::UNIQUE_VIOLATION {
        return None;
    }
    Unique::from_constraint(db_error.constraint()?)
}

fn is_foreign_key_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
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
    project: &str,
    number: i64,
) -> Result<Option<Version>> {
    query_one(
        client,
        "version",
        &format!("{VERSION_SELECT} WHERE versions.project_id = $1 AND versions.number = $2"),
        &[&project, &number],
        read_version,
    )
    .await
}

async fn load_head<C: GenericClient>(
    client: &C,
    project: ProjectId,
) -> Result<(VersionNumber, sync_protocol::ObjectId)> {
    query_one(
        client,
        "commit",
        "SELECT head_version, head_root FROM projects WHERE id = $1",
        &[&project.to_string()],
        |row| {
            Ok((
                version_number("projects", column(row, 0)?)?,
                object_id("projects", column(row, 1)?)?,
            ))
        },
    )
    .await?
    .ok_or_else(|| CatalogError::not_found(Entity::Project, project))
}

/// The outcome recorded for this push id, if it has been seen.
async fn replay<C: GenericClient>(
    client: &C,
    request: &CommitRequest,
) -> Result<Option<CommitOutcome>> {
    let project = request.project.to_string();
    let receipt = query_one(
        client,
        "commit",
        "SELECT base_version, root, committed_version FROM push_receipts
         WHERE project_id = $1 AND push_id = $2",
        &[&project, &request.push_id.as_str()],
        |row| {
            Ok((
                version_number("push_receipts", column(row, 0)?)?,
                object_id("push_receipts", column(row, 1)?)?,
                column::<Option<i64>>(row, 2)?,
            ))
        },
    )
    .await?;
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
            let version = load_version(client, &project, number)
                .await?
                .ok_or_else(|| {
                    CatalogError::corrupt("push_receipts", "receipt names a missing version")
                })?;
            Ok(Some(CommitOutcome::Committed {
                version,
                replayed: true,
            }))
        }
        None => {
            let (head_version, head_root) = load_head(client, request.project).await?;
            Ok(Some(CommitOutcome::Conflict {
                head_version,
                head_root,
            }))
        }
    }
}

/// Fails with [`CatalogError::LastOwner`] if `account` is the team's only owner. Locks the
/// team's owner rows so two concurrent demotions cannot both pass.
async fn ensure_other_owner<C: GenericClient>(
    client: &C,
    team: TeamId,
    account: AccountId,
    operation: &'static str,
) -> Result<()> {
    let owners = query_all(
        client,
        operation,
        "SELECT account_id FROM memberships WHERE team_id = $1 AND role = 'owner' FOR UPDATE",
        &[&team.to_string()],
        |row| column::<String>(row, 0),
    )
    .await?;
    let account = account.to_string();
    if owners.len() <= 1 && owners.contains(&account) {
        return Err(CatalogError::LastOwner {
            team: team.to_string(),
        });
    }
    Ok(())
}

#[async_trait]
impl Catalog for PostgresCatalog {
    async fn create_account(&self, account: NewAccount) -> Result<Account> {
        validate::text(Field::AccountName, &account.name, limits::MAX_NAME_LEN)?;
        validate::text(Field::Email, &account.email, limits::MAX_EMAIL_LEN)?;
        validate::text(
            Field::PasswordHash,
            &account.password_hash,
            limits::MAX_PASSWORD_HASH_LEN,
        )?;
        let created = Account {
            id: AccountId::random(),
            name: account.name.clone(),
            email: account.email.clone(),
            created: Timestamp::now(),
        };
        let client = self.client("create account").await?;
        client
            .execute(
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
            .map_err(|error| match unique_violation(&error) {
                Some(Unique::AccountEmail) => Unique::AccountEmail.error(&account.email),
                Some(unique) => unique.error(&account.name),
                None => CatalogError::database("create account", error),
            })?;
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
        validate::text(
            Field::PasswordHash,
            password_hash,
            limits::MAX_PASSWORD_HASH_LEN,
        )?;
        let client = self.client("set password hash").await?;
        let changed = client
            .execute(
                "UPDATE accounts SET password_hash = $2 WHERE id = $1",
                &[&account.to_string(), &password_hash],
            )
            .await
            .map_err(db("set password hash"))?;
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
        validate::text(Field::TokenLabel, label, limits::MAX_TOKEN_LABEL_LEN)?;
        let token = Token {
            id: TokenId::random(),
            account,
            label: label.to_owned(),
            created: Timestamp::now(),
            last_used: None,
            revoked: None,
        };
        let client = self.client("create token").await?;
        client
            .execute(
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
                    column::<String>(row, 4)?,
                    optional_time(row, 5)?,
                ))
            },
        )
        .await?;
        let Some((account, token, last_used)) = found else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let resolution = limits::TOKEN_LAST_USED_RESOLUTION.as_millis() as i64;
        if last_used
            .is_none_or(|last_used| now.unix_millis() - last_used.unix_millis() >= resolution)
        {
            client
                .execute(
                    "UPDATE tokens SET last_used = $2 WHERE id = $1",
                    &[&token, &SystemTime::from(now)],
                )
                .await
                .map_err(db("authenticate token"))?;
        }
        Ok(Some(Authenticated {
            account,
            token: parse("tokens", &token)?,
        }))
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
                "UPDATE tokens SET revoked = COALESCE(revoked, $3)
                 WHERE id = $1 AND account_id = $2",
                &[
                    &token.to_string(),
                    &account.to_string(),
                    &SystemTime::from(Timestamp::now()),
                ],
            )
            .await
            .map_err(db("revoke token"))?;
        if found == 0 {
            return Err(CatalogError::not_found(Entity::Token, token));
        }
        Ok(())
    }

    async fn create_team(&self, name: &str, owner: AccountId) -> Result<Team> {
        validate::text(Field::TeamName, name, limits::MAX_NAME_LEN)?;
        let team = Team {
            id: TeamId::random(),
            name: name.to_owned(),
            created: Timestamp::now(),
        };
        let mut client = self.client("create team").await?;
        let transaction = client.transaction().await.map_err(db("create team"))?;
        transaction
            .execute(
                "INSERT INTO teams (id, name, name_key, created) VALUES ($1, $2, $3, $4)",
                &[
                    &team.id.to_string(),
                    &team.name,
                    &validate::fold(&team.name),
                    &SystemTime::from(team.created),
                ],
            )
            .await
            .map_err(|error| match unique_violation(&error) {
                Some(unique) => unique.error(&team.name),
                None => CatalogError::database("create team", error),
            })?;
        transaction
            .execute(
                "INSERT INTO memberships (team_id, account_id, role) VALUES ($1, $2, $3)",
                &[
                    &team.id.to_string(),
                    &owner.to_string(),
                    &Role::Owner.as_str(),
                ],
            )
            .await
            .map_err(|error| {
                if is_foreign_key_violation(&error) {
                    CatalogError::not_found(Entity::Account, owner)
                } else {
                    CatalogError::database("create team", error)
                }
            })?;
        transaction.commit().await.map_err(db("create team"))?;
        Ok(team)
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
        let transaction = client.transaction().await.map_err(db("set member"))?;
        if role != Role::Owner {
            ensure_other_owner(&transaction, team, account, "set member").await?;
        }
        transaction
            .execute(
                "INSERT INTO memberships (team_id, account_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (team_id, account_id) DO UPDATE SET role = excluded.role",
                &[&team.to_string(), &account.to_string(), &role.as_str()],
            )
            .await
            .map_err(|error| {
                if is_foreign_key_violation(&error) {
                    CatalogError::not_found(Entity::Membership, format!("{team}/{account}"))
                } else {
                    CatalogError::database("set member", error)
                }
            })?;
        transaction.commit().await.map_err(db("set member"))
    }

    async fn remove_member(&self, team: TeamId, account: AccountId) -> Result<()> {
        let mut client = self.client("remove member").await?;
        let transaction = client.transaction().await.map_err(db("remove member"))?;
        ensure_other_owner(&transaction, team, account, "remove member").await?;
        let removed = transaction
            .execute(
                "DELETE FROM memberships WHERE team_id = $1 AND account_id = $2",
                &[&team.to_string(), &account.to_string()],
            )
            .await
            .map_err(db("remove member"))?;
        if removed == 0 {
            return Err(CatalogError::not_found(
                Entity::Membership,
                format!("{team}/{account}"),
            ));
        }
        transaction.commit().await.map_err(db("remove member"))
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
        validate::text(Field::ProjectName, name, limits::MAX_NAME_LEN)?;
        let project = Project {
            id: ProjectId::random(),
            team,
            name: name.to_owned(),
            head_version: 0,
            head_root: empty_root(),
            created: Timestamp::now(),
        };
        let id = project.id.to_string();
        let root = project.head_root.to_string();
        let created = SystemTime::from(project.created);
        let mut client = self.client("create project").await?;
        let transaction = client.transaction().await.map_err(db("create project"))?;
        transaction
            .execute(
                "INSERT INTO projects
                     (id, team_id, name, name_key, head_version, head_root, created)
                 VALUES ($1, $2, $3, $4, 0, $5, $6)",
                &[
                    &id,
                    &team.to_string(),
                    &project.name,
                    &validate::fold(&project.name),
                    &root,
                    &created,
                ],
            )
            .await
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
                 VALUES ($1, 0, $2, NULL, $3, $4, $5, NULL)",
                &[
                    &id,
                    &root,
                    &creator.to_string(),
                    &created,
                    &PROJECT_CREATED_MESSAGE,
                ],
            )
            .await
            .map_err(|error| {
                if is_foreign_key_violation(&error) {
                    CatalogError::not_found(Entity::Account, creator)
                } else {
                    CatalogError::database("create project", error)
                }
            })?;
        transaction.commit().await.map_err(db("create project"))?;
        Ok(project)
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
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let limit = i64::from(limit.min(limits::MAX_PROJECT_PAGE));
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
        validate::message(&request.message)?;
        let base = db_version(request.base_version)?;
        let project = request.project.to_string();
        let root = request.root.to_string();
        let push_id = request.push_id.as_str();
        let now = SystemTime::from(Timestamp::now());
        let mut client = self.client("commit").await?;
        let transaction = client.transaction().await.map_err(db("commit"))?;
        if let Some(outcome) = replay(&transaction, &request).await? {
            return Ok(outcome);
        }
        // The compare-and-swap: the linearization point of every push.
        let moved = transaction
            .execute(
                "UPDATE projects SET head_version = $2 + 1, head_root = $3
                 WHERE id = $1 AND head_version = $2",
                &[&project, &base, &root],
            )
            .await
            .map_err(db("commit"))?;
        if moved == 0 {
            // A concurrent duplicate of this push may have committed while this one waited on
            // the row lock: its receipt is visible now.
            if let Some(outcome) = replay(&transaction, &request).await? {
                return Ok(outcome);
            }
            let (head_version, head_root) = load_head(&transaction, request.project).await?;
            let recorded = transaction
                .execute(
                    "INSERT INTO push_receipts
                         (project_id, push_id, base_version, root, committed_version, created)
                     VALUES ($1, $2, $3, $4, NULL, $5)
                     ON CONFLICT (project_id, push_id) DO NOTHING",
                    &[&project, &push_id, &base, &root, &now],
                )
                .await
                .map_err(db("commit"))?;
            if recorded == 0
                && let Some(outcome) = replay(&transaction, &request).await?
            {
                return Ok(outcome);
            }
            transaction.commit().await.map_err(db("commit"))?;
            return Ok(CommitOutcome::Conflict {
                head_version,
                head_root,
            });
        }
        let number = base + 1;
        transaction
            .execute(
                "INSERT INTO versions
                     (project_id, number, root, parent, author_id, time, message, push_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &project,
                    &number,
                    &root,
                    &base,
                    &request.author.to_string(),
                    &now,
                    &request.message,
                    &push_id,
                ],
            )
            .await
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
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&project, &push_id, &base, &root, &number, &now],
            )
            .await
            .map_err(db("commit"))?;
        let version = load_version(&transaction, &project, number)
            .await?
            .ok_or_else(|| {
                CatalogError::corrupt("versions", "the version just written cannot be read back")
            })?;
        transaction.commit().await.map_err(db("commit"))?;
        Ok(CommitOutcome::Committed {
            version,
            replayed: false,
        })
    }

    async fn versions(&self, project: ProjectId, page: VersionPage) -> Result<Vec<Version>> {
        let limit = i64::from(page.limit.min(limits::MAX_VERSION_PAGE));
        let before = match page.before {
            Some(before) => i64::try_from(before).unwrap_or(i64::MAX),
            None => i64::MAX,
        };
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
        load_version(&client, &project.to_string(), number).await
    }

    async fn heartbeat(&self, node: NodeId, address: &str) -> Result<()> {
        validate::text(Field::NodeAddress, address, limits::MAX_NODE_ADDRESS_LEN)?;
        let client = self.client("heartbeat").await?;
        client
            .execute(
                "INSERT INTO nodes (id, address, heartbeat) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE
                 SET address = excluded.address, heartbeat = excluded.heartbeat",
                &[
                    &node.to_string(),
                    &address,
                    &SystemTime::from(Timestamp::now()),
                ],
            )
            .await
            .map_err(db("heartbeat"))?;
        Ok(())
    }

    async fn live_nodes(&self, max_age: Duration) -> Result<Vec<Node>> {
        let oldest = SystemTime::now()
            .checked_sub(max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.query_all(
            "live nodes",
            "SELECT id, address, heartbeat FROM nodes WHERE heartbeat >= $1 ORDER BY id",
            &[&oldest],
            |row| {
                Ok(Node {
                    id: parse("nodes", column(row, 0)?)?,
                    address: column(row, 1)?,
                    heartbeat: time(row, 2)?,
                })
            },
        )
        .await
    }

    async fn remove_node(&self, node: NodeId) -> Result<()> {
        let client = self.client("remove node").await?;
        client
            .execute("DELETE FROM nodes WHERE id = $1", &[&node.to_string()])
            .await
            .map_err(db("remove node"))?;
        Ok(())
    }
}
