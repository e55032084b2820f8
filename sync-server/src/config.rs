//! Command line, environment and config file, resolved into [`Settings`].
//!
//! Every setting can come from a flag, an environment variable or the TOML file named by
//! `--config`, in that order of precedence; what none of them sets takes its default. With no
//! settings at all the server runs the embedded default: SQLite and a folder under `./.cairn-data`.
//! `DATABASE_URL` switches the catalog to PostgreSQL and `CAIRN_S3_BUCKET` the object store to S3,
//! independently, so a node can also run PostgreSQL with a shared folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The address the server listens on by default: loopback only, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The embedded mode's data folder by default.
pub const DEFAULT_DATA_DIR: &str = ".cairn-data";
/// The built site's folder by default, served at `/` when it exists.
pub const DEFAULT_SITE_DIR: &str = "dist";
/// How long in-flight requests may run after SIGTERM before the process exits anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a node keeps serving after SIGTERM while it answers `/readyz` with 503, so that the
/// load balancer's health checks see it leave before it stops accepting connections (HAProxy
/// as shipped in `deploy/` needs two failed checks a second apart).
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// How many connections one client address may hold open at once by default: plenty for the
/// people behind one NAT, too few for one address to starve the others. Behind a load
/// balancer every connection comes from it: set 0 there and limit clients at the balancer.
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: usize = 128;
/// The largest object-stream body (push or upload) a request may carry.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(name = "sync-server", version, about = "Cairn's sync server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (and the built site, when its folder exists).
    Serve(ServeArgs),
    /// Create accounts, teams, memberships, projects and tokens from the shell; convert the
    /// object store's layout.
    Admin {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Verify every version's closure, the object index against the stored packs and, with
    /// --read-data, every object's hash; exit 1 if anything is wrong.
    Fsck {
        #[command(flatten)]
        storage: StorageArgs,
        /// Only this project (its id); every project when absent.
        project: Option<String>,
        /// Read and verify every object's data, chunks included (dirs and file objects are
        /// always read).
        #[arg(long)]
        read_data: bool,
        /// With --read-data, read only this fraction of the chunks (0 to 1), chosen by id.
        #[arg(long, requires = "read_data", value_parser = parse_fraction)]
        sample: Option<f64>,
    },
    /// Garbage collection: drop from the index the objects no version references, rewrite
    /// packs that are mostly garbage, delete dead packs. Safe while nodes serve; resumable.
    Gc {
        #[command(flatten)]
        storage: StorageArgs,
        /// Only this project (its id); every project when absent.
        project: Option<String>,
        /// How long unreferenced objects and dead packs are kept first ("24h", "90m", "0s"):
        /// longer than any upload, so a push in flight never loses what it sent.
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
        /// Delete versions older than this ("90days"), the head excepted, and then what only
        /// they referenced; every version is kept when absent.
        #[arg(long, value_parser = humantime::parse_duration)]
        retain: Option<Duration>,
        /// Count what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A fraction from 0 to 1, for `fsck --sample`.
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a fraction from 0 to 1")),
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account. The password is read from CAIRN_PASSWORD, else from standard input.
    CreateUser {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
    },
    /// Create a team owned by an existing account.
    CreateTeam {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner: String,
    },
    /// Add an account to a team, or change its role (owner, editor, viewer).
    AddMember {
        #[arg(long)]
        team: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
    },
    /// Create a project in a team.
    CreateProject {
        #[arg(long)]
        team: String,
        #[arg(long)]
        name: String,
    },
    /// Create an API token for an account and print it (it is shown only once).
    CreateToken {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// Move projects stored before packs (one stored value per object) into indexed packs,
    /// then delete their old keys. Run it again to finish after any interruption; exits 1,
    /// naming them, if objects are damaged (their projects are left as they were).
    ConvertLayout {
        /// Only this project (its id); every project when absent.
        #[arg(long)]
        project: Option<String>,
        /// Read and verify everything and report what a run would do, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the registered server nodes: address, version, state, and their hot caches.
    Nodes {
        /// One JSON object per node, one per line.
        #[arg(long)]
        json: bool,
    },
}

/// Where the state lives: shared by `serve`, `admin` and `fsck`.
#[derive(Debug, Clone, Default, Args)]
pub struct StorageArgs {
    /// A TOML file with any of these settings (flags and environment win over it). Not
    /// `CAIRN_CONFIG`: that names the `cairn` client's token file, often set in the same shell.
    #[arg(long, env = "CAIRN_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The embedded mode's data folder (SQLite catalog and object folder).
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL catalog; the SQLite catalog in the data folder when absent.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// S3 endpoint URL (for S3-compatible servers); AWS's when absent.
    #[arg(long, env = "CAIRN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 bucket; the object folder in the data folder when absent.
    #[arg(long, env = "CAIRN_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    #[arg(long, env = "CAIRN_S3_REGION")]
    pub s3_region: Option<String>,
    /// A key prefix inside the bucket.
    #[arg(long, env = "CAIRN_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// Path-style addressing (most S3-compatible servers need it).
    #[arg(long, env = "CAIRN_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address and port to listen on.
    #[arg(long, env = "CAIRN_LISTEN")]
    pub listen: Option<String>,
    /// The built site's folder, served at `/` when it exists.
    #[arg(long, env = "CAIRN_SITE_DIR")]
    pub site_dir: Option<PathBuf>,
    /// Seconds in-flight requests get to finish once the node stops accepting connections.
    #[arg(long, env = "CAIRN_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// How long the node keeps serving after SIGTERM while `/readyz` says it is not ready
    /// ("5s", the default; "0s" to stop accepting at once). Ctrl-C skips it.
    #[arg(long, env = "CAIRN_DRAIN_DELAY", value_parser = humantime::parse_duration)]
    pub drain_delay: Option<Duration>,
    /// The address this node is reached at, as shown by `admin nodes` ("10.0.0.5:8080");
    /// the listening address when absent (with the host's name for 0.0.0.0).
    #[arg(long, env = "CAIRN_ADVERTISE")]
    pub advertise: Option<String>,
    /// The largest object-stream body a push or upload may carry, in bytes.
    #[arg(long, env = "CAIRN_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// The hot object cache's size, in bytes (0 turns it off).
    #[arg(long, env = "CAIRN_CACHE_BYTES")]
    pub cache_bytes: Option<u64>,
    /// The most connections one client address may hold open at once (128 by default; 0 for
    /// no limit, as behind a load balancer, where every connection comes from the balancer).
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Run garbage collection of every project this often ("6h"); never when absent. Nodes
    /// collecting at the same time are safe, only wasteful: one node is enough.
    #[arg(long, env = "CAIRN_GC_EVERY", value_parser = humantime::parse_duration)]
    pub gc_every: Option<Duration>,
    /// The collection's grace period (see `sync-server gc --grace`); 24h when absent.
    #[arg(long, env = "CAIRN_GC_GRACE", value_parser = humantime::parse_duration)]
    pub gc_grace: Option<Duration>,
    /// The scheduled collection's retention period (see `sync-server gc --retain`); every
    /// version is kept when absent.
    #[arg(long, env = "CAIRN_GC_RETAIN", value_parser = humantime::parse_duration)]
    pub gc_retain: Option<Duration>,
    /// Believe `X-Forwarded-Proto` and `X-Forwarded-For`: set it behind a proxy or load
    /// balancer that sets those headers itself, so the account pages' cookies are marked
    /// `Secure` when the browser came over HTTPS and failed sign-ins are counted per client
    /// address rather than per balancer. Never set it when clients reach the node directly:
    /// they could then send the headers themselves.
    #[arg(long, env = "CAIRN_TRUST_PROXY_HEADERS")]
    pub trust_proxy_headers: bool,
}

/// The config file: every key optional, named like the flags with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    site_dir: Option<PathBuf>,
    database_url: Option<String>,
    shutdown_grace_secs: Option<u64>,
    #[serde(default, with = "humantime_serde_opt")]
    drain_delay: Option<Duration>,
    advertise: Option<String>,
    max_upload_bytes: Option<u64>,
    cache_bytes: Option<u64>,
    max_connections_per_address: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    gc_every: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    gc_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    gc_retain: Option<Duration>,
    trust_proxy_headers: Option<bool>,
    #[serde(default)]
    s3: FileS3,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileS3 {
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    path_style: Option<bool>,
}

/// Where the catalog lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSettings {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

/// Where objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// Objects under `<root>/objects/`.
    Filesystem {
        root: PathBuf,
    },
    S3(S3Settings),
}

/// S3 settings; credentials come from the standard AWS environment (`AWS_ACCESS_KEY_ID`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub path_style: bool,
}

/// Resolved storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSettings {
    pub data_dir: PathBuf,
    pub catalog: CatalogSettings,
    pub store: StoreSettings,
}

impl StorageSettings {
    /// True when nothing but the local data folder holds state.
    pub fn is_embedded(&self) -> bool {
        matches!(self.catalog, CatalogSettings::Sqlite { .. })
            && matches!(self.store, StoreSettings::Filesystem { .. })
    }
}

/// Resolved `serve` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub site_dir: PathBuf,
    pub storage: StorageSettings,
    pub shutdown_grace: Duration,
    /// How long SIGTERM leaves the node serving while unready.
    pub drain_delay: Duration,
    /// The address shown in the registry; `None` for the listening address.
    pub advertise: Option<String>,
    pub max_upload_bytes: u64,
    pub cache_bytes: u64,
    /// The most connections from one client address; 0 for no limit.
    pub max_connections_per_address: usize,
    /// How often `serve` collects garbage; never when `None`.
    pub gc_every: Option<Duration>,
    pub gc_grace: Duration,
    pub gc_retain: Option<Duration>,
    /// Whether the proxy's `X-Forwarded-Proto` and `X-Forwarded-For` are believed.
    pub trust_proxy_headers: bool,
}

/// Durations in the config file as humantime text ("6h", "90m").
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => humantime::parse_duration(&text)
                .map(Some)
                .map_err(|error| serde::de::Error::custom(format!("{text:?}: {error}"))),
        }
    }
}

/// The advertised address as the registry will take it: one line of at most 255 bytes.
fn check_advertise(address: String) -> anyhow::Result<String> {
    if address.trim().is_empty()
        || address.len() > crate::catalog::limits::MAX_NODE_ADDRESS_LEN
        || address.chars().any(char::is_control)
    {
        bail!(
            "advertise address {address:?}: must be one line of 1 to {} bytes, e.g. \
             10.0.0.5:8080",
            crate::catalog::limits::MAX_NODE_ADDRESS_LEN
        );
    }
    Ok(address)
}

fn read_file(path: Option<&Path>) -> anyhow::Result<FileSettings> {
    let Some(path) = path else {
        return Ok(FileSettings::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

impl StorageArgs {
    pub fn resolve(&self) -> anyhow::Result<StorageSettings> {
        let file = read_file(self.config.as_deref())?;
        self.resolve_with(&file)
    }

    fn resolve_with(&self, file: &FileSettings) -> anyhow::Result<StorageSettings> {
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let catalog = match self
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
            .filter(|url| !url.is_empty())
        {
            Some(url) => CatalogSettings::Postgres { url },
            None => CatalogSettings::Sqlite {
                path: data_dir.join("catalog.sqlite3"),
            },
        };
        let bucket = self
            .s3_bucket
            .clone()
            .or_else(|| file.s3.bucket.clone())
            .filter(|bucket| !bucket.is_empty());
        let store = match bucket {
            Some(bucket) => StoreSettings::S3(S3Settings {
                endpoint: self
                    .s3_endpoint
                    .clone()
                    .or_else(|| file.s3.endpoint.clone()),
                bucket,
                region: self
                    .s3_region
                    .clone()
                    .or_else(|| file.s3.region.clone())
                    .unwrap_or_else(|| "us-east-1".to_owned()),
                prefix: self
                    .s3_prefix
                    .clone()
                    .or_else(|| file.s3.prefix.clone())
                    .unwrap_or_default(),
                path_style: self.s3_path_style.or(file.s3.path_style).unwrap_or(false),
            }),
            None => {
                if self.s3_endpoint.is_some() || file.s3.endpoint.is_some() {
                    bail!("an S3 endpoint is set but no bucket (CAIRN_S3_BUCKET)");
                }
                // The folder backend keeps objects under `<root>/objects/`.
                StoreSettings::Filesystem {
                    root: data_dir.clone(),
                }
            }
        };
        Ok(StorageSettings {
            data_dir,
            catalog,
            store,
        })
    }
}

impl ServeArgs {
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let file = read_file(self.storage.config.as_deref())?;
        let storage = self.storage.resolve_with(&file)?;
        let listen = self
            .listen
            .clone()
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen
            .parse()
            .with_context(|| format!("listen address {listen:?} is not host:port"))?;
        Ok(Settings {
            listen,
            site_dir: self
                .site_dir
                .clone()
                .or_else(|| file.site_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SITE_DIR)),
            storage,
            shutdown_grace: self
                .shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            drain_delay: self
                .drain_delay
                .or(file.drain_delay)
                .unwrap_or(DEFAULT_DRAIN_DELAY),
            advertise: self
                .advertise
                .clone()
                .or_else(|| file.advertise.clone())
                .map(check_advertise)
                .transpose()?,
            max_upload_bytes: self
                .max_upload_bytes
                .or(file.max_upload_bytes)
                .unwrap_or(DEFAULT_MAX_UPLOAD_BYTES),
            cache_bytes: self
                .cache_bytes
                .or(file.cache_bytes)
                .unwrap_or(crate::cache::DEFAULT_CACHE_BYTES),
            max_connections_per_address: self
                .max_connections_per_address
                .or(file.max_connections_per_address)
                .unwrap_or(DEFAULT_CONNECTIONS_PER_ADDRESS),
            gc_every: self.gc_every.or(file.gc_every),
            gc_grace: self
                .gc_grace
                .or(file.gc_grace)
                .unwrap_or(crate::gc::DEFAULT_GRACE),
            gc_retain: self.gc_retain.or(file.gc_retain),
            trust_proxy_headers: self.trust_proxy_headers
                || file.trust_proxy_headers.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_is_checked_at_start() {
        let with = |advertise: &str| ServeArgs {
            advertise: Some(advertise.to_owned()),
            ..ServeArgs::default()
        };
        assert_eq!(
            with("10.0.0.5:8080")
                .resolve()
                .unwrap()
                .advertise
                .as_deref(),
            Some("10.0.0.5:8080")
        );
        let at_limit = "a".repeat(255);
        assert_eq!(
            with(&at_limit).resolve().unwrap().advertise,
            Some(at_limit.clone())
        );
        for bad in ["", "  ", "a\nb", &"a".repeat(256)] {
            let error = with(bad).resolve().unwrap_err().to_string();
            assert!(error.contains("advertise address"), "{error}");
        }
        assert_eq!(ServeArgs::default().resolve().unwrap().advertise, None);
    }

    #[test]
    fn no_settings_is_the_embedded_default() {
        let settings = ServeArgs::default().resolve().unwrap();
        assert_eq!(settings.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(settings.site_dir, PathBuf::from("dist"));
        assert!(settings.storage.is_embedded());
        assert_eq!(
            settings.storage.catalog,
            CatalogSettings::Sqlite {
                path: PathBuf::from(".cairn-data/catalog.sqlite3")
            }
        );
    }

    #[test]
    fn database_url_and_bucket_switch_to_production() {
        let args = StorageArgs {
            database_url: Some("postgres://x@localhost/db".into()),
            s3_bucket: Some("b".into()),
            s3_path_style: Some(true),
            ..StorageArgs::default()
        };
        let storage = args.resolve().unwrap();
        assert!(!storage.is_embedded());
        assert!(matches!(storage.catalog, CatalogSettings::Postgres { .. }));
        let StoreSettings::S3(s3) = storage.store else {
            panic!("expected S3")
        };
        assert_eq!(s3.bucket, "b");
        assert!(s3.path_style);
        assert_eq!(s3.region, "us-east-1");
    }

    #[test]
    fn collection_settings_read_as_durations() {
        let file: FileSettings = toml::from_str("gc_every = \"6h\"\ngc_grace = \"90m\"\n").unwrap();
        assert_eq!(file.gc_every, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(file.gc_grace, Some(Duration::from_secs(90 * 60)));
        let error = toml::from_str::<FileSettings>("gc_every = \"soon\"\n").unwrap_err();
        assert!(error.to_string().contains("\"soon\""), "{error}");
        let settings = ServeArgs::default().resolve().unwrap();
        assert_eq!(
            settings.gc_every, None,
            "collection is off unless configured"
        );
        assert_eq!(settings.gc_grace, crate::gc::DEFAULT_GRACE);
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: FileSettings = toml::from_str(
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/cairn\"\n[s3]\nbucket = \"from-file\"\n",
        )
        .unwrap();
        let args = StorageArgs {
            data_dir: Some("/flag".into()),
            ..StorageArgs::default()
        };
        let storage = args.resolve_with(&file).unwrap();
        assert_eq!(storage.data_dir, PathBuf::from("/flag"));
        assert!(matches!(storage.store, StoreSettings::S3(ref s3) if s3.bucket == "from-file"));
        assert!(toml::from_str::<FileSettings>("unknown = 1").is_err());
    }
}
