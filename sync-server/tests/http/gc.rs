//! Garbage collection against real stores: what it drops and keeps, compaction, dead packs,
//! and pushes racing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sync_server::catalog::ProjectId;
use sync_server::gc::{self, Options, Report};
use sync_server::store::pack::PackBuilder;

use crate::http::support::{TestServer, Tree, tree};

const NO_GRACE: Options = Options {
    grace: Duration::ZERO,
    retain: None,
    dry_run: false,
};

async fn collect(server: &TestServer, project: &str, options: Options) -> Report {
    // A grace of zero keeps what was touched in the collection's own millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let storage = &server.storage;
    gc::run(
        storage.catalog.as_ref(),
        &storage.store,
        Some(project),
        options,
    )
    .await
    .expect("gc")
}

async fn fsck_clean(server: &TestServer, project: &str) -> sync_server::fsck::Report {
    let storage = &server.storage;
    let options = sync_server::fsck::Options {
        read_data: true,
        sample: 1.0,
    };
    let report = sync_server::fsck::run(
        storage.catalog.as_ref(),
        &storage.store,
        Some(project),
        options,
    )
    .await
    .expect("fsck");
    assert!(report.is_clean(), "fsck:\n{report}");
    report
}

/// Every version pulls whole, as the tree it was pushed as.
async fn pulls_every_version(
    server: &TestServer,
    user: &crate::http::support::User,
    project: &str,
    trees: &BTreeMap<u64, Tree>,
) {
    // Not from this node's cache: what a cold node would read.
    server.app.cache.clear();
    for (version, tree) in trees {
        let pulled = server.pull(user, project, json!({ "want": version })).await;
        assert_eq!(pulled.root, tree.root.to_string(), "version {version}");
        for id in tree.ids() {
            assert!(
                pulled.objects.iter().any(|(got, _)| *got == id),
                "version {version} lacks {id}"
            );
        }
    }
}

async fn drops_garbage_keeps_versions(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let mut trees = BTreeMap::new();
    let mut base = 0;
    for round in 0..3 {
        let files = [
            ("shared.json", "the same in every version".to_owned()),
            ("round.json", format!("round {round}")),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        let tree = tree(&files);
        base = server.push_tree(&alice, &project, base, &tree).await;
        trees.insert(base, tree);
    }
    // An interrupted push: uploaded, never committed.
    let abandoned = tree(&[
        ("draft.json", "never committed"),
        ("sub/x.json", "nor this"),
    ]);
    let response = server
        .upload_raw(&alice, &project, abandoned.stream())
        .await;
    assert_eq!(response.status(), 200);
    // A pack written by a node that died before indexing it.
    let id: ProjectId = project.parse().unwrap();
    let mut orphan = PackBuilder::new();
    let lost = tree(&[("lost.json", "a node died")]);
    for object in &lost.objects {
        orphan.add(object.id, object.kind, 0, &object.frame);
    }
    let orphan = orphan.finish();
    server.storage.store.put_pack(&id, &orphan).await.unwrap();

    // Within the grace period nothing goes.
    let patient = Options {
        grace: Duration::from_secs(3600),
        retain: None,
        dry_run: false,
    };
    let report = collect(server, &project, patient).await;
    assert_eq!(
        report.garbage, 0,
        "recent uploads are kept with all they reach: {report}"
    );
    assert_eq!(report.unindexed, 0, "{report}");
    assert_eq!(report.orphans_found, 1, "{report}");
    assert_eq!(report.packs_deleted, 0, "{report}");

    // A dry run counts and changes nothing.
    let dry = Options {
        grace: Duration::ZERO,
        retain: None,
        dry_run: true,
    };
    let report = collect(server, &project, dry).await;
    assert_eq!(report.garbage, abandoned.objects.len(), "{report}");
    assert_eq!(report.unindexed, 0, "{report}");
    let missing = server
        .missing_raw(&alice, &project, &[abandoned.root.to_string()])
        .await;
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(missing["missing"], json!([]), "a dry run dropped the root");

    // Past it, the abandoned upload goes, and its pack with it (forgotten, so dead).
    let report = collect(server, &project, NO_GRACE).await;
    assert_eq!(report.unindexed, abandoned.objects.len() as u64, "{report}");
    assert!(report.unindexed_bytes > 0);
    assert_eq!(report.packs_forgotten, 1, "{report}");
    // The orphan, dead since the first run, and the forgotten pack are deleted.
    assert_eq!(report.packs_deleted, 1, "{report}");
    let report = collect(server, &project, NO_GRACE).await;
    assert_eq!(report.packs_deleted, 1, "{report}");
    assert_eq!(report.garbage, 0, "{report}");

    let stored: Vec<_> = server.storage.store.list_packs(&id).await.unwrap();
    let indexed = server.storage.catalog.packs(id).await.unwrap();
    assert_eq!(stored.len(), indexed.len(), "only indexed packs are left");
    let missing = server
        .missing_raw(&alice, &project, &[abandoned.root.to_string()])
        .await;
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(missing["missing"], json!([abandoned.root.to_string()]));

    let report = fsck_clean(server, &project).await;
    assert_eq!(report.unreferenced, 0);
    assert_eq!(report.unindexed_packs, 0);
    pulls_every_version(server, &alice, &project, &trees).await;

    // The abandoned push, resumed after all, sends its objects again and commits.
    let response = server
        .upload_raw(&alice, &project, abandoned.stream())
        .await;
    assert_eq!(response.status(), 200);
    let commit =
        json!({"push_id": "resumed", "base_version": base, "root": abandoned.root.to_string()});
    let response = server.commit_raw(&alice, &project, &commit).await;
    assert_eq!(response.status(), 200);
    fsck_clean(server, &project).await;
}
http_test!(gc_drops_garbage, drops_garbage_keeps_versions);

async fn merges_small_packs(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let id: ProjectId = project.parse().unwrap();
    let mut trees = BTreeMap::new();
    let mut base = 0;
    // One pack per push, each small; a few files overwritten so some packs are mostly dead.
    for round in 0..(gc::MAX_SMALL_PACKS + 3) {
        let files: Vec<(String, String)> = (0..4)
            .map(|i| {
                (
                    format!("f{i}.json"),
                    format!("file {i} round {}", round / 3),
                )
            })
            .chain([("own.json".to_owned(), format!("round {round}"))])
            .collect();
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let tree = tree(&files);
        base = server.push_tree(&alice, &project, base, &tree).await;
        trees.insert(base, tree);
    }
    let before = server.storage.catalog.packs(id).await.unwrap().len();
    assert!(before > gc::MAX_SMALL_PACKS);
    let report = collect(server, &project, NO_GRACE).await;
    assert_eq!(
        report.unindexed, 0,
        "every object is in some version: {report}"
    );
    assert_eq!(report.packs_rewritten, before, "{report}");
    assert_eq!(report.packs_written, 1, "{report}");
    assert_eq!(report.packs_forgotten, before, "{report}");
    let after = server.storage.catalog.packs(id).await.unwrap();
    assert_eq!(after.len(), 1);
    // The rewritten packs stay stored for the grace period, then go.
    assert_eq!(
        server.storage.store.list_packs(&id).await.unwrap().len(),
        before + 1
    );
    pulls_every_version(server, &alice, &project, &trees).await;
    let report = collect(server, &project, NO_GRACE).await;
    assert_eq!(report.packs_deleted, before, "{report}");
    assert_eq!(
        report.packs_rewritten, 0,
        "one pack is not rewritten again: {report}"
    );
    assert_eq!(server.storage.store.list_packs(&id).await.unwrap().len(), 1);
    fsck_clean(server, &project).await;
    pulls_every_version(server, &alice, &project, &trees).await;
}
http_test!(gc_merges_small_packs, merges_small_packs);

/// What racing pushes against collections found.
#[derive(Debug, Default)]
struct RaceOutcome {
    committed: u64,
    /// Pushes refused because objects they had uploaded, or their base version's, were gone.
    lost_uploads: u64,
    /// Objects some version references that are not stored (from fsck).
    dangling: usize,
    collections: u64,
    /// Objects the collections dropped from the index.
    unindexed: u64,
}

/// Writers push to one project, some in one request, some as an upload and a commit a moment
/// later (an interrupted push resumed), while collections run back to back with `grace`, until
/// `duration` has passed or, with `stop_when_found`, the race is seen.
async fn race(
    server: &TestServer,
    grace: Duration,
    duration: Duration,
    stop_when_found: bool,
    longest_upload_wait: Duration,
) -> RaceOutcome {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let alice = Arc::new(alice);
    let done = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..3u64 {
        let (alice, project) = (alice.clone(), project.clone());
        let (done, committed, lost) = (done.clone(), committed.clone(), lost.clone());
        writers.push(async move {
            let mut round = 0u64;
            while !done.load(Ordering::Relaxed) {
                round += 1;
                let files = [
                    ("shared.json", format!("shared {}", round % 3)),
                    ("writer.json", format!("writer {writer} round {round}")),
                    ("deep/a/b.json", format!("deep {writer} {}", round % 5)),
                ];
                let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
                let pushed = tree(&files);
                if round % 5 == 4 {
                    // An interrupted push never resumed: garbage, except for the writer file,
                    // which the next round's push references as already stored.
                    let next = format!("writer {writer} round {}", round + 1);
                    let draft = format!("draft {writer} {round}");
                    let abandoned = tree(&[("writer.json", next.as_str()), ("draft.json", draft.as_str())]);
                    let response = server.upload_raw(&alice, &project, abandoned.stream()).await;
                    assert_eq!(response.status(), 200);
                    continue;
                }
                let resumable = round.is_multiple_of(2);
                if resumable {
                    let response = server.upload_raw(&alice, &project, pushed.stream()).await;
                    assert_eq!(response.status(), 200);
                    // Uploads take a while: some longer than a whole collection.
                    let longest = longest_upload_wait.as_millis() as u64;
                    tokio::time::sleep(Duration::from_millis(5 + (round * 37) % longest)).await;
                }
                for attempt in 0.. {
                    // A push id names one base: a retry on a new head is a new push.
                    let push_id = format!("w{writer}-r{round}-a{attempt}");
                    let (head, _) = server.head(&alice, &project).await;
                    let response = if resumable {
                        let commit = json!({"push_id": push_id, "base_version": head, "root": pushed.root.to_string()});
                        server.commit_raw(&alice, &project, &commit).await
                    } else {
                        server
                            .push_raw(&alice, &project, &push_id, head, &pushed.root, pushed.stream())
                            .await
                    };
                    match response.status().as_u16() {
                        200 => {
                            committed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        409 => continue,
                        422 => {
                            let body: Value = response.json().await.unwrap();
                            assert!(
                                body["code"].as_str().unwrap_or("").starts_with("missing-object"),
                                "{body}"
                            );
                            lost.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // The head itself lost objects: what a dangling version does to the
                        // next push on it.
                        500 => {
                            let body: Value = response.json().await.unwrap();
                            assert_eq!(body["code"], "integrity-error", "{body}");
                            lost.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        other => panic!("push answered {other}: {}", response.text().await.unwrap()),
                    }
                }
            }
        });
    }
    let collector = async {
        let options = Options {
            grace,
            retain: None,
            dry_run: false,
        };
        let mut collections = 0;
        let mut report = Report::default();
        while started.elapsed() < duration {
            let storage = &server.storage;
            let id: ProjectId = project.parse().unwrap();
            gc::collect(
                storage.catalog.as_ref(),
                &storage.store,
                id,
                options,
                &mut report,
            )
            .await
            .expect("gc");
            collections += 1;
            if stop_when_found && lost.load(Ordering::Relaxed) > 0 {
                break;
            }
        }
        done.store(true, Ordering::Relaxed);
        (collections, report.unindexed)
    };
    let ((collections, unindexed), _) =
        tokio::join!(collector, futures_util::future::join_all(writers));
    let storage = &server.storage;
    let fsck = sync_server::fsck::run(
        storage.catalog.as_ref(),
        &storage.store,
        Some(&project),
        sync_server::fsck::Options::default(),
    )
    .await
    .expect("fsck");
    RaceOutcome {
        committed: committed.load(Ordering::Relaxed),
        lost_uploads: lost.load(Ordering::Relaxed),
        dangling: fsck.missing.len(),
        collections,
        unindexed,
    }
}

async fn racing_pushes_lose_nothing(server: &TestServer) {
    let seconds = std::env::var("CAIRN_GC_RACE_SECS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(8);
    // Two seconds: longer than any push here (an upload waits at most 305 ms for its commit),
    // short enough that collections drop abandoned uploads while the writers run.
    let grace = Duration::from_secs(2);
    let longest_wait = Duration::from_millis(300);
    let outcome = race(
        server,
        grace,
        Duration::from_secs(seconds),
        false,
        longest_wait,
    )
    .await;
    eprintln!("gc race, grace 2 s, {seconds} s: {outcome:?}");
    if seconds > 4 {
        assert!(
            outcome.unindexed > 0,
            "the collections had nothing to do: {outcome:?}"
        );
    }
    assert!(
        outcome.committed > 0 && outcome.collections > 1,
        "{outcome:?}"
    );
    assert_eq!(outcome.lost_uploads, 0, "{outcome:?}");
    assert_eq!(outcome.dangling, 0, "{outcome:?}");
}
http_test!(gc_racing_pushes, racing_pushes_lose_nothing);

/// The same race with no grace period: the test must see pushes lose objects, or it proves
/// nothing when it sees none.
async fn no_grace_is_seen(server: &TestServer) {
    // Uploads that wait up to 1.5 s for their commit: longer than a whole collection of the
    // young project, so one can start and finish in between.
    let longest_wait = Duration::from_millis(1500);
    let outcome = race(
        server,
        Duration::ZERO,
        Duration::from_secs(60),
        true,
        longest_wait,
    )
    .await;
    eprintln!("gc race, grace 0: {outcome:?}");
    assert!(
        outcome.lost_uploads + outcome.dangling as u64 > 0,
        "with no grace period the race went unseen: {outcome:?}"
    );
}
http_test!(gc_race_without_grace, no_grace_is_seen);

async fn retention_drops_old_versions(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let mut trees = BTreeMap::new();
    let mut base = 0;
    for round in 0..3 {
        let own = format!("round {round}");
        let tree = tree(&[
            ("shared.json", "kept by the head"),
            ("round.json", own.as_str()),
        ]);
        base = server.push_tree(&alice, &project, base, &tree).await;
        trees.insert(base, tree);
    }
    let head = trees[&base].clone();
    let retain = |dry_run| Options {
        grace: Duration::ZERO,
        retain: Some(Duration::ZERO),
        dry_run,
    };
    // A dry run counts the versions past the period (0, 1 and 2: all but the head) and keeps
    // them.
    let report = collect(server, &project, retain(true)).await;
    assert_eq!(report.versions_dropped, 3, "{report}");
    assert_eq!(report.versions, 1, "{report}");
    assert_eq!(
        server.versions(&alice, &project, "").await["versions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let report = collect(server, &project, retain(false)).await;
    assert_eq!(report.versions_dropped, 3, "{report}");
    // round.json of versions 1 and 2, and their roots.
    assert_eq!(report.unindexed, 4, "{report}");
    let history = server.versions(&alice, &project, "").await;
    let numbers: Vec<u64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [base]);
    // A dropped version is unknown: to pull and to restore.
    let response = server.pull_raw(&alice, &project, json!({"want": 1})).await;
    TestServer::expect_problem(response, 404, "unknown-version").await;
    let restore = json!({"version": 1, "base_version": base});
    let response = server.restore_raw(&alice, &project, &restore).await;
    TestServer::expect_problem(response, 404, "unknown-version").await;
    // The head is whole, and the next push builds on it.
    pulls_every_version(server, &alice, &project, &BTreeMap::from([(base, head)])).await;
    let next = tree(&[("shared.json", "kept by the head"), ("new.json", "after")]);
    server.push_tree(&alice, &project, base, &next).await;
    fsck_clean(server, &project).await;
}
http_test!(gc_retention, retention_drops_old_versions);

/// A pack its push wrote but had not indexed yet when a collection listed the store is recorded
/// dead; indexed after all, it is not deleted.
async fn late_index_revives(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let id: ProjectId = project.parse().unwrap();
    let slow = tree(&[("slow.json", "indexed late")]);
    let mut builder = PackBuilder::new();
    for object in &slow.objects {
        // A chunk's size is its length; a dir's is 0.
        let size = match object.kind {
            sync_protocol::ObjectKind::Chunk => "indexed late".len() as u64,
            _ => 0,
        };
        builder.add(object.id, object.kind, size, &object.frame);
    }
    let pack = builder.finish();
    let storage = &server.storage;
    storage.store.put_pack(&id, &pack).await.unwrap();
    let report = collect(server, &project, NO_GRACE).await;
    assert_eq!(report.orphans_found, 1, "{report}");
    // The push indexes its pack and commits, long after the collection saw it.
    storage
        .catalog
        .index_pack(id, &pack.record(), &pack.index_rows())
        .await
        .unwrap();
    let commit = json!({"push_id": "slow", "base_version": 0, "root": slow.root.to_string()});
    let response = server.commit_raw(&alice, &project, &commit).await;
    assert_eq!(response.status(), 200);
    let report = collect(server, &project, NO_GRACE).await;
    assert_eq!(report.packs_deleted, 0, "{report}");
    assert!(storage.catalog.dead_packs(id).await.unwrap().is_empty());
    assert_eq!(storage.store.list_packs(&id).await.unwrap().len(), 1);
    fsck_clean(server, &project).await;
}
http_test!(gc_late_index, late_index_revives);
