//! Incremental build state, kept in `<out>/.sitegen/`.
//!
//! It records what the last successful build read and wrote: a hash of everything global
//! (config, templates, static files, generator version), and per page its metadata, the hash of
//! its navigation context, the hash of everything its HTML was rendered from (its source plus
//! that context), and what the link checker and search index need from its body.
//!
//! The output list holds only the files that are not a page's own (`index.html` and its JSON
//! twin, which follow from the page's path): sitemap, robots.txt, redirects, search shards
//! and static files.
//!
//! Layout: `manifest.bin` (global hashes, those outputs, the duplicate warnings, shard names)
//! and one file per content
//! folder under `pages/`, so a one-page edit rewrites one small shard, and loading reads the
//! shards in parallel. A build deletes `manifest.bin` before it writes anything and saves it
//! last, after success, so a failed build is followed by a full one.
//!
//! Encoding: bincode (fixed-width integers, length-prefixed strings). It is not
//! self-describing, so the stored types below spell out every field with no
//! `skip_serializing_if`; any change to them must bump [`FORMAT`], and a state of another
//! format (or one that does not decode to the end) is ignored, which means a full build.
//! JSON took most of a one-page rebuild to parse on a 10,000-page site.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use crate::fasthash::FastMap as HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::content::{FrontMatter, PageMeta};

use crate::markdown::{Heading, Link, Rendered};
use crate::search;

pub const MANIFEST_DIR: &str = ".sitegen";
pub const MANIFEST_FILE: &str = ".sitegen/manifest.bin";
/// The JSON manifest of earlier versions, removed when seen.
const LEGACY_MANIFEST_FILE: &str = ".sitegen/manifest.json";
const SHARD_DIR: &str = ".sitegen/pages";
const FORMAT: u32 = 9;

/// [`FrontMatter`] as stored: every field, always (bincode needs a fixed field list).
#[derive(Serialize, Deserialize)]
#[serde(remote = "FrontMatter")]
struct StoredFrontMatter {
    title: String,
    description: String,
    weight: i64,
    aliases: Vec<String>,
    draft: bool,
    template: Option<String>,
    updated: Option<String>,
    toc: bool,
    noindex: bool,
}

/// [`PageMeta`] as stored; the fields derived from `rel_path` are filled in on load.
#[derive(Serialize, Deserialize)]
#[serde(remote = "PageMeta")]
struct StoredPageMeta {
    rel_path: String,
    #[serde(skip)]
    url: String,
    #[serde(skip)]
    output: String,
    #[serde(skip)]
    section: String,
    #[serde(skip)]
    is_index: bool,
    #[serde(with = "StoredFrontMatter")]
    front: FrontMatter,
    body_line: usize,
    #[serde(with = "hash_bytes")]
    source_hash: [u8; 32],
    mtime_ns: u128,
    size: u64,
    lastmod: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRecord {
    #[serde(with = "StoredPageMeta")]
    pub meta: PageMeta,
    /// Hash of the source hash, last-modified date, navigation context and global hash.
    #[serde(with = "hash_bytes")]
    pub render_key: [u8; 32],
    /// Hash of the page's navigation context (`NavKeys::context_key`), kept so that a build
    /// in which no page's navigation-relevant metadata changed need not compute it again.
    #[serde(with = "hash_bytes")]
    pub nav_key: [u8; 32],
    /// Hash of what the search index takes from the page (URL, title, description, headings).
    #[serde(with = "hash_bytes")]
    pub search_hash: [u8; 32],
    /// The body's headings, ids and links as JSON text. Stored after all the shard's records
    /// and read only when first needed: most builds never look at the bodies of pages they do
    /// not re-render, and reading them all would cost more than the rest of a one-page
    /// rebuild. Serialized as the three texts' lengths.
    body: Body,
}

/// A 32-byte hash as a byte string: bincode reads it in one copy, where an array would be
/// read as a tuple of 32 elements (which showed in the profile of a one-page rebuild).
mod hash_bytes {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(hash)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        struct Hash;
        impl de::Visitor<'_> for Hash {
            type Value = [u8; 32];
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<[u8; 32], E> {
                bytes
                    .try_into()
                    .map_err(|_| E::invalid_length(bytes.len(), &self))
            }
        }
        deserializer.deserialize_bytes(Hash)
    }
}

/// A record's headings, anchors and links: three JSON texts in a shared buffer (the bodies
/// part of a shard file, read on first use, or the texts of a freshly rendered page).
#[derive(Clone, Default)]
struct Body {
    source: Arc<BodySource>,
    parts: [Range<usize>; 3],
}

#[derive(Debug, Default)]
enum BodySource {
    Inline(Vec<u8>),
    /// `len` bytes at `offset` of the shard file `path`, which was `file_len` bytes long when
    /// the records were loaded.
    Shard {
        path: PathBuf,
        offset: u64,
        len: usize,
        file_len: u64,
        bytes: OnceLock<Option<Vec<u8>>>,
    },
    #[default]
    Empty,
}

impl BodySource {
    /// The bytes, or `None` when a shard's bodies cannot be read as they were when loaded.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            BodySource::Inline(bytes) => Some(bytes),
            BodySource::Empty => Some(&[]),
            BodySource::Shard {
                path,
                offset,
                len,
                file_len,
                bytes,
            } => bytes
                .get_or_init(|| {
                    let mut file = File::open(path).ok()?;
                    if file.metadata().ok()?.len() != *file_len {
                        return None;
                    }
                    file.seek(SeekFrom::Start(*offset)).ok()?;
                    let mut bytes = vec![0; *len];
                    file.read_exact(&mut bytes).ok()?;
                    Some(bytes)
                })
                .as_deref(),
        }
    }

    /// True when this is a shard's bodies that could not be read.
    fn failed(&self) -> bool {
        matches!(self, BodySource::Shard { bytes, .. } if matches!(bytes.get(), Some(None)))
    }
}

impl Body {
    fn new(texts: [String; 3]) -> Body {
        let mut bytes = Vec::with_capacity(texts.iter().map(String::len).sum());
        let parts = texts.map(|text| {
            let start = bytes.len();
            bytes.extend_from_slice(text.as_bytes());
            start..bytes.len()
        });
        Body {
            source: Arc::new(BodySource::Inline(bytes)),
            parts,
        }
    }

    /// Part `index` (0 headings, 1 anchors, 2 links). Bodies that cannot be read read as empty
    /// lists, and mark the manifest damaged (see [`Manifest::damaged`]); the build then stops
    /// before writing anything.
    fn part(&self, index: usize) -> &str {
        self.source
            .bytes()
            .and_then(|bytes| bytes.get(self.parts[index].clone()))
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or("[]")
    }

    fn part_bytes(&self, index: usize) -> std::io::Result<&[u8]> {
        self.source
            .bytes()
            .and_then(|bytes| bytes.get(self.parts[index].clone()))
            .ok_or_else(|| std::io::Error::other("a page record's body could not be read"))
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let [a, b, c] = &self.parts;
        (a.len() as u64, b.len() as u64, c.len() as u64).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Body {
    /// Only the lengths; [`decode_shard`] places the parts and sets the source.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Body, D::Error> {
        let (a, b, c) = <(u64, u64, u64)>::deserialize(deserializer)?;
        let len = |n: u64| usize::try_from(n).map_err(serde::de::Error::custom);
        Ok(Body {
            source: Arc::default(),
            parts: [0..len(a)?, 0..len(b)?, 0..len(c)?],
        })
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.parts.iter().map(|part| part.len()))
            .finish()
    }
}

fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

impl PageRecord {
    pub fn new(
        meta: PageMeta,
        render_key: [u8; 32],
        nav_key: [u8; 32],
        rendered: &Rendered,
    ) -> PageRecord {
        let search_hash = search::page_key(&meta, &rendered.headings);
        PageRecord {
            meta,
            render_key,
            nav_key,
            search_hash,
            body: Body::new([
                json_text(&rendered.headings),
                json_text(&rendered.anchors),
                json_text(&rendered.links),
            ]),
        }
    }

    /// This record with other metadata (same render key, search hash and body).
    pub fn with_meta(&self, meta: PageMeta) -> PageRecord {
        PageRecord {
            meta,
            render_key: self.render_key,
            nav_key: self.nav_key,
            search_hash: self.search_hash,
            body: self.body.clone(),
        }
    }

    /// The anchors as JSON text (an array of strings), for parsing only when needed.
    pub fn anchors_json(&self) -> &str {
        self.body.part(1)
    }

    pub fn headings(&self) -> Vec<Heading> {
        serde_json::from_str(self.body.part(0)).unwrap_or_default()
    }

    pub fn anchors(&self) -> Vec<String> {
        serde_json::from_str(self.body.part(1)).unwrap_or_default()
    }

    pub fn links(&self) -> Vec<Link> {
        serde_json::from_str(self.body.part(2)).unwrap_or_default()
    }
}

/// Decodes bincode, refusing trailing bytes (a truncated or foreign file is no state at all).
fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize(bytes)
        .ok()
}

fn encode<T: Serialize + ?Sized>(value: &T) -> std::io::Result<Vec<u8>> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .serialize(value)
        .map_err(std::io::Error::other)
}

/// A shard file: the `u64` length of the records part, the records (bincode; each body as
/// its three lengths), then the bodies, each record's three texts one after the other.
fn encode_shard(records: &[&PageRecord]) -> std::io::Result<Vec<u8>> {
    let head = encode(records)?;
    let body_len: usize = records
        .iter()
        .map(|r| r.body.parts.iter().map(Range::len).sum::<usize>())
        .sum();
    let mut bytes = Vec::with_capacity(8 + head.len() + body_len);
    bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&head);
    for record in records {
        for index in 0..3 {
            bytes.extend_from_slice(record.body.part_bytes(index)?);
        }
    }
    Ok(bytes)
}

/// Reads a shard file's records, not its bodies; `None` unless the records decode exactly and
/// the file is as long as they say.
fn decode_shard(path: PathBuf) -> Option<Vec<PageRecord>> {
    let mut file = File::open(&path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut len = [0; 8];
    file.read_exact(&mut len).ok()?;
    let head_len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    if (head_len as u64).checked_add(8)? > file_len {
        return None;
    }
    let mut head = vec![0; head_len];
    file.read_exact(&mut head).ok()?;
    let mut records: Vec<PageRecord> = decode(&head)?;
    let mut at = 0usize;
    for record in &mut records {
        for part in &mut record.body.parts {
            let end = at.checked_add(part.len())?;
            *part = at..end;
            at = end;
        }
    }
    let offset = 8 + head_len as u64;
    if offset.checked_add(at as u64)? != file_len {
        return None;
    }
    let source = Arc::new(BodySource::Shard {
        path,
        offset,
        len: at,
        file_len,
        bytes: OnceLock::new(),
    });
    for record in &mut records {
        record.meta.derive_paths();
        record.body.source = Arc::clone(&source);
    }
    Some(records)
}

/// What `manifest.bin` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index<'a> {
    format: u32,
    global_hash: Cow<'a, str>,
    search_key: Cow<'a, str>,
    /// The files the build wrote other than pages and their twins, relative to the output
    /// folder, sorted.
    extra_outputs: Cow<'a, [String]>,
    /// The build's duplicate title and description warnings.
    warnings: Cow<'a, [String]>,
    shards: Vec<String>,
}

/// The previous build's state.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub global_hash: String,
    /// Hash of everything the search index is built from.
    pub search_key: String,
    /// The records as loaded, shard by shard: in no particular order (callers look pages
    /// up by path), and not gathered into one list, which would move 10,000 records.
    shard_pages: Vec<Vec<PageRecord>>,
    page_count: usize,
    /// The files written other than pages' `index.html` and twins, sorted.
    pub extra_outputs: Vec<String>,
    pub warnings: Vec<String>,
    pub shards: Vec<String>,
}

/// The shard file name of a content folder.
fn shard_name(folder: &str) -> String {
    let hash = blake3::hash(folder.as_bytes()).to_hex();
    format!("{}.bin", &hash.as_str()[..16])
}

/// The shard file name of a page: one per content folder.
#[cfg(test)]
fn shard_of(rel_path: &str) -> String {
    shard_name(folder_of(rel_path))
}

fn folder_of(rel_path: &str) -> &str {
    rel_path.rsplit_once('/').map_or("", |(folder, _)| folder)
}

impl Manifest {
    /// The manifest of the previous build, if it exists, is complete and is of this format.
    pub fn load(out_dir: &Path) -> Option<Manifest> {
        let bytes = std::fs::read(out_dir.join(MANIFEST_FILE)).ok()?;
        let index: Index = decode(&bytes)?;
        if index.format != FORMAT {
            return None;
        }
        let shard_pages: Vec<Vec<PageRecord>> = index
            .shards
            .par_iter()
            .map(|name| decode_shard(out_dir.join(SHARD_DIR).join(name)))
            .collect::<Option<_>>()?;
        let page_count = shard_pages.iter().map(Vec::len).sum();
        Some(Manifest {
            global_hash: index.global_hash.into_owned(),
            search_key: index.search_key.into_owned(),
            shard_pages,
            page_count,
            extra_outputs: index.extra_outputs.into_owned(),
            warnings: index.warnings.into_owned(),
            shards: index.shards,
        })
    }

    /// Every page's record, in no particular order.
    pub fn pages(&self) -> impl Iterator<Item = &PageRecord> {
        self.shard_pages.iter().flatten()
    }

    pub fn page_count(&self) -> usize {
        self.page_count
    }

    /// True when a page body this build needed could not be read (the state changed or was
    /// damaged after it was loaded): what was computed from it cannot be trusted.
    pub fn damaged(&self) -> bool {
        self.pages().any(|record| record.body.source.failed())
    }

    pub fn remove(out_dir: &Path) -> std::io::Result<()> {
        std::fs::remove_file(out_dir.join(LEGACY_MANIFEST_FILE)).ok();
        match std::fs::remove_file(out_dir.join(MANIFEST_FILE)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// A page's record to save: the previous build's, unchanged, or a new one (boxed: in a
/// one-page rebuild all but a few are unchanged, and this list has an entry per page).
#[derive(Debug)]
pub enum RecordOut<'a> {
    Same(&'a PageRecord),
    New(Box<PageRecord>),
}

impl std::ops::Deref for RecordOut<'_> {
    type Target = PageRecord;
    fn deref(&self) -> &PageRecord {
        match self {
            RecordOut::Same(record) => record,
            RecordOut::New(record) => record,
        }
    }
}

/// A manifest being saved, borrowing the records that did not change.
#[derive(Debug)]
pub struct ManifestOut<'a> {
    pub global_hash: &'a str,
    pub search_key: &'a str,
    pub pages: Vec<RecordOut<'a>>,
    /// Sorted; see [`Manifest::extra_outputs`].
    pub extra_outputs: &'a [String],
    pub warnings: &'a [String],
}

impl<'a> ManifestOut<'a> {
    pub fn new(
        global_hash: &'a str,
        search_key: &'a str,
        pages: Vec<RecordOut<'a>>,
        extra_outputs: &'a [String],
        warnings: &'a [String],
    ) -> ManifestOut<'a> {
        ManifestOut {
            global_hash,
            search_key,
            pages,
            extra_outputs,
            warnings,
        }
    }

    /// Writes the shards that changed (any record not borrowed from `previous`, or a shard
    /// `previous` did not have), removes shards no longer used, then writes `manifest.bin`.
    pub fn save(&self, out_dir: &Path, previous: Option<&Manifest>) -> std::io::Result<()> {
        let shard_dir = out_dir.join(SHARD_DIR);
        if previous.is_none() {
            // Every shard is written below; this clears those of an older format or build.
            match std::fs::remove_dir_all(&shard_dir) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        std::fs::create_dir_all(&shard_dir)?;
        // Records by folder (they are sorted, so a folder's records are mostly together).
        let mut folders: BTreeMap<&str, (bool, Vec<&PageRecord>)> = BTreeMap::new();
        for record in &self.pages {
            let entry = folders.entry(folder_of(&record.meta.rel_path)).or_default();
            entry.0 |= matches!(record, RecordOut::New(_));
            entry.1.push(record);
        }
        let shards: BTreeMap<String, (&str, bool, Vec<&PageRecord>)> = folders
            .into_iter()
            .map(|(folder, (changed, records))| (shard_name(folder), (folder, changed, records)))
            .collect();
        let previous_shards: HashSet<&str> = previous
            .map(|m| m.shards.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut previous_counts: HashMap<&str, usize> = HashMap::default();
        for record in previous.iter().flat_map(|m| m.pages()) {
            *previous_counts
                .entry(folder_of(&record.meta.rel_path))
                .or_insert(0) += 1;
        }
        let written: std::io::Result<Vec<()>> = shards
            .par_iter()
            .filter(|(name, (folder, changed, records))| {
                *changed
                    || !previous_shards.contains(name.as_str())
                    || previous_counts.get(folder) != Some(&records.len())
            })
            .map(|(name, (_, _, records))| {
                // Written aside and renamed: the old file's bodies may still be read lazily.
                let temporary = shard_dir.join(format!("{name}.tmp"));
                std::fs::write(&temporary, encode_shard(records)?)?;
                std::fs::rename(temporary, shard_dir.join(name))
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
            extra_outputs: Cow::Borrowed(self.extra_outputs),
            warnings: Cow::Borrowed(self.warnings),
            shards: shards.into_keys().collect(),
        };
        let temporary = out_dir.join(".sitegen/manifest.bin.tmp");
        std::fs::write(&temporary, encode(&index)?)?;
        std::fs::rename(temporary, out_dir.join(MANIFEST_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{SourceFile, parse_page};

    fn record(rel_path: &str, front: &str, anchor: &str) -> PageRecord {
        let text = format!("+++\n{front}\n+++\n# Body\n");
        let source = SourceFile {
            rel_path: rel_path.to_owned(),
            mtime_ns: 1_700_000_000_123_456_789,
            size: text.len() as u64,
        };
        let mut meta = parse_page(Path::new(rel_path), &source, &text).unwrap();
        meta.lastmod = "2026-11-26T00:00:00Z".to_owned();
        let rendered = Rendered {
            headings: vec![Heading {
                level: 2,
                id: anchor.to_owned(),
                text: format!("About {anchor}"),
            }],
            anchors: vec![anchor.to_owned()],
            ..Rendered::default()
        };
        let key = *blake3::hash(rel_path.as_bytes()).as_bytes();
        PageRecord::new(meta, key, [7; 32], &rendered)
    }

    fn sample() -> Vec<PageRecord> {
        vec![
            record(
                "docs/_index.md",
                "title = \"Docs\"\ndescription = \"d\"",
                "intro",
            ),
            record(
                "docs/a.md",
                "title = \"A\"\ndescription = \"a\"\nweight = -3\naliases = [\"/old/\"]\n\
                 template = \"x.html\"\nupdated = \"2025-01-02\"\ntoc = false\nnoindex = true",
                "usage",
            ),
            record(
                "docs/b/c.md",
                "title = \"C\"\ndescription = \"c\"",
                "ünïcode",
            ),
        ]
    }

    fn sorted(manifest: &Manifest) -> Vec<&PageRecord> {
        let mut pages: Vec<&PageRecord> = manifest.pages().collect();
        pages.sort_by(|a, b| a.meta.rel_path.cmp(&b.meta.rel_path));
        pages
    }

    fn save(dir: &Path, records: &[PageRecord], previous: Option<&Manifest>) {
        let pages = records.iter().map(RecordOut::Same).collect();
        let outputs = vec!["sitemap.xml".to_owned()];
        let warnings = vec!["duplicate title".to_owned()];
        ManifestOut::new("global", "search", pages, &outputs, &warnings)
            .save(dir, previous)
            .unwrap();
    }

    #[test]
    fn records_round_trip_with_bodies_read_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample();
        save(dir.path(), &records, None);
        let loaded = Manifest::load(dir.path()).unwrap();
        assert_eq!(loaded.global_hash, "global");
        assert_eq!(loaded.search_key, "search");
        assert_eq!(loaded.extra_outputs, ["sitemap.xml"]);
        assert_eq!(loaded.warnings, ["duplicate title"]);
        assert_eq!(loaded.page_count(), records.len());
        for (old, new) in records.iter().zip(sorted(&loaded)) {
            assert_eq!(old.meta, new.meta);
            assert_eq!(old.render_key, new.render_key);
            assert_eq!(old.nav_key, new.nav_key);
            assert_eq!(old.search_hash, new.search_hash);
            assert_eq!(old.anchors(), new.anchors());
            assert_eq!(old.anchors_json(), new.anchors_json());
            assert_eq!(old.body.part(0), new.body.part(0));
            assert_eq!(old.body.part(2), new.body.part(2));
        }
        assert!(!loaded.damaged());
        // Saving again, bodies not yet read: a rewritten shard copies the bodies of its
        // unchanged records from the old file before replacing it.
        let fresh = Manifest::load(dir.path()).unwrap();
        let pages: Vec<RecordOut> = fresh
            .pages()
            .map(|r| match r.meta.rel_path.as_str() {
                "docs/a.md" => RecordOut::New(Box::new(r.with_meta(r.meta.clone()))),
                _ => RecordOut::Same(r),
            })
            .collect();
        let outputs = vec!["sitemap.xml".to_owned()];
        ManifestOut::new("global", "search", pages, &outputs, &[])
            .save(dir.path(), Some(&fresh))
            .unwrap();
        assert!(!fresh.damaged());
        let reloaded = Manifest::load(dir.path()).unwrap();
        for (old, new) in records.iter().zip(sorted(&reloaded)) {
            assert_eq!(old.meta, new.meta);
            assert_eq!(old.anchors(), new.anchors());
            assert_eq!(old.body.part(0), new.body.part(0));
        }
    }

    #[test]
    fn a_truncated_or_changed_state_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &sample(), None);
        let shard = dir.path().join(SHARD_DIR).join(shard_of("docs/a.md"));
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Manifest::load(dir.path()).is_none());
        // A shard replaced after loading: its bodies are not read, and the state says so.
        std::fs::write(&shard, &bytes).unwrap();
        let loaded = Manifest::load(dir.path()).unwrap();
        std::fs::write(&shard, [&bytes[..], b"x"].concat()).unwrap();
        let a = loaded.pages().find(|r| r.meta.rel_path == "docs/a.md");
        assert_eq!(a.unwrap().anchors(), Vec::<String>::new());
        assert!(loaded.damaged());
    }

    #[test]
    fn a_json_manifest_of_an_older_version_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(MANIFEST_DIR)).unwrap();
        std::fs::write(dir.path().join(LEGACY_MANIFEST_FILE), b"{\"format\":4}").unwrap();
        assert!(Manifest::load(dir.path()).is_none());
        Manifest::remove(dir.path()).unwrap();
        assert!(!dir.path().join(LEGACY_MANIFEST_FILE).exists());
    }
}
