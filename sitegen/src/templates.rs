//! Tera templates from the source folder's `templates/`.

use std::path::Path;

use crate::error::{Error, Result};

/// Loads every `*.html` template under `dir`. Returns the engine and the bytes of all templates
/// (sorted by name) for the incremental build's global hash.
pub fn load(dir: &Path) -> Result<(tera::Tera, Vec<(String, String)>)> {
    let mut sources = Vec::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((folder, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&folder).map_err(|err| Error::io(&folder, err))? {
            let entry = entry.map_err(|err| Error::io(&folder, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() {
                stack.push((path, format!("{prefix}{name}/")));
            } else if name.ends_with(".html") {
                let text = std::fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
                sources.push((format!("{prefix}{name}"), text));
            }
        }
    }
    sources.sort();
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![".html"]);
    // Tera's default escaping also turns `/` into `&#x2F;`; URLs read better without that and
    // `/` needs no escaping in HTML text or quoted attributes.
    tera.set_escape_fn(escape_html);
    tera.add_raw_templates(sources.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|err| Error::Template {
            template: dir.display().to_string(),
            page: "(loading)".to_owned(),
            message: chain(&err),
        })?;
    Ok((tera, sources))
}

fn escape_html(text: &str) -> String {
    let mut out = crate::highlight::escape(text);
    if out.contains('\'') {
        out = out.replace('\'', "&#39;");
    }
    out
}

/// A Tera error with all its causes, on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Renders `template` for `page` into `out`.
pub fn render_to(
    tera: &tera::Tera,
    templates_dir: &Path,
    template: &str,
    page: &str,
    context: &tera::Context,
    out: &mut Vec<u8>,
) -> Result<()> {
    tera.render_to(template, context, out)
        .map_err(|err| Error::Template {
            template: templates_dir.join(template).display().to_string(),
            page: page.to_owned(),
            message: chain(&err),
        })
}
