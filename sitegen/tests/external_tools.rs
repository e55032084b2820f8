//! Checks with external tools: the Nu HTML Checker and lynx. They skip with a message unless
//! `CAIRN_TEST_STRICT=1`, where a missing tool fails the test (scripts/site-tools.sh finds them).

use std::process::Command;

use crate::support::{build, docs_src, tool, tree};

#[test]
fn every_page_passes_the_nu_html_checker() {
    let Some(jar) = tool("CAIRN_VNU_JAR", "vnu.jar (npm package vnu-jar)") else {
        return;
    };
    let java = std::env::var_os("CAIRN_JAVA").unwrap_or_else(|| "java".into());
    let out = tempfile::tempdir().unwrap();
    build(&docs_src(), out.path()).unwrap();
    let pages: Vec<_> = tree(out.path())
        .into_keys()
        .filter(|name| name.ends_with(".html"))
        .map(|name| out.path().join(name))
        .collect();
    assert!(pages.len() >= 10);
    let output = Command::new(java)
        .arg("-jar")
        .arg(&jar)
        .args(["--errors-only", "--format", "json"])
        .args(&pages)
        .output()
        .expect("java runs");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stderr).expect("vnu writes a JSON report to stderr");
    let messages = report["messages"].as_array().unwrap();
    let errors: Vec<String> = messages
        .iter()
        .filter(|m| m["type"] == "error" || m["subType"] == "fatal")
        .map(|m| format!("{}: {}", m["url"], m["message"]))
        .collect();
    assert!(
        errors.is_empty(),
        "{} vnu errors:\n{}",
        errors.len(),
        errors.join("\n")
    );
    eprintln!("vnu: {} pages, 0 errors", pages.len());
}

fn lynx_dump(lynx: &std::path::Path, file: &std::path::Path) -> String {
    let output = Command::new(lynx)
        .args(["-dump", "-force_html", "-nocolor", "-display_charset=utf-8"])
        .arg(file)
        .output()
        .expect("lynx runs");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether lynx's numbered reference list has a link to the site path `link`.
fn has_link(dump: &str, link: &str) -> bool {
    let references = dump.split("\nReferences\n").nth(1).unwrap_or("");
    references.lines().any(|line| {
        let line = line.trim();
        if link.starts_with('#') {
            line.ends_with(&format!("index.html{link}"))
        } else {
            line.ends_with(&format!("file://{link}"))
        }
    })
}

/// Asserts that lynx's dump of `page` shows each of `texts` and links to each of `links`.
fn assert_shows(page: &str, dump: &str, texts: &[&str], links: &[&str]) {
    for text in texts {
        assert!(dump.contains(text), "{page} lacks {text:?}:\n{dump}");
    }
    for link in links {
        assert!(
            has_link(dump, link),
            "{page} lacks a link to {link}:\n{dump}"
        );
    }
}

#[test]
fn lynx_shows_text_and_navigation() {
    let Some(lynx) = tool("CAIRN_LYNX", "lynx") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    build(&docs_src(), out.path()).unwrap();

    let landing = lynx_dump(&lynx, &out.path().join("index.html"));
    assert_shows(
        "landing page",
        &landing,
        &[
            "Team sync for API-development projects",
            "No acknowledged push is ever lost",
            "Skip to main content",
            "Explore the documentation",
        ],
        &[
            "/docs/",
            "/docs/getting-started/",
            "/docs/protocol/",
            "/search/",
        ],
    );

    let docs = lynx_dump(&lynx, &out.path().join("docs/getting-started/index.html"));
    assert_shows(
        "docs page",
        &docs,
        &[
            "Getting started",
            "cargo run --release -p sync-server -- serve",
            "On this page",
            "Next: The cairn client",
            "Last updated",
        ],
        &[
            "/docs/client/",
            "/docs/server/",
            "/docs/security/",
            "/docs/protocol/",
            "#run-the-tests",
        ],
    );
}
