//! `sync-server` as a library: the storage layer (catalog and object store) that the HTTP API,
//! the cluster code and the integration tests build on. The binary is `src/main.rs`.

pub mod catalog;
pub mod store;

// The HTTP layer and operations.
pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod convert;
pub mod events;
pub mod fsck;
pub mod gc;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod openapi;
pub mod pages;
pub mod problem;
pub mod routes;
pub mod server;
pub mod shutdown;
