//! A measuring aid for the index (not a benchmark: `bench/` has those): records the working
//! copy at `root` as synced at version 1 without a server, so `cairn status` can be timed
//! against `git status` on the same folder.
//!
//! `cargo run --release -p sync-client --example index_bench -- <root>` (the folder must hold
//! files; a `.cairn/` is made if there is none).

use std::path::PathBuf;

use sync_client::stores::state::Base;
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).ok_or("usage: index_bench <root>")?);
    let copy = match WorkingCopy::open(&root) {
        Ok(copy) => copy,
        Err(_) => WorkingCopy::init(
            &root,
            WorkingCopyConfig::new("https://cairn.test", "bench")?,
        )?,
    };
    let snapshot = copy.snapshot()?;
    copy.set_base(&Base {
        version: Some(1),
        root: snapshot.root,
        listing: snapshot.scan.listing.clone(),
        pending: Default::default(),
    })?;
    println!(
        "{}: {} paths recorded as version 1",
        root.display(),
        snapshot.scan.listing.len()
    );
    Ok(())
}
