//! Test services for the storage layer: a temporary SQLite catalog, a fresh PostgreSQL database
//! per test and a fresh S3 bucket per test, all removed afterwards.

use std::sync::Arc;

use sync_server::catalog::{Catalog, PostgresCatalog, PostgresSettings, SqliteCatalog};
use sync_server::store::{S3Backend, S3Credentials, S3Settings};
use tempfile::TempDir;

/// The value of a service variable; `None` (after saying "skipped") when it is unset and the run
/// is not strict. Panics when it is unset in a strict run.
pub fn service_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            if std::env::var("CAIRN_TEST_STRICT").as_deref() == Ok("1") {
                panic!("{name} is not set and CAIRN_TEST_STRICT=1: run scripts/test");
            }
            eprintln!("skipped: set {name} (scripts/test does)");
            None
        }
    }
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A SQLite catalog in a temporary folder, removed when the folder is dropped.
pub async fn sqlite_catalog() -> (TempDir, Arc<dyn Catalog>) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let catalog = SqliteCatalog::open(dir.path().join("catalog.sqlite3"))
        .await
        .expect("open the SQLite catalog");
    (dir, Arc::new(catalog))
}

/// A PostgreSQL database created for one test and dropped (with its connections) afterwards,
/// even when the test panics.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `cairn_test_<random>` on the server of `CAIRN_TEST_DATABASE_URL`.
    pub async fn create() -> Option<Self> {
        let admin_url = service_var("CAIRN_TEST_DATABASE_URL")?;
        let name = format!("cairn_test_{}", random_suffix());
        let admin = admin_client(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    pub fn settings(&self) -> PostgresSettings {
        let mut settings = PostgresSettings::new(&self.url);
        // Many tests run at once against one server: keep each pool small.
        settings.pool_size = 8;
        settings
    }

    /// A migrated catalog on this database.
    pub async fn catalog(&self) -> Arc<dyn Catalog> {
        Arc::new(
            PostgresCatalog::connect(&self.settings())
                .await
                .expect("connect to the test database"),
        )
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside the test's runtime, which cannot be blocked on: use a thread with
        // a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let admin = admin_client(&admin_url).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to CAIRN_TEST_DATABASE_URL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database name replaced by `name` (URL form `postgres://.../db?params`).
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

/// A bucket created for one test on the S3 server of `CAIRN_TEST_S3_ENDPOINT`, with a backend
/// over it. Call [`TestBucket::remove`] at the end to empty and delete it.
pub struct TestBucket {
    pub backend: S3Backend,
    pub settings: S3Settings,
}

impl TestBucket {
    pub async fn create() -> Option<Self> {
        let endpoint = service_var("CAIRN_TEST_S3_ENDPOINT")?;
        let access_key_id = service_var("CAIRN_TEST_S3_ACCESS_KEY")?;
        let secret_access_key = service_var("CAIRN_TEST_S3_SECRET_KEY")?;
        let mut settings = S3Settings::new(format!("cairn-test-{}", random_suffix()));
        settings.endpoint = Some(endpoint);
        settings.force_path_style = true;
        settings.prefix = "tenant".to_owned();
        settings.credentials = Some(S3Credentials {
            access_key_id,
            secret_access_key,
        });
        let backend = S3Backend::connect(&settings).await.expect("S3 client");
        backend
            .client()
            .create_bucket()
            .bucket(&settings.bucket)
            .send()
            .await
            .expect("create the test bucket");
        Some(Self { backend, settings })
    }

    /// Empties and deletes the bucket.
    pub async fn remove(self) {
        let client = self.backend.client();
        let listed = client
            .list_objects_v2()
            .bucket(&self.settings.bucket)
            .send()
            .await
            .expect("list the test bucket");
        for object in listed.contents() {
            if let Some(key) = object.key() {
                let _ = client
                    .delete_object()
                    .bucket(&self.settings.bucket)
                    .key(key)
                    .send()
                    .await;
            }
        }
        let _ = client
            .delete_bucket()
            .bucket(&self.settings.bucket)
            .send()
            .await;
    }
}

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
