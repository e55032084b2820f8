//! Incremental rebuilds re-render only what an edit affects and equal a clean build.
//!
//! The edits are made to a copy of docs-src and do not depend on its wording, so that others
//! can change the content freely.

use std::path::Path;

use sitegen::BuildReport;
use tempfile::TempDir;

use crate::support::{assert_same_tree, build, copy_tree, docs_src};

fn append(path: &Path, text: &str) {
    let mut content = std::fs::read_to_string(path).unwrap();
    content.push_str(text);
    std::fs::write(path, content).unwrap();
}

/// Replaces the front matter's `title = ...` line.
fn retitle(path: &Path, title: &str) {
    let content = std::fs::read_to_string(path).unwrap();
    let mut done = false;
    let lines: Vec<String> = content
        .lines()
        .map(|line| {
            if !done && line.starts_with("title = ") {
                done = true;
                format!("title = \"{title}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(done, "{} has no title line", path.display());
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A site made by `make` in a temporary folder and built once into another: (source, out,
/// the first build's report).
fn first_build(make: impl FnOnce(&Path)) -> (TempDir, TempDir, BuildReport) {
    let source = tempfile::tempdir().unwrap();
    make(source.path());
    let out = tempfile::tempdir().unwrap();
    let report = build(source.path(), out.path()).unwrap();
    (source, out, report)
}

fn copy_of_docs_src(root: &Path) {
    copy_tree(&docs_src(), root);
}

fn assert_equals_clean_build(source: &Path, out: &Path) {
    let clean = tempfile::tempdir().unwrap();
    build(source, clean.path()).unwrap();
    assert_same_tree(out, clean.path());
}

#[test]
fn edits_rerender_only_affected_pages_and_match_a_clean_build() {
    let (source, out, first) = first_build(copy_of_docs_src);
    assert!(first.full);

    // Nothing changed: nothing is rendered or written.
    let again = build(source.path(), out.path()).unwrap();
    assert!(!again.full);
    assert!(again.rendered.is_empty(), "{:?}", again.rendered);
    assert_eq!(again.written, 0);

    // A body edit re-renders exactly that page.
    let security = source.path().join("content/docs/security.md");
    append(&security, "\nA new paragraph at the end.\n");
    let body = build(source.path(), out.path()).unwrap();
    assert_eq!(body.rendered, ["docs/security.md"]);
    assert_equals_clean_build(source.path(), out.path());

    // A new page appears in its section's navigation.
    let scratch = source.path().join("content/docs/scratch.md");
    std::fs::write(
        &scratch,
        "+++\ntitle = \"Scratch page\"\ndescription = \"A page added by a test.\"\nweight = 99\n+++\n\n## Heading\n\nText with a [link](security.md).\n",
    )
    .unwrap();
    let added = build(source.path(), out.path()).unwrap();
    assert!(added.rendered.contains(&"docs/scratch.md".to_owned()));
    assert!(added.rendered.contains(&"docs/_index.md".to_owned()));
    assert!(added.rendered.len() < added.pages, "{:?}", added.rendered);
    assert_equals_clean_build(source.path(), out.path());

    // A title change also re-renders the pages whose navigation shows it, and no other.
    retitle(&scratch, "Scratch page, renamed");
    let title = build(source.path(), out.path()).unwrap();
    let rendered = &title.rendered;
    assert!(rendered.contains(&"docs/scratch.md".to_owned()));
    assert!(
        rendered.contains(&"docs/security.md".to_owned()),
        "sidebar: {rendered:?}"
    );
    assert!(
        rendered.contains(&"docs/_index.md".to_owned()),
        "section list: {rendered:?}"
    );
    assert!(
        !rendered.contains(&"_index.md".to_owned()),
        "home does not show it: {rendered:?}"
    );
    assert!(rendered.len() < title.pages, "{rendered:?}");
    assert_equals_clean_build(source.path(), out.path());

    // A removed page disappears, and so do its outputs.
    std::fs::remove_file(&scratch).unwrap();
    let removed = build(source.path(), out.path()).unwrap();
    assert!(removed.removed >= 2, "{removed:?}");
    assert!(!out.path().join("docs/scratch").exists());
    assert_equals_clean_build(source.path(), out.path());

    // A template change rebuilds everything.
    append(&source.path().join("templates/base.html"), "\n");
    let full = build(source.path(), out.path()).unwrap();
    assert!(full.full);
    assert_eq!(full.rendered.len(), full.pages);
    assert_equals_clean_build(source.path(), out.path());
}

#[test]
fn a_failed_build_is_followed_by_a_correct_one() {
    let (source, out, _) = first_build(copy_of_docs_src);
    let security = source.path().join("content/docs/security.md");
    let original = std::fs::read_to_string(&security).unwrap();
    append(&security, "\n[broken](/nowhere/)\n");
    let message = build(source.path(), out.path()).unwrap_err().to_string();
    assert!(message.contains("broken link: /nowhere/"), "{message}");
    std::fs::write(&security, original + "\nFixed.\n").unwrap();
    build(source.path(), out.path()).unwrap();
    assert_equals_clean_build(source.path(), out.path());
}

/// A small site whose templates show everything navigation can: the sidebar of the
/// top-level section, prev/next, breadcrumbs and a section's children with descriptions.
fn navigation_site(root: &Path) {
    let files = [
        (
            "site.toml",
            "base_url = \"https://nav.example\"\ntitle = \"Nav\"\ndescription = \"d\"\n",
        ),
        (
            "templates/docs.html",
            "<title>{{ page.title }}</title>\n\
             {% for item in nav.sidebar %}<a href=\"{{ item.url }}\">{{ item.title }}</a>\n{% endfor %}\
             {% for link in nav.breadcrumbs %}[{{ link.title }}]{% endfor %}\n\
             {% if nav.prev %}prev {{ nav.prev.title }}{% endif %}\n\
             {% if nav.next %}next {{ nav.next.title }}{% endif %}\n{{ content | safe }}\n",
        ),
        (
            "templates/section.html",
            "<title>{{ page.title }}</title>\n\
             {% for child in nav.children %}{{ child.title }}: {{ child.description }}\n{% endfor %}\
             {{ content | safe }}\n",
        ),
        (
            "content/_index.md",
            "+++\ntitle = \"Home\"\ndescription = \"Home.\"\n+++\nHello.\n",
        ),
        (
            "content/docs/_index.md",
            "+++\ntitle = \"Docs\"\ndescription = \"Docs.\"\n+++\nDocs.\n",
        ),
        (
            "content/other/_index.md",
            "+++\ntitle = \"Other\"\ndescription = \"Other.\"\n+++\nOther.\n",
        ),
        (
            "content/other/x.md",
            "+++\ntitle = \"X\"\ndescription = \"X page.\"\n+++\n## Part\n\nText.\n",
        ),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for (weight, name) in ["a", "b", "c", "d"].iter().enumerate() {
        write_page(root, name, &name.to_uppercase(), weight, "");
    }
}

fn write_page(root: &Path, name: &str, title: &str, weight: usize, extra: &str) {
    std::fs::write(
        root.join(format!("content/docs/{name}.md")),
        format!(
            "+++\ntitle = \"{title}\"\ndescription = \"Page {name}.\"\nweight = {weight}\n{extra}+++\n\
             ## Usage\n\nBody of {name}.\n"
        ),
    )
    .unwrap();
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths
}

#[test]
fn navigation_changes_rerender_the_pages_that_show_them_and_nothing_else() {
    let (source, out, first) = first_build(navigation_site);
    assert!(first.full);
    let src = source.path();

    // A body edit: that page alone.
    append(&src.join("content/docs/b.md"), "\nMore text.\n");
    let body = build(src, out.path()).unwrap();
    assert_eq!(body.rendered, ["docs/b.md"]);
    assert_equals_clean_build(src, out.path());

    // A title: the page, its neighbours' prev/next and the sidebar of its section, the
    // section's list; not the other section, nor the home page.
    retitle(&src.join("content/docs/c.md"), "C renamed");
    let title = build(src, out.path()).unwrap();
    assert_eq!(
        sorted(title.rendered),
        [
            "docs/_index.md",
            "docs/a.md",
            "docs/b.md",
            "docs/c.md",
            "docs/d.md"
        ]
    );
    assert_equals_clean_build(src, out.path());

    // A description shows only in the section's list.
    write_page(src, "a", "A", 0, "");
    let page_a = std::fs::read_to_string(src.join("content/docs/a.md")).unwrap();
    std::fs::write(
        src.join("content/docs/a.md"),
        page_a.replace("Page a.", "Page a, described anew."),
    )
    .unwrap();
    let description = build(src, out.path()).unwrap();
    assert_eq!(
        sorted(description.rendered),
        ["docs/_index.md", "docs/a.md"]
    );
    assert_equals_clean_build(src, out.path());

    // A weight moves the page in prev/next and the sidebar.
    write_page(src, "d", "D", 0, "");
    build(src, out.path()).unwrap();
    assert_equals_clean_build(src, out.path());

    // noindex takes the page out of the sitemap.
    let sitemap = || std::fs::read_to_string(out.path().join("sitemap.xml")).unwrap();
    assert!(sitemap().contains("/docs/b/"));
    write_page(src, "b", "B", 1, "noindex = true\n");
    build(src, out.path()).unwrap();
    assert!(!sitemap().contains("/docs/b/"));
    assert_equals_clean_build(src, out.path());

    // A date alone (same bytes, another mtime) changes the sitemap, and re-renders the page.
    let page_x = src.join("content/other/x.md");
    let file = std::fs::File::options().write(true).open(&page_x).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .unwrap();
    drop(file);
    let date = build(src, out.path()).unwrap();
    assert_eq!(date.rendered, ["other/x.md"]);
    assert!(sitemap().contains("2001-09-09T01:46:40Z"), "{}", sitemap());
    assert_equals_clean_build(src, out.path());

    // A template change rebuilds everything.
    append(&src.join("templates/docs.html"), "<!-- changed -->\n");
    let template = build(src, out.path()).unwrap();
    assert!(template.full);
    assert_eq!(template.rendered.len(), template.pages);
    assert_equals_clean_build(src, out.path());
}

#[test]
fn warnings_redirects_and_removed_pages_survive_rebuilds_that_skip_them() {
    let (source, out, _) = first_build(navigation_site);
    let src = source.path();

    // A duplicate title and an alias, then a body edit elsewhere: the rebuild that takes
    // the previous build's warnings and redirects over reports and keeps them.
    write_page(src, "d", "A", 3, "aliases = [\"/old/d/\"]\n");
    let changed = build(src, out.path()).unwrap();
    assert_eq!(changed.warnings.len(), 1, "{:?}", changed.warnings);
    assert!(out.path().join("old/d/index.html").is_file());
    append(&src.join("content/other/x.md"), "\nMore.\n");
    let body = build(src, out.path()).unwrap();
    assert_eq!(body.rendered, ["other/x.md"]);
    assert_eq!(body.warnings, changed.warnings);
    assert_eq!(body.removed, 0);
    assert!(out.path().join("old/d/index.html").is_file());
    assert_equals_clean_build(src, out.path());

    // Dropping the alias removes its redirect.
    write_page(src, "d", "D", 3, "");
    let dropped = build(src, out.path()).unwrap();
    assert!(dropped.warnings.is_empty(), "{:?}", dropped.warnings);
    assert!(!out.path().join("old/d").exists());
    assert_equals_clean_build(src, out.path());

    // Deleting a page that another page links to fails the build, and writes nothing.
    append(&src.join("content/docs/a.md"), "\nSee [C](c.md#usage).\n");
    build(src, out.path()).unwrap();
    std::fs::remove_file(src.join("content/docs/c.md")).unwrap();
    let message = build(src, out.path()).unwrap_err().to_string();
    assert!(message.contains("broken link: /docs/c/#usage"), "{message}");
    assert!(out.path().join("docs/c/index.html").is_file());
    // Without the link, the page's files go.
    write_page(src, "a", "A", 0, "");
    let removed = build(src, out.path()).unwrap();
    assert_eq!(removed.removed, 2, "{removed:?}");
    assert!(!out.path().join("docs/c").exists());
    assert_equals_clean_build(src, out.path());
}
