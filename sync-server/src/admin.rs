//! `sync-server admin ...`: accounts, teams, members, projects and tokens from the shell, with
//! the same rules as the API (the catalog checks names; passwords are hashed with argon2id).
//! Each command prints what it made, ids included, one `key: value` per line. `convert-layout`
//! (in `convert`) prints its report the same way.

use std::io::BufRead;

use anyhow::{Context, bail};

use crate::auth;
use crate::catalog::{AccountId, Catalog, NewAccount, ProjectId, Role, TeamId};
use crate::config::AdminCommand;
use crate::store::ObjectStore;

/// An account by id, name or email.
async fn account(catalog: &dyn Catalog, text: &str) -> anyhow::Result<AccountId> {
    if let Ok(id) = text.parse::<AccountId>()
        && catalog.account(id).await?.is_some()
    {
        return Ok(id);
    }
    match catalog.account_credentials(text).await? {
        Some(credentials) => Ok(credentials.account.id),
        None => bail!("no account {text:?}"),
    }
}

/// A team by id or name.
async fn team(catalog: &dyn Catalog, text: &str) -> anyhow::Result<TeamId> {
    if let Ok(id) = text.parse::<TeamId>()
        && catalog.team(id).await?.is_some()
    {
        return Ok(id);
    }
    match catalog.team_by_name(text).await? {
        Some(team) => Ok(team.id),
        None => bail!("no team {text:?}"),
    }
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("CAIRN_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn run(
    catalog: &dyn Catalog,
    store: &ObjectStore,
    command: AdminCommand,
) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser { name, email } => {
            // The same rules as signing up over the API.
            let password = read_password()?;
            crate::api::accounts::check_account_name(&name)
                .and_then(|()| crate::api::accounts::check_email(&email))
                .and_then(|()| crate::api::accounts::check_password(&password))
                .map_err(|problem| anyhow::anyhow!("{}", problem.document.detail))?;
            let password_hash = auth::hash_password(password).await?;
            let account = catalog
                .create_account(NewAccount {
                    name,
                    email,
                    password_hash,
                })
                .await
                .context("creating the account")?;
            println!("account: {}\nname: {}", account.id, account.name);
        }
        AdminCommand::CreateTeam { name, owner } => {
            let owner = account(catalog, &owner).await?;
            let team = catalog
                .create_team(&name, owner)
                .await
                .context("creating the team")?;
            println!("team: {}\nname: {}", team.id, team.name);
        }
        AdminCommand::AddMember {
            team: name,
            user,
            role,
        } => {
            let role = Role::parse(&role)
                .with_context(|| format!("the role {role:?} is not owner, editor or viewer"))?;
            let team_id = team(catalog, &name).await?;
            let account = account(catalog, &user).await?;
            catalog
                .set_member(team_id, account, role)
                .await
                .context("setting the member")?;
            println!("team: {team_id}\naccount: {account}\nrole: {role}");
        }
        AdminCommand::CreateProject {
            team: name,
            name: project,
        } => {
            let team_id = team(catalog, &name).await?;
            let members = catalog.members(team_id).await?;
            let Some(creator) = members.iter().find(|member| member.role == Role::Owner) else {
                bail!("team {name:?} has no owner to create the project as");
            };
            let project = catalog
                .create_project(team_id, &project, creator.account.id)
                .await
                .context("creating the project")?;
            println!(
                "project: {}\nname: {}\nversion: {}\nroot: {}",
                project.id, project.name, project.head_version, project.head_root
            );
        }
        AdminCommand::CreateToken { user, name } => {
            let account = account(catalog, &user).await?;
            let secret = auth::new_token_secret();
            let token = catalog
                .create_token(account, &name, auth::token_hash(&secret))
                .await
                .context("creating the token")?;
            println!("token_id: {}\ntoken: {secret}", token.id);
        }
        AdminCommand::ConvertLayout { project, dry_run } => {
            let project = project
                .map(|text| text.parse::<ProjectId>())
                .transpose()
                .context("the project id")?;
            let options = crate::convert::Options { project, dry_run };
            let report = crate::convert::run(catalog, store, options).await?;
            print!("{report}");
            if !report.is_clean() {
                bail!(
                    "damaged objects: {} (named above); their projects were not converted and \
                     keep all their loose keys",
                    report.damaged_objects()
                );
            }
        }
        AdminCommand::Nodes { json } => {
            let nodes = catalog.nodes().await?;
            let now = crate::catalog::Timestamp::now();
            if json {
                for node in &nodes {
                    println!("{}", crate::node::json(node, now));
                }
            } else {
                print!("{}", crate::node::table(&nodes, now));
            }
        }
    }
    Ok(())
}
