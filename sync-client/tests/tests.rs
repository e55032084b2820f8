//! Integration tests of the working copy, on temp folders. One test binary (modules below), so
//! the crate links once.

mod util;

mod apply;
mod cli;
mod config;
mod remote;
mod scan;
mod snapshot;
