//! Catalog rows as the API shows them: the one conversion of each into its wire body.

use sync_protocol::wire;

use super::answer::rfc3339;
use crate::catalog::{Account, Member, Project, Role, Team, Token, Version};

pub fn account(account: &Account) -> wire::Account {
    wire::Account {
        id: account.id.to_string(),
        name: account.name.clone(),
        email: account.email.clone(),
        created: rfc3339(account.created),
    }
}

pub fn token(token: &Token) -> wire::Token {
    wire::Token {
        id: token.id.to_string(),
        label: token.label.clone(),
        created: rfc3339(token.created),
        last_used: token.last_used.map(rfc3339),
        revoked: token.revoked.map(rfc3339),
    }
}

pub fn team(team: &Team, role: Role) -> wire::Team {
    wire::Team {
        id: team.id.to_string(),
        name: team.name.clone(),
        role,
        created: rfc3339(team.created),
    }
}

pub fn member(member: &Member) -> wire::Member {
    wire::Member {
        account: wire::AccountRef {
            id: member.account.id.to_string(),
            name: member.account.name.clone(),
        },
        role: member.role,
    }
}

pub fn project(project: &Project, role: Role) -> wire::Project {
    wire::Project {
        id: project.id.to_string(),
        team: project.team.to_string(),
        name: project.name.clone(),
        role,
        version: project.head_version,
        root: project.head_root,
        created: rfc3339(project.created),
    }
}

pub fn version(version: &Version) -> wire::Version {
    wire::Version {
        number: version.number,
        root: version.root,
        parent: version.parent,
        author: wire::AccountRef {
            id: version.author.to_string(),
            name: version.author_name.clone(),
        },
        time: rfc3339(version.time),
        message: version.message.clone(),
        push_id: version.push_id.as_ref().map(ToString::to_string),
    }
}
