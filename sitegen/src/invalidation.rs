//! The paths of one CloudFront invalidation: exactly the changed paths while they fit
//! CloudFront's limits, else the fewest folders collapsed to a wildcard that make them fit.
//!
//! CloudFront allows at most [`MAX_PATHS`] paths in progress per distribution, of which at
//! most [`MAX_WILDCARDS`] may end in `*`. A deploy that changed more paths than that (a
//! template edit changes every page) collapses folders, deepest level first and the folders
//! with the most changed paths first, until the list fits; only when no level's folders fit
//! in [`MAX_WILDCARDS`] does it fall back to `/*`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::deploy::CloudFrontOptions;
use crate::error::{Error, Result};

/// Paths per invalidation that CloudFront accepts in progress at once.
pub const MAX_PATHS: usize = 3000;
/// Wildcard paths CloudFront accepts in progress at once.
pub const MAX_WILDCARDS: usize = 15;

/// The folder of `path` at `depth` (`/a/b/c.html` at depth 1 is `/a/`), when `path` lies
/// strictly below it; paths shallower than that have no folder at this depth.
fn folder_at(path: &str, depth: usize) -> Option<&str> {
    let mut end = 0;
    for _ in 0..depth {
        let next = path[end + 1..].find('/')?;
        end += 1 + next;
    }
    // The folder itself (`/a/`) is covered by its wildcard (`/a/*`) as well.
    Some(&path[..=end])
}

/// The invalidation for `paths` (sorted, distinct, each starting with `/`): the paths
/// themselves when they fit, else some folders as `/folder/*` plus the remaining paths.
pub fn collapse(paths: &[String]) -> Vec<String> {
    if paths.len() <= MAX_PATHS {
        return paths.to_vec();
    }
    let deepest = paths
        .iter()
        .map(|p| p.matches('/').count())
        .max()
        .unwrap_or(1);
    for depth in (1..deepest).rev() {
        let mut folders: BTreeMap<&str, usize> = BTreeMap::new();
        for path in paths {
            if let Some(folder) = folder_at(path, depth) {
                *folders.entry(folder).or_default() += 1;
            }
        }
        // Largest folders first; equal sizes in path order, so the result is deterministic.
        let mut by_size: Vec<(&str, usize)> = folders.into_iter().collect();
        by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut remaining = paths.len();
        let mut chosen: Vec<&str> = Vec::new();
        for (folder, count) in by_size {
            if remaining <= MAX_PATHS || chosen.len() == MAX_WILDCARDS {
                break;
            }
            if count > 1 {
                chosen.push(folder);
                remaining = remaining - count + 1;
            }
        }
        if remaining <= MAX_PATHS {
            let mut result: Vec<String> = paths
                .iter()
                .filter(|p| !chosen.iter().any(|folder| p.starts_with(folder)))
                .cloned()
                .chain(chosen.iter().map(|folder| format!("{folder}*")))
                .collect();
            result.sort();
            return result;
        }
    }
    vec!["/*".to_owned()]
}

/// An invalidation this deploy created.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub id: String,
    /// The paths sent (after [`collapse`]).
    pub paths: Vec<String>,
    /// CloudFront's last reported status: `Completed` after a wait, else most likely
    /// `InProgress`.
    pub status: String,
}

/// How often a wait asks CloudFront for the status, and for how long at most.
const POLL: Duration = Duration::from_secs(5);
const WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

fn cloudfront_error(what: &str, err: impl std::error::Error) -> Error {
    Error::Other(format!(
        "CloudFront {what}: {}",
        crate::templates::chain(&err)
    ))
}

/// Creates one invalidation of `changed` (sorted viewer paths) and, unless told not to,
/// waits until CloudFront reports it completed, with a progress line on stderr.
pub async fn create(
    shared: &aws_config::SdkConfig,
    options: &CloudFrontOptions,
    changed: &[String],
) -> Result<Created> {
    use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
    let mut config = aws_sdk_cloudfront::config::Builder::from(shared);
    if let Some(endpoint) = &options.endpoint {
        config = config.endpoint_url(endpoint);
    }
    let client = aws_sdk_cloudfront::Client::from_conf(config.build());
    let paths = collapse(changed);
    // Unique per request: CloudFront answers a repeated reference with the earlier batch.
    let reference = format!(
        "sitegen-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let quantity = i32::try_from(paths.len()).unwrap_or(i32::MAX);
    let batch = InvalidationBatch::builder()
        .paths(
            Paths::builder()
                .quantity(quantity)
                .set_items(Some(paths.clone()))
                .build()
                .map_err(|err| cloudfront_error("request", err))?,
        )
        .caller_reference(reference)
        .build()
        .map_err(|err| cloudfront_error("request", err))?;
    let answer = client
        .create_invalidation()
        .distribution_id(&options.distribution)
        .invalidation_batch(batch)
        .send()
        .await
        .map_err(|err| cloudfront_error("create invalidation", err))?;
    let invalidation = answer.invalidation().ok_or_else(|| {
        Error::Other("CloudFront create invalidation: the answer has no invalidation".into())
    })?;
    let mut created = Created {
        id: invalidation.id().to_owned(),
        paths,
        status: invalidation.status().to_owned(),
    };
    if options.wait {
        wait(&client, &options.distribution, &mut created).await?;
    }
    Ok(created)
}

async fn wait(
    client: &aws_sdk_cloudfront::Client,
    distribution: &str,
    created: &mut Created,
) -> Result<()> {
    let started = Instant::now();
    let mut stderr = std::io::stderr();
    // On a terminal the line is redrawn in place; in a log, one line per poll.
    let end = if stderr.is_terminal() { '\r' } else { '\n' };
    loop {
        let _ = write!(
            stderr,
            "CloudFront invalidation {} of {} paths: {} ({} s){end}",
            created.id,
            created.paths.len(),
            created.status,
            started.elapsed().as_secs()
        );
        if created.status == "Completed" {
            if end == '\r' {
                let _ = writeln!(stderr);
            }
            return Ok(());
        }
        if started.elapsed() > WAIT_LIMIT {
            return Err(Error::Other(format!(
                "CloudFront invalidation {} still {} after {} minutes; it goes on without us \
                 (check it with `aws cloudfront get-invalidation`)",
                created.id,
                created.status,
                WAIT_LIMIT.as_secs() / 60
            )));
        }
        tokio::time::sleep(POLL).await;
        let answer = client
            .get_invalidation()
            .distribution_id(distribution)
            .id(&created.id)
            .send()
            .await
            .map_err(|err| cloudfront_error("get invalidation", err))?;
        if let Some(invalidation) = answer.invalidation() {
            invalidation.status().clone_into(&mut created.status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(section: &str, count: usize) -> Vec<String> {
        (0..count)
            .flat_map(|n| {
                [
                    format!("/docs/{section}/p{n:04}/"),
                    format!("/docs/{section}/p{n:04}/index.html"),
                    format!("/docs/{section}/p{n:04}/index.json"),
                ]
            })
            .collect()
    }

    #[test]
    fn at_the_limit_every_path_is_kept() {
        let mut paths = pages("a", 1000);
        paths.sort();
        assert_eq!(paths.len(), MAX_PATHS);
        assert_eq!(collapse(&paths), paths);
    }

    #[test]
    fn one_past_the_limit_collapses_the_largest_deepest_folder() {
        let mut paths = pages("a", 1000);
        paths.push("/sitemap.xml".to_owned());
        paths.sort();
        let result = collapse(&paths);
        // Depth 3 folders hold 3 paths each: collapsing one page folder is enough.
        assert_eq!(result.len(), MAX_PATHS - 1);
        assert_eq!(result.iter().filter(|p| p.ends_with('*')).count(), 1);
        assert!(result.contains(&"/docs/a/p0000/*".to_owned()), "{result:?}");
        assert!(!result.contains(&"/docs/a/p0000/index.html".to_owned()));
        assert!(result.contains(&"/docs/a/p0001/index.html".to_owned()));
        assert!(result.contains(&"/sitemap.xml".to_owned()));
    }

    #[test]
    fn many_sections_collapse_to_section_wildcards() {
        // 6,001 paths; page folders (3 paths each) cannot make that fit in 15 wildcards.
        let mut paths: Vec<String> = (0..4)
            .flat_map(|s| pages(&format!("s{s:03}"), 500))
            .collect();
        paths.push("/sitemap.xml".to_owned());
        paths.sort();
        let result = collapse(&paths);
        assert!(result.len() <= MAX_PATHS);
        let wildcards: Vec<&String> = result.iter().filter(|p| p.ends_with('*')).collect();
        assert!(wildcards.len() <= MAX_WILDCARDS, "{wildcards:?}");
        // Every changed path is covered by the result.
        for path in &paths {
            assert!(
                result.iter().any(|r| match r.strip_suffix('*') {
                    Some(folder) => path.starts_with(folder),
                    None => r == path,
                }),
                "{path} not covered"
            );
        }
        assert_eq!(wildcards, ["/docs/s000/*", "/docs/s001/*", "/docs/s002/*"]);
        assert_eq!(result.len(), 3 + 1500 + 1);
    }

    #[test]
    fn too_many_folders_fall_back_to_everything() {
        // 4,000 top-level files: no folder to collapse.
        let mut paths: Vec<String> = (0..4000).map(|n| format!("/f{n:05}.html")).collect();
        paths.sort();
        assert_eq!(collapse(&paths), ["/*"]);
    }
}
