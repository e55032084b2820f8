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
#[derive(Debug, Clone, Copy)]
pub struct PageInput<'a> {
    pub meta: &'a PageMeta,
    pub nav: &'a NavContext,
    pub rendered: Option<&'a Rendered>,
}

/// The `page` variable of the templates.
#[derive(Debug, Serialize)]
struct PageContext<'a> {
    title: &'a str,
    description: &'a str,
    url: &'a str,
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
    toc: &'a [Heading],
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

/// Renders a page's HTML and JSON twin. The page must have been rendered (`rendered` is set).
pub fn page_files(
    config: &SiteConfig,
    tera: &tera::Tera,
    templates_dir: &Path,
    asset_urls: &BTreeMap<String, String>,
    input: PageInput<'_>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let meta = input.meta;
    let empty = Rendered::default();
    let rendered = input.rendered.unwrap_or(&empty);
    let toc: Vec<Heading> = rendered
        .headings
        .iter()
        .filter(|h| (2..=3).contains(&h.level))
        .cloned()
        .collect();
    let is_home = meta.rel_path == "_index.md";
    let twin_path = twin_output(&meta.output);
    let page = PageContext {
        title: &meta.front.title,
        description: &meta.front.description,
        url: &meta.url,
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
    let mut context = tera::Context::new();
    context.insert("site", config);
    context.insert("page", &page);
    context.insert("content", &rendered.html);
    context.insert("toc", &toc);
    context.insert("nav", input.nav);
    context.insert("assets", asset_urls);
    let html = crate::templates::render(
        tera,
        templates_dir,
        meta.template(),
        &format!("content/{}", meta.rel_path),
        &context,
    )?;
    let mut files = vec![(meta.output.clone(), html.into_bytes())];
    if let Some(twin_path) = twin_path {
        let twin = Twin {
            url: &meta.url,
            canonical: config.absolute(&meta.url),
            title: &meta.front.title,
            description: &meta.front.description,
            lastmod: &meta.lastmod,
            breadcrumbs: &input.nav.breadcrumbs,
            toc: &toc,
            prev: &input.nav.prev,
            next: &input.nav.next,
            html: &rendered.html,
        };
        let json = serde_json::to_vec(&twin).unwrap_or_default();
        files.push((twin_path, json));
    }
    Ok(files)
}
