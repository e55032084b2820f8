//! The search index, split into small shards by the first two characters of each term, so the
//! search script downloads only the shards of the words typed. Terms come from titles,
//! descriptions and headings; each entry points at a page or a heading within it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::content::PageMeta;
use crate::markdown::Heading;

/// One searchable thing: a page or a heading in it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub url: String,
    pub title: String,
}

/// A document to index: its URL, title, description and headings.
#[derive(Debug)]
pub struct Document<'a> {
    pub url: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub headings: Vec<(&'a str, &'a str)>,
}

fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= 2)
        .map(str::to_lowercase)
}

fn shard_key(term: &str) -> String {
    term.chars()
        .take(2)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A hash of what the index takes from one page.
pub fn page_key(meta: &PageMeta, headings: &[Heading]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    let mut put = |text: &str| {
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    };
    put(&meta.url);
    put(&meta.front.title);
    put(&meta.front.description);
    put(if crate::seo::indexable(meta) {
        "y"
    } else {
        "n"
    });
    for heading in headings.iter().filter(|h| h.level <= 3) {
        put(&heading.id);
        put(&heading.text);
    }
    *hasher.finalize().as_bytes()
}

/// A hash of the pages' keys, in order: equal keys give equal shards.
pub fn key<'a>(page_keys: impl Iterator<Item = &'a [u8; 32]>) -> String {
    let mut hasher = blake3::Hasher::new();
    for key in page_keys {
        hasher.update(key);
    }
    hasher.finalize().to_hex().to_string()
}

/// Whether an output path is a search shard (`search/<two characters>.json`).
pub fn is_shard(path: &str) -> bool {
    path.strip_prefix("search/")
        .and_then(|name| name.strip_suffix(".json"))
        .is_some_and(|key| key.chars().count() == 2)
}

/// Output path → JSON text of every shard. Each shard maps a term to its entries.
pub fn build(documents: &[Document]) -> BTreeMap<String, String> {
    let mut shards: BTreeMap<String, BTreeMap<String, BTreeSet<Entry>>> = BTreeMap::new();
    for document in documents {
        let page = Entry {
            url: document.url.to_owned(),
            title: document.title.to_owned(),
        };
        for term in terms(document.title).chain(terms(document.description)) {
            shards
                .entry(shard_key(&term))
                .or_default()
                .entry(term)
                .or_default()
                .insert(page.clone());
        }
        for (id, text) in &document.headings {
            let entry = Entry {
                url: format!("{}#{id}", document.url),
                title: format!("{} › {text}", document.title),
            };
            for term in terms(text) {
                shards
                    .entry(shard_key(&term))
                    .or_default()
                    .entry(term)
                    .or_default()
                    .insert(entry.clone());
            }
        }
    }
    shards
        .into_iter()
        .map(|(key, terms)| {
            let json = serde_json::to_string(&terms).unwrap_or_else(|_| "{}".to_owned());
            (format!("search/{key}.json"), json)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_by_prefix() {
        let shards = build(&[Document {
            url: "/docs/a/",
            title: "Push protocol",
            description: "How pushes work",
            headings: vec![("retry", "Retry rules")],
        }]);
        assert!(shards.contains_key("search/pu.json"));
        assert!(shards["search/re.json"].contains("/docs/a/#retry"));
    }
}
