//! The API keeps its contract (issue 13): schemathesis runs against the real `sync-server` in
//! production mode and its own `/v1/openapi.json`, the stateless phases (examples, coverage,
//! fuzzing) with every check and a bounded number of examples per operation, and finds
//! nothing: every response matches the document, schema-valid requests are accepted and
//! schema-violating ones refused, undeclared methods answer `405` with `Allow`.
//!
//! The run's settings are `tests/schemathesis/schemathesis.toml`; `tests/schemathesis/hooks.py`
//! holds the few things the document cannot say (refusals that depend on stored state, text
//! limits in bytes, object-stream bytes, the run's own token). schemathesis is
//! `CAIRN_SCHEMATHESIS`, else the `st` of the virtualenv `scripts/test` installs a pinned
//! version into (`~/.cache/cairn/schemathesis-<version>`, which it also exports); without it
//! the test is skipped, or fails when `CAIRN_TEST_STRICT=1`. `CAIRN_SCHEMATHESIS_SEED` and `CAIRN_SCHEMATHESIS_EXAMPLES` change
//! the seed (fixed, so a run is repeatable) and the examples per operation (25).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cairn_test_support::PASSWORD;
use cairn_test_support::services::strict;
use serde_json::{Value, json};

use crate::support::Setup;
use crate::support::server::{TEAM, USER};

/// The variable naming the schemathesis command (`st`).
const SCHEMATHESIS: &str = "CAIRN_SCHEMATHESIS";
/// The version `scripts/test` installs, whose command line and hooks this test uses.
const VERSION: &str = "4.32.5";
/// The seed of a run unless `CAIRN_SCHEMATHESIS_SEED` says otherwise.
const SEED: &str = "13";

/// The schemathesis command: `CAIRN_SCHEMATHESIS`, else where `scripts/test` installs it; or
/// `None` after printing `skipped: ...` (a panic in a strict run).
fn schemathesis() -> Option<PathBuf> {
    let configured = std::env::var_os(SCHEMATHESIS)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    let installed = std::env::var_os("HOME").map(|home| {
        Path::new(&home)
            .join(".cache/cairn")
            .join(format!("schemathesis-{VERSION}/bin/st"))
    });
    let Some(path) = configured.or(installed).filter(|path| path.is_file()) else {
        assert!(
            !strict(),
            "{SCHEMATHESIS} is not a schemathesis command and CAIRN_TEST_STRICT=1: run \
             scripts/test, which installs schemathesis {VERSION} and sets it"
        );
        eprintln!(
            "skipped: set {SCHEMATHESIS} to schemathesis {VERSION}'s `st` (scripts/test does)"
        );
        return None;
    };
    let output = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|error| panic!("running {} --version: {error}", path.display()));
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        version.contains(VERSION),
        "{} is schemathesis {}, not {VERSION}: its command line or hooks may differ",
        path.display(),
        version.trim()
    );
    Some(path)
}

/// The folder of the run's configuration and hooks.
fn settings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis")
}

/// A new token of alice's (its secret and id), and the id of a project of hers.
fn token_and_project(url: &str) -> (String, String, String) {
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, token: Option<&str>, body: Value| -> Value {
        let mut request = http.post(format!("{url}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(response.status(), 201, "{path}");
        response.json().unwrap()
    };
    let session = post(
        "/v1/sessions",
        None,
        json!({"login": USER, "password": PASSWORD, "label": "contract"}),
    );
    let token = session["token"].as_str().unwrap().to_owned();
    let token_id = session["token_id"].as_str().unwrap().to_owned();
    let teams: Value = http
        .get(format!("{url}/v1/teams"))
        .bearer_auth(&token)
        .send()
        .and_then(reqwest::blocking::Response::json)
        .unwrap();
    let team = teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|team| team["name"] == TEAM)
        .unwrap_or_else(|| panic!("{USER} has no team {TEAM}: {teams}"));
    let path = format!("/v1/teams/{}/projects", team["id"].as_str().unwrap());
    let project = post(&path, Some(&token), json!({"name": "contract"}));
    let project = project["id"].as_str().unwrap().to_owned();
    (token, token_id, project)
}

#[test]
fn schemathesis_finds_nothing() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let Some(setup) = Setup::start() else {
        return;
    };
    let url = setup.server.url.clone();
    let (token, token_id, project) = token_and_project(&url);
    let seed = std::env::var("CAIRN_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_owned());
    let mut command = Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(settings().join("schemathesis.toml"))
        .args(["run", &format!("{url}/v1/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--seed", &seed, "--no-color"])
        .env("SCHEMATHESIS_HOOKS", settings().join("hooks.py"))
        .env("CAIRN_CONTRACT_TOKEN_ID", &token_id)
        .env("CAIRN_CONTRACT_PROJECT", &project)
        // Whatever it might write (reports, caches) stays out of the tree.
        .current_dir(setup.cairn.home());
    if let Ok(examples) = std::env::var("CAIRN_SCHEMATHESIS_EXAMPLES") {
        command.args(["--max-examples", &examples]);
    }
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", schemathesis.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "schemathesis (seed {seed}) took {:.0?}:\n{report}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "schemathesis found something ({}); reproduce with the seed above and \
         tests/schemathesis/schemathesis.toml",
        output.status
    );
    // Every operation was tested (schemathesis leaves out the one that serves the document it
    // reads), none only with refused credentials: the run's token was never revoked.
    let operations = format!("Tested: {}", sync_protocol::wire::ROUTES.len() - 1);
    assert!(
        report.contains(&operations),
        "not every operation was tested"
    );
    assert!(
        !report.contains("Authentication failed"),
        "the run lost its token"
    );
    let account = reqwest::blocking::Client::new()
        .get(format!("{url}/v1/account"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(account.status(), 200);
}
