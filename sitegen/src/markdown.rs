//! Markdown to HTML: heading anchors, table of contents, admonitions, server-side syntax
//! highlighting, and collection of links (with their source line) for the link checker.

use std::collections::HashSet;

use pulldown_cmark::{
    BlockQuoteKind, CodeBlockKind, CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd,
};
use serde::{Deserialize, Serialize};

use crate::highlight;

/// One entry of a page's table of contents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heading {
    pub level: u8,
    pub id: String,
    pub text: String,
}

/// A link or image reference found in the body, already resolved to a site URL when internal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Link {
    /// The resolved target, e.g. `/docs/a/#usage` or `#usage`; external URLs are not kept.
    #[serde(rename = "t")]
    pub target: String,
    #[serde(rename = "l")]
    pub line: usize,
    #[serde(default, rename = "i", skip_serializing_if = "is_false")]
    pub image: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The rendered body of a page.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub html: String,
    pub headings: Vec<Heading>,
    /// Every id in the body (headings and raw HTML), for anchor checks.
    pub anchors: Vec<String>,
    pub links: Vec<Link>,
    /// Images with an empty alt text, with their line.
    pub images_without_alt: Vec<(String, usize)>,
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_GFM
}

/// Turns heading text into an id: lowercase ASCII letters and digits, `-` between words.
pub fn slugify(text: &str) -> String {
    let mut slug = String::new();
    let mut dash = false;
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.extend(ch.to_lowercase());
        } else if ch != '\'' && ch != '`' {
            dash = true;
        }
    }
    if slug.is_empty() {
        slug.push_str("section");
    }
    slug
}

/// Resolves a link written in `rel_path`'s body to a site URL. Returns `None` for external
/// links (any scheme, or protocol-relative).
pub fn resolve_link(rel_path: &str, page_url: &str, dest: &str) -> Option<String> {
    if dest.starts_with("//") || dest.contains("://") || has_scheme(dest) {
        return None;
    }
    if dest.starts_with('#') {
        return Some(dest.to_owned());
    }
    let (path, fragment) = match dest.find('#') {
        Some(hash) => (&dest[..hash], &dest[hash..]),
        None => (dest, ""),
    };
    let path = path.split('?').next().unwrap_or("");
    let resolved = if let Some(md) = path.strip_suffix(".md") {
        // A link to another source file, relative to this file's folder.
        let base = match rel_path.rfind('/') {
            Some(slash) => &rel_path[..=slash],
            None => "",
        };
        let joined = if md.starts_with('/') {
            format!("{}.md", md.trim_start_matches('/'))
        } else {
            normalize(&format!("{base}{md}.md"))
        };
        crate::content::url_for(&joined).0
    } else if path.starts_with('/') {
        normalize_url(path)
    } else {
        normalize_url(&format!("{page_url}{path}"))
    };
    Some(format!("{resolved}{fragment}"))
}

fn has_scheme(dest: &str) -> bool {
    match dest.find(':') {
        Some(colon) => dest[..colon]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'),
        None => false,
    }
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn normalize_url(path: &str) -> String {
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let normalized = normalize(path);
    if normalized.is_empty() {
        "/".to_owned()
    } else if trailing {
        format!("/{normalized}/")
    } else {
        format!("/{normalized}")
    }
}

struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        LineIndex(starts)
    }
    fn line(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(index) => index + 1,
            Err(index) => index,
        }
    }
}

use crate::highlight::escape;

fn admonition(kind: BlockQuoteKind) -> (&'static str, &'static str) {
    match kind {
        BlockQuoteKind::Note => ("note", "Note"),
        BlockQuoteKind::Tip => ("tip", "Tip"),
        BlockQuoteKind::Important => ("important", "Important"),
        BlockQuoteKind::Warning => ("warning", "Warning"),
        BlockQuoteKind::Caution => ("caution", "Caution"),
    }
}

/// Collects `id="..."` attributes from raw HTML so links to them check out.
fn raw_ids(html: &str, anchors: &mut Vec<String>) {
    let mut rest = html;
    while let Some(at) = rest.find("id=\"") {
        let after = &rest[at + 4..];
        if let Some(end) = after.find('"') {
            let preceded_ok = at == 0 || rest.as_bytes()[at - 1].is_ascii_whitespace();
            if preceded_ok {
                anchors.push(after[..end].to_owned());
            }
            rest = &after[end..];
        } else {
            break;
        }
    }
}

/// A heading being collected: level, explicit id, classes, inner events.
type PendingHeading<'a> = (HeadingLevel, Option<String>, Vec<String>, Vec<Event<'a>>);

/// Renders a page body. `first_line` is the file line where `body` starts.
pub fn render(body: &str, first_line: usize, rel_path: &str, page_url: &str) -> Rendered {
    render_reusing(
        body,
        first_line,
        rel_path,
        page_url,
        &highlight::Reuse::new(),
    )
}

/// Like [`render`], taking highlighted code blocks from `reuse` when they are there.
pub fn render_reusing(
    body: &str,
    first_line: usize,
    rel_path: &str,
    page_url: &str,
    reuse: &highlight::Reuse,
) -> Rendered {
    render_with(body, first_line, rel_path, page_url, Some(reuse))
}

/// What [`render`] finds in a body (headings, anchors, links, images without alt text),
/// without its HTML: no code is highlighted and no HTML is written. The build checks links
/// from this and renders the HTML only when it writes the page, so it never holds every
/// page's HTML at once.
pub fn scan(body: &str, first_line: usize, rel_path: &str, page_url: &str) -> Rendered {
    render_with(body, first_line, rel_path, page_url, None)
}

/// Renders, or with `reuse` absent only scans (see [`scan`]).
fn render_with(
    body: &str,
    first_line: usize,
    rel_path: &str,
    page_url: &str,
    reuse: Option<&highlight::Reuse>,
) -> Rendered {
    let lines = LineIndex::new(body);
    let line_of = |offset: usize| first_line + lines.line(offset) - 1;
    let mut rendered = Rendered::default();
    let mut used_ids: HashSet<String> = HashSet::new();
    let mut events: Vec<Event> = Vec::new();
    let parser = Parser::new_ext(body, options()).into_offset_iter();

    // Buffers for constructs that are rewritten whole.
    let mut heading: Option<PendingHeading> = None;
    let mut code: Option<(String, String)> = None;
    let mut image_alt: Option<(String, usize, String)> = None;

    for (event, range) in parser {
        if let Some((_, _, _, inner)) = heading.as_mut() {
            match event {
                Event::End(TagEnd::Heading(_)) => {
                    let (level, explicit_id, classes, inner) = heading
                        .take()
                        .unwrap_or_else(|| (HeadingLevel::H2, None, Vec::new(), Vec::new()));
                    let text = plain_text(&inner);
                    let mut id = explicit_id.unwrap_or_else(|| slugify(&text));
                    if used_ids.contains(&id) {
                        let mut n = 1;
                        while used_ids.contains(&format!("{id}-{n}")) {
                            n += 1;
                        }
                        id = format!("{id}-{n}");
                    }
                    used_ids.insert(id.clone());
                    let has_link = inner
                        .iter()
                        .any(|e| matches!(e, Event::Start(Tag::Link { .. })));
                    let mut inner_html = String::new();
                    pulldown_cmark::html::push_html(&mut inner_html, inner.into_iter());
                    let level_number = level as u8;
                    let class_attr = if classes.is_empty() {
                        String::new()
                    } else {
                        format!(" class=\"{}\"", escape(&classes.join(" ")))
                    };
                    let html = if has_link {
                        format!(
                            "<h{level_number} id=\"{id}\"{class_attr}>{inner_html}</h{level_number}>\n"
                        )
                    } else {
                        format!(
                            "<h{level_number} id=\"{id}\"{class_attr}><a class=\"anchor\" href=\"#{id}\">{inner_html}</a></h{level_number}>\n"
                        )
                    };
                    rendered.anchors.push(id.clone());
                    rendered.headings.push(Heading {
                        level: level_number,
                        id,
                        text,
                    });
                    events.push(Event::Html(CowStr::from(html)));
                }
                other => {
                    if let Event::Start(Tag::Link { dest_url, .. }) = &other
                        && let Some(target) = resolve_link(rel_path, page_url, dest_url)
                    {
                        rendered.links.push(Link {
                            target,
                            line: line_of(range.start),
                            image: false,
                        });
                    }
                    inner.push(rewrite_link(other, rel_path, page_url));
                }
            }
            continue;
        }
        if let Some((_, text)) = code.as_mut() {
            match event {
                Event::Text(chunk) => text.push_str(&chunk),
                Event::End(TagEnd::CodeBlock) => {
                    let key = code.take().unwrap_or_default();
                    let Some(reuse) = reuse else { continue };
                    let html = match reuse.get(&key) {
                        Some(html) => html.clone(),
                        None => highlight::cached_code_block(&key.0, &key.1),
                    };
                    events.push(Event::Html(CowStr::from(html)));
                }
                _ => {}
            }
            continue;
        }
        if let Some((_, _, alt)) = image_alt.as_mut() {
            match &event {
                Event::Text(text) | Event::Code(text) => alt.push_str(text),
                Event::End(TagEnd::Image) => {
                    if let Some((target, line, alt)) = image_alt.take()
                        && alt.trim().is_empty()
                    {
                        rendered.images_without_alt.push((target, line));
                    }
                }
                _ => {}
            }
            events.push(event);
            continue;
        }
        match event {
            Event::Start(Tag::Heading {
                level, id, classes, ..
            }) => {
                heading = Some((
                    level,
                    id.map(|id| id.to_string()),
                    classes.iter().map(|c| c.to_string()).collect(),
                    Vec::new(),
                ));
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let language = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_owned()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((language, String::new()));
            }
            Event::Start(Tag::BlockQuote(Some(kind))) => {
                let (class, title) = admonition(kind);
                events.push(Event::Html(CowStr::from(format!(
                    "<div class=\"admonition admonition-{class}\">\n<p class=\"admonition-title\">{title}</p>\n"
                ))));
            }
            Event::End(TagEnd::BlockQuote(Some(_))) => {
                events.push(Event::Html(CowStr::Borrowed("</div>\n")));
            }
            Event::Start(Tag::Image { ref dest_url, .. }) => {
                let line = line_of(range.start);
                if let Some(target) = resolve_link(rel_path, page_url, dest_url) {
                    rendered.links.push(Link {
                        target: target.clone(),
                        line,
                        image: true,
                    });
                }
                image_alt = Some((dest_url.to_string(), line, String::new()));
                events.push(rewrite_link(event, rel_path, page_url));
            }
            Event::Start(Tag::Link { ref dest_url, .. }) => {
                if let Some(target) = resolve_link(rel_path, page_url, dest_url) {
                    rendered.links.push(Link {
                        target,
                        line: line_of(range.start),
                        image: false,
                    });
                }
                events.push(rewrite_link(event, rel_path, page_url));
            }
            Event::Html(ref html) | Event::InlineHtml(ref html) => {
                raw_ids(html, &mut rendered.anchors);
                events.push(event);
            }
            other => events.push(other),
        }
    }
    if reuse.is_some() {
        let mut html = String::with_capacity(body.len() * 3 / 2);
        pulldown_cmark::html::push_html(&mut html, events.into_iter());
        rendered.html = html;
    }
    rendered
}

/// Rewrites `.md` link destinations to the target page's URL.
fn rewrite_link<'a>(event: Event<'a>, rel_path: &str, page_url: &str) -> Event<'a> {
    match event {
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if dest_url.contains(".md") => {
            let dest = resolve_link(rel_path, page_url, &dest_url).map_or(dest_url, CowStr::from);
            Event::Start(Tag::Link {
                link_type,
                dest_url: dest,
                title,
                id,
            })
        }
        other => other,
    }
}

fn plain_text(events: &[Event]) -> String {
    let mut text = String::new();
    for event in events {
        match event {
            Event::Text(t) | Event::Code(t) => text.push_str(t),
            Event::SoftBreak | Event::HardBreak => text.push(' '),
            _ => {}
        }
    }
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_unique_anchors_and_toc() {
        let body = "## Usage\ntext\n## Usage\n### With `code` {#custom}\n";
        let rendered = render(body, 5, "docs/a.md", "/docs/a/");
        let ids: Vec<&str> = rendered.headings.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["usage", "usage-1", "custom"]);
        assert!(
            rendered
                .html
                .contains("<h2 id=\"usage\"><a class=\"anchor\" href=\"#usage\">Usage</a></h2>")
        );
        assert_eq!(rendered.headings[2].text, "With code");
    }

    #[test]
    fn links_are_resolved_with_lines() {
        let body = "intro\n\nSee [b](b.md#x), [up](../index.md), [abs](/docs/c/) and [ext](https://x.dev).\n";
        let rendered = render(body, 10, "docs/a.md", "/docs/a/");
        let targets: Vec<(&str, usize)> = rendered
            .links
            .iter()
            .map(|l| (l.target.as_str(), l.line))
            .collect();
        assert_eq!(
            targets,
            [("/docs/b/#x", 12), ("/index/", 12), ("/docs/c/", 12)]
        );
        assert!(rendered.html.contains("href=\"/docs/b/#x\""));
    }

    #[test]
    fn admonitions_and_code() {
        let body = "> [!WARNING]\n> Careful.\n\n```rust\nfn main() {}\n```\n";
        let rendered = render(body, 1, "a.md", "/a/");
        assert!(rendered.html.contains("admonition-warning"));
        assert!(
            rendered
                .html
                .contains("<p class=\"admonition-title\">Warning</p>")
        );
        assert!(rendered.html.contains("hl-"), "{}", rendered.html);
        assert!(!rendered.html.contains("style="));
    }

    #[test]
    fn a_scan_finds_what_a_render_finds() {
        let body = "## Usage\n\nSee [b](b.md#x) and ![](/i.png).\n\n```rust\nfn main() {}\n```\n\n<div id=\"raw\"></div>\n";
        let scanned = scan(body, 3, "docs/a.md", "/docs/a/");
        let rendered = render(body, 3, "docs/a.md", "/docs/a/");
        assert!(scanned.html.is_empty());
        assert!(rendered.html.contains("hl-"));
        assert_eq!(scanned.headings, rendered.headings);
        assert_eq!(scanned.anchors, rendered.anchors);
        assert_eq!(scanned.links, rendered.links);
        assert_eq!(scanned.images_without_alt, rendered.images_without_alt);
        assert_eq!(scanned.anchors, ["usage", "raw"]);
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("Hello, World!"), "hello-world");
        assert_eq!(slugify("GET /v1/projects"), "get-v1-projects");
        assert_eq!(slugify("???"), "section");
    }
}
