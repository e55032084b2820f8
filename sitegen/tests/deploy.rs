//! `sitegen deploy` against a real S3-compatible server (s3s-fs) on a loopback port.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{build, fixed_fixture, strict};

const ACCESS_KEY: &str = "sitegen-test";
const SECRET_KEY: &str = "sitegen-test-secret";

fn s3s_fs() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CAIRN_S3S_FS").map(PathBuf::from)
        && path.is_file()
    {
        return Some(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            !strict(),
            "s3s-fs not found (CAIRN_S3S_FS unset, not on PATH)"
        );
        eprintln!("skipped: s3s-fs not found, run scripts/test");
    }
    found
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start(binary: &PathBuf, root: &std::path::Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

fn deploy(out: &std::path::Path, port: u16) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sitegen"))
        .args(["deploy", "--bucket", "site", "--out"])
        .arg(out)
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "deploy failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn head(port: u16, key: &str) -> (Option<String>, Option<String>) {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime
        .block_on(client.head_object().bucket("site").key(key).send())
        .unwrap();
    (
        answer.content_type().map(str::to_owned),
        answer.cache_control().map(str::to_owned),
    )
}

#[test]
fn deploy_uploads_only_changes_with_headers_and_prints_invalidations() {
    let Some(binary) = s3s_fs() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("site")).unwrap();
    let (_server, port) = start(&binary, root.path());

    let source = fixed_fixture();
    std::fs::create_dir_all(source.path().join("static/assets")).unwrap();
    std::fs::write(source.path().join("static/assets/app.css"), "body{}").unwrap();
    let out = tempfile::tempdir().unwrap();
    build(source.path(), out.path()).unwrap();

    let first = deploy(out.path(), port);
    assert!(
        first.contains(
            "uploaded index.html (text/html; charset=utf-8, public, max-age=300, must-revalidate)"
        ),
        "{first}"
    );
    assert!(
        first.contains("CloudFront invalidation paths (0):"),
        "{first}"
    );
    let css_key = first
        .lines()
        .find_map(|l| l.strip_prefix("uploaded assets/app."))
        .map(|rest| format!("assets/app.{}", rest.split(' ').next().unwrap()))
        .expect("the hashed stylesheet was uploaded");
    let (content_type, cache_control) = head(port, &css_key);
    assert_eq!(content_type.as_deref(), Some("text/css; charset=utf-8"));
    assert_eq!(
        cache_control.as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let (content_type, cache_control) = head(port, "docs/good/index.html");
    assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(
        cache_control.as_deref(),
        Some("public, max-age=300, must-revalidate")
    );

    // Nothing changed: nothing is uploaded.
    let second = deploy(out.path(), port);
    assert!(!second.contains("uploaded"), "{second}");
    assert!(
        second.contains("CloudFront invalidation paths (0):"),
        "{second}"
    );

    // One body edit: that page's HTML and JSON twin change, and the sitemap (its lastmod).
    let good = source.path().join("content/docs/good.md");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&good, text.replace("Fine.", "Finer.")).unwrap();
    build(source.path(), out.path()).unwrap();
    let third = deploy(out.path(), port);
    // The sitemap changes too when the edit moved the page's lastmod to a later second.
    let sitemap_changed = third.contains("uploaded sitemap.xml");
    let uploaded: Vec<&str> = third
        .lines()
        .filter(|l| l.starts_with("uploaded"))
        .collect();
    assert_eq!(uploaded.len(), 2 + usize::from(sitemap_changed), "{third}");
    assert!(third.contains("uploaded docs/good/index.html"), "{third}");
    assert!(third.contains("uploaded docs/good/index.json"), "{third}");
    let paths: Vec<&str> = third
        .split("CloudFront invalidation paths")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .collect();
    let mut expected = vec![
        "/docs/good/",
        "/docs/good/index.html",
        "/docs/good/index.json",
    ];
    if sitemap_changed {
        expected.push("/sitemap.xml");
    }
    assert_eq!(paths, expected);
}
