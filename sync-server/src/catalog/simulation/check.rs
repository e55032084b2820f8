//! What every run must show, checked on its history once it has settled.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sync_protocol::ObjectId;
use sync_protocol::diff::diff_listings;
use sync_protocol::rebase::by_path;
use sync_protocol::tree::{MemoryObjects, Path, flatten, typed_references};

use super::client::Client;
use super::db::Db;
use super::node::Store;

/// Every way the run broke a promise, in words; empty when it kept them all.
pub(super) fn violations(db: &Db, store: &Store, clients: &[Client]) -> Vec<String> {
    let mut found = Vec::new();
    // Versions contiguous from 0, each on the one before: one winner per base.
    for (index, row) in db.versions.iter().enumerate() {
        let expected = index as u64;
        if row.number != expected || row.parent != expected.checked_sub(1) {
            found.push(format!(
                "version {} (parent {:?}) found where version {expected} belongs",
                row.number, row.parent
            ));
        }
    }
    let last = db.versions.last().expect("version 0");
    if db.head != (last.number, last.root) {
        found.push(format!(
            "the head is {:?} but the last version is {} {}",
            db.head, last.number, last.root
        ));
    }
    // No push committed twice.
    let mut pushes = BTreeSet::new();
    for row in &db.versions {
        if let Some(push_id) = &row.push_id
            && !pushes.insert(push_id.as_str())
        {
            found.push(format!(
                "push {} committed more than once",
                push_id.as_str()
            ));
        }
    }
    // Every acknowledged push is the version it was told, with its root.
    for ack in clients.iter().flat_map(|client| &client.log.acks) {
        let version = db.versions.iter().find(|row| row.number == ack.version);
        match version {
            Some(row)
                if row.root == ack.root
                    && row.push_id.as_ref().map(|p| p.as_str()) == Some(&ack.push_id) => {}
            other => found.push(format!(
                "acknowledged push {} as version {} ({}) is lost: the history has {other:?}",
                ack.push_id, ack.version, ack.root
            )),
        }
    }
    // Every version's tree is whole in the store, each reference matching its object.
    let mut objects = MemoryObjects::new();
    objects.extend(
        store
            .objects
            .iter()
            .map(|(id, stored)| (*id, stored.object.clone())),
    );
    // Receipts agree with the history: a push committed on its base is its root; one rebased
    // onto a later head carries every change the push made to its base.
    for (push_id, receipt) in &db.receipts {
        if let Some(number) = receipt.committed_version {
            let row = db.versions.iter().find(|row| row.number == number);
            let agrees = row.is_some_and(|row| {
                row.push_id.as_ref().map(|p| p.as_str()) == Some(push_id)
                    && if number == receipt.base_version + 1 {
                        row.root == receipt.root
                    } else {
                        carries_push(db, &objects, receipt.base_version, receipt.root, row.root)
                    }
            });
            if !agrees {
                found.push(format!(
                    "receipt of {push_id} names version {number}, which is not its push"
                ));
            }
        }
    }
    let mut whole = HashSet::new();
    for row in &db.versions {
        if let Some(problem) = dangling(&objects, row.root, &mut whole) {
            found.push(format!("version {}: {problem}", row.number));
        }
    }
    found.extend(store.out_of_order.iter().cloned());
    for client in clients {
        found.extend(
            client
                .log
                .refusals
                .iter()
                .map(|refusal| format!("client {}: {refusal}", client.index)),
        );
    }
    // Each client's own files are as it last wrote them: no pull brought back one it deleted,
    // and no merge kept a conflict copy of its own earlier edit.
    for client in clients {
        let own = format!("c{}/", client.index);
        let kept: BTreeMap<&Path, &Vec<u8>> = client
            .working
            .iter()
            .filter(|(path, _)| path.as_str().starts_with(&own))
            .collect();
        let intended: BTreeMap<&Path, &Vec<u8>> = client.intended.iter().collect();
        if kept != intended {
            let paths = |files: &BTreeMap<&Path, &Vec<u8>>| {
                files
                    .keys()
                    .map(|path| path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            found.push(format!(
                "client {} wrote [{}] but holds [{}]",
                client.index,
                paths(&intended),
                paths(&kept)
            ));
        }
    }
    // Every client caught up with the same head.
    for client in clients {
        if client.base() != db.head {
            found.push(format!(
                "client {} ended on {:?}, the head is {:?}",
                client.index,
                client.base(),
                db.head
            ));
        }
    }
    // Once settled, the head holds exactly each client's own files as that client last had
    // them: no acknowledged edit lost, none invented.
    match flatten(&objects, &db.head.1) {
        Ok(listing) => {
            let head: BTreeMap<&Path, ObjectId> =
                listing.iter().map(|(path, file)| (path, file.id)).collect();
            let mut expected = BTreeMap::new();
            for client in clients {
                let own = format!("c{}/", client.index);
                for (path, bytes) in &client.working {
                    if path.as_str().starts_with(&own) {
                        expected.insert(
                            path,
                            sync_protocol::chunking::encode_file(bytes, false)
                                .expect("a file")
                                .id,
                        );
                    }
                }
            }
            let differ: Vec<_> = head
                .iter()
                .filter(|(path, id)| expected.get(*path) != Some(*id))
                .map(|(path, _)| format!("{path} in the head"))
                .chain(
                    expected
                        .iter()
                        .filter(|(path, id)| head.get(*path) != Some(*id))
                        .map(|(path, _)| format!("{path} in its client's copy")),
                )
                .collect();
            if !differ.is_empty() {
                found.push(format!(
                    "the settled head and the clients' own files differ: {}",
                    differ.join(", ")
                ));
            }
        }
        Err(error) => found.push(format!("the head's tree cannot be read: {error}")),
    }
    found
}

/// Whether the tree `rebased` holds every change the push of `pushed` made to version `base`.
fn carries_push(
    db: &Db,
    objects: &MemoryObjects,
    base: u64,
    pushed: ObjectId,
    rebased: ObjectId,
) -> bool {
    let Some(base) = db.versions.iter().find(|row| row.number == base) else {
        return false;
    };
    let (Ok(base), Ok(pushed), Ok(rebased)) = (
        flatten(objects, &base.root),
        flatten(objects, &pushed),
        flatten(objects, &rebased),
    ) else {
        return false;
    };
    by_path(&diff_listings(&base, &pushed))
        .iter()
        .all(|(path, (_, after))| rebased.get(path) == after.as_ref())
}

/// The first object missing (or not what its reference says) under `root`.
fn dangling(
    objects: &MemoryObjects,
    root: ObjectId,
    whole: &mut HashSet<ObjectId>,
) -> Option<String> {
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if whole.contains(&id) || id == sync_protocol::tree::empty_dir_id() {
            continue;
        }
        let Some(object) = objects.get(&id) else {
            return Some(format!("object {id} is referenced but not stored"));
        };
        for reference in typed_references(object) {
            if let Some(child) = objects.get(&reference.id)
                && !reference.is_met_by(child.kind(), child.content_size())
            {
                return Some(format!(
                    "{id} references {} with another kind or size",
                    reference.id
                ));
            }
            stack.push(reference.id);
        }
        whole.insert(id);
    }
    None
}
