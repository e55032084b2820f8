//! Where the test services are: the `CAIRN_TEST_*` variables that `scripts/test` exports after
//! starting (or finding) PostgreSQL and s3s-fs.
//!
//! A test that needs a service whose variables are unset prints `skipped: ...` and passes, so a
//! plain `cargo test` works on a machine without them. With `CAIRN_TEST_STRICT=1` (which
//! `scripts/test` also sets) it fails instead: a provisioned run never skips in silence.

use std::fmt;

/// An administrative PostgreSQL URL: test databases are created and dropped through it.
pub const DATABASE_URL: &str = "CAIRN_TEST_DATABASE_URL";
/// The S3-compatible server's endpoint, e.g. `http://127.0.0.1:9014`.
pub const S3_ENDPOINT: &str = "CAIRN_TEST_S3_ENDPOINT";
pub const S3_ACCESS_KEY: &str = "CAIRN_TEST_S3_ACCESS_KEY";
pub const S3_SECRET_KEY: &str = "CAIRN_TEST_S3_SECRET_KEY";
/// `1` turns a missing service from a skip into a failure.
pub const STRICT: &str = "CAIRN_TEST_STRICT";

/// The region test buckets live in; s3s-fs accepts any.
pub const S3_REGION: &str = "us-east-1";

/// Whether this run must fail, rather than skip, when a service is not configured.
pub fn strict() -> bool {
    std::env::var(STRICT).is_ok_and(|value| value == "1")
}

/// The values of the variables `names`, or `None` after printing `skipped: ...` when any is
/// unset or empty. Panics instead in a strict run.
pub fn variables<const N: usize>(names: [&str; N]) -> Option<[String; N]> {
    let values = names.map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        assert!(
            !strict(),
            "{missing:?} not set and {STRICT}=1: run scripts/test, which provisions the test \
             services and sets them"
        );
        eprintln!("skipped: set {missing:?} (scripts/test does)");
        return None;
    }
    Some(values.map(Option::unwrap_or_default))
}

/// The PostgreSQL server tests create their databases on.
#[derive(Clone)]
pub struct PostgresService {
    /// An administrative connection URL (`postgres://user@host:port/db`).
    pub admin_url: String,
}

impl PostgresService {
    /// From `CAIRN_TEST_DATABASE_URL`; `None` (skipped) when it is unset.
    pub fn from_env() -> Option<PostgresService> {
        let [admin_url] = variables([DATABASE_URL])?;
        Some(PostgresService { admin_url })
    }
}

impl fmt::Debug for PostgresService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresService").finish_non_exhaustive()
    }
}

/// The S3-compatible server tests create their buckets on.
#[derive(Clone)]
pub struct S3Service {
    /// Without a trailing `/`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl S3Service {
    /// From `CAIRN_TEST_S3_{ENDPOINT,ACCESS_KEY,SECRET_KEY}`; `None` (skipped) when any is unset.
    pub fn from_env() -> Option<S3Service> {
        let [endpoint, access_key, secret_key] =
            variables([S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY])?;
        Some(S3Service::new(&endpoint, access_key, secret_key))
    }

    fn new(endpoint: &str, access_key: String, secret_key: String) -> S3Service {
        S3Service {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            access_key,
            secret_key,
            region: S3_REGION.to_owned(),
        }
    }
}

impl fmt::Debug for S3Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Service")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Both services: what a server in production mode runs on.
#[derive(Debug, Clone)]
pub struct Services {
    pub postgres: PostgresService,
    pub s3: S3Service,
}

impl Services {
    /// Both services from the environment; `None` (skipped, naming every missing variable) when
    /// any of the four variables is unset.
    pub fn from_env() -> Option<Services> {
        let [admin_url, endpoint, access_key, secret_key] =
            variables([DATABASE_URL, S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY])?;
        Some(Services {
            postgres: PostgresService { admin_url },
            s3: S3Service::new(&endpoint, access_key, secret_key),
        })
    }
}
