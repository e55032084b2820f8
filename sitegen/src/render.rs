//! Rendering one page: the template context, the HTML through Tera, and the page's JSON twin.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::config::SiteConfig;
use crate::content::PageMeta;
use crate::error::Result;
use crate::markdown::{Heading, Rendered};
use crate::nav::NavContext;
use crate::seo;

/// What a page's files are made of.
#[derive(Debug)]
pub struct PageInput<'a> {
    pub meta: &'a PageMeta,
    /// The page's navigation context, without its sidebar: that comes as part of `nav_value`.
    pub nav: &'a NavContext,
    /// The JSON value of the whole navigation context, for the templates
    /// (`SiteTree::context_value`).
    pub nav_value: serde_json::Value,
    pub rendered: Option<&'a Rendered>,
}

/// The `page` variable of the templates.
#[derive(Debug, Serialize)]
struct PageContext<'a> {
    title: &'a str,
    description: &'a str,
    url: &'a str,
    /// The section folder whose navigation the page shows (`docs/a` for `docs/a/_index.md`
    /// and for `docs/a/b.md`; `""` at the root): a key for `partial_cached` sidebars.
    section: &'a str,
    canonical: String,
    lastmod: &'a str,
    /// `YYYY-MM-DD`.
    updated: &'a str,
    is_home: bool,
    is_index: bool,
    show_toc: bool,
    noindex: bool,
    og_type: &'a str,
    json_ld: String,
    /// The JSON twin's URL, if the page has one.
    json_url: Option<String>,
}

/// The JSON twin of a page, for clients that want structure rather than HTML.
#[derive(Debug, Serialize)]
struct Twin<'a> {
    url: &'a str,
    canonical: String,
    title: &'a str,
    description: &'a str,
    lastmod: &'a str,
    breadcrumbs: &'a [crate::nav::NavLink],
    toc: &'a [&'a Heading],
    prev: &'a Option<crate::nav::NavLink>,
    next: &'a Option<crate::nav::NavLink>,
    html: &'a str,
}

/// `docs/a/index.html` → `docs/a/index.json`; pages not written as `index.html` have no twin.
pub fn twin_output(output: &str) -> Option<String> {
    output
        .strip_suffix("index.html")
        .map(|folder| format!("{folder}index.json"))
}

/// Renders pages: the templates, and what every page's context shares (`site`, `assets`),
/// serialized once rather than per page.
#[derive(Debug)]
pub struct Renderer<'a> {
    config: &'a SiteConfig,
    tera: &'a std::sync::Arc<tera::Tera>,
    templates_dir: &'a Path,
    base: tera::Context,
}

/// A rendering worker's output buffers, reused from page to page (a page's HTML is tens of
/// kilobytes; growing a fresh buffer to that size for every page showed in profiles).
#[derive(Debug, Default)]
pub struct PageBuffers {
    pub html: Vec<u8>,
    pub twin: Vec<u8>,
}

impl<'a> Renderer<'a> {
    pub fn new(
        config: &'a SiteConfig,
        tera: &'a std::sync::Arc<tera::Tera>,
        templates_dir: &'a Path,
        asset_urls: &BTreeMap<String, String>,
    ) -> Renderer<'a> {
        let mut base = tera::Context::new();
        base.insert("site", config);
        base.insert("assets", asset_urls);
        Renderer {
            config,
            tera,
            templates_dir,
            base,
        }
    }

    /// Renders a page's HTML into `buffers.html` and, for pages that have one (the returned
    /// path), its JSON twin into `buffers.twin`.
    pub fn page(&self, input: PageInput<'_>, buffers: &mut PageBuffers) -> Result<Option<String>> {
        let config = self.config;
        let meta = input.meta;
        let empty = Rendered::default();
        let rendered = input.rendered.unwrap_or(&empty);
        let toc: Vec<&Heading> = rendered
            .headings
            .iter()
            .filter(|h| (2..=3).contains(&h.level))
            .collect();
        let is_home = meta.rel_path == "_index.md";
        let twin_path = twin_output(&meta.output);
        let page = PageContext {
            title: &meta.front.title,
            description: &meta.front.description,
            url: &meta.url,
            section: meta.own_section(),
            canonical: config.absolute(&meta.url),
            lastmod: &meta.lastmod,
            updated: meta.lastmod.get(..10).unwrap_or(&meta.lastmod),
            is_home,
            is_index: meta.is_index,
            show_toc: meta.front.toc && toc.len() > 1,
            noindex: !seo::indexable(meta),
            og_type: if is_home { "website" } else { "article" },
            json_ld: seo::breadcrumbs_json_ld(config, &input.nav.breadcrumbs),
            json_url: twin_path
                .as_ref()
                .map(|_| format!("{}index.json", meta.url)),
        };
        let mut context = self.base.clone();
        context.insert("page", &page);
        context.insert("content", &rendered.html);
        context.insert("toc", &toc);
        // Moved in, not serialized again (`insert` would copy the whole sidebar).
        let mut nav = serde_json::Map::new();
        nav.insert("nav".to_owned(), input.nav_value);
        if let Ok(nav) = tera::Context::from_value(serde_json::Value::Object(nav)) {
            context.extend(nav);
        }
        buffers.html.clear();
        crate::templates::render_to(
            self.tera,
            self.templates_dir,
            meta.template(),
            &format!("content/{}", meta.rel_path),
            context,
            &mut buffers.html,
        )?;
        buffers.twin.clear();
        if twin_path.is_some() {
            let twin = Twin {
                url: &meta.url,
                canonical: page.canonical,
                title: &meta.front.title,
                description: &meta.front.description,
                lastmod: &meta.lastmod,
                breadcrumbs: &input.nav.breadcrumbs,
                toc: &toc,
                prev: &input.nav.prev,
                next: &input.nav.next,
                html: &rendered.html,
            };
            // Writing JSON to a Vec fails only on a serializer error, which these types do
            // not produce.
            serde_json::to_writer(&mut buffers.twin, &twin).unwrap_or_default();
        }
        Ok(twin_path)
    }
}
