//! A measuring aid for the index (not a benchmark: `bench/` has those): records the working
//! copy at `root` as synced at version 1 without a server, so `cairn status` can be timed
//! against `git status` on the same folder.
//!
//! `cargo run --release -p sync-client --example index_bench -- <root> [--old-format]` (the
//! folder must hold files; a `.cairn/` is made if there is none). `--old-format` then also
//! writes the `base` and `stat-cache` files of the previous client, for timing it side by side.

use std::path::PathBuf;

use sync_client::stores::state::{Base, StatCache};
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
        listing: snapshot.scan.listing().clone(),
        pending: Default::default(),
    })?;
    if std::env::args().any(|arg| arg == "--old-format") {
        let mut cache = StatCache::new();
        for (path, entry) in copy.index()?.stat_entries() {
            cache.insert(sync_protocol::tree::Path::new(path)?, entry);
        }
        let state = root.join(".cairn");
        std::fs::write(state.join("base"), copy.base()?.encode())?;
        std::fs::write(state.join("stat-cache"), cache.encode())?;
    }
    println!(
        "{}: {} paths recorded as version 1",
        root.display(),
        snapshot.scan.listing().len()
    );
    Ok(())
}
