//! `sync-server admin convert-layout`, the real binary, on a store in the layout from before
//! packs, in embedded mode (SQLite and a folder) and production mode (PostgreSQL and s3s-fs).
//!
//! The old layout is made the way servers before packs made it: every object's frame, exactly
//! as a client sends it, stored under its own key with the per-object store API those servers
//! wrote with (`ObjectStore::put_many`), each version committed in the catalog after its
//! objects, and the project's `legacy_layout` flag set, as migration 2 sets it on every project
//! that existed before it (by SQL: no server ever sets it back).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cairn_test_support::{Mode, ServerEnvironment, Tree, admin_field, noise};
use serde_json::json;
use sync_protocol::ObjectId;
use sync_protocol::accept::{ObjectInfo, ToStore};
use sync_server::cache::HotCache;
use sync_server::catalog::{
    AccountId, Catalog, CommitOutcome, CommitRequest, PostgresCatalog, PostgresSettings, ProjectId,
    PushId, SqliteCatalog,
};
use sync_server::objects::{Layouts, ProjectObjects};
use sync_server::store::pack::PackId;
use sync_server::store::{FsBackend, ObjectStore, S3Backend, S3Credentials, S3Settings};

/// A project in the old layout, with the stores it is in opened in this process as well.
struct LegacyProject {
    env: ServerEnvironment,
    catalog: Arc<dyn Catalog>,
    store: ObjectStore,
    project: ProjectId,
    author: AccountId,
    token: String,
    /// Every version committed, by number, with its tree (version 0 is the empty project).
    versions: BTreeMap<u64, Option<Tree>>,
    /// Every object written under its own key.
    loose: HashSet<ObjectId>,
}

fn count(output: &str, key: &str) -> u64 {
    admin_field(output, key).parse().expect("a count")
}

/// Runs `sync-server args...`: (exit success, stdout, stderr).
fn run(env: &ServerEnvironment, args: &[&str]) -> (bool, String, String) {
    let output = env.command(args).output().expect("running sync-server");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `sync-server args...`, which must succeed; its stdout.
fn run_ok(env: &ServerEnvironment, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(env, args);
    assert!(ok, "sync-server {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The trees of four versions sharing objects: small files as chunks, a large file as a file
/// object over several chunks, nested dirs, an edit, an addition, a removal.
fn version_trees() -> Vec<Tree> {
    let big = noise(300_000, 7);
    let mut edited = big.clone();
    edited[150_000..150_010].copy_from_slice(b"0123456789");
    let v1: Vec<(&str, &[u8], bool)> = vec![
        ("a.json", b"{\"a\":1}", false),
        ("d/b.json", b"{\"b\":2}", false),
        ("d/e/c.json", b"{\"c\":3}", false),
        ("big.bin", &big, false),
    ];
    let v2: Vec<(&str, &[u8], bool)> = vec![
        ("a.json", b"{\"a\":2}", false),
        ("d/b.json", b"{\"b\":2}", false),
        ("d/e/c.json", b"{\"c\":3}", false),
        ("d/new.json", b"{\"new\":true}", false),
        ("big.bin", &big, false),
    ];
    let v3: Vec<(&str, &[u8], bool)> = vec![
        ("a.json", b"{\"a\":2}", false),
        ("d/b.json", b"{\"b\":2}", false),
        ("d/new.json", b"{\"new\":true}", false),
        ("big.bin", &edited, true),
    ];
    let v4: Vec<(&str, &[u8], bool)> = vec![
        ("a.json", b"{\"a\":4}", false),
        ("d/b.json", b"{\"b\":2}", false),
        ("d/new.json", b"{\"new\":true}", false),
        ("big.bin", &edited, true),
    ];
    [v1, v2, v3, v4]
        .iter()
        .map(|files| Tree::build(files))
        .collect()
}

impl LegacyProject {
    /// Alice, her team and project made with `admin`, the project marked as being in the old
    /// layout, and the stores opened here. `None` (skipped) when production mode's services are
    /// not configured.
    async fn create(mode: Mode) -> Option<LegacyProject> {
        let env = ServerEnvironment::new(mode)?.with_binary(env!("CARGO_BIN_EXE_sync-server"));
        env.create_user("alice");
        env.create_team("crew", "alice");
        let output = run_ok(
            &env,
            &["admin", "create-project", "--team", "crew", "--name", "api"],
        );
        let project: ProjectId = admin_field(&output, "project").parse().unwrap();
        let token = admin_field(
            &run_ok(&env, &["admin", "create-token", "--user", "alice"]),
            "token",
        );
        let (catalog, store) = open_stores(&env).await;
        let author = catalog
            .account_credentials("alice")
            .await
            .unwrap()
            .expect("alice")
            .account
            .id;
        mark_legacy(&env, project).await;
        assert_eq!(catalog.legacy_layout(project).await.unwrap(), Some(true));
        Some(LegacyProject {
            env,
            catalog,
            store,
            project,
            author,
            token,
            versions: BTreeMap::from([(0, None)]),
            loose: HashSet::new(),
        })
    }

    /// Stores `tree`'s objects one per key, as servers before packs did, then commits it.
    async fn commit_legacy(&mut self, tree: &Tree) -> u64 {
        let frames = tree
            .objects
            .iter()
            .map(|object| (object.id, bytes::Bytes::from(object.frame.clone())))
            .collect();
        self.store.put_many(&self.project, frames).await.unwrap();
        self.loose.extend(tree.ids());
        let base = *self.versions.keys().last().unwrap();
        let outcome = self
            .catalog
            .commit(CommitRequest {
                project: self.project,
                push_id: PushId::random(),
                base_version: base,
                root: tree.root,
                author: self.author,
                message: "written before packs".to_owned(),
                onto: None,
            })
            .await
            .unwrap();
        let CommitOutcome::Committed { version, .. } = outcome else {
            panic!("not committed: {outcome:?}")
        };
        self.versions.insert(version.number, Some(tree.clone()));
        version.number
    }

    /// Pushes `tree` through a running server of this release: a legacy project takes pushes,
    /// packed.
    async fn push(&mut self, server: &str, tree: &Tree) {
        let base = *self.versions.keys().last().unwrap();
        let response = reqwest::Client::new()
            .post(format!(
                "{server}/v1/projects/{}/push?push_id=after-upgrade&base_version={base}&root={}",
                self.project, tree.root
            ))
            .bearer_auth(&self.token)
            .body(tree.stream())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        let version = answer["version"].as_u64().unwrap();
        self.versions.insert(version, Some(tree.clone()));
    }

    /// Every version pulled whole from `server`: the raw object streams, by version. Each must
    /// deliver exactly its tree's objects.
    async fn pull_all(&self, server: &str) -> BTreeMap<u64, Vec<u8>> {
        let http = reqwest::Client::new();
        let mut pulled = BTreeMap::new();
        for (version, tree) in &self.versions {
            let response = http
                .post(format!("{server}/v1/projects/{}/pull", self.project))
                .bearer_auth(&self.token)
                .json(&json!({ "want": version }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "version {version}");
            let bytes = response.bytes().await.unwrap().to_vec();
            if let Some(tree) = tree {
                let frames = sync_protocol::stream::decode_stream(&bytes).unwrap();
                let got: HashSet<ObjectId> = frames.iter().map(|frame| frame.id).collect();
                let want: HashSet<ObjectId> = tree.ids().into_iter().collect();
                assert_eq!(got, want, "version {version} did not pull whole");
            }
            pulled.insert(*version, bytes);
        }
        pulled
    }

    fn convert(&self, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec!["admin", "convert-layout"];
        args.extend_from_slice(extra);
        run(&self.env, &args)
    }

    /// `fsck --read-data` on the project, which must be clean; its report.
    fn fsck(&self) -> String {
        let project = self.project.to_string();
        let report = run_ok(&self.env, &["fsck", "--read-data", &project]);
        assert!(report.contains("status: clean"), "{report}");
        report
    }

    async fn loose_keys(&self) -> HashSet<ObjectId> {
        self.store
            .list(&self.project)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    async fn packs(&self) -> HashSet<PackId> {
        let packs = self.catalog.packs(self.project).await.unwrap();
        packs.into_iter().map(|pack| pack.id).collect()
    }

    async fn legacy(&self) -> bool {
        self.catalog
            .legacy_layout(self.project)
            .await
            .unwrap()
            .unwrap()
    }

    /// Stores `ids` (loose now) as a run of the conversion does, packed and indexed.
    async fn pack_here(&self, ids: &[ObjectId]) {
        let read = self.store.get_objects(&self.project, ids).await.unwrap();
        let objects: Vec<ToStore> = ids
            .iter()
            .zip(read)
            .map(|(id, object)| {
                let object = object.expect("stored");
                ToStore {
                    id: *id,
                    info: ObjectInfo::of(&object.object),
                    frame: object.frame,
                }
            })
            .collect();
        let cache = HotCache::new(0);
        let layouts = Layouts::default();
        let objects_here = ProjectObjects::open(
            self.catalog.as_ref(),
            &self.store,
            &cache,
            &layouts,
            self.project,
        )
        .await
        .unwrap();
        objects_here.store(&objects).await.unwrap();
    }
}

/// The catalog and object store `env`'s processes use, opened in this process too.
async fn open_stores(env: &ServerEnvironment) -> (Arc<dyn Catalog>, ObjectStore) {
    match env.mode() {
        Mode::Embedded => {
            let data = env.dir().join(".cairn-data");
            let catalog = SqliteCatalog::open(data.join("catalog.sqlite3"))
                .await
                .unwrap();
            (Arc::new(catalog), ObjectStore::new(FsBackend::new(data)))
        }
        Mode::Production => {
            let database = env.database().expect("a database");
            let catalog = PostgresCatalog::connect(&PostgresSettings::new(database.url()))
                .await
                .unwrap();
            let bucket = env.bucket().expect("a bucket");
            let service = bucket.service();
            // As the environment's processes: no prefix.
            let mut settings = S3Settings::new(bucket.name());
            settings.endpoint = Some(service.endpoint.clone());
            settings.region = service.region.clone();
            settings.force_path_style = true;
            settings.credentials = Some(S3Credentials {
                access_key_id: service.access_key.clone(),
                secret_access_key: service.secret_key.clone(),
            });
            let backend = S3Backend::connect(&settings).await.unwrap();
            (Arc::new(catalog), ObjectStore::new(backend))
        }
    }
}

/// Sets the project's `legacy_layout`, as migration 2 does for every project it finds.
async fn mark_legacy(env: &ServerEnvironment, project: ProjectId) {
    let sql_id = project.to_string();
    match env.mode() {
        Mode::Embedded => {
            let path = env.dir().join(".cairn-data/catalog.sqlite3");
            let connection = rusqlite::Connection::open(path).unwrap();
            let changed = connection
                .execute(
                    "UPDATE projects SET legacy_layout = 1 WHERE id = ?1",
                    [&sql_id],
                )
                .unwrap();
            assert_eq!(changed, 1);
        }
        Mode::Production => {
            let url = env.database().expect("a database").url();
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let connection = tokio::spawn(connection);
            let changed = client
                .execute(
                    "UPDATE projects SET legacy_layout = TRUE WHERE id = $1",
                    &[&sql_id],
                )
                .await
                .unwrap();
            assert_eq!(changed, 1);
            drop(client);
            let _ = connection.await;
        }
    }
}

/// Three versions written in the old layout and a fourth pushed after the upgrade: everything
/// reads before the conversion; after it, every version pulls byte-identical, no loose key is
/// left, fsck reads every object clean, and a second run does nothing.
async fn converts_and_every_version_pulls_byte_identical(mode: Mode) {
    let Some(mut legacy) = LegacyProject::create(mode).await else {
        return;
    };
    let trees = version_trees();
    for tree in &trees[..3] {
        legacy.commit_legacy(tree).await;
    }
    let server = legacy.env.serve(&[]);
    legacy.push(server.url(), &trees[3]).await;
    // Before: the project reads, from loose keys and from the push's pack.
    let before = legacy.pull_all(server.url()).await;
    drop(server);
    assert_eq!(before.len(), 5);
    legacy.fsck();
    let loose = legacy.loose_keys().await;
    assert_eq!(loose, legacy.loose);
    let packs_before = legacy.packs().await;
    // Objects the push stored again are indexed already; the rest are only loose.
    let located = legacy
        .catalog
        .locate(
            legacy.project,
            &loose.iter().copied().collect::<Vec<_>>(),
            false,
        )
        .await
        .unwrap();
    let indexed = located.iter().flatten().count() as u64;
    let to_pack = loose.len() as u64 - indexed;
    assert!(to_pack > 0);

    // A dry run reads everything and writes nothing.
    let (ok, report, stderr) = legacy.convert(&["--dry-run"]);
    assert!(ok, "{report}\n{stderr}");
    assert!(report.contains("status: dry run"), "{report}");
    assert_eq!(count(&report, "objects packed"), to_pack, "{report}");
    assert_eq!(
        count(&report, "loose keys deleted"),
        loose.len() as u64,
        "{report}"
    );
    assert_eq!(legacy.loose_keys().await, loose);
    assert_eq!(legacy.packs().await, packs_before);
    assert!(legacy.legacy().await);

    let (ok, report, stderr) = legacy.convert(&[]);
    assert!(ok, "{report}\n{stderr}");
    assert!(report.contains("status: done"), "{report}");
    assert!(
        report.contains(&format!("project {}: converted", legacy.project)),
        "{report}"
    );
    assert_eq!(count(&report, "projects converted"), 1, "{report}");
    assert_eq!(count(&report, "objects packed"), to_pack, "{report}");
    assert_eq!(
        count(&report, "loose keys deleted"),
        loose.len() as u64,
        "{report}"
    );
    let packs_after = legacy.packs().await;
    let new_packs: Vec<PackId> = packs_after.difference(&packs_before).copied().collect();
    assert_eq!(
        count(&report, "packs written"),
        new_packs.len() as u64,
        "{report}"
    );
    // Trees and chunks in packs of their own.
    for pack in &new_packs {
        let rows = legacy
            .catalog
            .pack_objects(legacy.project, *pack)
            .await
            .unwrap();
        let chunks = rows
            .iter()
            .filter(|row| row.kind == sync_protocol::ObjectKind::Chunk)
            .count();
        assert!(chunks == 0 || chunks == rows.len(), "a pack mixes kinds");
    }
    assert!(legacy.loose_keys().await.is_empty());
    assert!(!legacy.legacy().await);
    let report = legacy.fsck();
    assert_eq!(
        count(&report, "verified objects"),
        count(&report, "indexed objects")
    );

    // A fresh node, its cache cold: every version pulls the same bytes as before.
    let server = legacy.env.serve(&[]);
    let after = legacy.pull_all(server.url()).await;
    drop(server);
    for (version, bytes) in &before {
        assert!(
            after[version] == *bytes,
            "version {version} pulls different bytes after the conversion"
        );
    }

    // Again: nothing to do.
    let (ok, report, stderr) = legacy.convert(&[]);
    assert!(ok, "{report}\n{stderr}");
    assert_eq!(count(&report, "projects converted"), 0, "{report}");
    assert_eq!(count(&report, "projects already packed"), 1, "{report}");
    assert_eq!(count(&report, "objects packed"), 0, "{report}");
    assert_eq!(count(&report, "loose keys deleted"), 0, "{report}");
    assert_eq!(legacy.packs().await, packs_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converts_embedded() {
    converts_and_every_version_pulls_byte_identical(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converts_production() {
    converts_and_every_version_pulls_byte_identical(Mode::Production).await;
}

/// A loose object whose bytes are not its object stops its project: named with its project,
/// exit status 1, the project still in the old layout with every loose key kept, and still
/// reading. Once repaired, a second run finishes.
async fn corrupt_object_stops_its_project(mode: Mode) {
    let Some(mut legacy) = LegacyProject::create(mode).await else {
        return;
    };
    let trees = version_trees();
    legacy.commit_legacy(&trees[0]).await;
    legacy.commit_legacy(&trees[1]).await;
    // A chunk only version 2 has: version 1 still reads whole.
    let v1: HashSet<ObjectId> = trees[0].ids().into_iter().collect();
    let damaged = trees[1]
        .objects
        .iter()
        .find(|object| object.kind == sync_protocol::ObjectKind::Chunk && !v1.contains(&object.id))
        .expect("a chunk new in version 2")
        .clone();
    let mut flipped = damaged.frame.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    // Puts leave existing keys alone: replace it behind the server's back.
    let store = &legacy.store;
    store
        .delete_many(&legacy.project, &[damaged.id])
        .await
        .unwrap();
    store
        .backend()
        .put_many(&legacy.project, vec![(damaged.id, flipped.into())])
        .await
        .unwrap();
    let loose = legacy.loose_keys().await;

    let (ok, report, stderr) = legacy.convert(&[]);
    assert!(!ok, "the conversion succeeded:\n{report}");
    assert!(
        report.contains(&format!(
            "corrupt: project {} object {}",
            legacy.project, damaged.id
        )),
        "{report}"
    );
    assert!(report.contains("status: damaged"), "{report}");
    assert_eq!(count(&report, "damaged objects"), 1, "{report}");
    assert_eq!(count(&report, "loose keys deleted"), 0, "{report}");
    assert!(stderr.contains("damaged objects: 1"), "{stderr}");
    assert!(legacy.legacy().await);
    assert_eq!(legacy.loose_keys().await, loose);
    // The good objects are packed; the damaged one is not.
    let located = legacy
        .catalog
        .locate(legacy.project, &[damaged.id, trees[1].root], false)
        .await
        .unwrap();
    assert!(located[0].is_none());
    assert!(located[1].is_some());
    // Version 1 still pulls whole, through the index and the loose keys.
    legacy.versions.remove(&2);
    let server = legacy.env.serve(&[]);
    legacy.pull_all(server.url()).await;
    drop(server);

    // Repaired, the next run finishes the job.
    store
        .delete_many(&legacy.project, &[damaged.id])
        .await
        .unwrap();
    store
        .put_many(&legacy.project, vec![(damaged.id, damaged.frame.into())])
        .await
        .unwrap();
    let (ok, report, stderr) = legacy.convert(&["--project", &legacy.project.to_string()]);
    assert!(ok, "{report}\n{stderr}");
    assert_eq!(count(&report, "objects packed"), 1, "{report}");
    assert!(legacy.loose_keys().await.is_empty());
    assert!(!legacy.legacy().await);
    legacy.versions.insert(2, Some(trees[1].clone()));
    let server = legacy.env.serve(&[]);
    legacy.pull_all(server.url()).await;
    drop(server);
    legacy.fsck();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_object_stops_conversion_embedded() {
    corrupt_object_stops_its_project(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_object_stops_conversion_production() {
    corrupt_object_stops_its_project(Mode::Production).await;
}

/// The states a run stopped by a crash leaves, each finished by the next run: some objects
/// packed and a pack written but never indexed (stopped while packing); then every object
/// packed, the project marked and only some keys deleted (stopped while deleting).
async fn a_stopped_run_is_finished_by_the_next(mode: Mode) {
    let Some(mut legacy) = LegacyProject::create(mode).await else {
        return;
    };
    let trees = version_trees();
    for tree in &trees {
        legacy.commit_legacy(tree).await;
    }
    let server = legacy.env.serve(&[]);
    let before = legacy.pull_all(server.url()).await;
    drop(server);
    let mut ids: Vec<ObjectId> = legacy.loose.iter().copied().collect();
    ids.sort();

    // Stopped while packing: the first half indexed, a pack of the rest written, not indexed.
    let (first, rest) = ids.split_at(ids.len() / 2);
    legacy.pack_here(first).await;
    let mut builder = sync_server::store::pack::PackBuilder::new();
    for tree in &trees {
        for object in tree
            .objects
            .iter()
            .filter(|object| rest.contains(&object.id))
        {
            builder.add(object.id, object.kind, 0, &object.frame);
        }
    }
    let stray = builder.finish();
    legacy
        .store
        .put_pack(&legacy.project, &stray)
        .await
        .unwrap();
    let (ok, report, stderr) = legacy.convert(&[]);
    assert!(ok, "{report}\n{stderr}");
    assert_eq!(
        count(&report, "objects packed"),
        rest.len() as u64,
        "{report}"
    );
    assert!(
        report.contains(&format!("  already indexed: {}", first.len())),
        "{report}"
    );
    assert!(legacy.loose_keys().await.is_empty());
    assert!(!legacy.legacy().await);
    legacy.fsck();
    let server = legacy.env.serve(&[]);
    assert_eq!(legacy.pull_all(server.url()).await, before);
    drop(server);

    // Stopped while deleting: everything packed, the project marked, half the keys left.
    let Some(mut again) = LegacyProject::create(mode).await else {
        return;
    };
    for tree in &trees {
        again.commit_legacy(tree).await;
    }
    let mut ids: Vec<ObjectId> = again.loose.iter().copied().collect();
    ids.sort();
    again.pack_here(&ids).await;
    again.catalog.set_packed(again.project).await.unwrap();
    again
        .store
        .delete_many(&again.project, &ids[..ids.len() / 2])
        .await
        .unwrap();
    let (ok, report, stderr) = again.convert(&[]);
    assert!(ok, "{report}\n{stderr}");
    assert_eq!(count(&report, "objects packed"), 0, "{report}");
    assert_eq!(
        count(&report, "loose keys deleted"),
        (ids.len() - ids.len() / 2) as u64,
        "{report}"
    );
    assert!(again.loose_keys().await.is_empty());
    again.fsck();
    // The same trees, so the same bytes as the first project's.
    let server = again.env.serve(&[]);
    let after = again.pull_all(server.url()).await;
    drop(server);
    assert_eq!(after, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_run_is_finished_embedded() {
    a_stopped_run_is_finished_by_the_next(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_run_is_finished_production() {
    a_stopped_run_is_finished_by_the_next(Mode::Production).await;
}
