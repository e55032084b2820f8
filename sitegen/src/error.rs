//! The library's error type. The binary wraps it in `anyhow` with context.
//!
//! Content problems (bad front matter, broken links, missing anchors) are collected as
//! [`Diagnostic`]s so one build reports all of them at once, each with file, line and target.

use std::fmt;
use std::path::PathBuf;

/// One problem found in the sources, located at a file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Path of the source file, as given to the build (e.g. `docs-src/content/docs/a.md`).
    pub file: PathBuf,
    /// 1-based line number; 0 when the problem concerns the whole file.
    pub line: usize,
    pub kind: DiagnosticKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// The front matter is missing or does not parse.
    FrontMatter { message: String },
    /// A link points at a URL that no page, alias or static file provides.
    BrokenLink { target: String },
    /// A link's page exists but has no heading or element with that id.
    MissingAnchor { target: String, anchor: String },
    /// An image has no alt text.
    MissingAlt { target: String },
    /// Two sources would write the same URL.
    DuplicateUrl { url: String, other: PathBuf },
    /// A folder of pages has no `_index.md`.
    MissingSectionIndex { section: String },
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": ")?;
        match &self.kind {
            DiagnosticKind::FrontMatter { message } => write!(f, "bad front matter: {message}"),
            DiagnosticKind::BrokenLink { target } => {
                write!(
                    f,
                    "broken link: {target} (no page, alias or static file has this URL)"
                )
            }
            DiagnosticKind::MissingAnchor { target, anchor } => {
                write!(
                    f,
                    "missing anchor: {target} (the page has no heading or id \"{anchor}\")"
                )
            }
            DiagnosticKind::MissingAlt { target } => {
                write!(f, "image without alt text: {target}")
            }
            DiagnosticKind::DuplicateUrl { url, other } => {
                write!(f, "URL {url} is also produced by {}", other.display())
            }
            DiagnosticKind::MissingSectionIndex { section } => {
                write!(f, "folder {section}/ has pages but no _index.md")
            }
        }
    }
}

/// Everything that can stop a build, check, serve or deploy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{} problem(s) in the sources:\n{}", .0.len(), join_diagnostics(.0))]
    Check(Vec<Diagnostic>),
    #[error("template {template} (rendering {page}): {message}")]
    Template {
        template: String,
        page: String,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

fn join_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(|d| format!("  {d}")).collect();
    lines.join("\n")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
