//! The build: load, render what changed, check links, write.
//!
//! Phases: (1) load config, templates and static files and hash them; (2) list the sources,
//! reusing the previous manifest's metadata for files whose size and mtime are unchanged;
//! (3) compute each page's navigation key and render key; (4) scan the Markdown of the pages
//! whose key changed, in parallel (headings, anchors, links: no HTML); (5) check the links
//! that may have broken; (6) build the records and site-wide files, then render each page
//! (Markdown with highlighting, navigation context, templates) and write it, in parallel,
//! one page at a time per worker, so the rendered site is never held in memory. Nothing is
//! written before the checks pass.
//!
//! When no page appeared or disappeared and no page changed what other pages or the
//! site-wide files take from it (title, description, weight, aliases, draft, noindex: see
//! [`same_navigation`]), the navigation keys, URL checks, duplicate warnings and redirect
//! pages are those of the previous build, and only the pages that changed are looked at
//! more closely. Anything else takes the general path.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::assets;
use crate::config::SiteConfig;
use crate::content::{self, PageMeta};
use crate::error::{Diagnostic, DiagnosticKind, Error, Result};
use crate::fasthash::FastMap as HashMap;
use crate::lastmod;
use crate::links::{Anchors, LinkTargets};
use crate::manifest::{MANIFEST_DIR, Manifest, ManifestOut, PageRecord, RecordOut};
use crate::markdown::{self, Heading, Rendered};
use crate::nav::{NavKeys, SiteTree};
use crate::render;
use crate::search;
use crate::seo;

/// What to build, from where, to where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub source: PathBuf,
    pub out: PathBuf,
    /// Include pages marked `draft = true`.
    pub drafts: bool,
    /// False for `sitegen check`: everything is rendered and checked, nothing is written.
    pub write: bool,
}

/// What a build did.
#[derive(Debug, Default)]
pub struct BuildReport {
    pub pages: usize,
    /// Pages whose HTML was rendered (all of them in a full build).
    pub rendered: Vec<String>,
    pub written: usize,
    pub removed: usize,
    pub full: bool,
    pub warnings: Vec<String>,
    pub millis: u128,
}

/// A site-wide file to write: path relative to the output folder, its bytes, and whether to
/// leave it alone when its bytes are already there.
type OutputFile = ((String, Vec<u8>), bool);

/// A source's metadata, and its text when it had to be read.
type Loaded<'p> = (Meta<'p>, Option<String>);

/// A page's metadata: the previous build's, or read now. What is read is boxed, so that the
/// lists of all pages stay small: in a one-page rebuild nearly every page is borrowed, and
/// copying or touching 10,000 inline records showed in its profile.
enum Meta<'p> {
    Stored(&'p PageMeta),
    Read(Box<PageMeta>),
}

impl std::ops::Deref for Meta<'_> {
    type Target = PageMeta;
    fn deref(&self) -> &PageMeta {
        match self {
            Meta::Stored(meta) => meta,
            Meta::Read(meta) => meta,
        }
    }
}

impl Meta<'_> {
    fn to_mut(&mut self) -> &mut PageMeta {
        if let Meta::Stored(meta) = self {
            *self = Meta::Read(Box::new((*meta).clone()));
        }
        match self {
            Meta::Read(meta) => meta,
            Meta::Stored(_) => unreachable!("replaced by a copy above"),
        }
    }
}

/// One page during a build.
struct Work<'p> {
    meta: &'p PageMeta,
    render_key: [u8; 32],
    nav_key: [u8; 32],
    /// What the scan of a page to render found in its body (its headings, anchors and links;
    /// no HTML), or `None` when the previous build's output is still valid. Boxed: most pages
    /// of a rebuild have none, and this list has an entry per page.
    rendered: Option<Box<Rendered>>,
    /// The previous build's record of this page, if it had one.
    previous: Option<&'p PageRecord>,
    /// `previous`, when its output is still valid (same render key, not a full build).
    record: Option<&'p PageRecord>,
}

/// The render key of a record that must be rendered next time (no hash is all zeros).
const UNRENDERED: [u8; 32] = [0; 32];

/// Whether two versions of a page agree on everything that other pages and the site-wide
/// outputs take from it: its path (URL, output, section), title, description, weight,
/// aliases, draft and noindex flags. These feed the other pages' navigation, the link targets
/// (with anchors, compared separately), the URL uniqueness check, redirect pages, sitemap
/// entries and duplicate warnings. Everything else a page has (body, template, `toc`,
/// `updated`, date) shows on that page alone or is compared on its own.
fn same_navigation(old: &PageMeta, new: &PageMeta) -> bool {
    std::ptr::eq(old, new)
        || (old.rel_path == new.rel_path
            && old.front.title == new.front.title
            && old.front.description == new.front.description
            && old.front.weight == new.front.weight
            && old.front.aliases == new.front.aliases
            && old.front.draft == new.front.draft
            && old.front.noindex == new.front.noindex)
}

/// What a page's HTML is rendered from: everything global, its source, its date and its
/// navigation context.
fn render_key(global: &str, meta: &PageMeta, nav_key: &[u8; 32]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(global.as_bytes());
    hasher.update(&meta.source_hash);
    hasher.update(meta.lastmod.as_bytes());
    hasher.update(nav_key);
    *hasher.finalize().as_bytes()
}

/// A page's own output files: its HTML and, for `index.html` pages, its JSON twin.
fn page_outputs(meta: &PageMeta) -> impl Iterator<Item = String> + '_ {
    std::iter::once(meta.output.clone()).chain(render::twin_output(&meta.output))
}

fn display_path(options: &BuildOptions, rel_path: &str) -> PathBuf {
    options.source.join("content").join(rel_path)
}

fn global_hash(
    config_text: &str,
    templates: &[(String, String)],
    assets: &assets::Assets,
    drafts: bool,
) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(&crate::highlight::HIGHLIGHT_VERSION.to_le_bytes());
    hasher.update(&[u8::from(drafts)]);
    hasher.update(config_text.as_bytes());
    for (name, text) in templates {
        hasher.update(name.as_bytes());
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    for file in &assets.files {
        hasher.update(file.output.as_bytes());
        hasher.update(&(file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    hasher.finalize().to_hex().to_string()
}

/// Prints how long each phase took when `SITEGEN_TIMINGS` is set (for profiling builds).
struct PhaseTimer {
    enabled: bool,
    last: Instant,
}

impl PhaseTimer {
    fn new() -> Self {
        PhaseTimer {
            enabled: std::env::var_os("SITEGEN_TIMINGS").is_some(),
            last: Instant::now(),
        }
    }
    fn lap(&mut self, phase: &str) {
        if self.enabled {
            eprintln!(
                "  {phase}: {:.1} ms",
                self.last.elapsed().as_secs_f64() * 1000.0
            );
        }
        self.last = Instant::now();
    }
}

pub fn build(options: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let mut timer = PhaseTimer::new();
    let mut report = BuildReport::default();
    let config_path = options.source.join("site.toml");
    let config_text =
        std::fs::read_to_string(&config_path).map_err(|err| Error::io(&config_path, err))?;
    let config = SiteConfig::parse(&config_path, &config_text)?;
    let templates_dir = options.source.join("templates");
    let (tera, template_sources) = crate::templates::load(&templates_dir)?;
    let assets = assets::load(&options.source.join("static"))?;
    let global = global_hash(&config_text, &template_sources, &assets, options.drafts);

    timer.lap("setup");
    // Phase 2: the previous build's state and the list of sources, side by side (the one
    // mostly decodes, the other mostly waits for `stat`).
    let content_dir = options.source.join("content");
    let (previous, sources) = rayon::join(
        || {
            if options.write {
                Manifest::load(&options.out)
            } else {
                None
            }
        },
        || content::list_sources(&content_dir),
    );
    let sources = sources?;
    let previous_pages: HashMap<&str, &PageRecord> = previous
        .iter()
        .flat_map(|m| m.pages())
        .map(|record| (record.meta.rel_path.as_str(), record))
        .collect();
    report.full = previous.as_ref().is_none_or(|m| m.global_hash != global);
    let full = report.full;

    timer.lap("state and source list");
    // Metadata of every source, reading only files that changed.
    // Metadata of unchanged files is borrowed from the previous manifest, not copied.
    let loaded: Vec<Result<Loaded, Diagnostic>> = sources
        .par_iter()
        .map(|source| {
            if let Some(record) = previous_pages.get(source.rel_path.as_str())
                && record.meta.mtime_ns == source.mtime_ns
                && record.meta.size == source.size
            {
                return Ok((Meta::Stored(&record.meta), None));
            }
            let file = display_path(options, &source.rel_path);
            let text =
                std::fs::read_to_string(content_dir.join(&source.rel_path)).map_err(|err| {
                    Diagnostic {
                        file: file.clone(),
                        line: 0,
                        kind: DiagnosticKind::FrontMatter {
                            message: format!("cannot read: {err}"),
                        },
                    }
                })?;
            let meta = content::parse_page(&file, source, &text)?;
            Ok((Meta::Read(Box::new(meta)), Some(text)))
        })
        .collect();
    let mut diagnostics = Vec::new();
    let mut pages: Vec<Meta> = Vec::with_capacity(loaded.len());
    let mut texts: HashMap<String, String> = HashMap::default();
    for item in loaded {
        match item {
            Ok((meta, text)) => {
                if meta.front.draft && !options.drafts {
                    continue;
                }
                if let Some(text) = text {
                    texts.insert(meta.rel_path.clone(), text);
                }
                pages.push(meta);
            }
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    let git_dates = lastmod::git_dates(&content_dir);
    for page in &mut pages {
        let lastmod = match (&page.front.updated, git_dates.get(&page.rel_path)) {
            (Some(updated), _) => Cow::Borrowed(updated),
            (None, Some(date)) => Cow::Borrowed(date),
            // Most pages of a rebuild keep their date: compared without formatting a string.
            (None, None) if lastmod::is_unix(&page.lastmod, page.mtime_ns) => continue,
            (None, None) => Cow::Owned(lastmod::format_unix(page.mtime_ns)),
        };
        if page.lastmod != *lastmod {
            page.to_mut().lastmod = lastmod.into_owned();
        }
    }
    report.pages = pages.len();

    // The previous build's navigation keys, when they still hold: the same pages, none of
    // them changed in what the others show of it. (The previous build passed its checks, so
    // the URL and section checks below would pass again.)
    let stored_nav_keys: Option<Vec<[u8; 32]>> = match &previous {
        Some(previous) if !full && previous.page_count() == pages.len() => pages
            .iter()
            .map(|page| {
                previous_pages
                    .get(page.rel_path.as_str())
                    .filter(|record| same_navigation(&record.meta, page))
                    .map(|record| record.nav_key)
            })
            .collect(),
        _ => None,
    };
    let navigation_unchanged = stored_nav_keys.is_some();

    // Unique URLs: pages and aliases.
    if !navigation_unchanged {
        let mut claimed: HashMap<Cow<str>, &str> = HashMap::default();
        for page in &pages {
            let outputs = std::iter::once(Cow::Borrowed(page.output.as_str())).chain(
                page.front
                    .aliases
                    .iter()
                    .map(|a| Cow::Owned(seo::alias_output(a))),
            );
            for output in outputs {
                if let Some(other) = claimed.insert(output.clone(), &page.rel_path) {
                    diagnostics.push(Diagnostic {
                        file: display_path(options, &page.rel_path),
                        line: 0,
                        kind: DiagnosticKind::DuplicateUrl {
                            url: format!("/{output}"),
                            other: display_path(options, other),
                        },
                    });
                }
            }
        }
    }

    timer.lap("sources");
    // Phase 3: navigation and render keys.
    let page_list: Vec<&PageMeta> = pages.iter().map(|page| &**page).collect();
    let mut tree: Option<SiteTree> = None;
    let nav_keys: Vec<[u8; 32]> = match stored_nav_keys {
        Some(keys) => keys,
        None => {
            let site = SiteTree::new(&page_list, &config.title);
            for (section, index) in site.sections_without_index() {
                diagnostics.push(Diagnostic {
                    file: display_path(options, &pages[index].rel_path),
                    line: 0,
                    kind: DiagnosticKind::MissingSectionIndex {
                        section: section.to_owned(),
                    },
                });
            }
            let keys = {
                let keys = NavKeys::new(&site);
                (0..page_list.len())
                    .into_par_iter()
                    .map(|index| *keys.context_key(index).as_bytes())
                    .collect()
            };
            tree = Some(site);
            keys
        }
    };
    let mut work: Vec<Work> = page_list
        .par_iter()
        .zip(nav_keys.par_iter())
        .map(|(&meta, nav_key)| {
            let previous = previous_pages.get(meta.rel_path.as_str()).copied();
            let render_key = match previous {
                // The same metadata (same source and date) and the same navigation.
                Some(record)
                    if navigation_unchanged
                        && std::ptr::eq(&record.meta, meta)
                        && record.render_key != UNRENDERED =>
                {
                    record.render_key
                }
                _ => render_key(&global, meta, nav_key),
            };
            let record = previous.filter(|record| record.render_key == render_key && !full);
            Work {
                meta,
                render_key,
                nav_key: *nav_key,
                rendered: None,
                previous,
                record,
            }
        })
        .collect();
    drop(nav_keys);
    // Full navigation contexts are built in phase 6, one page at a time, from this tree.
    if work.iter().any(|w| w.record.is_none()) && tree.is_none() {
        tree = Some(SiteTree::new(&page_list, &config.title));
    }

    timer.lap("navigation");
    // Phase 4: a scan of the Markdown of the pages that need rendering (what the link checks
    // and the manifest need; the HTML is rendered in phase 6, as each page is written). The
    // texts read in phase 2 move to their pages, and are freed once rendered.
    let mut page_texts: Vec<Option<String>> = work
        .iter()
        .map(|w| texts.remove(&w.meta.rel_path))
        .collect();
    drop(texts);
    let read_failures: Vec<Diagnostic> = work
        .par_iter_mut()
        .zip(page_texts.par_iter_mut())
        .filter(|(w, _)| w.record.is_none())
        .filter_map(|(w, text)| {
            let text = match text {
                Some(text) => text,
                None => match std::fs::read_to_string(content_dir.join(&w.meta.rel_path)) {
                    Ok(read) => text.insert(read),
                    Err(err) => {
                        return Some(Diagnostic {
                            file: display_path(options, &w.meta.rel_path),
                            line: 0,
                            kind: DiagnosticKind::FrontMatter {
                                message: format!("cannot read: {err}"),
                            },
                        });
                    }
                },
            };
            w.rendered = Some(Box::new(markdown::scan(
                content::body_of(text),
                w.meta.body_line,
                &w.meta.rel_path,
                &w.meta.url,
            )));
            None
        })
        .collect();
    diagnostics.extend(read_failures);

    timer.lap("markdown scan");
    // Phase 5: links.
    let mut targets = LinkTargets::default();
    for w in &work {
        let anchors = match (&w.rendered, &w.record) {
            (Some(rendered), _) => Anchors::Parsed(&rendered.anchors),
            (None, Some(record)) => Anchors::Stored(record),
            (None, None) => Anchors::Parsed(&[]),
        };
        targets.pages.insert(&w.meta.url, anchors);
        for alias in &w.meta.front.aliases {
            targets.files.insert(alias.clone());
        }
    }
    for file in &assets.files {
        targets.files.insert(format!("/{}", file.output));
    }
    for generated in ["/sitemap.xml", "/robots.txt"] {
        targets.files.insert(generated.to_owned());
    }
    // When no page appeared, disappeared, or changed its anchors or aliases, the links of
    // pages that were not re-rendered still point where they did: only new bodies need checks.
    let anchors_changed = |w: &Work| match (&w.rendered, w.previous) {
        (Some(rendered), Some(previous)) => rendered.anchors != previous.anchors(),
        _ => false,
    };
    let targets_changed = if navigation_unchanged {
        work.iter().any(anchors_changed)
    } else {
        full || previous
            .as_ref()
            .is_none_or(|m| m.page_count() != work.len())
            || work.iter().any(|w| match w.previous {
                None => true,
                Some(previous) => {
                    previous.meta.front.aliases != w.meta.front.aliases || anchors_changed(w)
                }
            })
    };
    for w in &work {
        if !targets_changed && w.rendered.is_none() {
            continue;
        }
        let file = display_path(options, &w.meta.rel_path);
        let links = match (&w.rendered, &w.record) {
            (Some(rendered), _) => Cow::Borrowed(&rendered.links),
            (None, Some(record)) => Cow::Owned(record.links()),
            (None, None) => continue,
        };
        targets.check(&file, &w.meta.url, &links, &mut diagnostics);
        if let Some(rendered) = &w.rendered {
            for (target, line) in &rendered.images_without_alt {
                diagnostics.push(Diagnostic {
                    file: file.clone(),
                    line: *line,
                    kind: DiagnosticKind::MissingAlt {
                        target: target.clone(),
                    },
                });
            }
        }
    }
    // Link checks of unchanged pages read the previous build's bodies on demand.
    check_not_damaged(previous.as_ref(), &options.out)?;
    if !diagnostics.is_empty() {
        diagnostics.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(Error::Check(diagnostics));
    }
    let page_refs: Vec<&PageMeta> = work.iter().map(|w| w.meta).collect();
    // Duplicates are among titles and descriptions of indexable pages: unchanged with the
    // navigation.
    report.warnings = match &previous {
        Some(previous) if navigation_unchanged => previous.warnings.clone(),
        _ => seo::duplicate_warnings(&page_refs),
    };

    timer.lap("links");
    // Phase 6: the records and the site-wide files (from the bodies' headings, anchors and
    // links), then the pages' templates, each page written as soon as it is rendered.
    report.rendered = work
        .iter()
        .filter(|w| w.rendered.is_some())
        .map(|w| w.meta.rel_path.clone())
        .collect();
    // Site-wide files. Those that cannot have changed are neither rebuilt nor rewritten, but
    // are listed as outputs all the same.
    let mut aggregate: Vec<(String, Vec<u8>)> = Vec::new();
    let mut extra_outputs: Vec<String> = vec!["sitemap.xml".to_owned(), "robots.txt".to_owned()];
    // The sitemap lists the indexable pages' URLs and dates.
    let dates_unchanged = navigation_unchanged
        && work.iter().all(|w| {
            w.previous.is_some_and(|previous| {
                std::ptr::eq(&previous.meta, w.meta) || previous.meta.lastmod == w.meta.lastmod
            })
        });
    if !dates_unchanged {
        aggregate.push((
            "sitemap.xml".to_owned(),
            seo::sitemap(&config, &page_refs).into_bytes(),
        ));
    }
    aggregate.push(("robots.txt".to_owned(), seo::robots(&config).into_bytes()));
    for page in &page_refs {
        for alias in &page.front.aliases {
            let output = seo::alias_output(alias);
            if !navigation_unchanged {
                aggregate.push((
                    output.clone(),
                    seo::redirect_page(&config, page).into_bytes(),
                ));
            }
            extra_outputs.push(output);
        }
    }
    // Records of unchanged pages are borrowed from the previous manifest, not copied.
    let records: Vec<RecordOut> = work
        .iter()
        .map(|w| match (&w.rendered, w.record) {
            (Some(rendered), _) => RecordOut::New(Box::new(PageRecord::new(
                w.meta.clone(),
                w.render_key,
                w.nav_key,
                rendered,
            ))),
            (None, Some(record)) if std::ptr::eq(&record.meta, w.meta) => RecordOut::Same(record),
            (None, Some(record)) if record.meta == *w.meta => RecordOut::Same(record),
            (None, Some(record)) => RecordOut::New(Box::new(record.with_meta(w.meta.clone()))),
            (None, None) => RecordOut::New(Box::new(PageRecord::new(
                // Every page is either rendered or reused; an empty record keeps the
                // manifest well formed should that ever not hold, and forces a render next
                // time.
                w.meta.clone(),
                UNRENDERED,
                w.nav_key,
                &Rendered::default(),
            ))),
        })
        .collect();
    // The index only changes when a title, description, heading or URL does; otherwise the
    // shards on disk are reused without being rebuilt (this matters for one-page rebuilds).
    // With the navigation unchanged, only re-rendered pages can have changed their part.
    let search_unchanged = navigation_unchanged
        && records.iter().zip(&work).all(|(record, w)| {
            matches!(record, RecordOut::Same(_))
                || w.previous
                    .is_some_and(|previous| previous.search_hash == record.search_hash)
        });
    let search_key = match &previous {
        Some(previous) if search_unchanged => previous.search_key.clone(),
        _ => search::key(
            records
                .iter()
                .filter(|r| seo::indexable(&r.meta))
                .map(|r| &r.search_hash),
        ),
    };
    // The index is built now when it may read the previous build's bodies (checked for damage
    // below, before anything is written); in a first build it reads nothing but this build's
    // records and is built beside the pages' rendering instead.
    let mut search_later = false;
    match previous.as_ref() {
        Some(previous) if !full && previous.search_key == search_key => {
            extra_outputs.extend(
                previous
                    .extra_outputs
                    .iter()
                    .filter(|path| search::is_shard(path))
                    .cloned(),
            );
        }
        Some(_) => aggregate.extend(search_files(&records)),
        None => search_later = true,
    }
    for file in &assets.files {
        extra_outputs.push(file.output.clone());
    }

    timer.lap("aggregates");
    let out = &options.out;
    // Whether the output folder was empty or missing: then nothing in it can be stale.
    let mut fresh_out = false;
    if options.write {
        // The search index may have read the previous build's bodies too.
        check_not_damaged(previous.as_ref(), out)?;
        // Writing: the manifest goes first and comes back last, so a build that fails from
        // here on (a template error) is followed by a full one.
        fresh_out = prepare_out_dir(out, previous.is_some())?;
        Manifest::remove(out).map_err(|err| Error::io(out.join(MANIFEST_DIR), err))?;
    }
    // Each page is rendered (Markdown, navigation, templates) and written by one worker, and
    // freed once its files are out: the rendered site is never held whole in memory.
    let renderer = render::Renderer::new(&config, &tera, &templates_dir, &assets.urls);
    let sidebars = crate::nav::SidebarCache::default();
    let mut render_pages = || -> Vec<Result<usize>> {
        match &tree {
            Some(tree) => work
                .par_iter_mut()
                .zip(page_texts.par_iter_mut())
                .enumerate()
                .filter(|(_, (w, _))| w.rendered.is_some())
                .map_init(
                    render::PageBuffers::default,
                    |buffers, (index, (w, text))| {
                        w.rendered = None;
                        let text = text.take().unwrap_or_default();
                        let rendered = render_body(options, full, w.meta, content::body_of(&text));
                        drop(text);
                        let (nav, nav_value) = tree.context_value(index, &sidebars);
                        let input = render::PageInput {
                            meta: w.meta,
                            nav: &nav,
                            nav_value,
                            rendered: Some(&rendered),
                        };
                        let twin = renderer.page(input, buffers)?;
                        if !options.write {
                            return Ok(0);
                        }
                        write_file(out, &w.meta.output, &buffers.html, false)?;
                        if let Some(twin) = twin {
                            write_file(out, &twin, &buffers.twin, false)?;
                            return Ok(2);
                        }
                        Ok(1)
                    },
                )
                .collect(),
            None => Vec::new(),
        }
    };
    let (pages_written, search_aggregate) = if search_later {
        rayon::join(render_pages, || search_files(&records))
    } else {
        (render_pages(), Vec::new())
    };
    aggregate.extend(search_aggregate);
    extra_outputs.extend(
        aggregate
            .iter()
            .filter(|(path, _)| search::is_shard(path))
            .map(|(path, _)| path.clone()),
    );
    extra_outputs.sort_unstable();
    extra_outputs.dedup();
    for written in pages_written {
        report.written += written?;
    }
    timer.lap("templates and pages");
    if !options.write {
        report.millis = started.elapsed().as_millis();
        return Ok(report);
    }
    let mut outputs: Vec<OutputFile> = aggregate.into_iter().map(|file| (file, true)).collect();
    if full {
        for file in &assets.files {
            outputs.push(((file.output.clone(), file.bytes.clone()), false));
        }
    }
    let written: Vec<Result<bool>> = outputs
        .par_iter()
        .map(|((path, bytes), compare)| write_file(out, path, bytes, *compare))
        .collect();
    for result in written {
        if result? {
            report.written += 1;
        }
    }
    timer.lap("write");
    // Stale files: those the previous build wrote and this one did not, or in a first build
    // over an old output folder, anything not produced now. A page's files are stale when
    // the page is gone; another file when it is no longer among the site-wide outputs. Either
    // may have become another page's or file's output, hence the final check.
    let produced = || -> std::collections::HashSet<String> {
        page_refs
            .iter()
            .flat_map(|page| page_outputs(page))
            .chain(extra_outputs.iter().cloned())
            .collect()
    };
    let stale: Vec<String> = match &previous {
        Some(previous) => {
            let mut candidates: Vec<String> = previous
                .extra_outputs
                .iter()
                .filter(|path| extra_outputs.binary_search(path).is_err())
                .cloned()
                .collect();
            if !navigation_unchanged {
                let current: std::collections::HashSet<&str> = page_refs
                    .iter()
                    .map(|page| page.rel_path.as_str())
                    .collect();
                for record in previous.pages() {
                    if !current.contains(record.meta.rel_path.as_str()) {
                        candidates.extend(page_outputs(&record.meta));
                    }
                }
            }
            if candidates.is_empty() {
                candidates
            } else {
                let produced = produced();
                candidates.retain(|path| !produced.contains(path));
                candidates
            }
        }
        None if fresh_out => Vec::new(),
        None => {
            let produced = produced();
            existing_files(out)?
                .into_iter()
                .filter(|path| !produced.contains(path))
                .collect()
        }
    };
    for path in &stale {
        let full = out.join(path);
        if std::fs::remove_file(&full).is_ok() {
            report.removed += 1;
            remove_empty_parents(out, &full);
        }
    }
    timer.lap("stale");
    ManifestOut::new(
        &global,
        &search_key,
        records,
        &extra_outputs,
        &report.warnings,
    )
    .save(out, previous.as_ref())
    .map_err(|err| Error::io(out.join(MANIFEST_DIR), err))?;
    timer.lap("manifest save");
    report.millis = started.elapsed().as_millis();
    Ok(report)
}

/// The search index's shards (path, JSON) for the indexable pages among `records`.
fn search_files(records: &[RecordOut]) -> Vec<(String, Vec<u8>)> {
    let indexed: Vec<(&PageRecord, Vec<Heading>)> = records
        .iter()
        .filter(|r| seo::indexable(&r.meta))
        .map(|r| (&**r, r.headings()))
        .collect();
    let documents: Vec<search::Document> = indexed
        .iter()
        .map(|(r, headings)| search::Document {
            url: &r.meta.url,
            title: &r.meta.front.title,
            description: &r.meta.front.description,
            headings: headings
                .iter()
                .filter(|h| h.level <= 3)
                .map(|h| (h.id.as_str(), h.text.as_str()))
                .collect(),
        })
        .collect();
    search::build(&documents)
        .into_iter()
        .map(|(path, json)| (path, json.into_bytes()))
        .collect()
}

/// A page's body as HTML. In an incremental build the page's previous output holds its
/// highlighted code blocks; reusing them spares loading the syntax definitions for a
/// one-page edit.
fn render_body(options: &BuildOptions, full: bool, meta: &PageMeta, body: &str) -> Rendered {
    let reuse = if full || !body.contains("```") {
        crate::highlight::Reuse::new()
    } else {
        std::fs::read_to_string(options.out.join(&meta.output))
            .map(|html| crate::highlight::blocks_in(&html))
            .unwrap_or_default()
    };
    markdown::render_reusing(body, meta.body_line, &meta.rel_path, &meta.url, &reuse)
}

/// Fails, and removes the state so the next build is a full one, when a body of the previous
/// build's state could not be read on demand (it changed or was damaged after loading).
fn check_not_damaged(previous: Option<&Manifest>, out: &Path) -> Result<()> {
    if previous.is_some_and(Manifest::damaged) {
        Manifest::remove(out).map_err(|err| Error::io(out.join(MANIFEST_DIR), err))?;
        return Err(Error::Other(format!(
            "the build state in {} could not be read; it was removed, build again \
             (a full build)",
            out.join(MANIFEST_DIR).display()
        )));
    }
    Ok(())
}

/// Refuses to write into a non-empty folder that sitegen did not create. Returns whether the
/// folder was empty or missing (a first build: it holds nothing stale).
fn prepare_out_dir(out: &Path, has_manifest: bool) -> Result<bool> {
    if has_manifest || out.join(MANIFEST_DIR).is_dir() {
        return Ok(false);
    }
    if let Ok(mut entries) = std::fs::read_dir(out)
        && entries.next().is_some()
    {
        return Err(Error::Other(format!(
            "{} is not empty and was not written by sitegen (no {MANIFEST_DIR}/); \
             choose another --out or empty it",
            out.display()
        )));
    }
    std::fs::create_dir_all(out.join(MANIFEST_DIR))
        .map_err(|err| Error::io(out.join(MANIFEST_DIR), err))?;
    Ok(true)
}

/// Writes a file; with `compare`, only when its bytes differ from what is there. Its folder is
/// created only when the file cannot be created without it, so a cold build makes each folder
/// once (not a `mkdir` per file) and a rebuild makes none.
fn write_file(out: &Path, rel: &str, bytes: &[u8], compare: bool) -> Result<bool> {
    let path = out.join(rel);
    if compare && std::fs::read(&path).is_ok_and(|existing| existing == bytes) {
        return Ok(false);
    }
    match std::fs::write(&path, bytes) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|err| Error::io(parent, err))?;
            }
            std::fs::write(&path, bytes).map_err(|err| Error::io(&path, err))?;
        }
        other => other.map_err(|err| Error::io(&path, err))?,
    }
    Ok(true)
}

fn existing_files(out: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut stack = vec![(out.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(|err| Error::io(&dir, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefix.is_empty() && name == MANIFEST_DIR {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                stack.push((path, format!("{prefix}{name}/")));
            } else {
                files.push(format!("{prefix}{name}"));
            }
        }
    }
    Ok(files)
}

fn remove_empty_parents(out: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(current) = dir {
        if current == out || std::fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}
