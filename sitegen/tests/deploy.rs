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

/// Starts a server (`command` given the port it is to listen on) on a free loopback port and
/// waits until the port accepts connections.
fn serve_on_free_port(name: &str, command: impl FnOnce(&str) -> Command) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = command(&port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

fn start(binary: &PathBuf, root: &std::path::Path) -> (Server, u16) {
    serve_on_free_port("s3s-fs", |port| {
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", port])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root);
        command
    })
}

/// `sitegen deploy` of `out` to the bucket `site` at `endpoint`, with the test's credentials
/// and no distribution from the environment.
fn deploy_command(out: &std::path::Path, endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sitegen"));
    command
        .args(["deploy", "--bucket", "site", "--out"])
        .arg(out)
        .args(["--endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("SITEGEN_CLOUDFRONT_DISTRIBUTION");
    command
}

/// Runs a deploy that must succeed; returns its stdout and stderr.
fn run_deploy(mut command: Command) -> (String, String) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "deploy failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

fn deploy(out: &std::path::Path, port: u16) -> String {
    run_deploy(deploy_command(out, &format!("http://127.0.0.1:{port}"))).0
}

/// The SDK configuration of a local S3 or CloudFront at `endpoint`.
fn local_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"),
        ))
        .build()
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&local_config(endpoint))
            .force_path_style(true)
            .build(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn head(port: u16, key: &str) -> (Option<String>, Option<String>) {
    let client = s3_client(&format!("http://127.0.0.1:{port}"));
    let answer = runtime()
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

/// moto in server mode: one local process answering both S3 and CloudFront.
struct Moto {
    server: Server,
    endpoint: String,
}

fn start_moto() -> Option<Moto> {
    let binary = crate::support::tool("CAIRN_MOTO_SERVER", "moto_server (PyPI moto[server])")?;
    let (server, port) = serve_on_free_port("moto_server", |port| {
        let mut command = Command::new(binary);
        command.args(["-H", "127.0.0.1", "-p", port]);
        command
    });
    Some(Moto {
        server,
        endpoint: format!("http://127.0.0.1:{port}"),
    })
}

/// Creates the bucket and a distribution in moto; returns the distribution's id.
fn moto_site(endpoint: &str) -> String {
    use aws_sdk_cloudfront::types::{
        DefaultCacheBehavior, DistributionConfig, Origin, Origins, S3OriginConfig,
        ViewerProtocolPolicy,
    };
    let s3 = s3_client(endpoint);
    let cloudfront = aws_sdk_cloudfront::Client::new(&local_config(endpoint));
    runtime().block_on(async {
        s3.create_bucket().bucket("site").send().await.unwrap();
        let origin = Origin::builder()
            .id("site")
            .domain_name("site.s3.amazonaws.com")
            .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
            .build()
            .unwrap();
        let distribution = DistributionConfig::builder()
            .caller_reference("sitegen-test")
            .comment("")
            .enabled(true)
            .origins(
                Origins::builder()
                    .quantity(1)
                    .items(origin)
                    .build()
                    .unwrap(),
            )
            .default_cache_behavior(
                DefaultCacheBehavior::builder()
                    .target_origin_id("site")
                    .viewer_protocol_policy(ViewerProtocolPolicy::AllowAll)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let created = cloudfront
            .create_distribution()
            .distribution_config(distribution)
            .send()
            .await
            .unwrap();
        created.distribution().unwrap().id().to_owned()
    })
}

/// The invalidations of a distribution in moto, by id: id and sorted paths.
fn invalidations(endpoint: &str, distribution: &str) -> Vec<(String, Vec<String>)> {
    let cloudfront = aws_sdk_cloudfront::Client::new(&local_config(endpoint));
    runtime().block_on(async {
        let list = cloudfront
            .list_invalidations()
            .distribution_id(distribution)
            .send()
            .await
            .unwrap();
        let mut found = Vec::new();
        let summaries = list.invalidation_list().map_or(&[][..], |l| l.items());
        for summary in summaries {
            let answer = cloudfront
                .get_invalidation()
                .distribution_id(distribution)
                .id(summary.id())
                .send()
                .await
                .unwrap();
            let invalidation = answer.invalidation().unwrap();
            let batch = invalidation.invalidation_batch().unwrap();
            let mut paths = batch.paths().unwrap().items().to_vec();
            paths.sort();
            found.push((invalidation.id().to_owned(), paths));
        }
        found.sort();
        found
    })
}

/// Runs `sitegen deploy` against moto (S3 and CloudFront) with `args`; returns stdout and
/// stderr.
fn deploy_to_moto(out: &std::path::Path, endpoint: &str, args: &[&str]) -> (String, String) {
    let mut command = deploy_command(out, endpoint);
    command.args(["--cloudfront-endpoint", endpoint]).args(args);
    run_deploy(command)
}

/// The paths a deploy printed after "CloudFront invalidation paths (n):".
fn printed_paths(stdout: &str) -> Vec<String> {
    stdout
        .split("CloudFront invalidation paths")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

fn created_id(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("CloudFront invalidation ")
                .filter(|rest| rest.contains(" created ("))
        })
        .unwrap_or_else(|| panic!("no invalidation reported:\n{stdout}"));
    line.split(' ').next().unwrap().to_owned()
}

#[test]
fn deploy_invalidates_exactly_the_changed_paths_in_cloudfront() {
    let Some(moto) = start_moto() else {
        return;
    };
    let endpoint = moto.endpoint.clone();
    let distribution = moto_site(&endpoint);
    let source = fixed_fixture();
    let out = tempfile::tempdir().unwrap();
    build(source.path(), out.path()).unwrap();

    // A first deploy uploads everything and invalidates nothing (nothing was cached).
    let (first, _) = deploy_to_moto(
        out.path(),
        &endpoint,
        &["--cloudfront-distribution", &distribution],
    );
    assert!(first.contains("uploaded index.html"), "{first}");
    assert!(
        first.contains("CloudFront invalidation paths (0):"),
        "{first}"
    );
    assert!(!first.contains("created ("), "{first}");
    assert!(invalidations(&endpoint, &distribution).is_empty());

    // A one-page body edit: that page and its twin (and the sitemap when its date moved)
    // are uploaded, and exactly their paths are invalidated, in one invalidation whose id
    // the deploy reports after waiting for it.
    let good = source.path().join("content/docs/good.md");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&good, text.replace("Fine.", "Finer.")).unwrap();
    build(source.path(), out.path()).unwrap();
    let (second, progress) = deploy_to_moto(
        out.path(),
        &endpoint,
        &["--cloudfront-distribution", &distribution],
    );
    let uploaded: Vec<&str> = second
        .lines()
        .filter_map(|l| l.strip_prefix("uploaded "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut expected = vec![
        "/docs/good/",
        "/docs/good/index.html",
        "/docs/good/index.json",
    ];
    if uploaded.contains(&"sitemap.xml") {
        expected.push("/sitemap.xml");
    }
    assert_eq!(uploaded.len(), expected.len() - 1, "{second}");
    assert_eq!(printed_paths(&second), expected);
    let id = created_id(&second);
    assert!(
        progress.contains(&format!(
            "CloudFront invalidation {id} of {} paths: Completed",
            expected.len()
        )),
        "{progress}"
    );
    assert!(second.contains(", Completed)"), "{second}");
    assert_eq!(
        invalidations(&endpoint, &distribution),
        [(id.clone(), expected.iter().map(|p| p.to_string()).collect())]
    );

    // The distribution named in site.toml, and --no-wait: the invalidation is created and
    // reported without a progress line.
    let config = source.path().join("site.toml");
    let site = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{site}\n[deploy]\ncloudfront_distribution = \"{distribution}\"\n"),
    )
    .unwrap();
    std::fs::write(&good, text.replace("Fine.", "Finest.")).unwrap();
    build(source.path(), out.path()).unwrap();
    let source_arg = source.path().to_str().unwrap();
    let (third, quiet) = deploy_to_moto(
        out.path(),
        &endpoint,
        &["--source", source_arg, "--no-wait"],
    );
    let third_id = created_id(&third);
    assert_ne!(third_id, id);
    assert!(!quiet.contains("CloudFront invalidation"), "{quiet}");
    let all = invalidations(&endpoint, &distribution);
    assert_eq!(all.len(), 2, "{all:?}");
    let (_, third_paths) = all.iter().find(|(i, _)| *i == third_id).unwrap();
    // Only files whose bytes changed were uploaded, and exactly their paths invalidated.
    assert_eq!(*third_paths, printed_paths(&third));
    assert!(third_paths.contains(&"/docs/good/index.html".to_owned()));
    drop(moto.server);
}
