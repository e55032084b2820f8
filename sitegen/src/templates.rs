//! Tera templates from the source folder's `templates/`, and the `partial_cached` function
//! they may call.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Templates' names and texts, sorted by name.
pub type Sources = Vec<(String, String)>;

/// Loads every `*.html` template under `dir`. Returns the engine and the bytes of all templates
/// (sorted by name) for the incremental build's global hash.
pub fn load(dir: &Path) -> Result<(Arc<tera::Tera>, Sources)> {
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
    tera.register_function("partial_cached", PartialCached::default());
    tera.add_raw_templates(sources.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|err| Error::Template {
            template: dir.display().to_string(),
            page: "(loading)".to_owned(),
            message: chain(&err),
        })?;
    Ok((Arc::new(tera), sources))
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

/// Renders `template` for `page` into `out`. While it renders, `partial_cached` calls on this
/// thread render their partials with `context` (Tera gives functions no context of their
/// own).
pub fn render_to(
    tera: &Arc<tera::Tera>,
    templates_dir: &Path,
    template: &str,
    page: &str,
    context: tera::Context,
    out: &mut Vec<u8>,
) -> Result<()> {
    let context = Rc::new(context);
    let _current = CurrentPage::enter(tera, &context);
    tera.render_to(template, &context, out)
        .map_err(|err| Error::Template {
            template: templates_dir.join(template).display().to_string(),
            page: page.to_owned(),
            message: chain(&err),
        })
}

/// How many bytes of rendered partials a build's `partial_cached` keeps at most. Past that it
/// renders every call (the same output, more slowly), so a key per page cannot fill memory.
const PARTIAL_CACHE_BYTES: usize = 8 << 20;

/// Nested `partial_cached` calls allowed on one thread (a partial that calls itself fails
/// instead of overflowing the stack).
const PARTIAL_DEPTH: usize = 8;

/// The page a thread is rendering: what `partial_cached` renders a partial with.
struct Current {
    tera: Arc<tera::Tera>,
    context: Rc<tera::Context>,
    depth: usize,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Sets the thread's current page for the duration of one render (cleared on drop, also when
/// the render fails).
struct CurrentPage;

impl CurrentPage {
    fn enter(tera: &Arc<tera::Tera>, context: &Rc<tera::Context>) -> CurrentPage {
        CURRENT.with(|current| {
            *current.borrow_mut() = Some(Current {
                tera: Arc::clone(tera),
                context: Rc::clone(context),
                depth: 0,
            });
        });
        CurrentPage
    }
}

impl Drop for CurrentPage {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().take());
    }
}

/// `{{ partial_cached(name="sidebar.html", key=page.section) }}`: the output of template
/// `name`, rendered once per build and `key` with the context of the first page that asks, and
/// reused as it is by every other page with the same key (Hugo's `partialCached`). The key
/// must determine the output: a partial that shows something of the page itself (which entry
/// is current) must not be cached, or pages would show another page's. Its output is not
/// escaped again (it is HTML the templates made). Without `key`, one rendering serves the
/// whole build.
struct PartialCached {
    cache: Mutex<PartialCache>,
    /// [`PARTIAL_CACHE_BYTES`] (smaller in tests).
    limit: usize,
}

impl Default for PartialCached {
    fn default() -> Self {
        PartialCached {
            cache: Mutex::default(),
            limit: PARTIAL_CACHE_BYTES,
        }
    }
}

#[derive(Default)]
struct PartialCache {
    outputs: HashMap<(String, String), String>,
    bytes: usize,
}

impl tera::Function for PartialCached {
    fn call(&self, args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
        let name = match args.get("name") {
            Some(tera::Value::String(name)) => name.clone(),
            _ => return Err("partial_cached needs name=\"<template>.html\"".into()),
        };
        if let Some(unknown) = args.keys().find(|arg| *arg != "name" && *arg != "key") {
            return Err(format!("partial_cached takes name and key, not {unknown}").into());
        }
        let key = match args.get("key") {
            None => String::new(),
            Some(tera::Value::String(key)) => key.clone(),
            Some(other) => other.to_string(),
        };
        let entry = (name, key);
        if let Ok(cache) = self.cache.lock()
            && let Some(html) = cache.outputs.get(&entry)
        {
            return Ok(tera::Value::String(html.clone()));
        }
        let html = render_partial(&entry.0)?;
        if let Ok(mut cache) = self.cache.lock() {
            let size = entry.0.len() + entry.1.len() + html.len();
            if cache.bytes + size <= self.limit {
                cache.bytes += size;
                cache.outputs.insert(entry, html.clone());
            }
        }
        Ok(tera::Value::String(html))
    }

    fn is_safe(&self) -> bool {
        true
    }
}

/// Renders template `name` with the context of the page this thread is rendering.
fn render_partial(name: &str) -> tera::Result<String> {
    let (tera, context, depth) = CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let current = current
            .as_mut()
            .ok_or("partial_cached is only available while sitegen renders a page")?;
        current.depth += 1;
        Ok::<_, tera::Error>((
            Arc::clone(&current.tera),
            Rc::clone(&current.context),
            current.depth,
        ))
    })?;
    let rendered = if depth > PARTIAL_DEPTH {
        Err(tera::Error::msg(format!(
            "partial_cached nested more than {PARTIAL_DEPTH} deep (does {name} call itself?)"
        )))
    } else {
        tera.render(name, &context)
    };
    CURRENT.with(|current| {
        if let Some(current) = current.borrow_mut().as_mut() {
            current.depth -= 1;
        }
    });
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Templates with `partial_cached` whose cache keeps at most `limit` bytes.
    fn engine(templates: &[(&str, &str)], limit: usize) -> Arc<tera::Tera> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![".html"]);
        tera.register_function(
            "partial_cached",
            PartialCached {
                cache: Mutex::default(),
                limit,
            },
        );
        tera.add_raw_templates(templates.iter().copied()).unwrap();
        Arc::new(tera)
    }

    fn render(tera: &Arc<tera::Tera>, template: &str, title: &str, key: &str) -> Result<String> {
        let mut context = tera::Context::new();
        context.insert("title", title);
        context.insert("key", key);
        let mut out = Vec::new();
        render_to(tera, Path::new("t"), template, "p.md", context, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    const PAGE: (&str, &str) = (
        "page.html",
        "[{{ partial_cached(name=\"part.html\", key=key) }}]",
    );
    const PART: (&str, &str) = ("part.html", "<b>{{ title }}</b>");

    #[test]
    fn a_partial_is_rendered_once_per_key_with_the_first_page_s_context() {
        let tera = engine(&[PAGE, PART], PARTIAL_CACHE_BYTES);
        assert_eq!(render(&tera, "page.html", "A", "x").unwrap(), "[<b>A</b>]");
        // Same key: the first rendering, unescaped, whatever this page's title.
        assert_eq!(render(&tera, "page.html", "B", "x").unwrap(), "[<b>A</b>]");
        assert_eq!(
            render(&tera, "page.html", "C&D", "y").unwrap(),
            "[<b>C&amp;D</b>]"
        );
        // No partial is current once a render is over.
        assert!(CURRENT.with(|current| current.borrow().is_none()));
    }

    #[test]
    fn past_the_cache_limit_partials_are_rendered_every_time() {
        // "x" + "part.html" + "<b>A</b>" = 1 + 9 + 8 bytes: kept at a limit of 18, not at 17.
        let tera = engine(&[PAGE, PART], 18);
        render(&tera, "page.html", "A", "x").unwrap();
        assert_eq!(render(&tera, "page.html", "B", "x").unwrap(), "[<b>A</b>]");
        let tera = engine(&[PAGE, PART], 17);
        render(&tera, "page.html", "A", "x").unwrap();
        assert_eq!(render(&tera, "page.html", "B", "x").unwrap(), "[<b>B</b>]");
    }

    #[test]
    fn bad_calls_are_template_errors() {
        let tera = engine(
            &[
                ("no_name.html", "{{ partial_cached(key=1) }}"),
                (
                    "extra.html",
                    "{{ partial_cached(name=\"part.html\", with=1) }}",
                ),
                ("missing.html", "{{ partial_cached(name=\"nope.html\") }}"),
                ("loop.html", "{{ partial_cached(name=\"loop.html\") }}"),
                PART,
            ],
            PARTIAL_CACHE_BYTES,
        );
        for (template, expected) in [
            ("no_name.html", "needs name"),
            ("extra.html", "not with"),
            ("missing.html", "nope.html"),
            ("loop.html", "nested more than 8 deep"),
        ] {
            let message = match render(&tera, template, "A", "x") {
                Err(Error::Template { message, .. }) => message,
                other => panic!("{template}: {other:?}"),
            };
            assert!(message.contains(expected), "{template}: {message}");
        }
        assert!(CURRENT.with(|current| current.borrow().is_none()));
    }
}
