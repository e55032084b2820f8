//! The HTTP API against real stores: a server started in-process on port 0, in embedded mode
//! (SQLite and a folder) and production mode (PostgreSQL and s3s-fs).

#[macro_use]
pub mod support;

mod auth;
mod bad_input;
mod contract;
mod entries;
mod gc;
mod old_client;
mod ops;
mod pages;
mod pg_faults;
mod process;
mod rebase;
mod records;
mod sync;
mod text_fields;
