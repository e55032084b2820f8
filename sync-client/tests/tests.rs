//! Integration tests of the working copy, on temp folders, and of the `cairn` binary against
//! the real `sync-server` (`remote`, which finds the server binary and never builds it: run
//! `scripts/test` or any `cargo test --workspace` first). One test binary (modules below), so
//! the crate links once.

mod util;

mod apply;
mod clean;
mod cli;
mod config;
mod failover;
mod index;
mod layers;
mod monitor;
mod remote;
mod scan;
mod snapshot;
