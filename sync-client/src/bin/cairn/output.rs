//! What the commands print: text for people, or JSON with `--json`.

use serde::Serialize;
use serde_json::json;
use sync_client::operations::watch::WatchEvent;
use sync_client::operations::{PullOutcome, PushOutcome, SyncOutcome};
use sync_client::timing::free_in_background;
use sync_client::working_copy::WorkingCopy;
use sync_client::working_copy::apply::{ApplyReport, ConflictSummary, HeldBackReason, summary};
use sync_client::working_copy::scan::Skipped;
use sync_client::working_copy::status::PathChange;

pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn report_json(report: &ApplyReport) -> serde_json::Value {
    json!({
        "summary": summary(report),
        "written": report.written.iter().map(|path| path.as_str()).collect::<Vec<_>>(),
        "removed": report.removed.iter().map(|path| path.as_str()).collect::<Vec<_>>(),
        "conflict_copies": report
            .copied
            .iter()
            .map(|(from, to)| json!({"path": from.as_str(), "copy": to.as_str()}))
            .collect::<Vec<_>>(),
        "conflicts": report.conflicts.iter().map(ConflictSummary::from).collect::<Vec<_>>(),
        "content_merged": report.content_merged.iter().map(|path| path.as_str()).collect::<Vec<_>>(),
        "conflict_markers": report
            .marked
            .iter()
            .map(|(path, at)| json!({"path": path.as_str(), "merge": at.as_str()}))
            .collect::<Vec<_>>(),
        "held_back": report.held_back,
    })
}

pub(crate) fn pull_json(outcome: &PullOutcome) -> serde_json::Value {
    json!({
        "from": outcome.from,
        "version": outcome.version,
        "root": outcome.root.to_hex(),
        "objects": outcome.objects,
        "bytes": outcome.bytes,
        "applied": outcome.report.as_ref().map(report_json),
    })
}

pub(crate) fn push_json(outcome: &PushOutcome) -> serde_json::Value {
    match outcome {
        PushOutcome::NothingToPush { version } => json!({"pushed": false, "version": version}),
        PushOutcome::Committed {
            committed,
            objects,
            bytes,
        } => json!({
            "pushed": true,
            "version": committed.version,
            "root": committed.root.to_hex(),
            "replayed": committed.replayed,
            "rebased": committed.rebased,
            "objects": objects,
            "bytes": bytes,
        }),
    }
}

pub(crate) fn print_pull(outcome: &PullOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&pull_json(outcome));
    }
    print_pull_text(outcome);
    Ok(())
}

pub(crate) fn print_pull_text(outcome: &PullOutcome) {
    let Some(report) = &outcome.report else {
        println!("Already at version {}.", outcome.version);
        return;
    };
    match outcome.from {
        Some(from) => println!("Pulled version {} (from {from}).", outcome.version),
        None => println!("Pulled version {}.", outcome.version),
    }
    // Merged files and merges with markers get their own lines below.
    let said_below = |path: &&sync_protocol::tree::Path| {
        report.content_merged.contains(path) || report.marked.iter().any(|(_, at)| at == *path)
    };
    for path in report.written.iter().filter(|path| !said_below(path)) {
        println!("  U  {path}");
    }
    for path in &report.content_merged {
        println!("  M  {path}: both sides changed it; the changes merged");
    }
    for path in &report.removed {
        println!("  D  {path}");
    }
    for (from, to) in &report.copied {
        println!("  C  {from}: both sides changed it; your version is kept as {to}");
    }
    for (path, at) in &report.marked {
        println!("     {path}: the changes overlap; the merge with conflict markers is in {at}");
    }
    for held in &report.held_back {
        println!(
            "  !  {}: not updated: {}; pull again once that is fixed",
            held.path,
            held_back_reason(&held.reason)
        );
    }
}

pub(crate) fn print_sync(outcome: &SyncOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({
            "pulls": outcome.pulls.iter().map(pull_json).collect::<Vec<_>>(),
            "push": push_json(&outcome.push),
        }));
    }
    for pull in &outcome.pulls {
        print_pull_text(pull);
    }
    match &outcome.push {
        PushOutcome::NothingToPush { version } => match version {
            Some(version) => println!("Nothing to push; at version {version}."),
            None => println!("Nothing to push."),
        },
        PushOutcome::Committed {
            committed,
            objects,
            bytes,
        } => println!(
            "Pushed version {} ({objects} objects, {bytes} bytes{}{}).",
            committed.version,
            if committed.replayed {
                ", already committed by an earlier attempt"
            } else {
                ""
            },
            if committed.rebased {
                ", rebased onto others' changes"
            } else {
                ""
            }
        ),
    }
    Ok(())
}

#[derive(Serialize)]
struct StatusJson<'a> {
    root: String,
    server: &'a str,
    project: &'a str,
    base_version: Option<u64>,
    changes: &'a [PathChange],
    pending: Vec<&'a str>,
    skipped: Vec<SkippedJson>,
    files: u64,
    files_read: u64,
    /// Folders the scan read: all of them, or with a file-system monitor only those holding
    /// what changed.
    folders_walked: u64,
}

#[derive(Serialize)]
struct SkippedJson {
    path: String,
    reason: String,
}

impl From<&Skipped> for SkippedJson {
    fn from(skipped: &Skipped) -> Self {
        Self {
            path: skipped.path.to_string_lossy().into_owned(),
            reason: skipped.reason.to_string(),
        }
    }
}

pub(crate) fn status(copy: &WorkingCopy, json: bool) -> anyhow::Result<()> {
    let status = copy.status()?;
    if json {
        let out = StatusJson {
            root: copy.root().display().to_string(),
            server: &copy.config().server,
            project: &copy.config().project,
            base_version: status.base_version,
            changes: &status.changes,
            pending: status.pending.iter().map(|path| path.as_str()).collect(),
            skipped: status.scan.skipped.iter().map(SkippedJson::from).collect(),
            files: status.scan.counters.files,
            files_read: status.scan.counters.files_read,
            folders_walked: status.scan.counters.dirs,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        free_in_background(status);
        return Ok(());
    }
    match status.base_version {
        Some(version) => println!(
            "Project {} on {}, at version {version}.",
            copy.config().project,
            copy.config().server
        ),
        None => println!(
            "Project {} on {}, never synced.",
            copy.config().project,
            copy.config().server
        ),
    }
    if status.changes.is_empty() {
        println!("No changes.");
    } else {
        println!("Changes since the last sync:");
        for change in &status.changes {
            println!("  {}  {}", change.change.letter(), change.path);
        }
    }
    if !status.pending.is_empty() {
        // Paths a pull had to leave, or others' changes a rebased push has not brought here.
        println!(
            "Changed on the server, not yet here (`cairn pull` brings them; if a pull left \
             them, fix what held them back first):"
        );
        for path in &status.pending {
            println!("  {path}");
        }
    }
    if !status.scan.skipped.is_empty() {
        println!("Not synced:");
        for skipped in &status.scan.skipped {
            println!("  {}: {}", skipped.path.display(), skipped.reason);
        }
    }
    free_in_background(status);
    Ok(())
}

/// One line (or block) per sync of a watch that changed something; failures on stderr.
pub(crate) fn print_watch_event(event: &WatchEvent<'_>, json: bool) {
    match event {
        WatchEvent::Synced(outcome) => {
            let pulled = outcome.pulls.iter().any(|pull| pull.report.is_some());
            let pushed = matches!(outcome.push, PushOutcome::Committed { .. });
            if !pulled && !pushed {
                return;
            }
            if json {
                let line = json!({
                    "pulls": outcome.pulls.iter().map(pull_json).collect::<Vec<_>>(),
                    "push": push_json(&outcome.push),
                });
                println!("{line}");
            } else {
                let _ = print_sync(outcome, false);
            }
        }
        WatchEvent::Failed(error) => {
            eprintln!(
                "cairn watch: the sync failed: {}; trying again later",
                crate::errors::client_message(error)
            );
        }
        WatchEvent::Reconnected => eprintln!("cairn watch: the server answers again"),
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

fn held_back_reason(reason: &HeldBackReason) -> String {
    match reason {
        HeldBackReason::ChangedSinceScan => "it changed while the pull ran".to_owned(),
        HeldBackReason::Unreadable => "it could not be read".to_owned(),
        HeldBackReason::Occupied => {
            "something that is not synced (an ignored file, a symbolic link, a folder that could \
             not be emptied) takes its name"
                .to_owned()
        }
        HeldBackReason::LocalEditKept => "your edit had nowhere safe to go".to_owned(),
        HeldBackReason::CopyFailed { error } => {
            format!("the conflict copy of your edit could not be made ({error})")
        }
        other => format!("{other:?}"),
    }
}
