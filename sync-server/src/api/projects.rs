//! Projects: the list, one project's head, its history and restores.
//!
//! - `GET /v1/projects` → `{projects: [project]}`, every project the caller may see
//! - `GET /v1/projects/{project}` → project: `{id, team, name, role, version, root, created}`
//! - `GET /v1/projects/{project}/versions?before=&limit=` → `{versions: [version]}`, newest first
//! - `GET /v1/projects/{project}/versions/{number}` → version
//! - `POST /v1/projects/{project}/restore` `{version, base_version, push_id?, message?}` → 200
//!   `{version, root, replayed}` or 409 `conflict` (editor or owner)

use sync_protocol::wire;
use warp::http::StatusCode;
use warp::reply::Response;

use super::answer::{commit_answer, json, unknown_version};
use super::request::{ApiRequest, authenticate, parse_query, project_access, read_json};
use super::views;
use crate::app::App;
use crate::catalog::{
    CatalogError, CommitOutcome, Entity, PushId, RestoreRequest, Role, VersionNumber, VersionPage,
    empty_root,
};
use crate::problem::Problem;

pub async fn list(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let projects = app.catalog.projects_visible_to(caller.account.id).await?;
    Ok(json(
        StatusCode::OK,
        &wire::ProjectList {
            projects: projects
                .iter()
                .map(|visible| views::project(&visible.project, visible.role))
                .collect(),
        },
    ))
}

pub async fn head(app: &App, request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let (_, project, role) = project_access(app, &request, project, Role::Viewer).await?;
    Ok(json(StatusCode::OK, &views::project(&project, role)))
}

pub async fn versions(app: &App, request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let (_, project, _) = project_access(app, &request, project, Role::Viewer).await?;
    let query: wire::HistoryQuery = parse_query(&request)?;
    let mut page = VersionPage {
        before: query.before,
        ..VersionPage::default()
    };
    if let Some(limit) = query.limit {
        page.limit = limit.clamp(1, crate::catalog::limits::MAX_VERSION_PAGE);
    }
    let versions = app.catalog.versions(project.id, page).await?;
    Ok(json(
        StatusCode::OK,
        &wire::VersionList {
            versions: versions.iter().map(views::version).collect(),
        },
    ))
}

pub async fn version(
    app: &App,
    request: ApiRequest,
    project: &str,
    number: &str,
) -> Result<Response, Problem> {
    let (_, project, _) = project_access(app, &request, project, Role::Viewer).await?;
    let number: VersionNumber = number.parse().map_err(|_| Problem::not_found())?;
    let version = app
        .catalog
        .version(project.id, number)
        .await?
        .ok_or_else(|| unknown_version(number))?;
    Ok(json(StatusCode::OK, &views::version(&version)))
}

pub async fn restore(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let (caller, project, _) = project_access(app, &request, project, Role::Editor).await?;
    let body: wire::Restore = read_json(&mut request).await?;
    let push_id = match &body.push_id {
        Some(text) => PushId::new(text)?,
        None => PushId::random(),
    };
    let outcome = restore_version(
        app,
        RestoreRequest {
            project: project.id,
            push_id,
            base_version: body.base_version,
            version: body.version,
            author: caller.account.id,
            message: body.message,
        },
    )
    .await?;
    commit_answer(app, project.id, outcome)
}

/// Restores an old version as a new one (the caller has checked the editor role): the API's
/// restore and the account pages' alike.
pub(crate) async fn restore_version(
    app: &App,
    request: RestoreRequest,
) -> Result<CommitOutcome, Problem> {
    let version = request.version;
    // The old version's closure is stored; its root is touched, so a collection deleting the
    // version (retention) meanwhile keeps what the restore commits, or this refuses it.
    if let Some(old) = app.catalog.version(request.project, version).await?
        && old.root != empty_root()
    {
        let objects = app.objects(request.project).await?;
        if objects.info(&[old.root], true).await?[0].is_none() {
            return Err(unknown_version(version));
        }
    }
    app.catalog
        .restore(request)
        .await
        .map_err(|error| match error {
            CatalogError::NotFound {
                entity: Entity::Version,
                ..
            } => unknown_version(version),
            other => other.into(),
        })
}
