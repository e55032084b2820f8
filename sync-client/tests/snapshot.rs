//! What the network half builds on: a snapshot's tree is complete in the object cache, and the
//! protocol's push planner runs over the cache from the base to it.

use sync_client::stores::state::Base;
use sync_protocol::plan::plan_push;
use sync_protocol::tree::flatten;

use crate::util::{age_tree, new_copy, noise, write};

#[test]
fn a_snapshot_plans_a_push_from_the_cache_alone() {
    let test = new_copy();
    write(&test.root, "requests/a.json", b"{}");
    write(&test.root, "requests/big.bin", &noise(400 * 1024, 5));
    std::fs::create_dir_all(test.root.join("empty")).unwrap();
    age_tree(&test.root);

    let snapshot = test.copy.snapshot().unwrap();
    let objects = test.copy.objects();
    assert_eq!(
        &flatten(&objects, &snapshot.root).unwrap(),
        snapshot.scan.listing()
    );

    // First push: from the never-synced base (the empty project) to the snapshot.
    let base = test.copy.base().unwrap();
    let plan = plan_push(&objects, &base.root, &snapshot.root).unwrap();
    assert!(!plan.is_empty());
    assert_eq!(plan.objects.last(), Some(&snapshot.root));
    for id in &plan.objects {
        objects.frame(id).unwrap();
    }

    // After the push commits, the snapshot is the base and the next plan is empty.
    test.copy
        .set_base(&Base {
            version: Some(1),
            root: snapshot.root,
            listing: snapshot.scan.listing().clone(),
            pending: Default::default(),
        })
        .unwrap();
    let again = test.copy.snapshot().unwrap();
    assert_eq!(again.scan.counters.files_read, 0);
    let plan = plan_push(&objects, &snapshot.root, &again.root).unwrap();
    assert!(plan.is_empty());
    assert!(test.copy.status().unwrap().changes.is_empty());

    // One edit: the plan carries the changed file's chunk and the dirs above it only.
    write(&test.root, "requests/a.json", b"{\"changed\": true}");
    let edited = test.copy.snapshot().unwrap();
    let plan = plan_push(&objects, &snapshot.root, &edited.root).unwrap();
    assert_eq!(plan.objects.len(), 3, "{plan:?}");
    assert_eq!(plan.changes.len(), 1);
}

#[test]
fn two_working_copies_sync_through_their_caches() {
    // The network half in miniature: a push sends the planned frames, a pull stores them and
    // applies the new root. Here the "server" is just the other copy's object cache.
    let alice = new_copy();
    let bob = new_copy();
    write(
        &alice.root,
        "requests/login.json",
        b"{\"method\": \"POST\"}",
    );
    write(&alice.root, "env/dev.json", b"{\"host\": \"localhost\"}");
    let pushed = alice.copy.snapshot().unwrap();
    let empty = alice.copy.base().unwrap().root;
    let send = |from: &crate::util::TestCopy, to: &crate::util::TestCopy, base, root| {
        let plan = plan_push(&from.copy.objects(), &base, &root).unwrap();
        for id in &plan.objects {
            let frame = from.copy.objects().frame(id).unwrap();
            to.copy.objects().put_frame(id, &frame).unwrap();
        }
    };
    send(&alice, &bob, empty, pushed.root);
    alice
        .copy
        .set_base(&Base {
            version: Some(1),
            root: pushed.root,
            listing: pushed.scan.listing().clone(),
            pending: Default::default(),
        })
        .unwrap();
    let report = bob.copy.apply_root(1, pushed.root).unwrap();
    assert_eq!(report.written.len(), 2);
    assert_eq!(
        std::fs::read(bob.root.join("env/dev.json")).unwrap(),
        b"{\"host\": \"localhost\"}"
    );

    // Both edit the same file; Bob pushes first, Alice pulls and keeps her version as a copy.
    write(&bob.root, "env/dev.json", b"{\"host\": \"bob\"}");
    write(&alice.root, "env/dev.json", b"{\"host\": \"alice\"}");
    let bobs = bob.copy.snapshot().unwrap();
    send(&bob, &alice, pushed.root, bobs.root);
    let report = alice.copy.apply_root(2, bobs.root).unwrap();
    assert_eq!(report.conflicts.len(), 1);
    let copy_path = report.conflicts[0].local_copy().unwrap();
    assert_eq!(
        std::fs::read(alice.root.join("env/dev.json")).unwrap(),
        b"{\"host\": \"bob\"}"
    );
    assert_eq!(
        std::fs::read(alice.root.join(copy_path.as_str())).unwrap(),
        b"{\"host\": \"alice\"}"
    );
    // Both changed `host`: the JSON merge conflicts, and the line merge with markers is beside
    // the copy.
    assert_eq!(report.marked.len(), 1);
    // Alice's next push carries only her conflict copy, the merge with markers and the dirs
    // above them.
    let alices = alice.copy.snapshot().unwrap();
    let plan = plan_push(&alice.copy.objects(), &bobs.root, &alices.root).unwrap();
    assert_eq!(plan.changes.len(), 2);
    assert_eq!(plan.objects.len(), 4, "{plan:?}");
}
