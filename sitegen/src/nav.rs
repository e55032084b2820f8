//! The site's shape: sections, sidebar trees, prev/next and breadcrumbs.
//!
//! Everything a page shows about *other* pages comes from here as a [`NavContext`]. The
//! incremental build hashes it: a page is re-rendered when its own source or its navigation
//! context changed, and for no other reason.

use std::collections::{BTreeMap, HashMap};

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

/// An index of the site's pages by section.
#[derive(Debug)]
pub struct SiteTree<'a> {
    pages: &'a [PageMeta],
    /// Section folder → index of its `_index.md` in `pages`.
    section_index: HashMap<&'a str, usize>,
    /// Section folder → sorted child entries (page indices; sections by their index page).
    children: HashMap<&'a str, Vec<usize>>,
    /// Page index → position in its top-level section's reading order.
    order: HashMap<usize, (String, usize)>,
    reading_order: BTreeMap<String, Vec<usize>>,
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
    pub fn new(pages: &'a [PageMeta]) -> SiteTree<'a> {
        let mut section_index = HashMap::new();
        for (index, page) in pages.iter().enumerate() {
            if page.is_index {
                section_index.insert(page.own_section(), index);
            }
        }
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
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
            section_index,
            children,
            order: HashMap::new(),
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
                tree.order.insert(index, (root.to_owned(), position));
            }
            tree.reading_order.insert(root.to_owned(), order);
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
                && (current_section == child_section
                    || current_section.starts_with(&format!("{child_section}/")));
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

    /// The navigation context of `pages[index]`.
    pub fn context(&self, index: usize) -> NavContext {
        let page = &self.pages[index];
        let own = page.own_section();
        let root = top_level(own);
        let (sidebar, sidebar_root) = match self.section_index.get(root) {
            Some(&root_index) if !root.is_empty() => {
                (self.sidebar_items(root, page), Some(self.link(root_index)))
            }
            _ => (Vec::new(), None),
        };
        let (prev, next) = match self.order.get(&index) {
            Some((root, position)) => {
                let order = &self.reading_order[root];
                let prev = position.checked_sub(1).map(|p| self.link(order[p]));
                let next = order.get(position + 1).map(|&n| self.link(n));
                (prev, next)
            }
            None => (None, None),
        };
        let mut breadcrumbs = Vec::new();
        if let Some(&home) = self.section_index.get("") {
            breadcrumbs.push(self.link(home));
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
        let children = if page.is_index {
            self.children
                .get(own)
                .map_or(&[][..], |v| v.as_slice())
                .iter()
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
