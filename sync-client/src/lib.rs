//! The `cairn` client library: the local half of a Cairn working copy.
//!
//! A working copy is a folder with a `.cairn/` state folder ([`working_copy`]): its config
//! (server and project), the base it last synced ([`state::Base`]), a local object cache
//! ([`object_cache`]) and a stat cache ([`state::StatCache`]). [`scan`] turns the folder into a
//! `sync_protocol::tree::Listing` reading only files whose stat changed; [`status`] compares it
//! with the base; [`apply`] writes a new tree into the folder without ever losing a local edit.
//! [`user_config`] keeps access tokens in `~/.config/cairn/config.toml`.
//!
//! The network half (login, clone, push, pull, sync, watch, log, restore) drives these pieces
//! over HTTP; it is not written yet.

pub mod apply;
pub mod atomic;
mod codec;
pub mod encode;
pub mod error;
pub mod object_cache;
pub mod scan;
pub mod state;
pub mod status;
pub mod user_config;
pub mod working_copy;

pub use error::ClientError;
pub use working_copy::WorkingCopy;
