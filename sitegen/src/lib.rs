//! `sitegen`: Cairn's static site generator (DESIGN.md section 8).
//!
//! It reads a source folder (`site.toml`, `content/` Markdown with TOML front matter,
//! `templates/` Tera templates, `static/` files) and writes a folder that S3 and CloudFront can
//! serve as it is: pretty URLs, content-hashed assets, sitemap, robots.txt, alias redirects,
//! a sharded search index and a JSON twin of each page. Every page is complete without
//! JavaScript. Builds are parallel and incremental (see [`manifest`]).
//!
//! Invariant: the build output never depends on anything but the source folder, the
//! generator's version and the files' dates, so an incremental build equals a clean one byte
//! for byte.

pub mod assets;
pub mod build;
pub mod config;
pub mod content;
pub mod deploy;
pub mod error;
pub mod fasthash;
pub mod highlight;
pub mod invalidation;
pub mod lastmod;
pub mod links;
pub mod manifest;
pub mod markdown;
pub mod nav;
pub mod render;
pub mod search;
pub mod seo;
pub mod serve;
pub mod templates;

pub use build::{BuildOptions, BuildReport, build};
pub use error::{Diagnostic, DiagnosticKind, Error, Result};
