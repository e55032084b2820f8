//! Internal link checking: every link in a body must name a page, an alias or a static file,
//! and its fragment must be an id on the target page.

use std::collections::HashSet;

use crate::fasthash::FastMap as HashMap;
use std::path::Path;

use crate::error::{Diagnostic, DiagnosticKind};
use crate::markdown::Link;

/// A page's ids: parsed, or still in the previous build's record (read and parsed only if a
/// link needs them).
#[derive(Debug, Clone, Copy)]
pub enum Anchors<'a> {
    Parsed(&'a [String]),
    Stored(&'a crate::manifest::PageRecord),
}

impl Anchors<'_> {
    fn contains(&self, id: &str) -> bool {
        match self {
            Anchors::Parsed(ids) => ids.iter().any(|a| a == id),
            Anchors::Stored(record) => serde_json::from_str::<Vec<String>>(record.anchors_json())
                .is_ok_and(|ids| ids.iter().any(|a| a == id)),
        }
    }
}

/// Every URL the site answers, with the ids of each page.
#[derive(Debug, Default)]
pub struct LinkTargets<'a> {
    /// Page URL → its anchors (borrowed: building this map copies nothing).
    pub pages: HashMap<&'a str, Anchors<'a>>,
    /// Other URLs: aliases, static files, generated files.
    pub files: HashSet<String>,
}

impl<'a> LinkTargets<'a> {
    fn anchors_of(&self, path: &str) -> Option<Option<Anchors<'a>>> {
        if let Some(anchors) = self.pages.get(path) {
            return Some(Some(*anchors));
        }
        if !path.ends_with('/')
            && let Some(anchors) = self.pages.get(format!("{path}/").as_str())
        {
            return Some(Some(*anchors));
        }
        if let Some(page) = path.strip_suffix("index.html")
            && let Some(anchors) = self.pages.get(page)
        {
            return Some(Some(*anchors));
        }
        if self.files.contains(path) {
            return Some(None);
        }
        None
    }

    /// Checks the links of one page, appending a diagnostic per problem.
    pub fn check(
        &self,
        file: &Path,
        page_url: &str,
        links: &[Link],
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        for link in links {
            let (path, fragment) = match link.target.find('#') {
                Some(hash) => (&link.target[..hash], &link.target[hash + 1..]),
                None => (link.target.as_str(), ""),
            };
            let path = if path.is_empty() { page_url } else { path };
            let kind = match self.anchors_of(path) {
                None => Some(DiagnosticKind::BrokenLink {
                    target: link.target.clone(),
                }),
                Some(Some(anchors)) if !fragment.is_empty() && !anchors.contains(fragment) => {
                    Some(DiagnosticKind::MissingAnchor {
                        target: link.target.clone(),
                        anchor: fragment.to_owned(),
                    })
                }
                _ => None,
            };
            if let Some(kind) = kind {
                diagnostics.push(Diagnostic {
                    file: file.to_owned(),
                    line: link.line,
                    kind,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pages_files_and_anchors() {
        let mut targets = LinkTargets::default();
        let anchors = ["usage".to_owned()];
        targets.pages.insert("/docs/a/", Anchors::Parsed(&anchors));
        targets.files.insert("/favicon.svg".into());
        let link = |target: &str| Link {
            target: target.into(),
            line: 3,
            image: false,
        };
        let links = [
            link("/docs/a/#usage"),
            link("/docs/a"),
            link("/favicon.svg"),
            link("#usage"),
            link("/docs/b/"),
            link("/docs/a/#nope"),
        ];
        let mut diagnostics = Vec::new();
        targets.check(Path::new("x.md"), "/docs/a/", &links, &mut diagnostics);
        let messages: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("x.md:3: broken link: /docs/b/"));
        assert!(messages[1].starts_with("x.md:3: missing anchor: /docs/a/#nope"));
    }
}
