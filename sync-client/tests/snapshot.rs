//! What the network half builds on: a snapshot's tree is complete in the object cache, and the
//! protocol's push planner runs over the cache from the base to it.

use sync_client::state::Base;
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
        flatten(&objects, &snapshot.root).unwrap(),
        snapshot.scan.listing
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
            listing: snapshot.scan.listing.clone(),
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
