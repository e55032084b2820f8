//! Teams, their members and the creation of projects in them.
//!
//! A team is visible to its members only; to anyone else it answers `not-found`, like a team
//! that does not exist. Owners manage members; editors and owners create projects.
//!
//! - `GET /v1/teams` → `{teams: [{id, name, role, created}]}`
//! - `POST /v1/teams` `{name}` → 201 team (the caller becomes its owner)
//! - `GET /v1/teams/{team}` → team with the caller's role
//! - `GET /v1/teams/{team}/members` → `{members: [{account: {id, name}, role}]}`
//! - `PUT /v1/teams/{team}/members/{account}` `{role}` → 200 member (owner only; `{account}` is
//!   an account id or name)
//! - `DELETE /v1/teams/{team}/members/{account}` → 204 (owner, or the member leaving)
//! - `POST /v1/teams/{team}/projects` `{name}` → 201 project (editor or owner)

use sync_protocol::wire;
use warp::http::StatusCode;
use warp::reply::Response;

use super::answer::{json, no_content};
use super::request::{ApiRequest, authenticate, read_json};
use super::views;
use crate::app::App;
use crate::catalog::{AccountId, Member, Role, Team, TeamId};
use crate::problem::Problem;

/// The team `id_text` if `account` is a member, with their role; else `not-found`. The one
/// team access check of the API and the account pages.
pub(crate) async fn team_access(
    app: &App,
    account: AccountId,
    id_text: &str,
    needed: Role,
) -> Result<(Team, Role), Problem> {
    let id: TeamId = id_text.parse().map_err(|_| Problem::not_found())?;
    let role = app
        .catalog
        .team_role(id, account)
        .await?
        .ok_or_else(Problem::not_found)?;
    let team = app.catalog.team(id).await?.ok_or_else(Problem::not_found)?;
    if role < needed {
        return Err(Problem::forbidden(format!(
            "this needs the {needed} role in the team; you are {role}"
        )));
    }
    Ok((team, role))
}

/// An account named by id or by name. An unknown one is `invalid-field`, not `not-found`: the
/// team was found, it is the request that names nobody.
pub(crate) async fn resolve_account(app: &App, text: &str) -> Result<AccountId, Problem> {
    if let Ok(id) = text.parse::<AccountId>()
        && app.catalog.account(id).await?.is_some()
    {
        return Ok(id);
    }
    match app.catalog.account_credentials(text).await? {
        Some(credentials) if !text.contains('@') => Ok(credentials.account.id),
        _ => Err(Problem::invalid_field(
            "account",
            "no account has this id or name",
        )),
    }
}

pub(crate) fn parse_role(text: &str) -> Result<Role, Problem> {
    Role::parse(text).ok_or_else(|| Problem::invalid_field("role", "owner, editor or viewer"))
}

pub async fn list(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let teams = app.catalog.teams_of(caller.account.id).await?;
    Ok(json(
        StatusCode::OK,
        &wire::TeamList {
            teams: teams
                .iter()
                .map(|membership| views::team(&membership.team, membership.role))
                .collect(),
        },
    ))
}

pub async fn create(app: &App, mut request: ApiRequest) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let body: wire::NameBody = read_json(&mut request).await?;
    let team = app
        .catalog
        .create_team(&body.name, caller.account.id)
        .await?;
    Ok(json(StatusCode::CREATED, &views::team(&team, Role::Owner)))
}

pub async fn show(app: &App, request: ApiRequest, team: &str) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (team, role) = team_access(app, caller.account.id, team, Role::Viewer).await?;
    Ok(json(StatusCode::OK, &views::team(&team, role)))
}

pub async fn members(app: &App, request: ApiRequest, team: &str) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (team, _) = team_access(app, caller.account.id, team, Role::Viewer).await?;
    let members = app.catalog.members(team.id).await?;
    Ok(json(
        StatusCode::OK,
        &wire::MemberList {
            members: members.iter().map(views::member).collect(),
        },
    ))
}

pub async fn set_member(
    app: &App,
    mut request: ApiRequest,
    team: &str,
    account: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (team, _) = team_access(app, caller.account.id, team, Role::Owner).await?;
    let body: wire::RoleBody = read_json(&mut request).await?;
    let role = parse_role(&body.role)?;
    let account_id = resolve_account(app, account).await?;
    app.catalog.set_member(team.id, account_id, role).await?;
    let account = app
        .catalog
        .account(account_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok(json(
        StatusCode::OK,
        &views::member(&Member { account, role }),
    ))
}

pub async fn remove_member(
    app: &App,
    request: ApiRequest,
    team: &str,
    account: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (team, role) = team_access(app, caller.account.id, team, Role::Viewer).await?;
    let account_id = resolve_account(app, account).await?;
    if account_id != caller.account.id && role < Role::Owner {
        return Err(Problem::forbidden(
            "only owners remove other members; anyone may leave",
        ));
    }
    app.catalog.remove_member(team.id, account_id).await?;
    // This node's streams of the account check their access now (other nodes hear of it
    // through the catalog).
    app.events.access_changed(Some(account_id));
    Ok(no_content())
}

pub async fn create_project(
    app: &App,
    mut request: ApiRequest,
    team: &str,
) -> Result<Response, Problem> {
    let caller = authenticate(app, &request).await?;
    let (team, role) = team_access(app, caller.account.id, team, Role::Editor).await?;
    let body: wire::NameBody = read_json(&mut request).await?;
    let project = app
        .catalog
        .create_project(team.id, &body.name, caller.account.id)
        .await?;
    Ok(json(StatusCode::CREATED, &views::project(&project, role)))
}
