//! Request counting, by kind, in atomic counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a backend's requests so far. For S3 these are HTTP requests sent, retries
/// included; for the folder and memory backends, the equivalent file or map operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Object reads (S3 `GetObject`).
    pub get: u64,
    /// Object writes (S3 `PutObject`; bucket creation also counts here).
    pub put: u64,
    /// Existence probes (S3 `HeadObject`).
    pub head: u64,
    /// Listings (S3 `ListObjectsV2` pages).
    pub list: u64,
    /// Deletions (S3 `DeleteObjects` batches or `DeleteObject`).
    pub delete: u64,
}

impl RequestCounts {
    /// All requests of every kind.
    pub fn total(&self) -> u64 {
        self.get + self.put + self.head + self.list + self.delete
    }

    /// The requests made between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get.saturating_sub(earlier.get),
            put: self.put.saturating_sub(earlier.put),
            head: self.head.saturating_sub(earlier.head),
            list: self.list.saturating_sub(earlier.list),
            delete: self.delete.saturating_sub(earlier.delete),
        }
    }
}

/// The live counters a backend increments; [`RequestCounters::snapshot`] reads them.
#[derive(Debug, Default)]
pub struct RequestCounters {
    get: AtomicU64,
    put: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
}

/// The kinds of request a backend makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Get,
    Put,
    Head,
    List,
    Delete,
}

impl RequestCounters {
    /// Counts `count` requests of `kind`.
    pub fn add(&self, kind: RequestKind, count: u64) {
        let counter = match kind {
            RequestKind::Get => &self.get,
            RequestKind::Put => &self.put,
            RequestKind::Head => &self.head,
            RequestKind::List => &self.list,
            RequestKind::Delete => &self.delete,
        };
        counter.fetch_add(count, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts {
            get: self.get.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Relaxed),
            list: self.list.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
        }
    }
}
