//! The production services the server runs on: a fresh PostgreSQL database and a fresh S3 bucket
//! per test, on the servers named by the `CAIRN_TEST_*` variables that `scripts/test` exports.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Where the test services are.
#[derive(Debug, Clone)]
pub struct Services {
    /// An administrative connection: databases are created and dropped through it.
    pub database_url: String,
    pub s3_endpoint: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
}

const VARIABLES: [&str; 4] = [
    "CAIRN_TEST_DATABASE_URL",
    "CAIRN_TEST_S3_ENDPOINT",
    "CAIRN_TEST_S3_ACCESS_KEY",
    "CAIRN_TEST_S3_SECRET_KEY",
];

fn strict() -> bool {
    std::env::var("CAIRN_TEST_STRICT").is_ok_and(|value| value == "1")
}

impl Services {
    /// The services from the environment, or `None` after printing `skipped: ...` when they are
    /// not configured. With `CAIRN_TEST_STRICT=1` a missing service fails the test instead.
    pub fn from_env() -> Option<Services> {
        let values: Vec<Option<String>> = VARIABLES
            .iter()
            .map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
            .collect();
        if values.iter().any(Option::is_none) {
            assert!(
                !strict(),
                "CAIRN_TEST_STRICT=1 but the production services are not configured: \
                 {VARIABLES:?} must all be set (scripts/test sets them)"
            );
            eprintln!("skipped: the end-to-end tests need {VARIABLES:?} (run scripts/test)");
            return None;
        }
        let mut values = values.into_iter().flatten();
        let mut next = || values.next().unwrap_or_default();
        Some(Services {
            database_url: next(),
            s3_endpoint: next().trim_end_matches('/').to_owned(),
            s3_access_key: next(),
            s3_secret_key: next(),
        })
    }
}

/// A name no other test run uses: `prefix` and 64 random bits in hex.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// A database created for one test, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    name: String,
    /// The URL the server connects with.
    pub url: String,
}

impl Database {
    pub fn create(services: &Services) -> Database {
        let name = unique_name("cairn_e2e_");
        execute(&services.database_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|error| panic!("creating database {name}: {error}"));
        Database {
            admin_url: services.database_url.clone(),
            url: with_database(&services.database_url, &name),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = execute(&self.admin_url, &sql) {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// Runs one SQL batch on a new connection.
fn execute(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let result = client.batch_execute(sql).await;
        drop(client);
        let _ = connection.await;
        result
    })
}

/// Replaces the database name of a `postgres://` URL, keeping any query string.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let without_path = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{without_path}/{database}?{query}"),
        None => format!("{without_path}/{database}"),
    }
}

/// The region the tests sign for; s3s-fs accepts any.
pub const S3_REGION: &str = "us-east-1";

/// Creates a fresh bucket on the test S3 server and returns its name. The bucket is left in
/// place: the S3 server's folder is as throwaway as the run (`scripts/test` starts it empty).
pub fn create_bucket(services: &Services) -> String {
    let bucket = unique_name("cairn-e2e-");
    let url = format!("{}/{bucket}", services.s3_endpoint);
    let host = services
        .s3_endpoint
        .split_once("://")
        .map_or(services.s3_endpoint.as_str(), |(_, rest)| rest)
        .to_owned();
    let headers = sign_v4(
        services,
        "PUT",
        &host,
        &format!("/{bucket}"),
        SystemTime::now(),
    );
    let mut request = reqwest::blocking::Client::new().put(&url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .unwrap_or_else(|error| panic!("creating bucket {bucket} at {url}: {error}"));
    let status = response.status();
    assert!(
        status.is_success(),
        "creating bucket {bucket}: {status}: {}",
        response.text().unwrap_or_default()
    );
    bucket
}

/// The headers of an AWS Signature Version 4 request with an empty body and no query string.
/// The tests make one S3 request, so this is all of SigV4 they need.
fn sign_v4(
    services: &Services,
    method: &str,
    host: &str,
    path: &str,
    now: SystemTime,
) -> Vec<(&'static str, String)> {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (year, month, day) = civil_date(seconds / 86_400);
    let time_of_day = seconds % 86_400;
    let date = format!("{year:04}{month:02}{day:02}");
    let timestamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        time_of_day / 3600,
        time_of_day / 60 % 60,
        time_of_day % 60
    );
    let payload_hash = hex(&Sha256::digest(b""));
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload_hash}\n\
         x-amz-date:{timestamp}\n\n{signed_headers}\n{payload_hash}"
    );
    let scope = format!("{date}/{S3_REGION}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", services.s3_secret_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [S3_REGION, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    vec![
        ("x-amz-date", timestamp),
        ("x-amz-content-sha256", payload_hash),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
                 Signature={signature}",
                services.s3_access_key
            ),
        ),
    ]
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// (year, month, day) of a count of days since 1970-01-01, in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[test]
fn civil_dates() {
    assert_eq!(civil_date(0), (1970, 1, 1));
    assert_eq!(civil_date(11_016), (2000, 2, 29));
    assert_eq!(civil_date(20_783), (2026, 11, 26));
}

#[test]
fn database_urls() {
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
