//! Incremental rebuilds re-render only what an edit affects and equal a clean build.

use std::path::Path;

use crate::support::{assert_same_tree, build, copy_tree, docs_src};

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn edits_rerender_only_affected_pages_and_match_a_clean_build() {
    let source = tempfile::tempdir().unwrap();
    copy_tree(&docs_src(), source.path());
    let out = tempfile::tempdir().unwrap();
    let first = build(source.path(), out.path()).unwrap();
    assert!(first.full);

    // Nothing changed: nothing is rendered.
    let again = build(source.path(), out.path()).unwrap();
    assert!(!again.full);
    assert!(again.rendered.is_empty(), "{:?}", again.rendered);
    assert_eq!(again.written, 0);

    // A body edit re-renders exactly that page.
    let security = source.path().join("content/docs/security.md");
    edit(
        &security,
        "## Integrity",
        "## Integrity\n\nA new paragraph.",
    );
    let body = build(source.path(), out.path()).unwrap();
    assert_eq!(body.rendered, ["docs/security.md"]);
    let clean = tempfile::tempdir().unwrap();
    build(source.path(), clean.path()).unwrap();
    assert_same_tree(out.path(), clean.path());

    // A title change also re-renders the pages whose navigation shows it.
    edit(
        &security,
        "title = \"Security model\"",
        "title = \"Security\"",
    );
    let title = build(source.path(), out.path()).unwrap();
    let rendered = &title.rendered;
    assert!(rendered.contains(&"docs/security.md".to_owned()));
    assert!(
        rendered.contains(&"docs/client.md".to_owned()),
        "sidebar: {rendered:?}"
    );
    assert!(
        rendered.contains(&"docs/_index.md".to_owned()),
        "section list: {rendered:?}"
    );
    assert!(rendered.len() < title.pages, "{rendered:?}");
    let clean = tempfile::tempdir().unwrap();
    build(source.path(), clean.path()).unwrap();
    assert_same_tree(out.path(), clean.path());

    // A removed page disappears, and so do its outputs.
    std::fs::remove_file(source.path().join("content/docs/server/cluster.md")).unwrap();
    let removed = build(source.path(), out.path()).unwrap();
    assert!(removed.removed >= 2, "{removed:?}");
    let clean = tempfile::tempdir().unwrap();
    build(source.path(), clean.path()).unwrap();
    assert_same_tree(out.path(), clean.path());

    // A template change rebuilds everything.
    let template = source.path().join("templates/base.html");
    edit(
        &template,
        "<footer class=\"site-footer\">",
        "<footer class=\"site-footer\" id=\"footer\">",
    );
    let full = build(source.path(), out.path()).unwrap();
    assert!(full.full);
    assert_eq!(full.rendered.len(), full.pages);
    let clean = tempfile::tempdir().unwrap();
    build(source.path(), clean.path()).unwrap();
    assert_same_tree(out.path(), clean.path());
}

#[test]
fn a_failed_build_is_followed_by_a_correct_one() {
    let source = tempfile::tempdir().unwrap();
    copy_tree(&docs_src(), source.path());
    let out = tempfile::tempdir().unwrap();
    build(source.path(), out.path()).unwrap();
    let client = source.path().join("content/docs/client.md");
    edit(
        &client,
        "## Conflicts",
        "[broken](/nowhere/)\n\n## Conflicts",
    );
    assert!(build(source.path(), out.path()).is_err());
    edit(&client, "[broken](/nowhere/)", "Fixed.");
    build(source.path(), out.path()).unwrap();
    let clean = tempfile::tempdir().unwrap();
    build(source.path(), clean.path()).unwrap();
    assert_same_tree(out.path(), clean.path());
}
