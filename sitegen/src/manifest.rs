//! Incremental build state, kept in `<out>/.sitegen/`.
//!
//! It records what the last successful build read and wrote: a hash of everything global
//! (config, templates, static files, generator version), and per page its metadata, the hash of
//! everything its HTML was rendered from (its source plus its navigation context), and what the
//! link checker and search index need from its body.
//!
//! Layout: `manifest.json` (global hashes, output list, shard names) and one file per content
//! folder under `pages/`, so a one-page edit rewrites one small shard, and loading reads the
//! shards in parallel. A build deletes `manifest.json` before it writes anything and saves it
//! last, after success, so a failed build is followed by a full one.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::content::PageMeta;
use serde_json::value::RawValue;

use crate::markdown::{Heading, Link, Rendered};
use crate::search;

pub const MANIFEST_DIR: &str = ".sitegen";
pub const MANIFEST_FILE: &str = ".sitegen/manifest.json";
const SHARD_DIR: &str = ".sitegen/pages";
const FORMAT: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRecord {
    pub meta: PageMeta,
    /// Hash of the source hash, last-modified date, navigation context and global hash.
    pub render_key: String,
    /// Hash of what the search index takes from the page (URL, title, description, headings).
    pub search_hash: String,
    /// The body's headings, ids and links, kept as unparsed JSON: most builds never look at
    /// the bodies of pages they do not re-render, and parsing them all would cost more than
    /// the rest of a one-page rebuild.
    pub headings: Box<RawValue>,
    pub anchors: Box<RawValue>,
    pub links: Box<RawValue>,
}

fn raw<T: Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| RawValue::from_string("[]".to_owned()).unwrap_or_default())
}

impl PageRecord {
    pub fn new(meta: PageMeta, render_key: String, rendered: &Rendered) -> PageRecord {
        let search_hash = search::page_key(&meta, &rendered.headings);
        PageRecord {
            meta,
            render_key,
            search_hash,
            headings: raw(&rendered.headings),
            anchors: raw(&rendered.anchors),
            links: raw(&rendered.links),
        }
    }

    pub fn headings(&self) -> Vec<Heading> {
        serde_json::from_str(self.headings.get()).unwrap_or_default()
    }

    pub fn anchors(&self) -> Vec<String> {
        serde_json::from_str(self.anchors.get()).unwrap_or_default()
    }

    pub fn links(&self) -> Vec<Link> {
        serde_json::from_str(self.links.get()).unwrap_or_default()
    }
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index<'a> {
    format: u32,
    global_hash: Cow<'a, str>,
    search_key: Cow<'a, str>,
    /// Every file the build wrote, relative to the output folder, sorted.
    outputs: Cow<'a, [String]>,
    shards: Vec<String>,
}

/// The previous build's state.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub global_hash: String,
    /// Hash of everything the search index is built from.
    pub search_key: String,
    pub pages: Vec<PageRecord>,
    pub outputs: Vec<String>,
    pub shards: Vec<String>,
}

/// The shard file name of a page: one per content folder.
fn shard_of(rel_path: &str) -> String {
    let folder = rel_path.rsplit_once('/').map_or("", |(folder, _)| folder);
    let hash = blake3::hash(folder.as_bytes()).to_hex();
    format!("{}.json", &hash.as_str()[..16])
}

impl Manifest {
    /// The manifest of the previous build, if it exists, is complete and is of this format.
    pub fn load(out_dir: &Path) -> Option<Manifest> {
        let bytes = std::fs::read(out_dir.join(MANIFEST_FILE)).ok()?;
        let index: Index = serde_json::from_slice(&bytes).ok()?;
        if index.format != FORMAT {
            return None;
        }
        let shards: Vec<Option<Vec<PageRecord>>> = index
            .shards
            .par_iter()
            .map(|name| {
                let bytes = std::fs::read(out_dir.join(SHARD_DIR).join(name)).ok()?;
                let mut records: Vec<PageRecord> = serde_json::from_slice(&bytes).ok()?;
                for record in &mut records {
                    record.meta.derive_paths();
                }
                Some(records)
            })
            .collect();
        let mut pages = Vec::new();
        for shard in shards {
            pages.extend(shard?);
        }
        pages.sort_by(|a, b| a.meta.rel_path.cmp(&b.meta.rel_path));
        Some(Manifest {
            global_hash: index.global_hash.into_owned(),
            search_key: index.search_key.into_owned(),
            pages,
            outputs: index.outputs.into_owned(),
            shards: index.shards,
        })
    }

    pub fn remove(out_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(out_dir.join(MANIFEST_FILE)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// A manifest being saved, borrowing the records that did not change.
#[derive(Debug)]
pub struct ManifestOut<'a> {
    pub global_hash: &'a str,
    pub search_key: &'a str,
    pub pages: Vec<Cow<'a, PageRecord>>,
    pub outputs: &'a [String],
}

impl<'a> ManifestOut<'a> {
    pub fn new(
        global_hash: &'a str,
        search_key: &'a str,
        pages: Vec<Cow<'a, PageRecord>>,
        outputs: &'a [String],
    ) -> ManifestOut<'a> {
        ManifestOut {
            global_hash,
            search_key,
            pages,
            outputs,
        }
    }

    /// Writes the shards that changed (any record not borrowed from `previous`, or a shard
    /// `previous` did not have), removes shards no longer used, then writes `manifest.json`.
    pub fn save(&self, out_dir: &Path, previous: Option<&Manifest>) -> std::io::Result<()> {
        let shard_dir = out_dir.join(SHARD_DIR);
        std::fs::create_dir_all(&shard_dir)?;
        let mut shards: BTreeMap<String, (bool, Vec<&PageRecord>)> = BTreeMap::new();
        for record in &self.pages {
            let entry = shards.entry(shard_of(&record.meta.rel_path)).or_default();
            entry.0 |= matches!(record, Cow::Owned(_));
            entry.1.push(record);
        }
        let previous_shards: HashSet<&str> = previous
            .map(|m| m.shards.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let previous_counts: BTreeMap<String, usize> = previous
            .map(|m| {
                let mut counts = BTreeMap::new();
                for record in &m.pages {
                    *counts.entry(shard_of(&record.meta.rel_path)).or_insert(0) += 1;
                }
                counts
            })
            .unwrap_or_default();
        let written: std::io::Result<Vec<()>> = shards
            .par_iter()
            .filter(|(name, (changed, records))| {
                *changed
                    || !previous_shards.contains(name.as_str())
                    || previous_counts.get(*name) != Some(&records.len())
            })
            .map(|(name, (_, records))| {
                let json = serde_json::to_vec(records).map_err(std::io::Error::other)?;
                std::fs::write(shard_dir.join(name), json)
            })
            .collect();
        written?;
        for stale in previous_shards {
            if !shards.contains_key(stale) {
                std::fs::remove_file(shard_dir.join(stale)).ok();
            }
        }
        let index = Index {
            format: FORMAT,
            global_hash: Cow::Borrowed(self.global_hash),
            search_key: Cow::Borrowed(self.search_key),
            outputs: Cow::Borrowed(self.outputs),
            shards: shards.into_keys().collect(),
        };
        let json = serde_json::to_vec(&index).map_err(std::io::Error::other)?;
        let temporary = out_dir.join(".sitegen/manifest.json.tmp");
        std::fs::write(&temporary, json)?;
        std::fs::rename(temporary, out_dir.join(MANIFEST_FILE))
    }
}
