//! What the handlers answer: JSON bodies, empty answers, times, and the answers several
//! handlers share (a commit's outcome, an unknown version).

use serde::Serialize;
use sync_protocol::ObjectId;
use sync_protocol::wire::{self, ProblemCode};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::app::App;
use crate::catalog::{CommitOutcome, ProjectId, Timestamp, Version, VersionNumber};
use crate::events::head_changed;
use crate::metrics::Metrics;
use crate::problem::Problem;

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(bytes.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An empty `204 No Content` answer.
pub fn no_content() -> Response {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A timestamp as RFC 3339 in UTC with milliseconds, e.g. `2026-11-26T14:00:02.123Z`. The
/// catalog holds no time before 1970; one would be shown as the epoch.
pub fn rfc3339(time: Timestamp) -> String {
    let time = std::time::SystemTime::from(time).max(std::time::UNIX_EPOCH);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Answers a commit outcome (a push, commit or restore), publishing a new head to the event
/// streams.
pub fn commit_answer(
    app: &App,
    project: ProjectId,
    outcome: CommitOutcome,
) -> Result<Response, Problem> {
    let settled = settle_outcome(app, project, outcome)?;
    Ok(json(
        StatusCode::OK,
        &wire::Committed {
            version: settled.version.number,
            root: settled.version.root,
            replayed: settled.replayed,
            rebased: settled.rebased,
        },
    ))
}

/// A commit that went through, as [`settle_outcome`] gives it.
#[derive(Debug)]
pub struct Settled {
    pub version: Version,
    /// The push id had committed it before: nothing new was written.
    pub replayed: bool,
    /// Committed on a newer head than the push's base (a server-side rebase).
    pub rebased: bool,
}

/// What every commit outcome does before it is answered (as JSON or as a page): a new head is
/// counted and published to the event streams; a conflict is counted and becomes the
/// `409 conflict` problem.
pub fn settle_outcome(
    app: &App,
    project: ProjectId,
    outcome: CommitOutcome,
) -> Result<Settled, Problem> {
    match outcome {
        CommitOutcome::Committed {
            version,
            replayed,
            rebased,
        } => {
            if !replayed {
                Metrics::add(&app.metrics.pushes_committed, 1);
                app.events
                    .publish(project, head_changed(project, version.number, version.root));
                tracing::info!(%project, version = version.number, root = %version.root, rebased, "committed");
            }
            Ok(Settled {
                version,
                replayed,
                rebased,
            })
        }
        CommitOutcome::Conflict {
            head_version,
            head_root,
        } => {
            Metrics::add(&app.metrics.push_conflicts, 1);
            Err(conflict(head_version, head_root))
        }
    }
}

/// The `409 conflict` problem: the base is stale; pull, merge and push again.
pub fn conflict(head_version: VersionNumber, head_root: ObjectId) -> Problem {
    Problem::conflict(wire::Head {
        version: head_version,
        root: head_root,
    })
}

/// The answer for a version number the project does not have (the project itself is visible).
pub fn unknown_version(number: VersionNumber) -> Problem {
    Problem::new(ProblemCode::UnknownVersion)
        .with_detail(format!("the project has no version {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(1_795_701_602_123)),
            "2026-11-26T14:00:02.123Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
