//! The application state every request handler shares: the catalog, the object store and the
//! node's own bookkeeping. Nothing in it outlives the process except through the two stores.

use std::sync::Arc;

use anyhow::Context;

use crate::cache::{DEFAULT_CACHE_BYTES, HotCache};
use crate::catalog::ProjectId;
use crate::catalog::{Catalog, PostgresCatalog, PostgresSettings, SqliteCatalog};
use crate::config::{
    CatalogSettings, DEFAULT_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_UPLOAD_BYTES, StorageSettings,
    StoreSettings,
};
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::node::NodeIdentity;
use crate::objects::{Layouts, ObjectsError, ProjectObjects, WarmPacks};
use crate::shutdown::Shutdown;
use crate::store::{FsBackend, ObjectStore, S3Backend, S3Settings};

/// Limits and sizes that are settings rather than format constants.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest object-stream body of a push or upload, in bytes.
    pub max_upload_bytes: u64,
    /// The hot object cache's size, in bytes.
    pub cache_bytes: u64,
    /// The most connections one client address may hold open at once; 0 for no limit.
    pub connections_per_address: usize,
    /// The largest file the account pages hand out (larger ones are for `cairn`, which
    /// streams them; a page's answer is built in memory).
    pub max_page_download_bytes: u64,
    /// Whether the proxy's `X-Forwarded-Proto` (cookies marked `Secure` over HTTPS) and
    /// `X-Forwarded-For` (failed sign-ins counted per client) are believed.
    pub trust_proxy_headers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            connections_per_address: DEFAULT_CONNECTIONS_PER_ADDRESS,
            max_page_download_bytes: crate::pages::DEFAULT_MAX_DOWNLOAD_BYTES,
            trust_proxy_headers: false,
        }
    }
}

/// Shared state of one server process.
#[derive(Debug)]
pub struct App {
    pub catalog: Arc<dyn Catalog>,
    pub store: ObjectStore,
    pub metrics: Arc<Metrics>,
    pub events: EventHub,
    pub shutdown: Shutdown,
    pub limits: Limits,
    /// The node's hot object cache.
    pub cache: HotCache,
    /// Which projects are known to be packed.
    pub layouts: Layouts,
    /// Which packs this node has loaded whole.
    pub warm_packs: WarmPacks,
    /// This process in the cluster's registry.
    pub node: NodeIdentity,
    /// Failed sign-ins per account and per address (the account pages and `POST /v1/sessions`).
    pub sign_in_limiter: crate::pages::SignInLimiter,
}

impl App {
    pub fn new(catalog: Arc<dyn Catalog>, store: ObjectStore, limits: Limits) -> Self {
        Self {
            catalog,
            store,
            metrics: Arc::new(Metrics::new()),
            events: EventHub::new(),
            shutdown: Shutdown::new(),
            cache: HotCache::new(limits.cache_bytes),
            layouts: Layouts::default(),
            warm_packs: WarmPacks::default(),
            node: NodeIdentity::new("unregistered"),
            sign_in_limiter: crate::pages::SignInLimiter::default(),
            limits,
        }
    }

    /// The same application, registering as a node reachable at `address`.
    pub fn registered_at(mut self, address: impl Into<String>) -> Self {
        self.node = NodeIdentity::new(address);
        self
    }

    /// The objects of `project`, on this node's stores and cache.
    pub async fn objects(&self, project: ProjectId) -> Result<ProjectObjects<'_>, ObjectsError> {
        ProjectObjects::open(
            self.catalog.as_ref(),
            &self.store,
            &self.cache,
            &self.layouts,
            project,
        )
        .await
    }
}

/// Opens the catalog and object store the settings name, migrating the catalog.
pub async fn open_storage(
    settings: &StorageSettings,
) -> anyhow::Result<(Arc<dyn Catalog>, ObjectStore)> {
    if settings.is_embedded() {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating the data folder {}", settings.data_dir.display()))?;
    }
    let catalog: Arc<dyn Catalog> = match &settings.catalog {
        CatalogSettings::Sqlite { path } => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            Arc::new(
                SqliteCatalog::open(path)
                    .await
                    .with_context(|| format!("opening the SQLite catalog {}", path.display()))?,
            )
        }
        CatalogSettings::Postgres { url } => Arc::new(
            PostgresCatalog::connect(&PostgresSettings::new(url.clone()))
                .await
                .context("connecting to PostgreSQL (DATABASE_URL)")?,
        ),
    };
    let store = match &settings.store {
        StoreSettings::Filesystem { root } => ObjectStore::new(FsBackend::new(root.clone())),
        StoreSettings::S3(s3) => {
            let mut backend = S3Settings::new(s3.bucket.clone());
            backend.region = s3.region.clone();
            backend.endpoint = s3.endpoint.clone();
            backend.prefix = s3.prefix.clone();
            backend.force_path_style = s3.path_style;
            ObjectStore::new(
                S3Backend::connect(&backend)
                    .await
                    .with_context(|| format!("setting up the S3 bucket {}", s3.bucket))?,
            )
        }
    };
    Ok((catalog, store))
}
