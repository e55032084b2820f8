//! Projects: the list per team, one project's head and history with the `cairn clone`
//! command, any version's tree and its files, and restoring an old version as a new one.

use serde::Serialize;
use sync_protocol::{EntryKind, Object, ObjectId, ObjectKind};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::account::{context_with_note, query_value, signed_in};
use super::forms::{Form, FormErrors};
use super::render::{PageError, context, page, redirect, secure_headers, url_encode};
use super::{PageRequest, Visitor};
use crate::api::answer::settle_outcome;
use crate::api::projects::restore_version;
use crate::api::request::project_of;
use crate::api::views;
use crate::app::App;
use crate::catalog::{
    PushId, RestoreRequest, Role, Version, VersionNumber, VersionPage, empty_root, limits,
};
use crate::problem::Problem;

/// Versions per history page.
pub const HISTORY_PAGE: u32 = 25;

#[derive(Debug, Serialize)]
struct TeamProjects {
    id: String,
    name: String,
    projects: Vec<sync_protocol::wire::Project>,
}

pub async fn list(app: &App, visitor: &Visitor) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let teams = app.catalog.teams_of(me.id).await?;
    let projects = app.catalog.projects_visible_to(me.id).await?;
    let grouped: Vec<TeamProjects> = teams
        .iter()
        .map(|membership| TeamProjects {
            id: membership.team.id.to_string(),
            name: membership.team.name.clone(),
            projects: projects
                .iter()
                .filter(|visible| visible.project.team == membership.team.id)
                .map(|visible| views::project(&visible.project, visible.role))
                .collect(),
        })
        .collect();
    let mut context = context(visitor, "Projects", "projects");
    context.insert("teams", &grouped);
    page(StatusCode::OK, "projects.html", &context)
}

/// The server's address as the browser reached it, for the `cairn clone` command.
fn server_url(request: &PageRequest, secure: bool) -> String {
    let host = request
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
        })
        .unwrap_or("127.0.0.1:8080");
    let scheme = if secure { "https" } else { "http" };
    format!("{scheme}://{host}")
}

pub async fn show(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
    project: &str,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let (project, role) = project_of(app, me.id, project, Role::Viewer).await?;
    let before = match query_value(request, "before") {
        Some(text) => Some(text.parse::<VersionNumber>().map_err(|_| {
            PageError::Problem(Problem::invalid_field("before", "a version number"))
        })?),
        None => None,
    };
    let mut versions = app
        .catalog
        .versions(
            project.id,
            VersionPage {
                before,
                limit: HISTORY_PAGE + 1,
            },
        )
        .await?;
    let older = versions.len() > HISTORY_PAGE as usize;
    versions.truncate(HISTORY_PAGE as usize);
    let title = format!("Project {}", project.name);
    let mut context = context_with_note(visitor, Some(request), &title, "projects");
    let team = app.catalog.team(project.team).await?;
    context.insert("team_name", &team.map(|team| team.name).unwrap_or_default());
    context.insert("project", &views::project(&project, role));
    context.insert("editor", &(role >= Role::Editor));
    context.insert(
        "versions",
        &versions.iter().map(views::version).collect::<Vec<_>>(),
    );
    context.insert(
        "older",
        &(if older {
            versions.last().map(|v| v.number)
        } else {
            None
        }),
    );
    context.insert("newer", &before.is_some());
    context.insert(
        "clone",
        &format!(
            "cairn clone --server {} --project {}",
            server_url(request, visitor.secure),
            project.id
        ),
    );
    page(StatusCode::OK, "project.html", &context)
}

/// One row of a tree listing.
#[derive(Debug, Serialize)]
struct EntryRow {
    name: String,
    dir: bool,
    executable: bool,
    size: u64,
    /// The path below the root, for links.
    path: String,
    link: String,
}

/// A folder on the way down, for the breadcrumbs.
#[derive(Debug, Serialize)]
struct Crumb {
    name: String,
    link: String,
}

/// The version `number` of a project the visitor may see, with its role.
async fn visible_version(
    app: &App,
    visitor: &Visitor,
    project: &str,
    number: &str,
    needed: Role,
) -> Result<(crate::catalog::Project, Role, Version), PageError> {
    let me = signed_in(visitor)?;
    let (project, role) = project_of(app, me.id, project, needed).await?;
    let number: VersionNumber = number.parse().map_err(|_| PageError::NotFound)?;
    let version = app
        .catalog
        .version(project.id, number)
        .await?
        .ok_or(PageError::NotFound)?;
    Ok((project, role, version))
}

/// The path query parameter split into names ("" is the root). `..`, `.` and empty names are
/// not names, so they find nothing.
fn path_names(request: &PageRequest) -> Vec<String> {
    query_value(request, "path")
        .unwrap_or_default()
        .split('/')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads one stored object of a project.
async fn read_object(
    app: &App,
    project: &crate::catalog::Project,
    id: ObjectId,
) -> Result<Object, PageError> {
    let objects = app.objects(project.id).await?;
    match objects.read(&[id]).await?.pop().flatten() {
        Some(stored) => Ok(stored.object),
        // A version's tree is whole in the store (the closure invariant): a hole is damage.
        None => Err(PageError::Problem(Problem::integrity(format!(
            "object {id} of a committed version is not stored"
        )))),
    }
}

/// Walks from `root` down `names`: the entry found (`None` for the root itself).
async fn walk(
    app: &App,
    project: &crate::catalog::Project,
    root: ObjectId,
    names: &[String],
) -> Result<Option<sync_protocol::DirEntry>, PageError> {
    let mut dir_id = root;
    let mut found = None;
    for (index, name) in names.iter().enumerate() {
        let Object::Dir(dir) = read_object(app, project, dir_id).await? else {
            return Err(PageError::NotFound);
        };
        let entry = dir.entry(name).cloned().ok_or(PageError::NotFound)?;
        if index + 1 < names.len() && entry.kind != EntryKind::Dir {
            return Err(PageError::NotFound);
        }
        dir_id = entry.id;
        found = Some(entry);
    }
    Ok(found)
}

pub async fn tree(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
    project: &str,
    number: &str,
) -> Result<Response, PageError> {
    let (project, role, version) =
        visible_version(app, visitor, project, number, Role::Viewer).await?;
    let names = path_names(request);
    let dir_id = match walk(app, &project, version.root, &names).await? {
        None => version.root,
        Some(entry) if entry.kind == EntryKind::Dir => entry.id,
        Some(_) => return Err(PageError::NotFound),
    };
    let entries = if dir_id == empty_root() {
        Vec::new()
    } else {
        match read_object(app, &project, dir_id).await? {
            Object::Dir(dir) => dir.into_entries(),
            _ => return Err(PageError::NotFound),
        }
    };
    let base = format!(
        "/account/projects/{}/versions/{}",
        project.id, version.number
    );
    let prefix = names.join("/");
    let rows: Vec<EntryRow> = entries
        .into_iter()
        .map(|entry| {
            let path = if prefix.is_empty() {
                entry.name.to_string()
            } else {
                format!("{prefix}/{}", entry.name)
            };
            let dir = entry.kind == EntryKind::Dir;
            let link = if dir {
                format!("{base}?path={}", url_encode(&path))
            } else {
                format!("{base}/file?path={}", url_encode(&path))
            };
            EntryRow {
                name: entry.name.to_string(),
                dir,
                executable: entry.kind == EntryKind::Executable,
                size: entry.size,
                path,
                link,
            }
        })
        .collect();
    let mut crumbs = vec![Crumb {
        name: project.name.clone(),
        link: base.clone(),
    }];
    for (index, name) in names.iter().enumerate() {
        crumbs.push(Crumb {
            name: name.clone(),
            link: format!("{base}?path={}", url_encode(&names[..=index].join("/"))),
        });
    }
    let title = if names.is_empty() {
        format!("{} at version {}", project.name, version.number)
    } else {
        format!("{} at version {}: {}", project.name, version.number, prefix)
    };
    let mut context = context(visitor, &title, "projects");
    context.insert("project", &views::project(&project, role));
    context.insert("version", &views::version(&version));
    context.insert("entries", &rows);
    context.insert("crumbs", &crumbs);
    context.insert("editor", &(role >= Role::Editor));
    page(StatusCode::OK, "tree.html", &context)
}

pub async fn download(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
    project: &str,
    number: &str,
) -> Result<Response, PageError> {
    let (project, _, version) =
        visible_version(app, visitor, project, number, Role::Viewer).await?;
    let names = path_names(request);
    let Some(entry) = walk(app, &project, version.root, &names).await? else {
        return Err(PageError::NotFound);
    };
    if !entry.kind.is_file() {
        return Err(PageError::NotFound);
    }
    let limit = app.limits.max_page_download_bytes;
    if entry.size > limit {
        return Err(PageError::Problem(
            Problem::new(sync_protocol::wire::ProblemCode::BodyTooLarge).with_detail(format!(
                "This file has {} bytes; the pages hand out files of at most {} bytes. Use \
                 `cairn clone` or `cairn pull`.",
                entry.size, limit
            )),
        ));
    }
    let bytes = match (entry.target, read_object(app, &project, entry.id).await?) {
        (ObjectKind::Chunk, Object::Chunk(bytes)) => bytes,
        (ObjectKind::File, Object::File(file)) => {
            let ids: Vec<ObjectId> = file.chunks().iter().map(|chunk| chunk.id).collect();
            let objects = app.objects(project.id).await?;
            let mut bytes = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
            for (id, stored) in ids.iter().zip(objects.read(&ids).await?) {
                match stored.map(|stored| stored.object) {
                    Some(Object::Chunk(chunk)) => bytes.extend_from_slice(&chunk),
                    _ => {
                        return Err(PageError::Problem(Problem::integrity(format!(
                            "chunk {id} of a committed version is not stored"
                        ))));
                    }
                }
            }
            bytes
        }
        _ => {
            return Err(PageError::Problem(Problem::integrity(
                "a dir entry names an object of another kind",
            )));
        }
    };
    let name = names.last().cloned().unwrap_or_default();
    let mut response = Response::new(bytes.into());
    let headers = response.headers_mut();
    secure_headers(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let disposition = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        name.replace(
            |c: char| !c.is_ascii_graphic() || c == '"' || c == '\\',
            "_"
        ),
        url_encode(&name)
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

pub async fn restore_form(
    app: &App,
    visitor: &Visitor,
    project: &str,
    number: &str,
) -> Result<Response, PageError> {
    let (project, role, version) =
        visible_version(app, visitor, project, number, Role::Editor).await?;
    restore_page(
        visitor,
        &project,
        role,
        &version,
        &Form::default(),
        FormErrors::default(),
        StatusCode::OK,
    )
}

fn restore_page(
    visitor: &Visitor,
    project: &crate::catalog::Project,
    role: Role,
    version: &Version,
    form: &Form,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let title = format!("Restore version {} of {}", version.number, project.name);
    let mut context = context(visitor, &title, "projects");
    context.insert("project", &views::project(project, role));
    context.insert("version", &views::version(version));
    // The head this confirmation was shown on: if it moves before the visitor confirms, the
    // restore is refused rather than undoing what came in meanwhile.
    context.insert("base", &project.head_version);
    // One push id per confirmation, so sending the form twice restores once.
    context.insert("push_id", &PushId::random().to_string());
    let mut values = form.kept(&["message"]);
    if values["message"].is_empty() {
        values.insert(
            "message".to_owned(),
            format!("Restore version {}", version.number),
        );
    }
    context.insert("values", &values);
    context.insert("errors", &errors);
    context.insert("max_message", &limits::MAX_MESSAGE_LEN);
    page(status, "restore.html", &context)
}

pub async fn restore(
    app: &App,
    visitor: &Visitor,
    form: Form,
    project: &str,
    number: &str,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?.clone();
    let (project, role, version) =
        visible_version(app, visitor, project, number, Role::Editor).await?;
    let mut errors = FormErrors::default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    errors.check(&form, "message", |message| {
        if message.chars().count() > limits::MAX_MESSAGE_LEN {
            Err(Problem::invalid_field(
                "message",
                format!("at most {} characters", limits::MAX_MESSAGE_LEN),
            ))
        } else {
            Ok(())
        }
    });
    let base: Option<VersionNumber> = form.get("base").parse().ok();
    let push_id = PushId::new(form.get("push_id")).ok();
    let (Some(base), Some(push_id)) = (base, push_id) else {
        return Err(PageError::BadForm(
            "The form lacks its base version or push id. Reload the page and confirm again."
                .to_owned(),
        ));
    };
    if errors.is_empty() {
        let message = form.get("message");
        let outcome = restore_version(
            app,
            RestoreRequest {
                project: project.id,
                push_id,
                base_version: base,
                version: version.number,
                author: me.id,
                message: (!message.is_empty()).then(|| message.to_owned()),
            },
        )
        .await;
        match outcome.and_then(|outcome| settle_outcome(app, project.id, outcome)) {
            Ok(settled) => {
                return Ok(redirect(&format!(
                    "/account/projects/{}?done=restored#v{}",
                    project.id, settled.version.number
                )));
            }
            Err(problem) if problem.code == sync_protocol::wire::ProblemCode::Conflict => {
                status = StatusCode::CONFLICT;
                errors.form = Some(
                    "The project moved on while you were confirming: someone pushed a new \
                     version. Check the history, then confirm again."
                        .to_owned(),
                );
            }
            Err(problem) => errors.problem(&problem, &["message"]),
        }
    }
    // Shown again on the head as it is now.
    let project = app
        .catalog
        .project(project.id)
        .await?
        .ok_or(PageError::NotFound)?;
    restore_page(visitor, &project, role, &version, &form, errors, status)
}
