//! A PostgreSQL database per test.

use crate::services::PostgresService;
use crate::{clean_up_on_own_thread, setup_on_own_thread, unique_name};

/// A database created for one test on the server of [`PostgresService`], dropped with its
/// connections (`WITH (FORCE)`) when this is dropped: at the end of the test, and also when the
/// test panics, since unwinding drops it too.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh database on the server of `CAIRN_TEST_DATABASE_URL`; `None` (skipped) when it is
    /// unset.
    pub fn from_env() -> Option<TestDatabase> {
        Some(TestDatabase::create(&PostgresService::from_env()?))
    }

    /// Creates `cairn_test_<random>` on `service`'s server. Panics if it cannot.
    pub fn create(service: &PostgresService) -> TestDatabase {
        let name = unique_name("cairn_test_");
        if let Err(error) = execute(&service.admin_url, format!("CREATE DATABASE {name}")) {
            panic!("creating test database {name}: {error}");
        }
        TestDatabase {
            url: with_database(&service.admin_url, &name),
            admin_url: service.admin_url.clone(),
            name,
        }
    }

    /// The URL a catalog or server connects with: the admin URL with this database's name.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin_url = self.admin_url.clone();
        clean_up_on_own_thread(
            &format!("test database {}", self.name),
            move || async move { run_sql(&admin_url, &sql).await },
        );
    }
}

/// Runs one SQL batch on a new connection to `url`, from any context.
fn execute(url: &str, sql: String) -> Result<(), tokio_postgres::Error> {
    let url = url.to_owned();
    setup_on_own_thread(move || async move { run_sql(&url, &sql).await })
}

async fn run_sql(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = connection.await;
    result
}

/// `url` with its database name replaced by `name`, keeping any query string
/// (`postgres://user@host:port/db?params`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_url_rewrite() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
