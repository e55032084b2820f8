//! Building the real site, docs-src.

use crate::support::{build, docs_src, tree};

#[test]
fn docs_src_builds_with_every_output() {
    let out = tempfile::tempdir().unwrap();
    let report = build(&docs_src(), out.path()).expect("docs-src must build");
    assert!(report.full);
    assert!(report.pages >= 10, "{} pages", report.pages);
    assert!(
        report.warnings.is_empty(),
        "docs-src has warnings: {:?}",
        report.warnings
    );
    let files = tree(out.path());
    for required in [
        "index.html",
        "404.html",
        "robots.txt",
        "sitemap.xml",
        "docs/index.html",
        "docs/index.json",
        "docs/getting-started/index.html",
        "docs/protocol/http-api/index.html",
        "search/index.html",
    ] {
        assert!(files.contains_key(required), "{required} missing");
    }
    // Aliases become redirect pages with a canonical link.
    let redirect = String::from_utf8(files["docs/self-hosting/index.html"].clone()).unwrap();
    assert!(redirect.contains("http-equiv=\"refresh\" content=\"0; url=/docs/server/\""));
    assert!(redirect.contains("rel=\"canonical\" href=\"https://cairn.example.dev/docs/server/\""));
    // Hashed assets, and no script on ordinary pages.
    assert!(
        files
            .keys()
            .any(|k| k.starts_with("assets/style.") && k.ends_with(".css"))
    );
    let page = String::from_utf8(files["docs/getting-started/index.html"].clone()).unwrap();
    assert!(page.contains(
        "<link rel=\"canonical\" href=\"https://cairn.example.dev/docs/getting-started/\">"
    ));
    assert!(page.contains("\"@type\":\"BreadcrumbList\""));
    assert!(page.contains("property=\"og:title\""));
    assert!(
        page.contains("aria-current=\"page\""),
        "sidebar marks the current page"
    );
    assert!(page.contains("rel=\"next\""));
    assert!(
        !page.contains("<script src"),
        "docs pages need no JavaScript"
    );
    assert!(!page.contains("style=\""), "no inline styles");
    // The sitemap lists pages but not the 404 page or the search page.
    let sitemap = String::from_utf8(files["sitemap.xml"].clone()).unwrap();
    assert!(sitemap.contains("<loc>https://cairn.example.dev/docs/security/</loc><lastmod>"));
    assert!(!sitemap.contains("404"));
    assert!(!sitemap.contains("/search/"));
    // Titles are unique.
    let mut titles = std::collections::HashSet::new();
    for (name, bytes) in &files {
        if name.ends_with(".html") && !name.contains("self-hosting") && name != "start/index.html" {
            let html = String::from_utf8_lossy(bytes);
            let title = html
                .split("<title>")
                .nth(1)
                .unwrap()
                .split("</title>")
                .next()
                .unwrap()
                .to_owned();
            assert!(
                titles.insert(title.clone()),
                "duplicate title {title} in {name}"
            );
        }
    }
}

#[test]
fn check_writes_nothing() {
    let report = sitegen::build(&sitegen::BuildOptions {
        source: docs_src(),
        out: std::path::PathBuf::from("/nonexistent/sitegen-check"),
        drafts: false,
        write: false,
    })
    .expect("check passes");
    assert!(report.pages >= 10);
    assert!(!std::path::Path::new("/nonexistent/sitegen-check").exists());
}
