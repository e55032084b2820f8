//! The storage layer over the shared test services (`cairn_test_support`): a temporary SQLite
//! catalog, a PostgreSQL catalog on a fresh database and an S3 backend on a fresh bucket. Only
//! the glue to sync-server's types lives here; the database and the bucket are removed when
//! dropped, also when a test panics.

use std::sync::Arc;

use sync_server::catalog::{Catalog, PostgresCatalog, PostgresSettings, SqliteCatalog};
use sync_server::store::{S3Backend, S3Credentials, S3Settings};
use tempfile::TempDir;

/// A SQLite catalog in a temporary folder, removed when the folder is dropped.
pub async fn sqlite_catalog() -> (TempDir, Arc<dyn Catalog>) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let catalog = SqliteCatalog::open(dir.path().join("catalog.sqlite3"))
        .await
        .expect("open the SQLite catalog");
    (dir, Arc::new(catalog))
}

/// A fresh PostgreSQL database for one test, and catalogs on it.
#[derive(Debug)]
pub struct TestDatabase(cairn_test_support::TestDatabase);

impl TestDatabase {
    /// On the server of `CAIRN_TEST_DATABASE_URL`; `None` (skipped) when it is unset.
    pub async fn create() -> Option<Self> {
        cairn_test_support::TestDatabase::from_env().map(Self)
    }

    pub fn settings(&self) -> PostgresSettings {
        let mut settings = PostgresSettings::new(self.url());
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
        self.0.url()
    }
}

/// A fresh S3 bucket for one test, with a backend over it (keys under the prefix `tenant/`).
#[derive(Debug)]
pub struct TestBucket {
    pub backend: S3Backend,
    bucket: cairn_test_support::TestBucket,
}

impl TestBucket {
    /// On the server of `CAIRN_TEST_S3_*`; `None` (skipped) when they are unset.
    pub async fn create() -> Option<Self> {
        let bucket = cairn_test_support::TestBucket::from_env()?;
        let service = bucket.service();
        let mut settings = S3Settings::new(bucket.name());
        settings.endpoint = Some(service.endpoint.clone());
        settings.region = service.region.clone();
        settings.force_path_style = true;
        settings.prefix = "tenant".to_owned();
        settings.credentials = Some(S3Credentials {
            access_key_id: service.access_key.clone(),
            secret_access_key: service.secret_key.clone(),
        });
        let backend = S3Backend::connect(&settings).await.expect("S3 client");
        Some(Self { backend, bucket })
    }

    /// Empties and deletes the bucket now (dropping it does the same, reporting instead of
    /// failing).
    pub async fn remove(self) {
        self.bucket.remove().await;
    }
}
