//! Outputs for search engines: sitemap.xml, robots.txt, alias redirect pages, JSON-LD
//! breadcrumbs and the duplicate title/description warnings.

use crate::config::SiteConfig;
use crate::content::PageMeta;
use crate::nav::NavLink;

pub fn xml_escape(text: &str) -> String {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return text.to_owned();
    }
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn push_xml_escaped(out: &mut String, text: &str) {
    if text.contains(['&', '<', '>', '"', '\'']) {
        out.push_str(&xml_escape(text));
    } else {
        out.push_str(text);
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether a page belongs in the sitemap and the search index.
pub fn indexable(page: &PageMeta) -> bool {
    !page.front.noindex && page.rel_path != "404.md"
}

/// `sitemap.xml` listing every indexable page with its last-modified date.
pub fn sitemap(config: &SiteConfig, pages: &[&PageMeta]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    let mut sorted: Vec<&&PageMeta> = pages.iter().filter(|p| indexable(p)).collect();
    // URLs are unique; pages come sorted by path, which is nearly URL order.
    sorted.sort_unstable_by(|a, b| a.url.cmp(&b.url));
    out.reserve(sorted.len() * 100);
    let base = xml_escape(&config.absolute(""));
    for page in sorted {
        out.push_str("  <url><loc>");
        // Escaping the base and the path apart is escaping their concatenation.
        out.push_str(&base);
        push_xml_escaped(&mut out, &page.url);
        out.push_str("</loc>");
        if !page.lastmod.is_empty() {
            out.push_str("<lastmod>");
            push_xml_escaped(&mut out, &page.lastmod);
            out.push_str("</lastmod>");
        }
        out.push_str("</url>\n");
    }
    out.push_str("</urlset>\n");
    out
}

pub fn robots(config: &SiteConfig) -> String {
    format!(
        "User-agent: *\nAllow: /\nDisallow: /search/\n\nSitemap: {}\n",
        config.absolute("/sitemap.xml")
    )
}

/// The output file of an alias path: `/old/` → `old/index.html`, `/old.html` → `old.html`.
pub fn alias_output(alias: &str) -> String {
    let trimmed = alias.trim_start_matches('/');
    if trimmed.is_empty() {
        "index.html".to_owned()
    } else if trimmed.ends_with(".html") {
        trimmed.to_owned()
    } else if trimmed.ends_with('/') {
        format!("{trimmed}index.html")
    } else {
        format!("{trimmed}/index.html")
    }
}

/// A page that sends browsers (and crawlers, via the canonical link) to a page's new URL.
pub fn redirect_page(config: &SiteConfig, target: &PageMeta) -> String {
    let url = html_escape(&target.url);
    let canonical = html_escape(&config.absolute(&target.url));
    let title = html_escape(&target.front.title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<title>Moved: {title}</title>\n<meta name=\"robots\" content=\"noindex\">\n<link rel=\"canonical\" href=\"{canonical}\">\n<meta http-equiv=\"refresh\" content=\"0; url={url}\">\n</head>\n<body>\n<main>\n<h1>This page has moved</h1>\n<p>It is now at <a href=\"{url}\">{title}</a>.</p>\n</main>\n</body>\n</html>\n",
        lang = html_escape(&config.language),
    )
}

/// A JSON-LD BreadcrumbList, ready to put inside `<script type="application/ld+json">`.
pub fn breadcrumbs_json_ld(config: &SiteConfig, breadcrumbs: &[NavLink]) -> String {
    let items: Vec<serde_json::Value> = breadcrumbs
        .iter()
        .enumerate()
        .map(|(position, link)| {
            serde_json::json!({
                "@type": "ListItem",
                "position": position + 1,
                "name": link.title,
                "item": config.absolute(&link.url),
            })
        })
        .collect();
    let value = serde_json::json!({
        "@context": "https://schema.org",
        "@type": "BreadcrumbList",
        "itemListElement": items,
    });
    // `</` must not appear inside a script element.
    value.to_string().replace("</", "<\\/")
}

/// Warnings for titles or descriptions shared by several indexable pages.
pub fn duplicate_warnings(pages: &[&PageMeta]) -> Vec<String> {
    let indexable: Vec<&PageMeta> = pages.iter().copied().filter(|p| indexable(p)).collect();
    let mut warnings = Vec::new();
    for what in ["title", "description"] {
        fn field<'p>(page: &'p PageMeta, what: &str) -> &'p str {
            if what == "title" {
                &page.front.title
            } else {
                &page.front.description
            }
        }
        // Sorted by text, pages in their given order within a text (a stable sort).
        let mut by_text = indexable.clone();
        by_text.sort_by(|a, b| field(a, what).cmp(field(b, what)));
        for group in by_text.chunk_by(|a, b| field(a, what) == field(b, what)) {
            if group.len() > 1 {
                let files: Vec<&str> = group.iter().map(|p| p.rel_path.as_str()).collect();
                warnings.push(format!(
                    "duplicate {what} {:?} in {}",
                    field(group[0], what),
                    files.join(", ")
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(rel_path: &str, title: &str, description: &str) -> PageMeta {
        let text = format!("+++\ntitle = {title:?}\ndescription = {description:?}\n+++\n");
        let source = crate::content::SourceFile {
            rel_path: rel_path.to_owned(),
            mtime_ns: 0,
            size: 0,
        };
        crate::content::parse_page(std::path::Path::new(rel_path), &source, &text).unwrap()
    }

    #[test]
    fn duplicates_are_reported_by_text_then_by_page_order() {
        let pages = [
            page("a.md", "Z", "one"),
            page("b.md", "Y", "two"),
            page("c.md", "Z", "two"),
            page("d.md", "Y", "three"),
            page("e.md", "Z", "four"),
            page("f.md", "X", "five"),
        ];
        let refs: Vec<&PageMeta> = pages.iter().collect();
        assert_eq!(
            duplicate_warnings(&refs),
            [
                "duplicate title \"Y\" in b.md, d.md",
                "duplicate title \"Z\" in a.md, c.md, e.md",
                "duplicate description \"two\" in b.md, c.md",
            ]
        );
    }

    #[test]
    fn alias_outputs() {
        assert_eq!(alias_output("/old/"), "old/index.html");
        assert_eq!(alias_output("/old"), "old/index.html");
        assert_eq!(alias_output("/old.html"), "old.html");
    }

    #[test]
    fn json_ld_is_script_safe() {
        let config = SiteConfig::parse(
            std::path::Path::new("s"),
            "base_url = \"https://x.dev\"\ntitle = \"X\"\ndescription = \"d\"\n",
        )
        .unwrap();
        let json = breadcrumbs_json_ld(
            &config,
            &[NavLink {
                title: "</script>".into(),
                url: "/".into(),
            }],
        );
        assert!(!json.contains("</"));
        assert!(json.contains("\"item\":\"https://x.dev/\""));
    }
}
