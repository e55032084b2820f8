//! `sitegen deploy`: uploads to S3 only the files whose content changed, with the right
//! Content-Type and Cache-Control, then invalidates exactly the changed paths in CloudFront
//! (when given a distribution; otherwise it prints them).
//!
//! The decision is a pure function ([`plan`]) of the local files and the bucket's listing, so
//! it is unit-tested without a network. A file is unchanged when the bucket's ETag equals its
//! MD5, which holds for every object this command writes (single-part, unencrypted or SSE-S3
//! puts). Uploads go in dependency order: hashed assets first, then other files, HTML last,
//! so a page never goes live before what it references.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::assets::{content_type, is_hashed_asset};
use crate::error::{Error, Result};
use crate::manifest::MANIFEST_DIR;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const SHORT_LIVED: &str = "public, max-age=300, must-revalidate";

/// A file of the output folder, ready to upload.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalFile {
    /// Object key (path relative to the output folder, `/` separators, plus the prefix).
    pub key: String,
    pub path: PathBuf,
    pub md5_hex: String,
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

/// What a deploy will do.
#[derive(Debug, Default, PartialEq)]
pub struct DeployPlan {
    pub uploads: Vec<LocalFile>,
    pub unchanged: usize,
    /// Keys in the bucket that the output no longer has (deleted only with `--delete`).
    pub stale: Vec<String>,
    /// CloudFront paths whose cached copies are now wrong. Never `/*`.
    pub invalidations: Vec<String>,
}

pub fn cache_control(rel: &str) -> &'static str {
    if is_hashed_asset(rel) {
        IMMUTABLE
    } else {
        SHORT_LIVED
    }
}

/// The viewer paths under which CloudFront may have cached an object.
pub fn viewer_paths(key: &str) -> Vec<String> {
    match key.strip_suffix("index.html") {
        Some(folder) => vec![format!("/{folder}"), format!("/{key}")],
        None => vec![format!("/{key}")],
    }
}

fn upload_rank(file: &LocalFile) -> u8 {
    if file.cache_control == IMMUTABLE {
        0
    } else if file.content_type.starts_with("text/html") {
        2
    } else {
        1
    }
}

/// Compares local files with the bucket's `key → ETag` listing.
pub fn plan(local: &[LocalFile], remote: &HashMap<String, String>) -> DeployPlan {
    let mut result = DeployPlan::default();
    for file in local {
        let same = remote
            .get(&file.key)
            .is_some_and(|etag| etag.trim_matches('"').eq_ignore_ascii_case(&file.md5_hex));
        if same {
            result.unchanged += 1;
            continue;
        }
        // A new key had nothing cached; only replaced short-lived objects need invalidating.
        if remote.contains_key(&file.key) && file.cache_control != IMMUTABLE {
            result.invalidations.extend(viewer_paths(&file.key));
        }
        result.uploads.push(file.clone());
    }
    let local_keys: std::collections::HashSet<&str> =
        local.iter().map(|f| f.key.as_str()).collect();
    result.stale = remote
        .keys()
        .filter(|key| !local_keys.contains(key.as_str()))
        .cloned()
        .collect();
    result.stale.sort();
    result
        .uploads
        .sort_by(|a, b| (upload_rank(a), &a.key).cmp(&(upload_rank(b), &b.key)));
    result.invalidations.sort();
    result.invalidations.dedup();
    result
}

/// Lists and hashes the output folder (without sitegen's own state).
pub fn local_files(out: &Path, prefix: &str) -> Result<Vec<LocalFile>> {
    let mut files = Vec::new();
    let mut stack = vec![(out.to_owned(), String::new())];
    while let Some((dir, rel_prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|err| Error::io(&dir, err))? {
            let entry = entry.map_err(|err| Error::io(&dir, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if rel_prefix.is_empty() && name == MANIFEST_DIR {
                continue;
            }
            let path = entry.path();
            let rel = format!("{rel_prefix}{name}");
            if path.is_dir() {
                stack.push((path, format!("{rel}/")));
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|err| Error::io(&path, err))?;
            let md5_hex: String = Md5::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            files.push(LocalFile {
                key: format!("{prefix}{rel}"),
                path,
                md5_hex,
                content_type: content_type(&rel),
                cache_control: cache_control(&rel),
            });
        }
    }
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(files)
}

/// Where to deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub out: PathBuf,
    pub bucket: String,
    /// Key prefix inside the bucket (empty, or ending with `/`).
    pub prefix: String,
    pub region: String,
    /// S3-compatible endpoint such as `http://127.0.0.1:9000`; path-style addressing is used.
    pub endpoint: Option<String>,
    /// Plan and print, upload nothing.
    pub dry_run: bool,
    /// Also delete objects the output no longer has.
    pub delete: bool,
    /// Invalidate the changed paths in this CloudFront distribution after uploading.
    pub cloudfront: Option<CloudFrontOptions>,
}

/// The CloudFront side of a deploy.
#[derive(Debug, Clone)]
pub struct CloudFrontOptions {
    pub distribution: String,
    /// A CloudFront-compatible endpoint (an emulator, in tests); the AWS one otherwise.
    pub endpoint: Option<String>,
    /// Wait until the invalidation completes, with a progress line on stderr.
    pub wait: bool,
}

/// What a deploy did.
#[derive(Debug, Default, PartialEq)]
pub struct DeployOutcome {
    pub plan: DeployPlan,
    /// The CloudFront invalidation created, if any.
    pub invalidation: Option<crate::invalidation::Created>,
}

fn s3_error(what: &str, err: impl std::error::Error) -> Error {
    Error::Other(format!("S3 {what}: {}", crate::templates::chain(&err)))
}

/// Runs a deploy and returns what it did. Credentials come from the usual AWS sources
/// (environment variables, profiles, instance roles).
pub fn run(options: &DeployOptions) -> Result<DeployOutcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::io("tokio runtime", err))?;
    runtime.block_on(run_async(options))
}

async fn run_async(options: &DeployOptions) -> Result<DeployOutcome> {
    let local = local_files(&options.out, &options.prefix)?;
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(options.region.clone()))
        .load()
        .await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(true);
    if let Some(endpoint) = &options.endpoint {
        config = config.endpoint_url(endpoint);
    }
    let config = config.build();
    let client = aws_sdk_s3::Client::from_conf(config);

    let mut remote = HashMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = client
            .list_objects_v2()
            .bucket(&options.bucket)
            .prefix(&options.prefix);
        if let Some(token) = &token {
            request = request.continuation_token(token);
        }
        let page = request.send().await.map_err(|err| s3_error("list", err))?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                // An empty ETag never equals an MD5, so such objects count as changed.
                let etag = object.e_tag().unwrap_or_default();
                remote.insert(key.to_owned(), etag.to_owned());
            }
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    // Some S3-compatible servers leave ETags out of listings; ask for the ones that matter.
    let local_keys: std::collections::HashSet<&str> =
        local.iter().map(|f| f.key.as_str()).collect();
    let missing: Vec<String> = remote
        .iter()
        .filter(|(key, etag)| etag.is_empty() && local_keys.contains(key.as_str()))
        .map(|(key, _)| key.clone())
        .collect();
    for key in missing {
        let head = client
            .head_object()
            .bucket(&options.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|err| s3_error(&format!("head {key}"), err))?;
        if let Some(etag) = head.e_tag() {
            remote.insert(key, etag.to_owned());
        }
    }
    let mut result = plan(&local, &remote);
    if options.delete {
        for key in &result.stale {
            if !key.ends_with(".css") && !key.ends_with(".js") {
                result.invalidations.extend(viewer_paths(
                    key.strip_prefix(&options.prefix).unwrap_or(key),
                ));
            }
        }
        result.invalidations.sort();
        result.invalidations.dedup();
    }
    if options.dry_run {
        return Ok(DeployOutcome {
            plan: result,
            invalidation: None,
        });
    }
    for file in &result.uploads {
        let body = aws_sdk_s3::primitives::ByteStream::from_path(&file.path)
            .await
            .map_err(|err| s3_error("read", err))?;
        client
            .put_object()
            .bucket(&options.bucket)
            .key(&file.key)
            .content_type(file.content_type)
            .cache_control(file.cache_control)
            .body(body)
            .send()
            .await
            .map_err(|err| s3_error(&format!("put {}", file.key), err))?;
    }
    if options.delete {
        for key in &result.stale {
            client
                .delete_object()
                .bucket(&options.bucket)
                .key(key)
                .send()
                .await
                .map_err(|err| s3_error(&format!("delete {key}"), err))?;
        }
    }
    let invalidation = match &options.cloudfront {
        Some(cloudfront) if !result.invalidations.is_empty() => {
            Some(crate::invalidation::create(&shared, cloudfront, &result.invalidations).await?)
        }
        _ => None,
    };
    Ok(DeployOutcome {
        plan: result,
        invalidation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str, md5: &str) -> LocalFile {
        LocalFile {
            key: key.into(),
            path: PathBuf::from(key),
            md5_hex: md5.into(),
            content_type: content_type(key),
            cache_control: cache_control(key),
        }
    }

    #[test]
    fn uploads_only_changes_and_invalidates_changed_html() {
        let local = [
            file("index.html", "aa"),
            file("docs/a/index.html", "bb"),
            file("docs/new/index.html", "cc"),
            file("assets/style.0123456789.css", "dd"),
            file("sitemap.xml", "ee"),
        ];
        let remote: HashMap<String, String> = [
            ("index.html", "\"aa\""),
            ("docs/a/index.html", "\"old\""),
            ("sitemap.xml", "\"old\""),
            ("docs/gone/index.html", "\"x\""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let plan = plan(&local, &remote);
        let keys: Vec<&str> = plan.uploads.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "assets/style.0123456789.css",
                "sitemap.xml",
                "docs/a/index.html",
                "docs/new/index.html"
            ]
        );
        assert_eq!(plan.unchanged, 1);
        assert_eq!(plan.stale, ["docs/gone/index.html"]);
        assert_eq!(
            plan.invalidations,
            ["/docs/a/", "/docs/a/index.html", "/sitemap.xml"]
        );
        assert!(!plan.invalidations.iter().any(|p| p.contains('*')));
        assert_eq!(plan.uploads[0].cache_control, IMMUTABLE);
        assert_eq!(plan.uploads[3].cache_control, SHORT_LIVED);
    }
}
