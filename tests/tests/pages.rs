//! The account pages with real browsers against the real `sync-server` in production mode
//! (PostgreSQL and S3) and the real `cairn`:
//!
//! - headless Chromium driven by Playwright (`tests/browser/journey.cjs`): sign up, a team, a
//!   teammate as editor, history, restore, `cairn pull` of the restored tree, a revoked token
//!   refusing `cairn push`, and a cross-site post refused;
//! - every page type audited (`tests/browser/audit.cjs`): screenshots at 390 and 1280 px
//!   (into `target/pages-screenshots/`), the Nu HTML Checker and Lighthouse 12;
//! - lynx, which runs no JavaScript: sign in, list the projects, read a history.
//!
//! The browsers and tools come from `scripts/test` (`scripts/browser-tools.sh`,
//! `scripts/site-tools.sh`); without them the tests are skipped, or fail when
//! `CAIRN_TEST_STRICT=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_test_support::services::variables;
use cairn_test_support::{PASSWORD, ServerEnvironment, Services, binaries};

use crate::support::Setup;

/// The browser tools `scripts/test` names: Chromium, node with playwright-core and Lighthouse,
/// Java with the Nu HTML Checker.
struct Tools {
    chromium: String,
    node: String,
    modules: String,
    java: String,
    vnu: String,
}

fn tools() -> Option<Tools> {
    let [chromium, node, modules, java, vnu] = variables([
        "CAIRN_CHROMIUM",
        "CAIRN_NODE",
        "CAIRN_BROWSER_TOOLS",
        "CAIRN_JAVA",
        "CAIRN_VNU_JAR",
    ])?;
    Some(Tools {
        chromium,
        node,
        modules,
        java,
        vnu,
    })
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("browser")
        .join(name)
}

fn run_node(tools: &Tools, name: &str, url: &str, work: &Path) -> Output {
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("pages-screenshots");
    let output = Command::new(&tools.node)
        .arg(script(name))
        .env("CAIRN_URL", url)
        .env("CAIRN_WORK", work)
        .env("CAIRN_CLIENT_BIN", binaries::client_binary())
        .env("CAIRN_CHROMIUM", &tools.chromium)
        .env("CAIRN_BROWSER_TOOLS", &tools.modules)
        .env("CAIRN_JAVA", &tools.java)
        .env("CAIRN_VNU_JAR", &tools.vnu)
        .env("CAIRN_SCREENSHOTS", screenshots)
        .output()
        .expect("running node");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The journey in Chromium, then the audit of every page type on the state it left.
#[test]
fn pages_in_a_real_browser() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let Some(tools) = tools() else {
        return;
    };
    let environment = ServerEnvironment::production(&services);
    let server = environment.serve(&[]);
    let work = tempfile::tempdir().expect("work folder");
    let journey = run_node(&tools, "journey.cjs", server.url(), work.path());
    assert!(journey.status.success(), "the browser journey failed");
    let audit = run_node(&tools, "audit.cjs", server.url(), work.path());
    assert!(audit.status.success(), "a page type failed its audit");
}

/// lynx (no JavaScript): sign in, list the projects, read a project's history.
#[test]
fn pages_in_lynx() {
    let Some(setup) = Setup::start() else {
        return;
    };
    let Some([lynx]) = variables(["CAIRN_LYNX"]) else {
        return;
    };
    setup.first_version(&[("requests/list.json", b"{\"url\": \"/pets\"}")]);
    let work = tempfile::tempdir().expect("work folder");
    let jar = work.path().join("cookies");
    // lynx keeps cookies in its file only when they are persistent cookies and it is told to.
    let config = work.path().join("lynx.cfg");
    std::fs::write(&config, "PERSISTENT_COOKIES:TRUE\n").expect("lynx.cfg");
    let lynx_run = |arguments: &[&str], stdin: Option<&str>| -> String {
        let mut command = Command::new(&lynx);
        command
            .arg(format!("-cfg={}", config.display()))
            .args(["-accept_all_cookies", "-nocolor", "-width=120"])
            .arg(format!("-cookie_file={}", jar.display()))
            .arg(format!("-cookie_save_file={}", jar.display()))
            .args(arguments)
            .env("TERM", "dumb");
        let output = match stdin {
            Some(text) => {
                use std::io::Write;
                let mut child = command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("lynx");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(text.as_bytes())
                    .expect("writing to lynx");
                child.wait_with_output().expect("lynx")
            }
            None => command.output().expect("lynx"),
        };
        assert!(output.status.success(), "lynx {arguments:?} failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let url = &setup.server.url;
    // The sign-in form as lynx shows it: both fields labelled.
    let form = lynx_run(&["-dump", &format!("{url}/account/sign-in")], None);
    assert!(
        form.contains("Account name or email") && form.contains("Password"),
        "{form}"
    );
    // Its hidden CSRF token, from the page's source (lynx keeps the cookie it came with).
    let source = lynx_run(&["-source", &format!("{url}/account/sign-in")], None);
    let marker = "name=\"csrf\" value=\"";
    let start = source.find(marker).expect("a csrf field") + marker.len();
    let csrf = &source[start..start + 64];
    let body = format!(
        "csrf={csrf}&next=%2Faccount%2Fprojects&login=alice&password={}\n---\n",
        PASSWORD.replace(' ', "+")
    );
    let projects = lynx_run(
        &["-dump", "-post_data", &format!("{url}/account/sign-in")],
        Some(&body),
    );
    assert!(
        projects.contains("Projects") && projects.contains("crew"),
        "{projects}"
    );
    assert!(
        projects.contains("api"),
        "the project is listed: {projects}"
    );
    // The project's page, by the link lynx lists.
    let links = lynx_run(
        &["-dump", "-listonly", &format!("{url}/account/projects")],
        None,
    );
    let project = links
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .find(|link| link.contains("/account/projects/") && !link.ends_with("/projects"))
        .expect("a link to the project")
        .to_owned();
    let history = lynx_run(&["-dump", &project], None);
    assert!(history.contains("History"), "{history}");
    assert!(
        history.contains("Project created"),
        "version 0 is listed: {history}"
    );
    let rows = history
        .lines()
        .filter(|line| line.contains("alice"))
        .count();
    assert!(rows >= 2, "versions 1 and 0 are listed: {history}");
}
