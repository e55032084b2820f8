//! Content loading: walking `content/`, front matter, URLs and sections.
//!
//! Every Markdown file starts with TOML front matter between `+++` lines. A folder is a
//! section; its `_index.md` is the section's page. `content/docs/a.md` becomes `/docs/a/`
//! (written as `docs/a/index.html`), `content/docs/_index.md` becomes `/docs/`, and the
//! special `content/404.md` becomes `/404.html`.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, DiagnosticKind, Error, Result};

/// The front matter of one page. Unknown keys are errors, so a typo never passes silently.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontMatter {
    pub title: String,
    /// The meta description; required because every page needs a unique one.
    pub description: String,
    /// Sort key among siblings (lower first); `order` is accepted as a synonym.
    #[serde(default, alias = "order", skip_serializing_if = "is_zero")]
    pub weight: i64,
    /// Old URLs that redirect here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub draft: bool,
    /// Template name; defaults to `docs.html` (or `section.html` for `_index.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Overrides the computed last-modified date (`YYYY-MM-DD` or RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// Show the table of contents (default true).
    #[serde(default = "yes")]
    pub toc: bool,
    /// Leave the page out of the sitemap and the search index.
    #[serde(default, skip_serializing_if = "is_false")]
    pub noindex: bool,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn yes() -> bool {
    true
}

/// What the build knows about a page without rendering it. Stored in the incremental manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PageMeta {
    /// Path relative to the content folder, with `/` separators, e.g. `docs/a.md`.
    pub rel_path: String,
    /// Site path, e.g. `/docs/a/`.
    #[serde(skip)]
    pub url: String,
    /// Output file relative to the output folder, e.g. `docs/a/index.html`.
    #[serde(skip)]
    pub output: String,
    /// Folder of the page's section, e.g. `docs` (`""` for the root).
    #[serde(skip)]
    pub section: String,
    /// True for `_index.md`.
    #[serde(skip)]
    pub is_index: bool,
    pub front: FrontMatter,
    /// 1-based line where the Markdown body starts.
    pub body_line: usize,
    /// BLAKE3 of the whole source file.
    pub source_hash: [u8; 32],
    /// Modification time in nanoseconds since the epoch, and size, for the stat shortcut.
    pub mtime_ns: u128,
    pub size: u64,
    /// Last-modified date (RFC 3339), filled in by the build.
    #[serde(default)]
    pub lastmod: String,
}

impl PageMeta {
    /// The section folder this page's navigation belongs to: for a section index, the section
    /// itself; otherwise the folder holding the page.
    pub fn own_section(&self) -> &str {
        if self.is_index {
            self.rel_path
                .trim_end_matches("_index.md")
                .trim_end_matches('/')
        } else {
            &self.section
        }
    }

    /// Fills in the fields derived from `rel_path` (they are not stored in the manifest).
    pub fn derive_paths(&mut self) {
        let (url, output) = url_for(&self.rel_path);
        self.url = url;
        self.output = output;
        self.section = match self.rel_path.rfind('/') {
            Some(slash) => self.rel_path[..slash].to_owned(),
            None => String::new(),
        };
        self.is_index = self.rel_path == "_index.md" || self.rel_path.ends_with("/_index.md");
    }

    pub fn template(&self) -> &str {
        match &self.front.template {
            Some(template) => template,
            None if self.is_index => "section.html",
            None => "docs.html",
        }
    }
}

/// A Markdown source file found on disk (at `content_dir.join(rel_path)`).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub rel_path: String,
    pub mtime_ns: u128,
    pub size: u64,
}

/// Lists every `.md` file under `content_dir`, sorted by relative path.
///
/// Every file is `stat`ed on every build (that is how edits are found; a folder's mtime does
/// not change when a file in it is edited in place, so it cannot stand in for them). Folders
/// are walked in parallel: on a 10,000-page site the `stat` calls are most of a one-page
/// rebuild's listing time.
pub fn list_sources(content_dir: &Path) -> Result<Vec<SourceFile>> {
    let mut found = walk(content_dir.to_owned(), String::new())?;
    found.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(found)
}

fn walk(dir: PathBuf, prefix: String) -> Result<Vec<SourceFile>> {
    use rayon::prelude::*;
    let entries = std::fs::read_dir(&dir).map_err(|err| Error::io(&dir, err))?;
    let mut found = Vec::new();
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(&dir, err))?;
        let file_name = entry.file_name();
        let name = file_name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        // The entry's type comes with the listing: only pages are `stat`ed. Like the
        // `stat`, it does not follow symbolic links (a link named `*.md` is read as a page).
        let file_type = entry
            .file_type()
            .map_err(|err| Error::io(entry.path(), err))?;
        if !file_type.is_dir() && !name.ends_with(".md") {
            continue;
        }
        if matches!(name, std::borrow::Cow::Owned(_)) {
            // Pages are read back by their relative path, and URLs are made of these names.
            return Err(Error::Other(format!(
                "{}: content file and folder names must be UTF-8",
                entry.path().display()
            )));
        }
        if file_type.is_dir() {
            folders.push((entry.path(), format!("{prefix}{name}/")));
        } else {
            let metadata = entry
                .metadata()
                .map_err(|err| Error::io(entry.path(), err))?;
            let mtime_ns = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |duration| duration.as_nanos());
            found.push(SourceFile {
                rel_path: format!("{prefix}{name}"),
                mtime_ns,
                size: metadata.len(),
            });
        }
    }
    let nested: Vec<Result<Vec<SourceFile>>> = folders
        .into_par_iter()
        .map(|(path, prefix)| walk(path, prefix))
        .collect();
    for files in nested {
        found.extend(files?);
    }
    Ok(found)
}

/// The URL and output file of a content path.
pub fn url_for(rel_path: &str) -> (String, String) {
    if rel_path == "404.md" {
        return ("/404.html".to_owned(), "404.html".to_owned());
    }
    let stem = rel_path.trim_end_matches(".md");
    let folder = if let Some(section) = stem.strip_suffix("_index") {
        section.to_owned()
    } else {
        format!("{stem}/")
    };
    (format!("/{folder}"), format!("{folder}index.html"))
}

/// Splits `+++` front matter from the body and parses it. `display_path` is used in messages.
pub fn parse_page(
    display_path: &Path,
    source: &SourceFile,
    text: &str,
) -> Result<PageMeta, Diagnostic> {
    let diagnostic = |line: usize, message: String| Diagnostic {
        file: display_path.to_owned(),
        line,
        kind: DiagnosticKind::FrontMatter { message },
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("+++\n")
        .or_else(|| text.strip_prefix("+++\r\n"))
    else {
        return Err(diagnostic(
            1,
            "missing front matter: the file must start with a +++ line".to_owned(),
        ));
    };
    let mut offset = 0;
    let mut end = None;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "+++" {
            end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((front_end, body_start)) = end else {
        return Err(diagnostic(
            1,
            "front matter is not closed by a +++ line".to_owned(),
        ));
    };
    let front_text = &rest[..front_end];
    let front: FrontMatter = toml::from_str(front_text).map_err(|err| {
        // The front matter starts on line 2 of the file.
        let line = err
            .span()
            .map_or(2, |span| 2 + front_text[..span.start].matches('\n').count());
        diagnostic(line, err.message().trim().to_owned())
    })?;
    if front.title.trim().is_empty() {
        return Err(diagnostic(2, "title is empty".to_owned()));
    }
    if front.description.trim().is_empty() {
        return Err(diagnostic(2, "description is empty".to_owned()));
    }
    for alias in &front.aliases {
        if !alias.starts_with('/') {
            return Err(diagnostic(
                2,
                format!("alias {alias:?} must be a site path starting with /"),
            ));
        }
    }
    let body_line = 3 + front_text.matches('\n').count();
    let (url, output) = url_for(&source.rel_path);
    let section = match source.rel_path.rfind('/') {
        Some(slash) => source.rel_path[..slash].to_owned(),
        None => String::new(),
    };
    let is_index = source.rel_path == "_index.md" || source.rel_path.ends_with("/_index.md");
    // The body itself is not kept: `body_of` reads it again when the page is rendered.
    let _ = body_start;
    Ok(PageMeta {
        rel_path: source.rel_path.clone(),
        url,
        output,
        section,
        is_index,
        front,
        body_line,
        source_hash: *blake3::hash(text.as_bytes()).as_bytes(),
        mtime_ns: source.mtime_ns,
        size: source.size,
        lastmod: String::new(),
    })
}

/// The Markdown body of a page's source text (everything after the closing `+++`).
pub fn body_of(text: &str) -> &str {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("+++\n")
        .or_else(|| text.strip_prefix("+++\r\n"))
    else {
        return text;
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end() == "+++" {
            return &rest[offset..];
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(rel_path: &str) -> SourceFile {
        SourceFile {
            rel_path: rel_path.to_owned(),
            mtime_ns: 0,
            size: 0,
        }
    }

    #[test]
    fn urls_are_pretty() {
        assert_eq!(url_for("_index.md"), ("/".into(), "index.html".into()));
        assert_eq!(
            url_for("docs/_index.md"),
            ("/docs/".into(), "docs/index.html".into())
        );
        assert_eq!(
            url_for("docs/a.md"),
            ("/docs/a/".into(), "docs/a/index.html".into())
        );
        assert_eq!(url_for("404.md"), ("/404.html".into(), "404.html".into()));
    }

    #[test]
    fn front_matter_parses_and_reports_lines() {
        let text = "+++\ntitle = \"A\"\ndescription = \"B\"\nweight = 3\n+++\n# Body\n";
        let page = parse_page(Path::new("a.md"), &source("docs/a.md"), text).unwrap();
        assert_eq!(page.front.weight, 3);
        assert_eq!(page.body_line, 6);
        assert_eq!(body_of(text), "# Body\n");
        assert_eq!(page.section, "docs");

        let bad = "+++\ntitle = \"A\"\ndescription = \"B\"\nweight = \"x\n+++\n";
        let err = parse_page(Path::new("a.md"), &source("a.md"), bad).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.to_string().starts_with("a.md:4: bad front matter"));

        let unknown = "+++\ntitle = \"A\"\ndescription = \"B\"\ntitel = 1\n+++\n";
        let err = parse_page(Path::new("a.md"), &source("a.md"), unknown).unwrap_err();
        assert!(err.to_string().contains("titel"), "{err}");

        let err = parse_page(Path::new("a.md"), &source("a.md"), "# no front\n").unwrap_err();
        assert!(err.to_string().contains("missing front matter"));
    }
}
