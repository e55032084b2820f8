//! Teams: the list and creation, one team's members (add, change role, remove, leave) and its
//! projects (list, create). Owners manage members; editors and owners create projects; the
//! last owner cannot leave or be demoted, as in the API.

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;

use super::account::{context_with_note, signed_in};
use super::forms::{Form, FormErrors, field_message};
use super::render::{PageError, page, redirect};
use super::{PageRequest, Visitor};
use crate::api::teams::{parse_role, resolve_account, team_access};
use crate::api::views;
use crate::app::App;
use crate::catalog::{AccountId, CatalogError, Role, limits};
use crate::problem::Problem;

pub async fn list(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
) -> Result<Response, PageError> {
    teams_page(
        app,
        visitor,
        Some(request),
        &Form::default(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn teams_page(
    app: &App,
    visitor: &Visitor,
    request: Option<&PageRequest>,
    form: &Form,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let teams = app.catalog.teams_of(me.id).await?;
    let mut context = context_with_note(visitor, request, "Teams", "teams");
    context.insert(
        "teams",
        &teams
            .iter()
            .map(|membership| views::team(&membership.team, membership.role))
            .collect::<Vec<_>>(),
    );
    context.insert("values", &form.kept(&["name"]));
    context.insert("errors", &errors);
    page(status, "teams.html", &context)
}

/// A team or project name as the catalog takes it: 1 to 100 characters.
fn check_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        Err(Problem::invalid_field("name", "enter a name"))
    } else if name.chars().count() > limits::MAX_NAME_LEN {
        Err(Problem::invalid_field(
            "name",
            format!("at most {} characters", limits::MAX_NAME_LEN),
        ))
    } else {
        Ok(())
    }
}

pub async fn create(app: &App, visitor: &Visitor, form: Form) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let mut errors = FormErrors::default();
    errors.check(&form, "name", check_name);
    if errors.is_empty() {
        match app.catalog.create_team(form.get("name"), me.id).await {
            Ok(team) => {
                return Ok(redirect(&format!(
                    "/account/teams/{}?done=team-created",
                    team.id
                )));
            }
            Err(CatalogError::AlreadyExists { .. }) => {
                errors.field(
                    "name",
                    "A team with this name exists already: choose another",
                );
            }
            Err(error) => errors.problem(&Problem::from(error), &["name"]),
        }
    }
    teams_page(
        app,
        visitor,
        None,
        &form,
        errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

/// A member as the team page lists them.
#[derive(Debug, Serialize)]
struct MemberRow {
    id: String,
    name: String,
    role: Role,
    me: bool,
}

/// The team page's forms: which one failed, its values and errors.
#[derive(Debug, Default)]
struct TeamForms {
    member: (Form, FormErrors),
    project: (Form, FormErrors),
    /// What is wrong with a role change or removal (the last owner...).
    general: Option<String>,
}

pub async fn show(
    app: &App,
    visitor: &Visitor,
    request: &PageRequest,
    team: &str,
) -> Result<Response, PageError> {
    team_page(
        app,
        visitor,
        Some(request),
        team,
        TeamForms::default(),
        StatusCode::OK,
    )
    .await
}

async fn team_page(
    app: &App,
    visitor: &Visitor,
    request: Option<&PageRequest>,
    team: &str,
    forms: TeamForms,
    status: StatusCode,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let (team, role) = team_access(app, me.id, team, Role::Viewer).await?;
    let members = app.catalog.members(team.id).await?;
    let projects: Vec<_> = app
        .catalog
        .projects_visible_to(me.id)
        .await?
        .into_iter()
        .filter(|visible| visible.project.team == team.id)
        .map(|visible| views::project(&visible.project, visible.role))
        .collect();
    let title = format!("Team {}", team.name);
    let mut context = context_with_note(visitor, request, &title, "teams");
    context.insert("team", &views::team(&team, role));
    context.insert("owner", &(role == Role::Owner));
    context.insert("editor", &(role >= Role::Editor));
    context.insert(
        "members",
        &members
            .iter()
            .map(|member| MemberRow {
                id: member.account.id.to_string(),
                name: member.account.name.clone(),
                role: member.role,
                me: member.account.id == me.id,
            })
            .collect::<Vec<_>>(),
    );
    context.insert("roles", &[Role::Owner, Role::Editor, Role::Viewer]);
    context.insert("projects", &projects);
    context.insert("member_values", &forms.member.0.kept(&["account", "role"]));
    context.insert("member_errors", &forms.member.1);
    // A new member is an editor unless the owner picks otherwise.
    let role = forms.member.0.get("role");
    context.insert("member_role", if role.is_empty() { "editor" } else { role });
    context.insert("project_values", &forms.project.0.kept(&["name"]));
    context.insert("project_errors", &forms.project.1);
    context.insert("general_error", &forms.general);
    page(status, "team.html", &context)
}

/// An account named by name, email or id: the pages also take an email, as people know
/// their teammates by it.
async fn find_account(app: &App, text: &str) -> Result<AccountId, Problem> {
    if text.contains('@') {
        return match app.catalog.account_credentials(text).await? {
            Some(credentials) => Ok(credentials.account.id),
            None => Err(Problem::invalid_field(
                "account",
                "no account has this name or email",
            )),
        };
    }
    resolve_account(app, text)
        .await
        .map_err(|_| Problem::invalid_field("account", "no account has this name or email"))
}

pub async fn add_member(
    app: &App,
    visitor: &Visitor,
    form: Form,
    team: &str,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let (found, _) = team_access(app, me.id, team, Role::Owner).await?;
    let mut errors = FormErrors::default();
    errors.check(&form, "account", |account| {
        if account.is_empty() {
            Err(Problem::invalid_field(
                "account",
                "enter an account name or email",
            ))
        } else if account.chars().count() > limits::MAX_EMAIL_LEN {
            Err(Problem::invalid_field(
                "account",
                format!("at most {} characters", limits::MAX_EMAIL_LEN),
            ))
        } else {
            Ok(())
        }
    });
    errors.check(&form, "role", |role| parse_role(role).map(|_| ()));
    if errors.is_empty() {
        match find_account(app, form.get("account")).await {
            Ok(account) => {
                let role = parse_role(form.get("role"))?;
                match app.catalog.set_member(found.id, account, role).await {
                    Ok(()) => {
                        app.events.access_changed(Some(account));
                        return Ok(redirect(&format!(
                            "/account/teams/{}?done=member-added",
                            found.id
                        )));
                    }
                    Err(error) => errors.problem(&Problem::from(error), &["account", "role"]),
                }
            }
            Err(problem) => errors.field("account", field_message(&problem)),
        }
    }
    let forms = TeamForms {
        member: (form, errors),
        ..TeamForms::default()
    };
    team_page(
        app,
        visitor,
        None,
        team,
        forms,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

pub async fn set_role(
    app: &App,
    visitor: &Visitor,
    form: Form,
    team: &str,
    account: &str,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let (found, _) = team_access(app, me.id, team, Role::Owner).await?;
    let account: AccountId = account.parse().map_err(|_| PageError::NotFound)?;
    if app.catalog.team_role(found.id, account).await?.is_none() {
        return Err(PageError::NotFound);
    }
    let general = match parse_role(form.get("role")) {
        Ok(role) => match app.catalog.set_member(found.id, account, role).await {
            Ok(()) => {
                app.events.access_changed(Some(account));
                return Ok(redirect(&format!(
                    "/account/teams/{}?done=role-changed",
                    found.id
                )));
            }
            Err(error) => Problem::from(error).document.detail.clone(),
        },
        Err(problem) => field_message(&problem),
    };
    let forms = TeamForms {
        general: Some(general),
        ..TeamForms::default()
    };
    team_page(app, visitor, None, team, forms, StatusCode::CONFLICT).await
}

pub async fn remove_member(
    app: &App,
    visitor: &Visitor,
    team: &str,
    account: &str,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let (found, role) = team_access(app, me.id, team, Role::Viewer).await?;
    let account: AccountId = account.parse().map_err(|_| PageError::NotFound)?;
    if account != me.id && role < Role::Owner {
        return Err(PageError::Forbidden(
            "Only owners remove other members; anyone may leave.".to_owned(),
        ));
    }
    match app.catalog.remove_member(found.id, account).await {
        Ok(()) => {
            app.events.access_changed(Some(account));
            Ok(redirect(&if account == me.id {
                "/account/teams?done=left".to_owned()
            } else {
                format!("/account/teams/{}?done=member-removed", found.id)
            }))
        }
        Err(CatalogError::NotFound { .. }) => Err(PageError::NotFound),
        Err(error) => {
            let forms = TeamForms {
                general: Some(Problem::from(error).document.detail.clone()),
                ..TeamForms::default()
            };
            team_page(app, visitor, None, team, forms, StatusCode::CONFLICT).await
        }
    }
}

pub async fn create_project(
    app: &App,
    visitor: &Visitor,
    form: Form,
    team: &str,
) -> Result<Response, PageError> {
    let me = signed_in(visitor)?;
    let (found, _) = team_access(app, me.id, team, Role::Editor).await?;
    let mut errors = FormErrors::default();
    errors.check(&form, "name", check_name);
    if errors.is_empty() {
        match app
            .catalog
            .create_project(found.id, form.get("name"), me.id)
            .await
        {
            Ok(project) => return Ok(redirect(&format!("/account/projects/{}", project.id))),
            Err(CatalogError::AlreadyExists { .. }) => {
                errors.field(
                    "name",
                    "This team has a project with this name: choose another",
                );
            }
            Err(error) => errors.problem(&Problem::from(error), &["name"]),
        }
    }
    let forms = TeamForms {
        project: (form, errors),
        ..TeamForms::default()
    };
    team_page(
        app,
        visitor,
        None,
        team,
        forms,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}
