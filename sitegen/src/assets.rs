//! Static files. Files under `static/assets/` get content-hashed names
//! (`assets/style.css` → `assets/style.1a2b3c4d5e.css`) so a CDN can cache them forever;
//! everything else in `static/` is copied under its own name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// One file to write into the output folder.
#[derive(Debug, Clone)]
pub struct StaticFile {
    /// Output path relative to the output folder.
    pub output: String,
    pub bytes: Vec<u8>,
}

/// The static files and the map from logical name (`style.css`) to URL.
#[derive(Debug, Default)]
pub struct Assets {
    pub files: Vec<StaticFile>,
    /// `style.css` → `/assets/style.1a2b3c4d5e.css`, for templates.
    pub urls: BTreeMap<String, String>,
}

/// Whether an output path is a content-hashed asset (served immutable).
pub fn is_hashed_asset(output: &str) -> bool {
    let Some(name) = output.strip_prefix("assets/") else {
        return false;
    };
    let parts: Vec<&str> = name.rsplitn(3, '.').collect();
    parts.len() == 3 && parts[1].len() == 10 && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
}

fn hashed_name(name: &str, bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes).to_hex();
    let short = &hash.as_str()[..10];
    match name.rfind('.') {
        Some(dot) => format!("{}.{short}{}", &name[..dot], &name[dot..]),
        None => format!("{name}.{short}"),
    }
}

pub fn load(static_dir: &Path) -> Result<Assets> {
    let mut assets = Assets::default();
    if !static_dir.exists() {
        return Ok(assets);
    }
    let mut stack = vec![(static_dir.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|err| Error::io(&dir, err))? {
            let entry = entry.map_err(|err| Error::io(&dir, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = format!("{prefix}{name}");
            if path.is_dir() {
                stack.push((path, format!("{rel}/")));
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|err| Error::io(&path, err))?;
            let output = if let Some(asset) = rel.strip_prefix("assets/") {
                let output = format!("assets/{}", hashed_name(asset, &bytes));
                assets.urls.insert(asset.to_owned(), format!("/{output}"));
                output
            } else {
                rel
            };
            assets.files.push(StaticFile { output, bytes });
        }
    }
    assets.files.sort_by(|a, b| a.output.cmp(&b.output));
    Ok(assets)
}

/// The media type of an output file, by extension.
pub fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit('.').next().unwrap_or("");
    match extension {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names() {
        let name = hashed_name("style.css", b"body{}");
        assert!(name.starts_with("style.") && name.ends_with(".css"));
        assert!(is_hashed_asset(&format!("assets/{name}")));
        assert!(!is_hashed_asset("assets/style.css"));
        assert!(!is_hashed_asset("docs/index.html"));
        assert_eq!(content_type("a/index.html"), "text/html; charset=utf-8");
    }
}
