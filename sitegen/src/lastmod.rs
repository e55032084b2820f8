//! Last-modified dates for the sitemap and the "last updated" line.
//!
//! A page's date is, in order: its `updated` front matter; the date of the last commit that
//! touched it, when the content folder is in a git work tree and the file has no uncommitted
//! change; otherwise the file's modification time. A fresh checkout therefore gets real dates,
//! not the time of the checkout.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

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

/// RFC 3339 UTC for a time in nanoseconds since the epoch.
pub fn format_unix(nanos: u128) -> String {
    let seconds = (nanos / 1_000_000_000) as i64;
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Whether `text` is [`format_unix`] of `nanos`, without formatting a string.
pub fn is_unix(text: &str, nanos: u128) -> bool {
    let seconds = (nanos / 1_000_000_000) as i64;
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let Ok(year) = u32::try_from(year) else {
        return false;
    };
    if year > 9999 || text.len() != 20 {
        return format_unix(nanos) == text;
    }
    let mut expected = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for index in (at..at + width).rev() {
            expected[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, (rest / 3600) as u32);
    put(14, 2, (rest % 3600 / 60) as u32);
    put(17, 2, (rest % 60) as u32);
    text.as_bytes() == expected
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
