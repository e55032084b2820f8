//! Incremental build state, kept in `<out>/.sitegen/manifest.json`.
//!
//! It records what the last successful build read and wrote: a hash of everything global
//! (config, templates, static files, generator version), and per page its metadata, the hash of
//! everything its HTML was rendered from (its source plus its navigation context), and what the
//! link checker and search index need from its body. A build deletes the manifest before it
//! writes anything and saves the new one only after it succeeded, so a failed build is followed
//! by a full one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::content::PageMeta;
use crate::markdown::{Heading, Link};

pub const MANIFEST_DIR: &str = ".sitegen";
pub const MANIFEST_FILE: &str = ".sitegen/manifest.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRecord {
    pub meta: PageMeta,
    /// Hash of the source hash, last-modified date, navigation context and global hash.
    pub render_key: String,
    pub headings: Vec<Heading>,
    pub anchors: Vec<String>,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub global_hash: String,
    pub pages: Vec<PageRecord>,
    /// Every file the build wrote, relative to the output folder, sorted.
    pub outputs: Vec<String>,
}

impl Manifest {
    pub fn new(global_hash: String, pages: Vec<PageRecord>, outputs: Vec<String>) -> Self {
        Manifest {
            format: FORMAT,
            global_hash,
            pages,
            outputs,
        }
    }

    /// The manifest of the previous build, if it exists and is of this format.
    pub fn load(out_dir: &Path) -> Option<Manifest> {
        let bytes = std::fs::read(out_dir.join(MANIFEST_FILE)).ok()?;
        let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
        (manifest.format == FORMAT).then_some(manifest)
    }

    pub fn save(&self, out_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(out_dir.join(MANIFEST_DIR))?;
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let temporary = out_dir.join(".sitegen/manifest.json.tmp");
        std::fs::write(&temporary, json)?;
        std::fs::rename(temporary, out_dir.join(MANIFEST_FILE))
    }

    pub fn remove(out_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(out_dir.join(MANIFEST_FILE)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}
