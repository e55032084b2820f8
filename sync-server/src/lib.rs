//! `sync-server` as a library: the storage layer (catalog and object store) that the HTTP API,
//! the cluster code and the integration tests build on. The binary is `src/main.rs`.

pub mod catalog;
pub mod store;
