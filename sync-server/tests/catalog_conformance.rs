//! The catalog conformance suite: one set of scenarios, run against SQLite (a temporary file)
//! and PostgreSQL (a fresh database per test). Both implementations must answer alike.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sync_protocol::{Object, ObjectId, ObjectKind};
use sync_server::catalog::{
    Account, Catalog, CatalogError, CommitOutcome, CommitRequest, Entity, Field, IndexedObject,
    NewAccount, NodeId, NodeStats, NodeStatus, Onto, PROJECT_CREATED_MESSAGE, PackId, PackRecord,
    Project, ProjectId, PushId, RestoreRequest, Role, Team, Timestamp, TokenHash, Version,
    VersionPage, empty_root, limits,
};

use crate::storage_support::{TestDatabase, sqlite_catalog};
use sync_server::catalog::{CatalogListener, HeadNotification, Notification};

/// Runs each scenario against both catalogs: `sqlite::<name>` and `postgres::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, catalog) = crate::storage_support::sqlite_catalog().await;
                    super::$name(catalog).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(database) = crate::storage_support::TestDatabase::create().await
                    else {
                        return;
                    };
                    let catalog = database.catalog().await;
                    super::$name(catalog).await;
                }
            )*
        }
    };
}

conformance!(
    accounts_are_unique_ignoring_case,
    account_inputs_are_bounded,
    tokens_authenticate_until_revoked,
    sessions_authenticate_until_they_end_or_expire,
    teams_roles_and_last_owner,
    projects_start_empty_and_are_unique_per_team,
    visibility_follows_membership,
    commit_moves_the_head,
    stale_base_gets_the_current_head,
    retry_with_the_same_push_id_commits_once,
    a_rebased_commit_records_the_push_as_sent,
    concurrent_commits_on_one_base_exactly_one_wins,
    concurrent_duplicates_of_one_push_commit_once,
    concurrent_duplicates_of_racing_pushes_answer_alike,
    concurrent_demotions_keep_one_owner,
    restore_commits_an_old_root,
    history_is_newest_first_and_paginated,
    commit_errors_are_typed,
    nodes_heartbeat_and_expire,
    all_projects_pages_through_every_project,
    index_and_locate_round_trip,
    an_object_keeps_its_first_location,
    touching_lookups_protect_from_collection,
    unindex_respects_the_cut_off,
    relocate_moves_the_rows_that_still_exist,
    forget_pack_refuses_while_rows_name_it,
    a_large_pack_indexes_and_locates,
    concurrent_pushes_and_collection_never_deadlock,
    object_index_inputs_are_bounded,
    new_projects_are_not_in_the_legacy_layout,
    forgotten_and_orphan_packs_are_dead_until_dropped,
    touched_since_lists_recent_rows,
    drop_versions_keeps_the_head_and_recent_ones,
);

type Shared = Arc<dyn Catalog>;

async fn account(catalog: &Shared, name: &str) -> Account {
    catalog
        .create_account(NewAccount {
            name: name.to_owned(),
            email: format!("{name}@example.com"),
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt$hash-of-{name}"),
        })
        .await
        .expect("create account")
}

/// An account, its team and a project of that team.
async fn setup(catalog: &Shared) -> (Account, Team, Project) {
    let alice = account(catalog, "alice").await;
    let team = catalog.create_team("acme", alice.id).await.unwrap();
    let project = catalog
        .create_project(team.id, "api", alice.id)
        .await
        .unwrap();
    (alice, team, project)
}

/// A distinct root id per label (it need not name a stored object: the catalog never reads it).
fn root(label: &str) -> ObjectId {
    Object::Chunk(label.as_bytes().to_vec()).id()
}

fn request(project: &Project, author: &Account, base: u64, root_label: &str) -> CommitRequest {
    CommitRequest {
        project: project.id,
        push_id: PushId::random(),
        base_version: base,
        root: root(root_label),
        author: author.id,
        message: format!("push {root_label}"),
        onto: None,
    }
}

fn committed(outcome: CommitOutcome) -> (Version, bool) {
    match outcome {
        CommitOutcome::Committed {
            version, replayed, ..
        } => (version, replayed),
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Commits a new push of `root(label)` on `base`, which must succeed; its version.
async fn commit_on(
    catalog: &Shared,
    project: &Project,
    author: &Account,
    base: u64,
    label: &str,
) -> Version {
    let outcome = catalog.commit(request(project, author, base, label)).await;
    committed(outcome.unwrap()).0
}

/// The project's head: (version, root).
async fn head(catalog: &Shared, project: ProjectId) -> (u64, ObjectId) {
    let project = catalog.project(project).await.unwrap().unwrap();
    (project.head_version, project.head_root)
}

/// The project's whole history, newest first.
async fn history(catalog: &Shared, project: ProjectId) -> Vec<Version> {
    catalog
        .versions(project, VersionPage::default())
        .await
        .unwrap()
}

/// Gives each account its role in `team`.
async fn set_members(catalog: &Shared, team: &Team, roles: &[(&Account, Role)]) {
    for (account, role) in roles {
        catalog
            .set_member(team.id, account.id, *role)
            .await
            .unwrap();
    }
}

async fn accounts_are_unique_ignoring_case(catalog: Shared) {
    let alice = account(&catalog, "Alice").await;
    assert_eq!(alice.name, "Alice");
    assert_eq!(
        catalog.account(alice.id).await.unwrap(),
        Some(alice.clone())
    );

    // A name or an email already taken, ignoring case, is refused naming the field.
    for (name, email, taken) in [
        ("ALICE", "other@example.com", Field::AccountName),
        ("alicia", "ALICE@example.COM", Field::Email),
    ] {
        let new = NewAccount {
            name: name.to_owned(),
            email: email.to_owned(),
            password_hash: "$argon2id$x".to_owned(),
        };
        let outcome = catalog.create_account(new).await;
        assert!(
            matches!(
                outcome,
                Err(CatalogError::AlreadyExists { entity: Entity::Account, field, .. })
                    if field == taken
            ),
            "{outcome:?}"
        );
    }

    for login in ["alice", "ALICE", "alice@EXAMPLE.com"] {
        let credentials = catalog.account_credentials(login).await.unwrap().unwrap();
        assert_eq!(credentials.account, alice);
        assert!(credentials.password_hash.ends_with("hash-of-Alice"));
    }
    assert_eq!(catalog.account_credentials("nobody").await.unwrap(), None);

    catalog
        .set_password_hash(alice.id, "$argon2id$new")
        .await
        .unwrap();
    let credentials = catalog.account_credentials("alice").await.unwrap().unwrap();
    assert_eq!(credentials.password_hash, "$argon2id$new");
    let missing = sync_server::catalog::AccountId::random();
    assert!(matches!(
        catalog.set_password_hash(missing, "$argon2id$x").await,
        Err(CatalogError::NotFound {
            entity: Entity::Account,
            ..
        })
    ));
    assert_eq!(catalog.account(missing).await.unwrap(), None);
}

async fn account_inputs_are_bounded(catalog: Shared) {
    let new = |name: String| NewAccount {
        email: format!("{}@example.com", name.chars().take(10).collect::<String>()),
        name,
        password_hash: "$argon2id$x".to_owned(),
    };
    // At the limit: stored. One past: refused, naming the field, and nothing stored.
    let at_limit = "a".repeat(limits::MAX_NAME_LEN);
    catalog.create_account(new(at_limit.clone())).await.unwrap();
    let past = "b".repeat(limits::MAX_NAME_LEN + 1);
    assert!(matches!(
        catalog.create_account(new(past.clone())).await,
        Err(CatalogError::Invalid {
            field: Field::AccountName,
            ..
        })
    ));
    assert_eq!(catalog.account_credentials(&past).await.unwrap(), None);
    // Counted in characters, as the API document's `maxLength` counts them: four-byte
    // characters to the limit are stored, one more is refused.
    let wide_at_limit = "🦀".repeat(limits::MAX_NAME_LEN);
    catalog
        .create_account(new(wide_at_limit.clone()))
        .await
        .unwrap();
    assert!(matches!(
        catalog
            .create_account(new("é".repeat(limits::MAX_NAME_LEN + 1)))
            .await,
        Err(CatalogError::Invalid {
            field: Field::AccountName,
            ..
        })
    ));
    for bad in ["", "   ", "tab\there"] {
        assert!(matches!(
            catalog.create_account(new(bad.to_owned())).await,
            Err(CatalogError::Invalid { .. })
        ));
    }
    let alice = account(&catalog, "alice").await;
    let team = catalog.create_team("t", alice.id).await.unwrap();
    let project = catalog
        .create_project(team.id, "p", alice.id)
        .await
        .unwrap();
    let mut long = request(&project, &alice, 0, "x");
    long.message = "m".repeat(limits::MAX_MESSAGE_LEN + 1);
    assert!(matches!(
        catalog.commit(long).await,
        Err(CatalogError::Invalid {
            field: Field::Message,
            ..
        })
    ));
    let mut wide = request(&project, &alice, 0, "x");
    wide.message = "é".repeat(limits::MAX_MESSAGE_LEN + 1);
    assert!(matches!(
        catalog.commit(wide).await,
        Err(CatalogError::Invalid {
            field: Field::Message,
            ..
        })
    ));
    let mut at = request(&project, &alice, 0, "x");
    at.message = "é".repeat(limits::MAX_MESSAGE_LEN);
    committed(catalog.commit(at).await.unwrap());
    assert!(PushId::new(&"p".repeat(limits::MAX_PUSH_ID_LEN)).is_ok());
    assert!(PushId::new(&"p".repeat(limits::MAX_PUSH_ID_LEN + 1)).is_err());
    assert!(PushId::new("has space").is_err());
}

async fn sessions_authenticate_until_they_end_or_expire(catalog: Shared) {
    let alice = account(&catalog, "alice").await;
    let bob = account(&catalog, "bob").await;
    let later = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 3_600_000);
    let past = Timestamp::from_unix_millis(Timestamp::now().unix_millis() - 1);
    let hash = |secret: &str| TokenHash::of_session_secret(secret.as_bytes());
    let first = catalog
        .create_session(alice.id, hash("first"), later)
        .await
        .unwrap();
    assert_eq!((first.account, first.expires), (alice.id, later));
    catalog
        .create_session(alice.id, hash("second"), later)
        .await
        .unwrap();
    catalog
        .create_session(bob.id, hash("bob"), later)
        .await
        .unwrap();
    let signed_in = catalog.session(&hash("first")).await.unwrap().unwrap();
    assert_eq!(
        (signed_in.account, signed_in.session),
        (alice.clone(), first)
    );
    // A token's hash of the same secret is another hash: a token is never a session.
    assert_eq!(
        catalog
            .session(&TokenHash::of_secret(b"first"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(catalog.sessions(alice.id).await.unwrap().len(), 2);

    // Sign-out ends one; ending it again is fine.
    catalog.end_session(&hash("first")).await.unwrap();
    catalog.end_session(&hash("first")).await.unwrap();
    assert_eq!(catalog.session(&hash("first")).await.unwrap(), None);
    assert!(catalog.session(&hash("second")).await.unwrap().is_some());

    // An expired session authenticates nothing and is not listed; it goes at the account's
    // next sign-in.
    catalog
        .create_session(alice.id, hash("expired"), past)
        .await
        .unwrap();
    assert_eq!(catalog.session(&hash("expired")).await.unwrap(), None);
    assert_eq!(catalog.sessions(alice.id).await.unwrap().len(), 1);
    catalog
        .create_session(alice.id, hash("third"), later)
        .await
        .unwrap();
    // Its secret hash is free again: the expired row is gone.
    catalog
        .create_session(bob.id, hash("expired"), later)
        .await
        .unwrap();

    // Everywhere: every session of the account, none of another's.
    assert_eq!(catalog.end_sessions(alice.id).await.unwrap(), 2);
    assert!(catalog.sessions(alice.id).await.unwrap().is_empty());
    assert!(catalog.session(&hash("bob")).await.unwrap().is_some());
    assert!(matches!(
        catalog
            .create_session(
                sync_server::catalog::AccountId::random(),
                hash("orphan"),
                later
            )
            .await,
        Err(CatalogError::NotFound {
            entity: Entity::Account,
            ..
        })
    ));
}

async fn tokens_authenticate_until_revoked(catalog: Shared) {
    let alice = account(&catalog, "alice").await;
    let bob = account(&catalog, "bob").await;
    let secret = b"cairn_secret_0123456789abcdef";
    let hash = TokenHash::of_secret(secret);
    let token = catalog
        .create_token(alice.id, "laptop", hash)
        .await
        .unwrap();
    assert_eq!(token.account, alice.id);
    assert_eq!(token.last_used, None);

    let authenticated = catalog.authenticate_token(&hash).await.unwrap().unwrap();
    assert_eq!(authenticated.account, alice);
    assert_eq!(authenticated.token, token.id);
    let listed = catalog.tokens(alice.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].label, "laptop");
    assert!(listed[0].last_used.is_some(), "authenticating records use");
    assert!(catalog.tokens(bob.id).await.unwrap().is_empty());

    let unknown = TokenHash::of_secret(b"not a token");
    assert_eq!(catalog.authenticate_token(&unknown).await.unwrap(), None);

    // Another account cannot revoke it, and it answers as if it did not exist.
    assert!(matches!(
        catalog.revoke_token(bob.id, token.id).await,
        Err(CatalogError::NotFound {
            entity: Entity::Token,
            ..
        })
    ));
    catalog.revoke_token(alice.id, token.id).await.unwrap();
    assert_eq!(catalog.authenticate_token(&hash).await.unwrap(), None);
    let revoked = catalog.tokens(alice.id).await.unwrap()[0].revoked;
    assert!(revoked.is_some());
    catalog.revoke_token(alice.id, token.id).await.unwrap();
    assert_eq!(catalog.tokens(alice.id).await.unwrap()[0].revoked, revoked);

    let orphan = catalog
        .create_token(sync_server::catalog::AccountId::random(), "x", unknown)
        .await;
    assert!(
        matches!(
            orphan,
            Err(CatalogError::NotFound {
                entity: Entity::Account,
                ..
            })
        ),
        "{orphan:?}"
    );
}

async fn teams_roles_and_last_owner(catalog: Shared) {
    let alice = account(&catalog, "alice").await;
    let bob = account(&catalog, "bob").await;
    let carol = account(&catalog, "carol").await;
    let team = catalog.create_team("Acme", alice.id).await.unwrap();
    assert_eq!(catalog.team(team.id).await.unwrap(), Some(team.clone()));
    assert_eq!(
        catalog.team_by_name("ACME").await.unwrap(),
        Some(team.clone())
    );
    assert!(matches!(
        catalog.create_team("acme", bob.id).await,
        Err(CatalogError::AlreadyExists {
            entity: Entity::Team,
            field: Field::TeamName,
            ..
        })
    ));
    assert_eq!(
        catalog.team_role(team.id, alice.id).await.unwrap(),
        Some(Role::Owner)
    );

    set_members(
        &catalog,
        &team,
        &[(&bob, Role::Editor), (&carol, Role::Viewer)],
    )
    .await;
    let members: Vec<(String, Role)> = catalog
        .members(team.id)
        .await
        .unwrap()
        .into_iter()
        .map(|member| (member.account.name, member.role))
        .collect();
    assert_eq!(
        members,
        [
            ("alice".to_owned(), Role::Owner),
            ("bob".to_owned(), Role::Editor),
            ("carol".to_owned(), Role::Viewer)
        ]
    );
    let bobs = catalog.teams_of(bob.id).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].team, team);
    assert_eq!(bobs[0].role, Role::Editor);

    // The last owner can be neither demoted nor removed.
    assert!(matches!(
        catalog.set_member(team.id, alice.id, Role::Editor).await,
        Err(CatalogError::LastOwner { .. })
    ));
    assert!(matches!(
        catalog.remove_member(team.id, alice.id).await,
        Err(CatalogError::LastOwner { .. })
    ));
    set_members(
        &catalog,
        &team,
        &[(&bob, Role::Owner), (&alice, Role::Viewer)],
    )
    .await;
    assert_eq!(
        catalog.team_role(team.id, alice.id).await.unwrap(),
        Some(Role::Viewer)
    );
    catalog.remove_member(team.id, carol.id).await.unwrap();
    assert_eq!(catalog.team_role(team.id, carol.id).await.unwrap(), None);
    assert!(matches!(
        catalog.remove_member(team.id, carol.id).await,
        Err(CatalogError::NotFound {
            entity: Entity::Membership,
            ..
        })
    ));
    assert!(catalog.teams_of(carol.id).await.unwrap().is_empty());
}

async fn projects_start_empty_and_are_unique_per_team(catalog: Shared) {
    let (alice, team, project) = setup(&catalog).await;
    assert_eq!(project.head_version, 0);
    assert_eq!(project.head_root, empty_root());
    assert_eq!(empty_root(), Object::Dir(sync_protocol::Dir::empty()).id());
    assert_eq!(
        catalog.project(project.id).await.unwrap(),
        Some(project.clone())
    );
    assert_eq!(
        catalog.project_by_name(team.id, "API").await.unwrap(),
        Some(project.clone())
    );
    let zero = catalog.version(project.id, 0).await.unwrap().unwrap();
    assert_eq!(zero.root, empty_root());
    assert_eq!(zero.parent, None);
    assert_eq!(zero.author, alice.id);
    assert_eq!(zero.author_name, "alice");
    assert_eq!(zero.message, PROJECT_CREATED_MESSAGE);
    assert_eq!(zero.push_id, None);

    assert!(matches!(
        catalog.create_project(team.id, "Api", alice.id).await,
        Err(CatalogError::AlreadyExists {
            entity: Entity::Project,
            field: Field::ProjectName,
            ..
        })
    ));
    let other = catalog.create_team("other", alice.id).await.unwrap();
    catalog
        .create_project(other.id, "api", alice.id)
        .await
        .unwrap();
    assert!(matches!(
        catalog
            .create_project(sync_server::catalog::TeamId::random(), "x", alice.id)
            .await,
        Err(CatalogError::NotFound {
            entity: Entity::Team,
            ..
        })
    ));
    assert_eq!(catalog.project(ProjectId::random()).await.unwrap(), None);
}

async fn visibility_follows_membership(catalog: Shared) {
    let (alice, team, project) = setup(&catalog).await;
    let bob = account(&catalog, "bob").await;
    let carol = account(&catalog, "carol").await;
    let other = catalog.create_team("other", alice.id).await.unwrap();
    let second = catalog
        .create_project(other.id, "web", alice.id)
        .await
        .unwrap();
    set_members(&catalog, &team, &[(&bob, Role::Viewer)]).await;

    let alices: HashSet<(ProjectId, Role)> = catalog
        .projects_visible_to(alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|visible| (visible.project.id, visible.role))
        .collect();
    assert_eq!(
        alices,
        HashSet::from([(project.id, Role::Owner), (second.id, Role::Owner)])
    );
    let bobs = catalog.projects_visible_to(bob.id).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].project, project);
    assert_eq!(bobs[0].role, Role::Viewer);
    assert!(
        catalog
            .projects_visible_to(carol.id)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        catalog.project_role(bob.id, project.id).await.unwrap(),
        Some(Role::Viewer)
    );
    assert_eq!(catalog.project_role(bob.id, second.id).await.unwrap(), None);
    assert_eq!(
        catalog.project_role(carol.id, project.id).await.unwrap(),
        None
    );
    assert_eq!(
        catalog
            .project_role(alice.id, ProjectId::random())
            .await
            .unwrap(),
        None
    );
    let bobs_view = catalog
        .project_for(bob.id, project.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bobs_view.project, project);
    assert_eq!(bobs_view.role, Role::Viewer);
    assert_eq!(catalog.project_for(bob.id, second.id).await.unwrap(), None);
    assert_eq!(
        catalog
            .project_for(alice.id, ProjectId::random())
            .await
            .unwrap(),
        None
    );
    assert!(Role::Editor.can_write() && !Role::Viewer.can_write());
}

async fn commit_moves_the_head(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    let first = request(&project, &alice, 0, "one");
    let (version, replayed) = committed(catalog.commit(first.clone()).await.unwrap());
    assert!(!replayed);
    assert_eq!(version.number, 1);
    assert_eq!(version.parent, Some(0));
    assert_eq!(version.root, root("one"));
    assert_eq!(version.author, alice.id);
    assert_eq!(version.author_name, "alice");
    assert_eq!(version.message, "push one");
    assert_eq!(version.push_id, Some(first.push_id.clone()));
    assert_eq!(
        catalog.version(project.id, 1).await.unwrap(),
        Some(version.clone())
    );
    assert_eq!(head(&catalog, project.id).await, (1, root("one")));

    let second = commit_on(&catalog, &project, &alice, 1, "two").await;
    assert_eq!((second.number, second.parent), (2, Some(1)));
    assert_eq!(head(&catalog, project.id).await, (2, root("two")));
}

async fn stale_base_gets_the_current_head(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    commit_on(&catalog, &project, &alice, 0, "one").await;
    let stale = catalog
        .commit(request(&project, &alice, 0, "other"))
        .await
        .unwrap();
    assert_eq!(
        stale,
        CommitOutcome::Conflict {
            head_version: 1,
            head_root: root("one"),
        }
    );
    // A base ahead of the head is stale too.
    let ahead = catalog
        .commit(request(&project, &alice, 7, "other"))
        .await
        .unwrap();
    assert!(matches!(
        ahead,
        CommitOutcome::Conflict {
            head_version: 1,
            ..
        }
    ));
    // Nothing was written.
    let history = history(&catalog, project.id).await;
    assert_eq!(history.len(), 2);
    assert_eq!(catalog.version(project.id, 2).await.unwrap(), None);
}

async fn retry_with_the_same_push_id_commits_once(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    let push = request(&project, &alice, 0, "one");
    let (original, _) = committed(catalog.commit(push.clone()).await.unwrap());
    // The retry after an unknown outcome gets the same version, not a second commit and not a
    // conflict with its own result.
    let (again, replayed) = committed(catalog.commit(push.clone()).await.unwrap());
    assert!(replayed);
    assert_eq!(again, original);
    assert_eq!(head(&catalog, project.id).await.0, 1);

    // Still the original answer after others have pushed on top.
    commit_on(&catalog, &project, &alice, 1, "two").await;
    let (late, replayed) = committed(catalog.commit(push.clone()).await.unwrap());
    assert!(replayed);
    assert_eq!(late, original);

    // The same push id with a different request is a client bug, said so.
    let mut reused = push.clone();
    reused.root = root("something else");
    assert!(matches!(
        catalog.commit(reused).await,
        Err(CatalogError::PushIdReused { .. })
    ));

    // A push that conflicted answers its retry with a conflict carrying the head as it is now.
    let loser = request(&project, &alice, 0, "late");
    assert!(matches!(
        catalog.commit(loser.clone()).await.unwrap(),
        CommitOutcome::Conflict {
            head_version: 2,
            ..
        }
    ));
    commit_on(&catalog, &project, &alice, 2, "three").await;
    assert_eq!(
        catalog.commit(loser).await.unwrap(),
        CommitOutcome::Conflict {
            head_version: 3,
            head_root: root("three"),
        }
    );
    let history = history(&catalog, project.id).await;
    assert_eq!(history.len(), 4, "versions 0 to 3, each once");
}

async fn a_rebased_commit_records_the_push_as_sent(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    commit_on(&catalog, &project, &alice, 0, "one").await;
    commit_on(&catalog, &project, &alice, 1, "two").await;
    // A push on version 1, rebased by the caller onto the head, version 2.
    let push = CommitRequest {
        onto: Some(Onto {
            head_version: 2,
            root: root("rebased"),
        }),
        ..request(&project, &alice, 1, "pushed")
    };
    let outcome = catalog.commit(push.clone()).await.unwrap();
    let CommitOutcome::Committed {
        version,
        replayed: false,
        rebased: true,
    } = outcome
    else {
        panic!("expected a rebased commit, got {outcome:?}");
    };
    assert_eq!(
        (version.number, version.root, version.parent),
        (3, root("rebased"), Some(2))
    );
    assert_eq!(head(&catalog, project.id).await, (3, root("rebased")));
    // Its retry, rebased again or not, replays it: the receipt is of the push as sent.
    for retry in [
        push.clone(),
        CommitRequest {
            onto: None,
            ..push.clone()
        },
    ] {
        assert_eq!(
            catalog.commit(retry).await.unwrap(),
            CommitOutcome::Committed {
                version: version.clone(),
                replayed: true,
                rebased: true,
            }
        );
    }

    // A rebase that loses the compare-and-swap (the head moved on again) records nothing: the
    // caller may rebase onto the new head with the same push id.
    let late = CommitRequest {
        onto: Some(Onto {
            head_version: 2,
            root: root("late rebased"),
        }),
        ..request(&project, &alice, 1, "late")
    };
    assert_eq!(
        catalog.commit(late.clone()).await.unwrap(),
        CommitOutcome::Conflict {
            head_version: 3,
            head_root: root("rebased"),
        }
    );
    let onto_head = CommitRequest {
        onto: Some(Onto {
            head_version: 3,
            root: root("late rebased"),
        }),
        ..late.clone()
    };
    let (version, replayed) = committed(catalog.commit(onto_head).await.unwrap());
    assert_eq!((version.number, replayed), (4, false));
    // Without `onto`, a stale base records its conflict as before.
    let plain = request(&project, &alice, 1, "plain");
    assert!(matches!(
        catalog.commit(plain.clone()).await.unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    let rebased_after_all = CommitRequest {
        onto: Some(Onto {
            head_version: 4,
            root: root("plain rebased"),
        }),
        ..plain
    };
    assert!(matches!(
        catalog.commit(rebased_after_all).await.unwrap(),
        CommitOutcome::Conflict {
            head_version: 4,
            ..
        }
    ));
    assert_eq!(
        history(&catalog, project.id).await.len(),
        5,
        "versions 0 to 4"
    );
}

async fn concurrent_commits_on_one_base_exactly_one_wins(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    let tasks: Vec<_> = (0..16)
        .map(|index| {
            let catalog = Arc::clone(&catalog);
            let push = request(&project, &alice, 0, &format!("racer {index}"));
            tokio::spawn(async move { (push.root, catalog.commit(push).await.unwrap()) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut conflicts = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (root, CommitOutcome::Committed { version, .. }) => winners.push((root, version)),
            (
                _,
                CommitOutcome::Conflict {
                    head_version,
                    head_root,
                },
            ) => conflicts.push((head_version, head_root)),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one commit wins");
    assert_eq!(conflicts.len(), 15);
    let (winning_root, version) = &winners[0];
    assert_eq!(version.number, 1);
    for conflict in conflicts {
        assert_eq!(conflict, (1, *winning_root));
    }
    assert_eq!(head(&catalog, project.id).await, (1, *winning_root));
}

async fn concurrent_duplicates_of_one_push_commit_once(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    let push = request(&project, &alice, 0, "one");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let catalog = Arc::clone(&catalog);
            let push = push.clone();
            tokio::spawn(async move { catalog.commit(push).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        let (version, replayed) = committed(task.await.unwrap());
        assert_eq!(version.number, 1);
        assert_eq!(version.root, root("one"));
        if !replayed {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "one commit, the rest replays");
    assert_eq!(head(&catalog, project.id).await.0, 1);
}

/// Pushes racing on one base, each sent more than once at the same moment (a client that
/// retries while its first attempt is still in flight), over several rounds. Every copy of a
/// push answers what the push did: the winner's copies the same version, exactly one of them
/// not replayed; each loser's copies the same conflict, and so does a later retry. In
/// PostgreSQL a copy can lose the compare-and-swap to its own duplicate, or two losing copies
/// can record their conflict at once: this is the case the two implementations once answered
/// differently.
async fn concurrent_duplicates_of_racing_pushes_answer_alike(catalog: Shared) {
    const ROUNDS: u64 = 8;
    const PUSHES: usize = 2;
    const COPIES: usize = 4;
    let (alice, _team, project) = setup(&catalog).await;
    for base in 0..ROUNDS {
        let pushes: Vec<CommitRequest> = (0..PUSHES)
            .map(|index| request(&project, &alice, base, &format!("base {base} push {index}")))
            .collect();
        let start = Arc::new(tokio::sync::Barrier::new(PUSHES * COPIES));
        let tasks: Vec<_> = (0..COPIES)
            .flat_map(|_| pushes.iter().cloned())
            .map(|push| {
                let catalog = Arc::clone(&catalog);
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    start.wait().await;
                    let outcome = catalog.commit(push.clone()).await;
                    (push.push_id, outcome)
                })
            })
            .collect();
        let mut answers: HashMap<PushId, Vec<CommitOutcome>> = HashMap::new();
        for task in tasks {
            let (push_id, outcome) = task.await.unwrap();
            let outcome = outcome.unwrap_or_else(|error| panic!("push {push_id}: {error}"));
            answers.entry(push_id).or_default().push(outcome);
        }

        let (winners, losers): (Vec<_>, Vec<_>) = pushes.iter().partition(|push| {
            answers[&push.push_id]
                .iter()
                .any(|outcome| matches!(outcome, CommitOutcome::Committed { .. }))
        });
        assert_eq!(
            winners.len(),
            1,
            "base {base}: one push commits: {answers:?}"
        );
        let winner = winners[0];
        let versions: Vec<_> = answers[&winner.push_id]
            .iter()
            .cloned()
            .map(committed)
            .collect();
        let (version, _) = &versions[0];
        assert_eq!((version.number, version.root), (base + 1, winner.root));
        assert!(
            versions.iter().all(|(copy, _)| copy == version),
            "base {base}: every copy of the winner answers its version: {versions:?}"
        );
        let fresh = versions.iter().filter(|(_, replayed)| !replayed).count();
        assert_eq!(fresh, 1, "base {base}: one copy commits, the rest replay");

        let conflict = CommitOutcome::Conflict {
            head_version: base + 1,
            head_root: winner.root,
        };
        for loser in losers {
            assert_eq!(
                answers[&loser.push_id],
                vec![conflict.clone(); COPIES],
                "base {base}: every copy of a losing push answers the same conflict"
            );
            assert_eq!(catalog.commit(loser.clone()).await.unwrap(), conflict);
        }
    }
    let history = history(&catalog, project.id).await;
    assert_eq!(history.len() as u64, ROUNDS + 1, "one version per round");
}

/// Every owner of a team demoted or removed at the same moment, over several rounds: the
/// last-owner rule must hold across transactions, so exactly one of them is refused and the
/// team keeps that one owner.
async fn concurrent_demotions_keep_one_owner(catalog: Shared) {
    const OWNERS: usize = 4;
    const ROUNDS: usize = 3;
    let mut owners = Vec::new();
    for index in 0..OWNERS {
        owners.push(account(&catalog, &format!("owner{index}")).await);
    }
    let team = catalog.create_team("acme", owners[0].id).await.unwrap();
    for round in 0..ROUNDS {
        let all_owners: Vec<_> = owners.iter().map(|owner| (owner, Role::Owner)).collect();
        set_members(&catalog, &team, &all_owners).await;
        let start = Arc::new(tokio::sync::Barrier::new(OWNERS));
        let tasks: Vec<_> = owners
            .iter()
            .enumerate()
            .map(|(index, owner)| {
                let catalog = Arc::clone(&catalog);
                let start = Arc::clone(&start);
                let (team, account) = (team.id, owner.id);
                // Half are demoted, half removed: both paths take the rule.
                let remove = (index + round) % 2 == 0;
                tokio::spawn(async move {
                    start.wait().await;
                    if remove {
                        catalog.remove_member(team, account).await
                    } else {
                        catalog.set_member(team, account, Role::Viewer).await
                    }
                })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => {}
                Err(CatalogError::LastOwner { .. }) => refused += 1,
                Err(error) => panic!("round {round}: {error}"),
            }
        }
        let remaining: Vec<_> = catalog
            .members(team.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|member| member.role == Role::Owner)
            .collect();
        assert_eq!(
            (refused, remaining.len()),
            (1, 1),
            "round {round}: one demotion refused, one owner left"
        );
    }
}

async fn restore_commits_an_old_root(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    commit_on(&catalog, &project, &alice, 0, "one").await;
    commit_on(&catalog, &project, &alice, 1, "two").await;
    let restore = RestoreRequest {
        project: project.id,
        push_id: PushId::random(),
        base_version: 2,
        version: 1,
        author: alice.id,
        message: None,
    };
    let (restored, _) = committed(catalog.restore(restore.clone()).await.unwrap());
    assert_eq!(restored.number, 3);
    assert_eq!(restored.parent, Some(2));
    assert_eq!(restored.root, root("one"));
    assert_eq!(restored.message, "Restore version 1");
    // Restores are pushes: idempotent by push id, and conflict on a stale base.
    let (again, replayed) = committed(catalog.restore(restore.clone()).await.unwrap());
    assert!(replayed);
    assert_eq!(again, restored);
    let stale = RestoreRequest {
        push_id: PushId::random(),
        ..restore.clone()
    };
    assert!(matches!(
        catalog.restore(stale).await.unwrap(),
        CommitOutcome::Conflict {
            head_version: 3,
            ..
        }
    ));
    // Restoring version 0 empties the project.
    let (emptied, _) = committed(
        catalog
            .restore(RestoreRequest {
                push_id: PushId::random(),
                base_version: 3,
                version: 0,
                message: Some("start over".to_owned()),
                ..restore.clone()
            })
            .await
            .unwrap(),
    );
    assert_eq!(emptied.root, empty_root());
    assert_eq!(emptied.message, "start over");
    assert!(matches!(
        catalog
            .restore(RestoreRequest {
                push_id: PushId::random(),
                base_version: 4,
                version: 99,
                ..restore
            })
            .await,
        Err(CatalogError::NotFound {
            entity: Entity::Version,
            ..
        })
    ));
}

async fn history_is_newest_first_and_paginated(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    for base in 0..25 {
        committed(
            catalog
                .commit(request(&project, &alice, base, &format!("v{}", base + 1)))
                .await
                .unwrap(),
        );
    }
    let all = catalog
        .versions(
            project.id,
            VersionPage {
                before: None,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    let numbers: Vec<u64> = all.iter().map(|version| version.number).collect();
    assert_eq!(numbers, (0..=25).rev().collect::<Vec<_>>());

    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = catalog
            .versions(project.id, VersionPage { before, limit: 10 })
            .await
            .unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        before = Some(last.number);
        paged.extend(page.iter().map(|version| version.number));
    }
    assert_eq!(paged, numbers);
    assert_eq!(
        catalog.version(project.id, 13).await.unwrap().unwrap().root,
        root("v13")
    );
    assert_eq!(catalog.version(project.id, 26).await.unwrap(), None);
    assert_eq!(catalog.version(project.id, u64::MAX).await.unwrap(), None);
    let capped = catalog
        .versions(
            project.id,
            VersionPage {
                before: None,
                limit: u32::MAX,
            },
        )
        .await
        .unwrap();
    assert_eq!(capped.len(), 26);
    assert!(
        catalog
            .versions(ProjectId::random(), VersionPage::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn commit_errors_are_typed(catalog: Shared) {
    let (alice, _team, project) = setup(&catalog).await;
    let mut unknown_project = request(&project, &alice, 0, "x");
    unknown_project.project = ProjectId::random();
    assert!(matches!(
        catalog.commit(unknown_project).await,
        Err(CatalogError::NotFound {
            entity: Entity::Project,
            ..
        })
    ));
    let mut unknown_author = request(&project, &alice, 0, "x");
    unknown_author.author = sync_server::catalog::AccountId::random();
    assert!(matches!(
        catalog.commit(unknown_author).await,
        Err(CatalogError::NotFound {
            entity: Entity::Account,
            ..
        })
    ));
    // The failed commits moved nothing.
    assert_eq!(head(&catalog, project.id).await.0, 0);
    commit_on(&catalog, &project, &alice, 0, "x").await;
}

fn node_status(address: &str, hits: u64) -> NodeStatus {
    NodeStatus {
        address: address.to_owned(),
        version: "0.1.0".to_owned(),
        started: Timestamp::from_unix_millis(1_795_701_602_123),
        draining: false,
        stats: NodeStats {
            cache_hits: hits,
            cache_misses: 7,
            cache_capacity: 1 << 28,
            event_streams: 3,
            ..NodeStats::default()
        },
    }
}

async fn nodes_heartbeat_and_expire(catalog: Shared) {
    let first = NodeId::random();
    let second = NodeId::random();
    catalog
        .heartbeat(first, &node_status("10.0.0.1:8080", 1))
        .await
        .unwrap();
    catalog
        .heartbeat(second, &node_status("10.0.0.2:8080", 2))
        .await
        .unwrap();
    // A later heartbeat replaces everything the node said.
    let mut draining = node_status("10.0.0.9:8080", 99);
    draining.draining = true;
    catalog.heartbeat(first, &draining).await.unwrap();
    let live = catalog.live_nodes(Duration::from_secs(60)).await.unwrap();
    assert_eq!(live.len(), 2);
    let mine = live.iter().find(|node| node.id == first).unwrap();
    assert_eq!(mine.status, draining);
    assert_eq!(catalog.nodes().await.unwrap().len(), 2);
    // Addresses and versions are refused as other text is, and nothing is written.
    for bad in ["", "   ", "a\nb", &"x".repeat(256)] {
        let error = catalog
            .heartbeat(first, &node_status(bad, 0))
            .await
            .unwrap_err();
        assert!(matches!(error, CatalogError::Invalid { .. }), "{error:?}");
    }
    let at_limit = "x".repeat(255);
    catalog
        .heartbeat(second, &node_status(&at_limit, 2))
        .await
        .unwrap();
    let mut unversioned = node_status("10.0.0.2:8080", 2);
    unversioned.version = String::new();
    assert!(catalog.heartbeat(second, &unversioned).await.is_err());
    let nodes = catalog.nodes().await.unwrap();
    assert_eq!(
        nodes.iter().find(|node| node.id == first).unwrap().status,
        draining
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        catalog
            .live_nodes(Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty()
    );
    catalog.remove_node(second).await.unwrap();
    catalog.remove_node(second).await.unwrap();
    let live = catalog.live_nodes(Duration::from_secs(60)).await.unwrap();
    assert_eq!(live.len(), 1);
    // Nodes silent for longer than the age are forgotten; fresh ones stay.
    catalog
        .heartbeat(second, &node_status("10.0.0.2:8080", 2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    catalog
        .heartbeat(second, &node_status("10.0.0.2:8080", 3))
        .await
        .unwrap();
    assert_eq!(
        catalog
            .forget_nodes(Duration::from_millis(20))
            .await
            .unwrap(),
        1
    );
    let nodes = catalog.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].id, second);
    assert_eq!(nodes[0].status.stats.cache_hits, 3);
}

async fn all_projects_pages_through_every_project(catalog: Shared) {
    let alice = account(&catalog, "alice").await;
    let mut expected = Vec::new();
    for team_index in 0..3 {
        let team = catalog
            .create_team(&format!("team {team_index}"), alice.id)
            .await
            .unwrap();
        for project_index in 0..4 {
            let project = catalog
                .create_project(team.id, &format!("p{project_index}"), alice.id)
                .await
                .unwrap();
            expected.push(project.id);
        }
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = catalog.all_projects(after, 5).await.unwrap();
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|project| project.id));
    }
    assert_eq!(seen, expected, "every project once, in id order");
}

// The object index.

/// A pack named by `label` holding `ids` in order, each frame 100 bytes after the pack's 8-byte
/// header, kinds in turn chunk, file, dir, sizes 1000 + position.
fn pack_of(label: &str, ids: &[ObjectId]) -> (PackRecord, Vec<IndexedObject>) {
    let pack = PackRecord {
        id: PackId::from_bytes(*root(&format!("pack {label}")).as_bytes()),
        length: 8 + 100 * ids.len() as u64 + 1000,
        objects: ids.len() as u32,
        created: Timestamp::now(),
    };
    let kinds = [ObjectKind::Chunk, ObjectKind::File, ObjectKind::Dir];
    let objects = ids
        .iter()
        .enumerate()
        .map(|(index, id)| IndexedObject {
            id: *id,
            pack: pack.id,
            offset: 8 + 100 * index as u64,
            length: 100,
            kind: kinds[index % kinds.len()],
            size: 1000 + index as u64,
        })
        .collect();
    (pack, objects)
}

/// `objects` copied by compaction into a new pack named `label`, in that order: the same kinds
/// and sizes at new places.
fn repacked(label: &str, objects: &[IndexedObject]) -> (PackRecord, Vec<IndexedObject>) {
    let ids: Vec<ObjectId> = objects.iter().map(|object| object.id).collect();
    let (pack, mut moved) = pack_of(label, &ids);
    for (copy, original) in moved.iter_mut().zip(objects) {
        copy.kind = original.kind;
        copy.size = original.size;
    }
    (pack, moved)
}

/// `count` distinct object ids named by `label`.
fn ids(label: &str, count: usize) -> Vec<ObjectId> {
    (0..count)
        .map(|index| root(&format!("{label} {index}")))
        .collect()
}

/// A cut-off strictly after everything done so far and strictly before everything done after:
/// times are whole milliseconds.
async fn cut_off() -> Timestamp {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let now = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    now
}

/// Whether each of `ids` is indexed in `project` (without touching it).
async fn indexed(catalog: &Shared, project: ProjectId, ids: &[ObjectId]) -> Vec<bool> {
    let found = catalog.locate(project, ids, false).await.unwrap();
    found.iter().map(Option::is_some).collect()
}

async fn index_and_locate_round_trip(catalog: Shared) {
    let (alice, team, project) = setup(&catalog).await;
    let other = catalog
        .create_project(team.id, "web", alice.id)
        .await
        .unwrap();
    let stored = ids("stored", 5);
    let (pack, objects) = pack_of("one", &stored);
    catalog
        .index_pack(project.id, &pack, &objects)
        .await
        .unwrap();

    // In the order asked, unknown ids None, an id asked twice answered twice.
    let unknown = root("never stored");
    let asked = [stored[3], unknown, stored[0], stored[4], stored[3]];
    let found = catalog.locate(project.id, &asked, false).await.unwrap();
    assert_eq!(
        found,
        vec![
            Some(objects[3]),
            None,
            Some(objects[0]),
            Some(objects[4]),
            Some(objects[3])
        ]
    );
    assert_eq!(
        catalog.locate(project.id, &asked, true).await.unwrap(),
        found
    );
    assert_eq!(catalog.locate(project.id, &[], true).await.unwrap(), vec![]);

    assert_eq!(catalog.packs(project.id).await.unwrap(), vec![pack]);
    assert_eq!(
        catalog.pack_objects(project.id, pack.id).await.unwrap(),
        objects
    );

    // Another project sees none of it, and indexes the same ids on its own.
    assert_eq!(indexed(&catalog, other.id, &stored).await, vec![false; 5]);
    assert_eq!(catalog.packs(other.id).await.unwrap(), vec![]);
    assert_eq!(
        catalog.pack_objects(other.id, pack.id).await.unwrap(),
        vec![]
    );
    let (other_pack, other_objects) = pack_of("other", &[stored[1], stored[0]]);
    catalog
        .index_pack(other.id, &other_pack, &other_objects)
        .await
        .unwrap();
    let found = catalog.locate(other.id, &stored[..2], false).await.unwrap();
    assert_eq!(found, vec![Some(other_objects[1]), Some(other_objects[0])]);
    let found = catalog
        .locate(project.id, &stored[..2], false)
        .await
        .unwrap();
    assert_eq!(found, vec![Some(objects[0]), Some(objects[1])]);
    assert_eq!(
        indexed(&catalog, ProjectId::random(), &stored).await,
        vec![false; 5]
    );

    // Indexing into a project that does not exist is refused.
    assert!(matches!(
        catalog
            .index_pack(ProjectId::random(), &pack, &objects)
            .await,
        Err(CatalogError::NotFound {
            entity: Entity::Project,
            ..
        })
    ));
}

async fn an_object_keeps_its_first_location(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let stored = ids("object", 3);
    let (x, y, z) = (stored[0], stored[1], stored[2]);
    let (first, first_objects) = pack_of("first", &[x, y]);
    let (second, second_objects) = pack_of("second", &[y, z]);
    catalog
        .index_pack(project.id, &first, &first_objects)
        .await
        .unwrap();
    catalog
        .index_pack(project.id, &second, &second_objects)
        .await
        .unwrap();
    // The same pack indexed again changes nothing.
    catalog
        .index_pack(project.id, &first, &first_objects)
        .await
        .unwrap();

    let found = catalog.locate(project.id, &[x, y, z], false).await.unwrap();
    assert_eq!(
        found,
        vec![
            Some(first_objects[0]),
            Some(first_objects[1]),
            Some(second_objects[1])
        ]
    );
    let mut packs = catalog.packs(project.id).await.unwrap();
    packs.sort_by_key(|pack| pack.id);
    let mut expected = vec![first, second];
    expected.sort_by_key(|pack| pack.id);
    assert_eq!(packs, expected);
    assert_eq!(
        catalog.pack_objects(project.id, second.id).await.unwrap(),
        vec![second_objects[1]]
    );

    // Within one batch too, the first place named wins.
    let w = root("twice in one pack");
    let (twice, mut twice_objects) = pack_of("twice", &[w, w]);
    twice_objects[1].offset = 8;
    twice_objects[0].offset = 108;
    catalog
        .index_pack(project.id, &twice, &twice_objects)
        .await
        .unwrap();
    let found = catalog.locate(project.id, &[w], false).await.unwrap();
    assert_eq!(found, vec![Some(twice_objects[0])]);
}

async fn touching_lookups_protect_from_collection(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let stored = ids("touch", 4);
    let (pack, objects) = pack_of("touch", &stored);
    catalog
        .index_pack(project.id, &pack, &objects)
        .await
        .unwrap();
    let collection_started = cut_off().await;

    // A push referencing stored[0] looks it up touching it; one looking at stored[1] without
    // touching does not protect it; stored[2] is uploaded again (its pack indexed again).
    let found = catalog
        .locate(project.id, &[stored[0]], true)
        .await
        .unwrap();
    assert_eq!(found, vec![Some(objects[0])]);
    catalog
        .locate(project.id, &[stored[1]], false)
        .await
        .unwrap();
    let (again, again_objects) = pack_of("again", &[stored[2]]);
    catalog
        .index_pack(project.id, &again, &again_objects)
        .await
        .unwrap();

    let removed = catalog
        .unindex(project.id, &stored, collection_started)
        .await
        .unwrap();
    assert_eq!(removed, 2, "the untouched stored[1] and stored[3]");
    assert_eq!(
        indexed(&catalog, project.id, &stored).await,
        vec![true, false, true, false]
    );
    // The object indexed again kept its first location.
    let found = catalog
        .locate(project.id, &[stored[2]], false)
        .await
        .unwrap();
    assert_eq!(found, vec![Some(objects[2])]);
}

async fn unindex_respects_the_cut_off(catalog: Shared) {
    let (alice, team, project) = setup(&catalog).await;
    let other = catalog
        .create_project(team.id, "web", alice.id)
        .await
        .unwrap();
    let before_index = cut_off().await;
    let stored = ids("collect", 3);
    let (pack, objects) = pack_of("collect", &stored);
    for project in [project.id, other.id] {
        catalog.index_pack(project, &pack, &objects).await.unwrap();
    }
    // Every row was touched after this cut-off: nothing goes.
    let removed = catalog
        .unindex(project.id, &stored, before_index)
        .await
        .unwrap();
    assert_eq!(removed, 0);
    assert_eq!(indexed(&catalog, project.id, &stored).await, vec![true; 3]);

    let after_index = cut_off().await;
    catalog
        .locate(project.id, &stored[..1], true)
        .await
        .unwrap();
    let unknown = root("not indexed");
    let removed = catalog
        .unindex(
            project.id,
            &[stored[0], stored[1], unknown, stored[1]],
            after_index,
        )
        .await
        .unwrap();
    assert_eq!(
        removed, 1,
        "stored[1]: stored[0] was touched after the cut-off"
    );
    assert_eq!(
        indexed(&catalog, project.id, &stored).await,
        vec![true, false, true]
    );
    // The other project's rows are its own.
    assert_eq!(indexed(&catalog, other.id, &stored).await, vec![true; 3]);
    assert_eq!(
        catalog.unindex(project.id, &[], after_index).await.unwrap(),
        0
    );

    let later = cut_off().await;
    let removed = catalog.unindex(project.id, &stored, later).await.unwrap();
    assert_eq!(removed, 2);
    assert_eq!(indexed(&catalog, project.id, &stored).await, vec![false; 3]);
    // An object indexed again after its row went is stored at its new place.
    let (again, again_objects) = pack_of("again", &stored[..1]);
    catalog
        .index_pack(project.id, &again, &again_objects)
        .await
        .unwrap();
    let found = catalog
        .locate(project.id, &stored[..1], false)
        .await
        .unwrap();
    assert_eq!(found, vec![Some(again_objects[0])]);
}

async fn relocate_moves_the_rows_that_still_exist(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let stored = ids("compact", 3);
    let (old, objects) = pack_of("old", &stored);
    catalog
        .index_pack(project.id, &old, &objects)
        .await
        .unwrap();
    // Collection removed stored[2] before compaction committed.
    let future = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 60_000);
    catalog
        .unindex(project.id, &stored[2..], future)
        .await
        .unwrap();
    let before_move = cut_off().await;

    // Compaction copied all three into a new pack, in another order.
    let (new, moved) = repacked("new", &[objects[1], objects[2], objects[0]]);
    assert_eq!(catalog.relocate(project.id, &new, &moved).await.unwrap(), 2);
    let found = catalog.locate(project.id, &stored, false).await.unwrap();
    assert_eq!(found, vec![Some(moved[2]), Some(moved[0]), None]);
    assert_eq!(
        catalog.pack_objects(project.id, old.id).await.unwrap(),
        vec![]
    );
    assert_eq!(
        catalog.pack_objects(project.id, new.id).await.unwrap(),
        vec![moved[0], moved[2]]
    );
    let packs: HashSet<PackId> = catalog
        .packs(project.id)
        .await
        .unwrap()
        .iter()
        .map(|pack| pack.id)
        .collect();
    assert_eq!(packs, HashSet::from([old.id, new.id]));
    // Moving is not referencing: the moved rows are as old as before.
    let removed = catalog
        .unindex(project.id, &stored, before_move)
        .await
        .unwrap();
    assert_eq!(removed, 2);

    // Every moved object must name the new pack.
    let mut stray = moved.clone();
    stray[1].pack = old.id;
    assert!(matches!(
        catalog.relocate(project.id, &new, &stray).await,
        Err(CatalogError::Invalid {
            field: Field::IndexedObject,
            ..
        })
    ));
}

async fn forget_pack_refuses_while_rows_name_it(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let stored = ids("forget", 2);
    let (pack, objects) = pack_of("forget", &stored);
    catalog
        .index_pack(project.id, &pack, &objects)
        .await
        .unwrap();
    assert!(!catalog.forget_pack(project.id, pack.id).await.unwrap());
    assert_eq!(catalog.packs(project.id).await.unwrap(), vec![pack]);
    let unknown = PackId::from_bytes([7; 32]);
    assert!(!catalog.forget_pack(project.id, unknown).await.unwrap());

    // One row left still keeps it.
    let future = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 60_000);
    catalog
        .unindex(project.id, &stored[..1], future)
        .await
        .unwrap();
    assert!(!catalog.forget_pack(project.id, pack.id).await.unwrap());
    // Moved away, the last row no longer names it.
    let (new, moved) = repacked("new", &objects[1..]);
    assert_eq!(catalog.relocate(project.id, &new, &moved).await.unwrap(), 1);
    assert!(catalog.forget_pack(project.id, pack.id).await.unwrap());
    assert!(!catalog.forget_pack(project.id, pack.id).await.unwrap());
    assert_eq!(catalog.packs(project.id).await.unwrap(), vec![new]);
    let found = catalog.locate(project.id, &stored, false).await.unwrap();
    assert_eq!(found, vec![None, Some(moved[0])]);

    // A pack whose objects were all indexed elsewhere first has no rows from the start.
    let (duplicate, duplicate_objects) = pack_of("duplicate", &stored[1..]);
    catalog
        .index_pack(project.id, &duplicate, &duplicate_objects)
        .await
        .unwrap();
    assert!(catalog.forget_pack(project.id, duplicate.id).await.unwrap());
}

async fn forgotten_and_orphan_packs_are_dead_until_dropped(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let stored = ids("dead", 2);
    let (pack, objects) = pack_of("dead", &stored);
    catalog
        .index_pack(project.id, &pack, &objects)
        .await
        .unwrap();
    assert!(catalog.dead_packs(project.id).await.unwrap().is_empty());
    // An indexed pack is not an orphan.
    let since = Timestamp::now();
    assert_eq!(
        catalog
            .note_dead_packs(project.id, &[pack.id], since)
            .await
            .unwrap(),
        0
    );
    // Emptied and forgotten: dead from now.
    let future = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 60_000);
    catalog.unindex(project.id, &stored, future).await.unwrap();
    let before = Timestamp::now();
    assert!(catalog.forget_pack(project.id, pack.id).await.unwrap());
    let dead = catalog.dead_packs(project.id).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, pack.id);
    assert!(dead[0].1 >= before);
    // An orphan found in the store, noted twice: one row, the first time kept.
    let orphan = PackId::from_bytes([9; 32]);
    let first = Timestamp::from_unix_millis(1_000);
    assert_eq!(
        catalog
            .note_dead_packs(project.id, &[orphan], first)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        catalog
            .note_dead_packs(project.id, &[orphan, pack.id], Timestamp::now())
            .await
            .unwrap(),
        0
    );
    let dead = catalog.dead_packs(project.id).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0], (orphan, first), "oldest first");
    // Deleted from the store: the rows go.
    assert_eq!(
        catalog
            .drop_dead_packs(project.id, &[orphan, pack.id])
            .await
            .unwrap(),
        2
    );
    assert!(catalog.dead_packs(project.id).await.unwrap().is_empty());
    let unknown = ProjectId::from_bytes([3; 16]);
    assert!(
        catalog
            .note_dead_packs(unknown, &[orphan], first)
            .await
            .is_err(),
        "an unknown project"
    );
}

async fn touched_since_lists_recent_rows(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let old = ids("old", 2);
    let (pack, objects) = pack_of("old", &old);
    catalog
        .index_pack(project.id, &pack, &objects)
        .await
        .unwrap();
    let cut = cut_off().await;
    assert!(
        catalog
            .touched_since(project.id, cut)
            .await
            .unwrap()
            .is_empty()
    );
    // A push's lookup touches one; a new pack's rows are touched as they are indexed.
    catalog.locate(project.id, &old[..1], true).await.unwrap();
    let new = ids("new", 1);
    let (pack, objects) = pack_of("new", &new);
    catalog
        .index_pack(project.id, &pack, &objects)
        .await
        .unwrap();
    let mut recent = catalog.touched_since(project.id, cut).await.unwrap();
    recent.sort();
    let mut expected = vec![old[0], new[0]];
    expected.sort();
    assert_eq!(recent, expected);
}

async fn drop_versions_keeps_the_head_and_recent_ones(catalog: Shared) {
    let (author, _, project) = setup(&catalog).await;
    for number in 1..=3 {
        commit_on(
            &catalog,
            &project,
            &author,
            number - 1,
            &format!("v{number}"),
        )
        .await;
    }
    let cut = cut_off().await;
    commit_on(&catalog, &project, &author, 3, "v4").await;
    // Versions 0 to 3 are older than the cut; 4 is the head and recent anyway.
    assert_eq!(catalog.drop_versions(project.id, cut).await.unwrap(), 4);
    let numbers: Vec<u64> = history(&catalog, project.id)
        .await
        .iter()
        .map(|version| version.number)
        .collect();
    assert_eq!(numbers, [4]);
    // Even past every version's time, the head stays.
    let future = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 60_000);
    assert_eq!(catalog.drop_versions(project.id, future).await.unwrap(), 0);
    assert_eq!(head(&catalog, project.id).await.0, 4);
    // The next commit builds on it as before.
    commit_on(&catalog, &project, &author, 4, "v5").await;
    assert_eq!(head(&catalog, project.id).await.0, 5);
}

async fn a_large_pack_indexes_and_locates(catalog: Shared) {
    const COUNT: usize = 20_000;
    let (_, _, project) = setup(&catalog).await;
    let stored = ids("large", COUNT);
    let (pack, objects) = pack_of("large", &stored);
    catalog
        .index_pack(project.id, &pack, &objects)
        .await
        .unwrap();
    // Asked in reverse, with some unknown ids among them.
    let mut asked: Vec<ObjectId> = stored.iter().rev().copied().collect();
    asked.extend(ids("unknown", 100));
    for touch in [false, true] {
        let found = catalog.locate(project.id, &asked, touch).await.unwrap();
        assert_eq!(found.len(), COUNT + 100);
        let expected = objects.iter().rev().map(|object| Some(*object));
        assert!(found[..COUNT].iter().copied().eq(expected));
        assert!(found[COUNT..].iter().all(Option::is_none));
    }
    assert_eq!(
        catalog.pack_objects(project.id, pack.id).await.unwrap(),
        objects
    );
    let later = cut_off().await;
    assert_eq!(
        catalog.unindex(project.id, &asked, later).await.unwrap(),
        COUNT as u64
    );
    assert!(catalog.forget_pack(project.id, pack.id).await.unwrap());
}

async fn concurrent_pushes_and_collection_never_deadlock(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let shared = ids("contended", 400);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let catalog = Arc::clone(&catalog);
            // Every worker names the same objects, each in its own order.
            let mut mine = shared.clone();
            mine.rotate_left(worker * 100);
            if worker % 2 == 1 {
                mine.reverse();
            }
            tokio::spawn(async move {
                for round in 0..5 {
                    let (pack, objects) = pack_of(&format!("{worker} {round}"), &mine);
                    catalog.index_pack(project.id, &pack, &objects).await?;
                    catalog.locate(project.id, &mine, true).await?;
                    let (compacted, moved) = pack_of(&format!("{worker} {round} c"), &mine);
                    catalog.relocate(project.id, &compacted, &moved).await?;
                    catalog.unindex(project.id, &mine, Timestamp::now()).await?;
                    catalog.forget_pack(project.id, pack.id).await?;
                }
                Ok::<_, CatalogError>(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .await
            .unwrap()
            .expect("no statement fails, none deadlocks");
    }
}

async fn object_index_inputs_are_bounded(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    let max = limits::MAX_INDEXED_VALUE;
    let id = root("at the limits");
    // At every limit: a pack of the largest length, its frame ending on its last byte, the
    // largest size.
    let pack = PackRecord {
        id: PackId::from_bytes([1; 32]),
        length: max,
        objects: u32::MAX,
        created: Timestamp::now(),
    };
    let object = IndexedObject {
        id,
        pack: pack.id,
        offset: max - u64::from(u32::MAX),
        length: u32::MAX,
        kind: ObjectKind::Dir,
        size: max,
    };
    catalog
        .index_pack(project.id, &pack, &[object])
        .await
        .unwrap();
    assert_eq!(
        catalog.locate(project.id, &[id], false).await.unwrap(),
        vec![Some(object)]
    );
    assert_eq!(catalog.packs(project.id).await.unwrap(), vec![pack]);

    // One past each: refused naming the field, and nothing written.
    let refused = root("past the limits");
    let past_pack = PackRecord {
        id: PackId::from_bytes([2; 32]),
        length: max + 1,
        ..pack
    };
    let fitting = PackRecord {
        id: PackId::from_bytes([3; 32]),
        length: 1000,
        ..pack
    };
    let within = |pack: &PackRecord| IndexedObject {
        id: refused,
        pack: pack.id,
        offset: 900,
        length: 100,
        kind: ObjectKind::Chunk,
        size: 1,
    };
    let cases = [
        (past_pack, within(&past_pack), Field::Pack),
        (
            fitting,
            IndexedObject {
                size: max + 1,
                ..within(&fitting)
            },
            Field::IndexedObject,
        ),
        (
            fitting,
            IndexedObject {
                offset: 901,
                ..within(&fitting)
            },
            Field::IndexedObject,
        ),
        (
            fitting,
            IndexedObject {
                offset: u64::MAX,
                ..within(&fitting)
            },
            Field::IndexedObject,
        ),
        (
            fitting,
            IndexedObject {
                pack: pack.id,
                ..within(&fitting)
            },
            Field::IndexedObject,
        ),
    ];
    for (pack_record, object, field) in cases {
        let outcome = catalog
            .index_pack(project.id, &pack_record, &[within(&pack_record), object])
            .await;
        assert!(
            matches!(outcome, Err(CatalogError::Invalid { field: refused_field, .. }) if refused_field == field),
            "{object:?} in {pack_record:?}: {outcome:?}"
        );
    }
    assert_eq!(indexed(&catalog, project.id, &[refused]).await, vec![false]);
    assert_eq!(catalog.packs(project.id).await.unwrap(), vec![pack]);
    // The frame ending on the fitting pack's last byte is stored.
    catalog
        .index_pack(project.id, &fitting, &[within(&fitting)])
        .await
        .unwrap();
    assert_eq!(indexed(&catalog, project.id, &[refused]).await, vec![true]);
}

async fn new_projects_are_not_in_the_legacy_layout(catalog: Shared) {
    let (_, _, project) = setup(&catalog).await;
    assert_eq!(
        catalog.legacy_layout(project.id).await.unwrap(),
        Some(false)
    );
    catalog.set_packed(project.id).await.unwrap();
    assert_eq!(
        catalog.legacy_layout(project.id).await.unwrap(),
        Some(false)
    );
    let missing = ProjectId::random();
    assert_eq!(catalog.legacy_layout(missing).await.unwrap(), None);
    assert!(matches!(
        catalog.set_packed(missing).await,
        Err(CatalogError::NotFound {
            entity: Entity::Project,
            ..
        })
    ));
}

// Migrations: not generic, since they are each implementation's own start-up path.

/// How many migrations each dialect has.
const MIGRATIONS: i64 = 5;

/// Rows as the release before the object index wrote them (migration 1's schema): an account,
/// its team and a project, all with the ids given. `$time` is the dialect's way to write now.
fn rows_before_the_object_index(account: &str, team: &str, project: &str, time: &str) -> String {
    format!(
        "INSERT INTO accounts (id, name, name_key, email, email_key, password_hash, created)
         VALUES ('{account}', 'old', 'old', 'old@example.com', 'old@example.com', '$argon2id$x',
                 {time});
         INSERT INTO teams (id, name, name_key, created) VALUES ('{team}', 'old', 'old', {time});
         INSERT INTO memberships (team_id, account_id, role) VALUES ('{team}', '{account}', 'owner');
         INSERT INTO projects (id, team_id, name, name_key, head_version, head_root, created)
         VALUES ('{project}', '{team}', 'old', 'old', 0, '{root}', {time});",
        root = empty_root(),
    )
}

/// Migration 2 on a catalog that has projects: they are in the legacy layout, projects created
/// since are not, and a project's index goes with it.
async fn check_migration_2(catalog: &Shared, old: ProjectId) {
    assert_eq!(catalog.legacy_layout(old).await.unwrap(), Some(true));
    let project = catalog.project(old).await.unwrap().unwrap();
    let new = catalog
        .create_project(
            project.team,
            "new",
            catalog.members(project.team).await.unwrap()[0].account.id,
        )
        .await
        .unwrap();
    assert_eq!(catalog.legacy_layout(new.id).await.unwrap(), Some(false));
    catalog.set_packed(old).await.unwrap();
    assert_eq!(catalog.legacy_layout(old).await.unwrap(), Some(false));
    let (pack, objects) = pack_of("doomed", &ids("doomed", 3));
    catalog.index_pack(old, &pack, &objects).await.unwrap();
}

/// The SQL that deletes a project and counts what is left of its index.
const DELETE_PROJECT: &str = "DELETE FROM projects WHERE id = ";
const COUNT_INDEX_ROWS: &str =
    "SELECT (SELECT COUNT(*) FROM packs) + (SELECT COUNT(*) FROM objects)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migration_2_marks_existing_projects_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite3");
    let (account, team, old) = (
        sync_server::catalog::AccountId::random(),
        sync_server::catalog::TeamId::random(),
        ProjectId::random(),
    );
    // A catalog at migration 1, as the runner records it, with a project.
    let first = include_str!("../../migrations/sqlite/0001_catalog.sql");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute_batch(first).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE schema_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
                 applied INTEGER NOT NULL
             ) STRICT",
        )
        .unwrap();
    connection
        .execute(
            "INSERT INTO schema_migrations VALUES (1, '0001_catalog', ?1, 0)",
            [blake3::hash(first.as_bytes()).to_hex().to_string()],
        )
        .unwrap();
    connection
        .execute_batch(&rows_before_the_object_index(
            &account.to_string(),
            &team.to_string(),
            &old.to_string(),
            "0",
        ))
        .unwrap();
    drop(connection);

    let catalog: Shared = Arc::new(
        sync_server::catalog::SqliteCatalog::open(&path)
            .await
            .unwrap(),
    );
    check_migration_2(&catalog, old).await;
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("PRAGMA foreign_keys = ON")
        .unwrap();
    let count = |connection: &rusqlite::Connection| -> i64 {
        connection
            .query_row(COUNT_INDEX_ROWS, [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(count(&connection), 4);
    connection
        .execute(&format!("{DELETE_PROJECT}?1"), [old.to_string()])
        .unwrap();
    assert_eq!(count(&connection), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_2_marks_existing_projects_legacy() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (account, team, old) = (
        sync_server::catalog::AccountId::random(),
        sync_server::catalog::TeamId::random(),
        ProjectId::random(),
    );
    let first = include_str!("../../migrations/0001_catalog.sql");
    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(first).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (
                 version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
                 applied TIMESTAMPTZ NOT NULL
             )",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO schema_migrations VALUES (1, '0001_catalog', $1, now())",
            &[&blake3::hash(first.as_bytes()).to_hex().to_string()],
        )
        .await
        .unwrap();
    client
        .batch_execute(&rows_before_the_object_index(
            &account.to_string(),
            &team.to_string(),
            &old.to_string(),
            "now()",
        ))
        .await
        .unwrap();

    let catalog = database.catalog().await;
    check_migration_2(&catalog, old).await;
    let count = || async {
        client
            .query_one(COUNT_INDEX_ROWS, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(count().await, 4);
    client
        .execute(&format!("{DELETE_PROJECT}$1"), &[&old.to_string()])
        .await
        .unwrap();
    assert_eq!(count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrations_run_twice_and_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("catalog.sqlite3");
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { sync_server::catalog::SqliteCatalog::open(path).await })
        })
        .collect();
    let mut catalogs = Vec::new();
    for open in opens {
        catalogs.push(open.await.unwrap().expect("concurrent open and migrate"));
    }
    catalogs[0].migrate().await.unwrap();
    let catalog: Shared = Arc::new(catalogs.remove(0));
    setup(&catalog).await;
    // Data survives reopening, which migrates again.
    drop(catalog);
    let reopened = sync_server::catalog::SqliteCatalog::open(&path)
        .await
        .unwrap();
    assert!(reopened.team_by_name("acme").await.unwrap().is_some());
    let applied: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(applied, MIGRATIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_run_twice_and_concurrently() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let settings = database.settings();
    // Several nodes starting at once on a fresh database.
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let settings = settings.clone();
            tokio::spawn(
                async move { sync_server::catalog::PostgresCatalog::connect(&settings).await },
            )
        })
        .collect();
    let mut catalogs = Vec::new();
    for connect in connects {
        catalogs.push(
            connect
                .await
                .unwrap()
                .expect("concurrent connect and migrate"),
        );
    }
    catalogs[0].migrate().await.unwrap();
    let catalog: Shared = Arc::new(catalogs.remove(0));
    setup(&catalog).await;

    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), MIGRATIONS);
}

#[tokio::test]
async fn sqlite_catalog_is_a_file_in_the_data_folder() {
    let (dir, catalog) = sqlite_catalog().await;
    setup(&catalog).await;
    assert!(dir.path().join("catalog.sqlite3").exists());
}

async fn next_notification(listener: &mut CatalogListener) -> Notification {
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("a notification within 10 s")
        .unwrap()
}

async fn next_head(listener: &mut CatalogListener) -> HeadNotification {
    match next_notification(listener).await {
        Notification::Head(head) => head,
        other => panic!("{other:?}, not a head"),
    }
}

/// PostgreSQL tells every listening node of each head a commit moves, when it commits, and
/// only then: a conflict, a replayed push and a restore's refusal notify nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commits_notify_their_heads() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let catalog = database.catalog().await;
    let (alice, _team, project) = setup(&catalog).await;
    let mut listener = CatalogListener::connect(database.url()).await.unwrap();
    let first = request(&project, &alice, 0, "one");
    committed(catalog.commit(first.clone()).await.unwrap());
    let heard = next_head(&mut listener).await;
    assert_eq!(
        heard,
        HeadNotification {
            project: project.id,
            version: 1,
            root: root("one"),
        }
    );
    // The same push again (a replay), and a push on a stale base (a conflict): no head moved.
    committed(catalog.commit(first).await.unwrap());
    let stale = catalog
        .commit(request(&project, &alice, 0, "other"))
        .await
        .unwrap();
    assert!(matches!(stale, CommitOutcome::Conflict { .. }), "{stale:?}");
    commit_on(&catalog, &project, &alice, 1, "two").await;
    let heard = next_head(&mut listener).await;
    assert_eq!((heard.version, heard.root), (2, root("two")));
}

/// PostgreSQL tells every listening node whose access shrank: a removed member, the owner of a
/// revoked token; and nothing for a member added or kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_access_changes_are_notified() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let catalog = database.catalog().await;
    let (alice, team, _project) = setup(&catalog).await;
    let bob = account(&catalog, "bob").await;
    let mut listener = CatalogListener::connect(database.url()).await.unwrap();
    catalog
        .set_member(team.id, bob.id, Role::Viewer)
        .await
        .unwrap();
    catalog.remove_member(team.id, bob.id).await.unwrap();
    assert_eq!(
        next_notification(&mut listener).await,
        Notification::Access(bob.id)
    );
    let token = catalog
        .create_token(alice.id, "laptop", TokenHash::from_bytes([7; 32]))
        .await
        .unwrap();
    catalog.revoke_token(alice.id, token.id).await.unwrap();
    assert_eq!(
        next_notification(&mut listener).await,
        Notification::Access(alice.id)
    );
}
