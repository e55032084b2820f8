//! Last-modified dates for the sitemap and the "last updated" line.
//!
//! A page's date is, in order: its `updated` front matter; the date of the last commit that
//! touched it, when the content folder is in a git work tree and the file has no uncommitted
//! change; otherwise the file's modification time. A fresh checkout therefore gets real dates,
//! not the time of the checkout.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

/// Content-relative path → commit date (RFC 3339) for files committed and unmodified.
pub fn git_dates(content_dir: &Path) -> HashMap<String, String> {
    let mut dates = HashMap::new();
    // Spawning git costs milliseconds; outside a work tree there is nothing to ask.
    let in_work_tree = content_dir
        .canonicalize()
        .is_ok_and(|dir| dir.ancestors().any(|a| a.join(".git").exists()));
    if !in_work_tree {
        return dates;
    }
    let log = Command::new("git")
        .arg("-C")
        .arg(content_dir)
        .args([
            "log",
            "--format=%x01%cI",
            "--name-only",
            "--no-renames",
            "--relative",
            "--",
            ".",
        ])
        .output();
    let Ok(log) = log else { return dates };
    if !log.status.success() {
        return dates;
    }
    let mut current = "";
    let text = String::from_utf8_lossy(&log.stdout);
    for line in text.lines() {
        if let Some(date) = line.strip_prefix('\u{1}') {
            current = date;
        } else if !line.is_empty() && !current.is_empty() {
            dates
                .entry(line.to_owned())
                .or_insert_with(|| current.to_owned());
        }
    }
    if dates.is_empty() {
        return dates;
    }
    let changed = Command::new("git")
        .arg("-C")
        .arg(content_dir)
        .args(["diff", "--name-only", "--relative", "HEAD", "--", "."])
        .output();
    if let Ok(changed) = changed {
        for line in String::from_utf8_lossy(&changed.stdout).lines() {
            dates.remove(line);
        }
    }
    dates
}

/// RFC 3339 UTC, to the second, for a time in nanoseconds since the epoch.
pub fn format_unix(nanos: u128) -> String {
    let seconds = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let time = UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Whether `text` is [`format_unix`] of `nanos`.
pub fn is_unix(text: &str, nanos: u128) -> bool {
    format_unix(nanos) == text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_unix(1_764_165_292 * 1_000_000_000),
            "2025-11-26T13:54:52Z"
        );
        for nanos in [0, 1_764_165_292_999_999_999, 951_782_400 * 1_000_000_000] {
            assert!(is_unix(&format_unix(nanos), nanos), "{nanos}");
            assert!(
                !is_unix(&format_unix(nanos + 1_000_000_000), nanos),
                "{nanos}"
            );
        }
        assert!(!is_unix("", 0));
        assert!(is_unix("1970-01-01T00:00:00Z", 999_999_999));
    }
}
