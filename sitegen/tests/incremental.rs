//! Incremental rebuilds re-render only what an edit affects and equal a clean build.
//!
//! The edits are made to a copy of docs-src and do not depend on its wording, so that others
//! can change the content freely.

use std::path::Path;

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

fn assert_equals_clean_build(source: &Path, out: &Path) {
    let clean = tempfile::tempdir().unwrap();
    build(source, clean.path()).unwrap();
    assert_same_tree(out, clean.path());
}

#[test]
fn edits_rerender_only_affected_pages_and_match_a_clean_build() {
    let source = tempfile::tempdir().unwrap();
    copy_tree(&docs_src(), source.path());
    let out = tempfile::tempdir().unwrap();
    let first = build(source.path(), out.path()).unwrap();
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
    let source = tempfile::tempdir().unwrap();
    copy_tree(&docs_src(), source.path());
    let out = tempfile::tempdir().unwrap();
    build(source.path(), out.path()).unwrap();
    let security = source.path().join("content/docs/security.md");
    let original = std::fs::read_to_string(&security).unwrap();
    append(&security, "\n[broken](/nowhere/)\n");
    let message = build(source.path(), out.path()).unwrap_err().to_string();
    assert!(message.contains("broken link: /nowhere/"), "{message}");
    std::fs::write(&security, original + "\nFixed.\n").unwrap();
    build(source.path(), out.path()).unwrap();
    assert_equals_clean_build(source.path(), out.path());
}
