//! The build fails with clear, located messages.

use std::process::Command;

use crate::support::{build, fixed_fixture, fixture};

#[test]
fn broken_link_missing_anchor_and_bad_front_matter_are_reported() {
    let out = tempfile::tempdir().unwrap();
    let err = build(&fixture("broken"), out.path()).expect_err("the fixture must fail");
    let message = err.to_string();
    let fixture_path = fixture("broken");
    let home = fixture_path.join("content/_index.md");
    let bad = fixture_path.join("content/docs/bad.md");
    assert!(
        message.contains(&format!(
            "{}:8: broken link: /docs/nowhere/",
            home.display()
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "{}:10: missing anchor: /docs/good/#no-such-heading",
            home.display()
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}:4: bad front matter:", bad.display())),
        "{message}"
    );
    assert!(message.starts_with("3 problem(s)"), "{message}");
    // Nothing was written.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn the_binary_exits_nonzero_with_the_messages() {
    let output = Command::new(env!("CARGO_BIN_EXE_sitegen"))
        .args(["check", "--source"])
        .arg(fixture("broken"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken link: /docs/nowhere/"), "{stderr}");
    assert!(stderr.contains("missing anchor"), "{stderr}");
    assert!(stderr.contains("bad front matter"), "{stderr}");
}

#[test]
fn a_missing_template_variable_names_template_and_page() {
    let source = fixed_fixture();
    std::fs::write(
        source.path().join("templates/docs.html"),
        "<html><title>{{ page.title }}</title>{{ page.subtitle }}</html>",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let message = build(source.path(), out.path()).unwrap_err().to_string();
    assert!(message.contains("docs.html"), "{message}");
    assert!(message.contains("content/docs/good.md"), "{message}");
    assert!(message.contains("page.subtitle"), "{message}");
}

#[test]
fn refuses_a_foreign_non_empty_output_folder() {
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("precious.txt"), "keep me").unwrap();
    let source = fixed_fixture();
    let message = build(source.path(), out.path()).unwrap_err().to_string();
    assert!(message.contains("not written by sitegen"), "{message}");
    assert!(out.path().join("precious.txt").exists());
}
