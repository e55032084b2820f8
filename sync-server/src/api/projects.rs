//! Projects: the list, one project's head, its history and restores.
//!
//! - `GET /v1/projects` → `{projects: [project]}`, every project the caller may see
//! - `GET /v1/projects/{id}` → project: `{id, team, name, role, version, root, created}`
//! - `GET /v1/projects/{id}/versions?before=&limit=` → `{versions: [version]}`, newest first
//! - `GET /v1/projects/{id}/versions/{n}` → version
//! - `POST /v1/projects/{id}/restore` `{version, base_version, push_id?, message?}` → 200
//!   `{version, root, replayed}` or 409 `conflict` (editor or owner)

use serde::{Deserialize, Serialize};
use sync_protocol::ObjectId;
use warp::http::StatusCode;
use warp::reply::Response;

use super::sync::commit_answer;
use super::{ApiRequest, authenticate, json, parse_query, project_access, read_json, rfc3339};
use crate::app::App;
use crate::catalog::{
    CatalogError, Entity, Project, PushId, RestoreRequest, Role, Version, VersionNumber,
    VersionPage,
};
use crate::problem::Problem;

#[derive(Debug, Serialize)]
pub struct ProjectBody {
    pub id: String,
    pub team: String,
    pub name: String,
    pub role: &'static str,
    /// The head version number.
    pub version: VersionNumber,
    /// The head version's root dir id.
    pub root: String,
    pub created: String,
}

impl ProjectBody {
    pub fn new(project: &Project, role: Role) -> Self {
        Self {
            id: project.id.to_string(),
            team: project.team.to_string(),
            name: project.name.clone(),
            role: role.as_str(),
            version: project.head_version,
            root: project.head_root.to_string(),
            created: rfc3339(project.created),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuthorBody {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct VersionBody {
    pub number: VersionNumber,
    pub root: String,
    pub parent: Option<VersionNumber>,
    pub author: AuthorBody,
    pub time: String,
    pub message: String,
    pub push_id: Option<String>,
}

impl From<&Version> for VersionBody {
    fn from(version: &Version) -> Self {
        Self {
            number: version.number,
            root: version.root.to_string(),
            parent: version.parent,
            author: AuthorBody {
                id: version.author.to_string(),
                name: version.author_name.clone(),
            },
            time: rfc3339(version.time),
            message: version.message.clone(),
            push_id: version.push_id.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Debug, Serialize)]
struct ProjectList {
    projects: Vec<ProjectBody>,
}

pub async fn list(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let projects = app.catalog.projects_visible_to(caller.account.id).await?;
    Ok(json(
        StatusCode::OK,
        &ProjectList {
            projects: projects
                .iter()
                .map(|visible| ProjectBody::new(&visible.project, visible.role))
                .collect(),
        },
    ))
}

pub async fn head(app: &App, request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, role) = project_access(app, &caller, project, Role::Viewer).await?;
    Ok(json(StatusCode::OK, &ProjectBody::new(&project, role)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    before: Option<VersionNumber>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct VersionList {
    versions: Vec<VersionBody>,
}

pub async fn versions(app: &App, request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Viewer).await?;
    let query: HistoryQuery = parse_query(&request)?;
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
        &VersionList {
            versions: versions.iter().map(VersionBody::from).collect(),
        },
    ))
}

pub async fn version(
    app: &App,
    request: ApiRequest,
    project: &str,
    number: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Viewer).await?;
    let number: VersionNumber = number.parse().map_err(|_| Problem::not_found())?;
    let version = app
        .catalog
        .version(project.id, number)
        .await?
        .ok_or_else(|| unknown_version(number))?;
    Ok(json(StatusCode::OK, &VersionBody::from(&version)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    version: VersionNumber,
    base_version: VersionNumber,
    push_id: Option<String>,
    message: Option<String>,
}

pub async fn restore(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (project, _) = project_access(app, &caller, project, Role::Editor).await?;
    let body: RestoreBody = read_json(&mut request).await?;
    let push_id = match &body.push_id {
        Some(text) => PushId::new(text)?,
        None => PushId::random(),
    };
    // Restoring needs no object work: the old version's closure is stored.
    let outcome = app
        .catalog
        .restore(RestoreRequest {
            project: project.id,
            push_id,
            base_version: body.base_version,
            version: body.version,
            author: caller.account.id,
            message: body.message,
        })
        .await
        .map_err(|error| match error {
            CatalogError::NotFound {
                entity: Entity::Version,
                ..
            } => unknown_version(body.version),
            other => other.into(),
        })?;
    commit_answer(app, project.id, outcome)
}

/// The answer for a version number the project does not have (the project itself is visible).
pub fn unknown_version(number: VersionNumber) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "unknown-version", "No such version")
        .with_detail(format!("the project has no version {number}"))
}

/// Parses an object id from JSON or a query, as a typed error.
pub fn parse_id(field: &str, text: &str) -> Result<ObjectId, Problem> {
    text.parse()
        .map_err(|error| Problem::invalid_field(field, error))
}
