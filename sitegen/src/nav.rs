//! The site's shape: sections, sidebar trees, prev/next and breadcrumbs.
//!
//! Everything a page shows about *other* pages comes from here as a [`NavContext`]. The
//! incremental build hashes it ([`NavKeys`]): a page is re-rendered when its own source or its
//! navigation context changed, and for no other reason.

use std::collections::BTreeMap;

use crate::fasthash::FastMap as HashMap;

use serde::Serialize;

use crate::content::PageMeta;

/// A link to another page, as shown in navigation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NavLink {
    pub title: String,
    pub url: String,
}

/// One entry of a sidebar tree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NavItem {
    pub title: String,
    pub url: String,
    /// The page being rendered.
    pub current: bool,
    /// An ancestor section of the page being rendered.
    pub active: bool,
    pub is_section: bool,
    /// Expanded only along the path to the current page.
    pub children: Vec<NavItem>,
}

/// A child listed on a section page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChildLink {
    pub title: String,
    pub url: String,
    pub description: String,
}

/// Everything a page's template may show about other pages.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NavContext {
    pub sidebar: Vec<NavItem>,
    /// Title and URL of the sidebar's root section, if the page is in one.
    pub sidebar_root: Option<NavLink>,
    pub prev: Option<NavLink>,
    pub next: Option<NavLink>,
    /// From the home page down to the page itself.
    pub breadcrumbs: Vec<NavLink>,
    /// For section pages (and the home page): their direct children.
    pub children: Vec<ChildLink>,
}

/// Sidebars as JSON values by section, shared by the pages of a build (see
/// [`SiteTree::context_value`]).
#[derive(Debug, Default)]
pub struct SidebarCache(std::sync::Mutex<HashMap<String, std::sync::Arc<serde_json::Value>>>);

fn unmark_current(items: &mut [NavItem]) {
    for item in items {
        item.current = false;
        unmark_current(&mut item.children);
    }
}

/// Sets `current` on the sidebar entry whose URL is `url` (at most one: URLs are unique).
fn mark_current(items: &mut serde_json::Value, url: &str) -> bool {
    let Some(items) = items.as_array_mut() else {
        return false;
    };
    for item in items {
        let Some(object) = item.as_object_mut() else {
            continue;
        };
        if object.get("url").and_then(|u| u.as_str()) == Some(url) {
            object.insert("current".to_owned(), serde_json::Value::Bool(true));
            return true;
        }
        if let Some(children) = object.get_mut("children")
            && mark_current(children, url)
        {
            return true;
        }
    }
    false
}

/// An index of the site's pages by section.
#[derive(Debug)]
pub struct SiteTree<'a> {
    pages: &'a [&'a PageMeta],
    /// Name of the home page in breadcrumbs (the site's title; the page title is a tagline).
    home_title: &'a str,
    /// Section folder → index of its `_index.md` in `pages`.
    section_index: HashMap<&'a str, usize>,
    /// Section folder → sorted child entries (page indices; sections by their index page).
    children: HashMap<&'a str, Vec<usize>>,
    /// Page index → its top-level section and its position in that section's reading order.
    order: Vec<Option<(&'a str, usize)>>,
    reading_order: BTreeMap<&'a str, Vec<usize>>,
}

/// The navigation keys of a [`SiteTree`]: a hash per page of everything its
/// [`NavContext`] holds, computed without building the contexts.
#[derive(Debug)]
pub struct NavKeys<'t, 'a> {
    tree: &'t SiteTree<'a>,
    /// Section folder → hashes of its children list as the sidebar shows it (title, URL,
    /// kind) and as a section page lists it (title, URL, description).
    children_hashes: HashMap<&'a str, (blake3::Hash, blake3::Hash)>,
}

impl<'t, 'a> NavKeys<'t, 'a> {
    /// Hashes every section's children list once, for [`NavKeys::context_key`].
    pub fn new(tree: &'t SiteTree<'a>) -> NavKeys<'t, 'a> {
        let mut children_hashes = HashMap::default();
        for (section, list) in &tree.children {
            let mut sidebar = blake3::Hasher::new();
            let mut listing = blake3::Hasher::new();
            for &child in list {
                let page = &tree.pages[child];
                hash_str(&mut sidebar, &page.front.title);
                hash_str(&mut sidebar, &page.url);
                sidebar.update(&[u8::from(page.is_index), u8::from(page.front.noindex)]);
                hash_str(&mut listing, &page.front.title);
                hash_str(&mut listing, &page.url);
                hash_str(&mut listing, &page.front.description);
                listing.update(&[u8::from(page.front.noindex)]);
            }
            children_hashes.insert(*section, (sidebar.finalize(), listing.finalize()));
        }
        NavKeys {
            tree,
            children_hashes,
        }
    }

    /// A hash of everything [`SiteTree::context`] returns for page `index`, computed from
    /// its inputs without building it: the sidebar is a function of the page's URL, its
    /// section and the children lists of the sections on the path from the top-level section
    /// down to it; the rest is small. The incremental build stores these keys and builds
    /// full contexts only for the pages it re-renders.
    pub fn context_key(&self, index: usize) -> blake3::Hash {
        let tree = self.tree;
        let page = &tree.pages[index];
        let own = page.own_section();
        let root = top_level(own);
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"sitegen navigation context v1");
        hash_str(&mut hasher, &page.url);
        hash_str(&mut hasher, own);
        if !root.is_empty()
            && let Some(&root_index) = tree.section_index.get(root)
        {
            hasher.update(&[1]);
            hash_str(&mut hasher, &tree.pages[root_index].front.title);
            hash_str(&mut hasher, &tree.pages[root_index].url);
            let mut end = 0;
            for part in own.split('/') {
                end += part.len() + usize::from(end > 0);
                let folder = &own[..end];
                hash_str(&mut hasher, folder);
                if let Some((sidebar, _)) = self.children_hashes.get(folder) {
                    hasher.update(sidebar.as_bytes());
                }
            }
        }
        // Prev/next and breadcrumbs, hashed from the pages themselves (no copies).
        let page_link = |hasher: &mut blake3::Hasher, linked: Option<usize>| match linked {
            Some(linked) => {
                hasher.update(&[1]);
                hash_str(hasher, &tree.pages[linked].front.title);
                hash_str(hasher, &tree.pages[linked].url);
            }
            None => {
                hasher.update(&[0]);
            }
        };
        match tree.order[index] {
            Some((root, position)) => {
                let order = &tree.reading_order[root];
                page_link(&mut hasher, position.checked_sub(1).map(|p| order[p]));
                page_link(&mut hasher, order.get(position + 1).copied());
            }
            None => {
                page_link(&mut hasher, None);
                page_link(&mut hasher, None);
            }
        }
        if tree.section_index.contains_key("") {
            hash_str(&mut hasher, tree.home_title);
        }
        let mut end = 0;
        for part in page.section.split('/').filter(|p| !p.is_empty()) {
            end += part.len() + usize::from(end > 0);
            if let Some(&section) = tree.section_index.get(&page.section[..end])
                && section != index
            {
                page_link(&mut hasher, Some(section));
            }
        }
        if page.rel_path != "_index.md" {
            page_link(&mut hasher, Some(index));
        }
        if page.is_index
            && let Some((_, listing)) = self.children_hashes.get(own)
        {
            hasher.update(listing.as_bytes());
        }
        hasher.finalize()
    }
}

fn hash_str(hasher: &mut blake3::Hasher, text: &str) {
    hasher.update(&(text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}

fn parent_folder(folder: &str) -> &str {
    match folder.rfind('/') {
        Some(slash) => &folder[..slash],
        None => "",
    }
}

fn top_level(folder: &str) -> &str {
    folder.split('/').next().unwrap_or("")
}

impl<'a> SiteTree<'a> {
    /// Builds the tree. Pages must be the non-draft pages, sorted by `rel_path`.
    pub fn new(pages: &'a [&'a PageMeta], home_title: &'a str) -> SiteTree<'a> {
        let mut section_index = HashMap::default();
        for (index, page) in pages.iter().enumerate() {
            if page.is_index {
                section_index.insert(page.own_section(), index);
            }
        }
        let mut children: HashMap<&str, Vec<usize>> = HashMap::default();
        for (index, page) in pages.iter().enumerate() {
            if page.rel_path == "_index.md" || page.rel_path == "404.md" {
                continue;
            }
            let parent = if page.is_index {
                parent_folder(page.own_section())
            } else {
                page.section.as_str()
            };
            children.entry(parent).or_default().push(index);
        }
        for list in children.values_mut() {
            list.sort_by(|&a, &b| {
                let (pa, pb) = (&pages[a], &pages[b]);
                (pa.front.weight, &pa.front.title, &pa.url).cmp(&(
                    pb.front.weight,
                    &pb.front.title,
                    &pb.url,
                ))
            });
        }
        let mut tree = SiteTree {
            pages,
            home_title,
            section_index,
            children,
            order: vec![None; pages.len()],
            reading_order: BTreeMap::new(),
        };
        let roots: Vec<&str> = tree
            .section_index
            .keys()
            .copied()
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .collect();
        for root in roots {
            let mut order = Vec::new();
            tree.walk(root, &mut order);
            for (position, &index) in order.iter().enumerate() {
                tree.order[index] = Some((root, position));
            }
            tree.reading_order.insert(root, order);
        }
        tree
    }

    fn walk(&self, section: &str, order: &mut Vec<usize>) {
        if let Some(&index) = self.section_index.get(section) {
            order.push(index);
        }
        for &child in self.children.get(section).map_or(&[][..], |v| v.as_slice()) {
            let page = &self.pages[child];
            if page.is_index {
                self.walk(page.own_section(), order);
            } else {
                order.push(child);
            }
        }
    }

    fn link(&self, index: usize) -> NavLink {
        NavLink {
            title: self.pages[index].front.title.clone(),
            url: self.pages[index].url.clone(),
        }
    }

    fn sidebar_items(&self, section: &str, current: &PageMeta) -> Vec<NavItem> {
        let current_section = current.own_section();
        let mut items = Vec::new();
        for &child in self.children.get(section).map_or(&[][..], |v| v.as_slice()) {
            let page = &self.pages[child];
            let child_section = page.own_section();
            let active = page.is_index
                && current_section
                    .strip_prefix(child_section)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            let children = if active {
                self.sidebar_items(child_section, current)
            } else {
                Vec::new()
            };
            items.push(NavItem {
                title: page.front.title.clone(),
                url: page.url.clone(),
                current: page.url == current.url,
                active,
                is_section: page.is_index,
                children,
            });
        }
        items
    }

    fn prev_next(&self, index: usize) -> (Option<NavLink>, Option<NavLink>) {
        match self.order[index] {
            Some((root, position)) => {
                let order = &self.reading_order[root];
                let prev = position.checked_sub(1).map(|p| self.link(order[p]));
                let next = order.get(position + 1).map(|&n| self.link(n));
                (prev, next)
            }
            None => (None, None),
        }
    }

    fn breadcrumbs(&self, index: usize) -> Vec<NavLink> {
        let page = &self.pages[index];
        let mut breadcrumbs = Vec::new();
        if let Some(&home) = self.section_index.get("") {
            breadcrumbs.push(NavLink {
                title: self.home_title.to_owned(),
                url: self.pages[home].url.clone(),
            });
        }
        let mut folder = String::new();
        for part in page.section.split('/').filter(|p| !p.is_empty()) {
            if !folder.is_empty() {
                folder.push('/');
            }
            folder.push_str(part);
            if let Some(&section) = self.section_index.get(folder.as_str())
                && section != index
            {
                breadcrumbs.push(self.link(section));
            }
        }
        if page.rel_path != "_index.md" {
            breadcrumbs.push(self.link(index));
        }
        breadcrumbs
    }

    /// The navigation context of `pages[index]`.
    pub fn context(&self, index: usize) -> NavContext {
        let page = &self.pages[index];
        let root = top_level(page.own_section());
        let mut context = self.context_without_sidebar(index);
        if context.sidebar_root.is_some() {
            context.sidebar = self.sidebar_items(root, page);
        }
        context
    }

    /// The navigation context of `pages[index]` as the templates see it: the JSON value of
    /// [`SiteTree::context`], its sidebar cloned from `sidebars` (one per section, built on
    /// first use) with only the page's own entry marked current. Pages of one section share
    /// their sidebar but for that mark, and on a large section building and serializing it
    /// for every page was a good part of a cold build. Also returns the context itself
    /// without its sidebar (left empty), for the rest of the page.
    pub fn context_value(
        &self,
        index: usize,
        sidebars: &SidebarCache,
    ) -> (NavContext, serde_json::Value) {
        let page = &self.pages[index];
        let context = self.context_without_sidebar(index);
        let has_sidebar = context.sidebar_root.is_some();
        let sidebar = if has_sidebar {
            let own = page.own_section();
            let cached = sidebars.0.lock().ok().and_then(|c| c.get(own).cloned());
            let shared = match cached {
                Some(shared) => shared,
                None => {
                    let mut items = self.sidebar_items(top_level(own), page);
                    unmark_current(&mut items);
                    let value =
                        std::sync::Arc::new(serde_json::to_value(&items).unwrap_or_default());
                    if let Ok(mut cache) = sidebars.0.lock() {
                        cache.insert(own.to_owned(), value.clone());
                    }
                    value
                }
            };
            let mut sidebar = (*shared).clone();
            mark_current(&mut sidebar, &page.url);
            Some(sidebar)
        } else {
            None
        };
        let mut value = serde_json::to_value(&context).unwrap_or_default();
        if let (Some(sidebar), Some(object)) = (sidebar, value.as_object_mut()) {
            object.insert("sidebar".to_owned(), sidebar);
        }
        (context, value)
    }

    /// Everything of [`SiteTree::context`] but the sidebar (left empty).
    fn context_without_sidebar(&self, index: usize) -> NavContext {
        let page = &self.pages[index];
        let own = page.own_section();
        let root = top_level(own);
        let sidebar = Vec::new();
        let sidebar_root = match self.section_index.get(root) {
            Some(&root_index) if !root.is_empty() => Some(self.link(root_index)),
            _ => None,
        };
        let (prev, next) = self.prev_next(index);
        let breadcrumbs = self.breadcrumbs(index);
        let children = if page.is_index {
            self.children
                .get(own)
                .map_or(&[][..], |v| v.as_slice())
                .iter()
                .filter(|&&c| !self.pages[c].front.noindex)
                .map(|&c| ChildLink {
                    title: self.pages[c].front.title.clone(),
                    url: self.pages[c].url.clone(),
                    description: self.pages[c].front.description.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        NavContext {
            sidebar,
            sidebar_root,
            prev,
            next,
            breadcrumbs,
            children,
        }
    }

    /// Sections (folders) that hold pages but have no `_index.md`.
    pub fn sections_without_index(&self) -> Vec<(&'a str, usize)> {
        let mut missing = Vec::new();
        for (index, page) in self.pages.iter().enumerate() {
            let mut folder = page.section.as_str();
            if page.is_index {
                folder = parent_folder(page.own_section());
            }
            if !folder.is_empty() && !self.section_index.contains_key(folder) {
                missing.push((folder, index));
            }
        }
        missing.sort();
        missing.dedup_by(|a, b| a.0 == b.0);
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{SourceFile, parse_page};

    fn page(rel_path: &str, title: &str, weight: i64) -> PageMeta {
        let source = SourceFile {
            rel_path: rel_path.to_owned(),
            mtime_ns: 0,
            size: 0,
        };
        let text = format!(
            "+++\ntitle = \"{title}\"\ndescription = \"About {title}.\"\nweight = {weight}\n+++\nBody.\n"
        );
        parse_page(std::path::Path::new(rel_path), &source, &text).unwrap()
    }

    #[test]
    fn context_values_equal_the_serialized_contexts() {
        let mut pages = vec![
            page("_index.md", "Home", 0),
            page("docs/_index.md", "Docs", 0),
            page("docs/a.md", "A", 1),
            page("docs/b.md", "B", 2),
            page("docs/sub/_index.md", "Sub", 3),
            page("docs/sub/c.md", "C", 1),
            page("docs/sub/d.md", "D", 2),
            page("docs/sub/deep/_index.md", "Deep", 3),
            page("docs/sub/deep/e.md", "E", 1),
            page("guide/_index.md", "Guide", 1),
            page("guide/f.md", "F", 1),
            page("about.md", "About", 5),
        ];
        pages.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        let refs: Vec<&PageMeta> = pages.iter().collect();
        let tree = SiteTree::new(&refs, "Site");
        let sidebars = SidebarCache::default();
        // Twice over, so that the second pass takes every sidebar from the cache.
        for _ in 0..2 {
            for (index, page) in refs.iter().enumerate() {
                let expected = serde_json::to_value(tree.context(index)).unwrap();
                let (rest, value) = tree.context_value(index, &sidebars);
                assert!(rest.sidebar.is_empty());
                assert_eq!(
                    rest,
                    NavContext {
                        sidebar: Vec::new(),
                        ..tree.context(index)
                    }
                );
                assert_eq!(value, expected, "{}", page.rel_path);
            }
        }
        // The reference marks exactly one entry current on a page in a sidebar.
        let c = refs
            .iter()
            .position(|p| p.rel_path == "docs/sub/c.md")
            .unwrap();
        let text = serde_json::to_string(&tree.context_value(c, &sidebars).1).unwrap();
        assert_eq!(text.matches("\"current\":true").count(), 1, "{text}");
    }
}
