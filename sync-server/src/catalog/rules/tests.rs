//! The commit rule against a scripted, in-memory transaction, at the two interleavings that
//! only PostgreSQL can produce and that its tests reach only by chance: a copy of a push that
//! loses the compare-and-swap to its own duplicate, and two copies that both lose it and race
//! to record the conflict. Here a concurrent transaction's effect is applied at an exact step.

use std::collections::{BTreeMap, HashMap};

use sync_protocol::{Object, ObjectId};

use super::super::transaction::{
    CatalogTransaction, NewReceipt, NewVersion, ObjectRow, PackRow, Receipt, WriteError, run_rule,
};
use super::super::types::{
    AccountId, CommitOutcome, CommitRequest, PackId, Project, ProjectId, PushId, Role, Team,
    TeamId, Timestamp, Version, VersionNumber, empty_root,
};
use super::super::{CatalogError, Result};
use super::commit;

type Step = Box<dyn FnOnce(&mut Memory)>;

/// One project's rows, and what concurrent transactions commit at given steps.
struct Memory {
    project: ProjectId,
    head: (VersionNumber, ObjectId),
    versions: BTreeMap<VersionNumber, Version>,
    receipts: HashMap<PushId, (Receipt, Timestamp)>,
    /// Applied just before the compare-and-swap: what committed while it waited on the lock.
    before_swap: Option<Step>,
    /// Applied just before the receipt is recorded.
    before_receipt: Option<Step>,
    commits: usize,
}

impl Memory {
    fn new() -> Self {
        let project = ProjectId::random();
        let mut memory = Self {
            project,
            head: (0, empty_root()),
            versions: BTreeMap::new(),
            receipts: HashMap::new(),
            before_swap: None,
            before_receipt: None,
            commits: 0,
        };
        memory.write_version(0, empty_root(), None);
        memory
    }

    fn write_version(&mut self, number: VersionNumber, root: ObjectId, push_id: Option<&PushId>) {
        let version = Version {
            project: self.project,
            number,
            root,
            parent: number.checked_sub(1),
            author: AccountId::from_bytes([1; 16]),
            author_name: "alice".to_owned(),
            time: Timestamp::from_unix_millis(0),
            message: String::new(),
            push_id: push_id.cloned(),
        };
        self.versions.insert(number, version);
    }

    /// What a whole concurrent commit of `request` leaves behind.
    fn committed_elsewhere(&mut self, request: &CommitRequest) {
        let number = request.base_version + 1;
        self.head = (number, request.root);
        self.write_version(number, request.root, Some(&request.push_id));
        self.record(request, Some(number), Timestamp::from_unix_millis(1));
    }

    fn record(&mut self, request: &CommitRequest, committed: Option<VersionNumber>, at: Timestamp) {
        let receipt = Receipt {
            base_version: request.base_version,
            root: request.root,
            committed_version: committed,
        };
        self.receipts.insert(request.push_id.clone(), (receipt, at));
    }
}

struct MemoryTransaction<'a>(&'a mut Memory);

fn not_simulated() -> CatalogError {
    CatalogError::database("test", "not simulated")
}

impl CatalogTransaction for MemoryTransaction<'_> {
    async fn receipt(&mut self, _project: ProjectId, push_id: &PushId) -> Result<Option<Receipt>> {
        Ok(self.0.receipts.get(push_id).map(|(receipt, _)| *receipt))
    }

    async fn head(&mut self, _project: ProjectId) -> Result<Option<(VersionNumber, ObjectId)>> {
        Ok(Some(self.0.head))
    }

    async fn swap_head(
        &mut self,
        _project: ProjectId,
        from: VersionNumber,
        to: VersionNumber,
        root: ObjectId,
    ) -> Result<bool> {
        if let Some(step) = self.0.before_swap.take() {
            step(self.0);
        }
        if self.0.head.0 != from {
            return Ok(false);
        }
        self.0.head = (to, root);
        Ok(true)
    }

    async fn insert_version(&mut self, version: &NewVersion<'_>) -> Result<(), WriteError> {
        self.0
            .write_version(version.number, version.root, version.push_id);
        Ok(())
    }

    async fn insert_receipt(&mut self, receipt: &NewReceipt<'_>) -> Result<bool> {
        if let Some(step) = self.0.before_receipt.take() {
            step(self.0);
        }
        if self.0.receipts.contains_key(receipt.push_id) {
            return Ok(false);
        }
        self.0
            .receipts
            .insert(receipt.push_id.clone(), (receipt.receipt, receipt.created));
        Ok(true)
    }

    async fn version(
        &mut self,
        _project: ProjectId,
        number: VersionNumber,
    ) -> Result<Option<Version>> {
        Ok(self.0.versions.get(&number).cloned())
    }

    async fn insert_team(&mut self, _team: &Team) -> Result<(), WriteError> {
        Err(not_simulated().into())
    }

    async fn lock_owners(&mut self, _team: TeamId) -> Result<Vec<AccountId>> {
        Err(not_simulated())
    }

    async fn upsert_membership(
        &mut self,
        _team: TeamId,
        _account: AccountId,
        _role: Role,
    ) -> Result<(), WriteError> {
        Err(not_simulated().into())
    }

    async fn delete_membership(&mut self, _team: TeamId, _account: AccountId) -> Result<bool> {
        Err(not_simulated())
    }

    async fn insert_project(&mut self, _project: &Project) -> Result<(), WriteError> {
        Err(not_simulated().into())
    }

    async fn insert_pack(
        &mut self,
        _project: ProjectId,
        _pack: &PackRow,
    ) -> Result<(), WriteError> {
        Err(not_simulated().into())
    }

    async fn insert_objects(
        &mut self,
        _project: ProjectId,
        _pack: PackId,
        _objects: &[ObjectRow],
        _now: Timestamp,
    ) -> Result<()> {
        Err(not_simulated())
    }

    async fn move_objects(
        &mut self,
        _project: ProjectId,
        _pack: PackId,
        _objects: &[ObjectRow],
    ) -> Result<u64> {
        Err(not_simulated())
    }

    async fn commit(self) -> Result<()> {
        self.0.commits += 1;
        Ok(())
    }
}

fn request(memory: &Memory, base: VersionNumber, label: &str) -> CommitRequest {
    CommitRequest {
        project: memory.project,
        push_id: PushId::random(),
        base_version: base,
        root: Object::Chunk(label.as_bytes().to_vec()).id(),
        author: AccountId::from_bytes([1; 16]),
        message: format!("push {label}"),
        onto: None,
    }
}

fn run(memory: &mut Memory, request: &CommitRequest) -> Result<CommitOutcome> {
    run_rule(
        "commit",
        commit(request, async { Ok(MemoryTransaction(memory)) }),
    )
}

#[test]
fn a_push_commits_on_its_base() {
    let mut memory = Memory::new();
    let push = request(&memory, 0, "one");
    let CommitOutcome::Committed {
        version, replayed, ..
    } = run(&mut memory, &push).unwrap()
    else {
        panic!("expected a commit");
    };
    assert_eq!(
        (version.number, version.root, replayed),
        (1, push.root, false)
    );
    assert_eq!(memory.head, (1, push.root));
    assert_eq!(memory.commits, 1);
}

#[test]
fn a_copy_that_loses_the_swap_to_its_duplicate_answers_its_version() {
    let mut memory = Memory::new();
    let push = request(&memory, 0, "one");
    // The duplicate commits while this copy waits on the head's row lock, after this copy
    // found no receipt.
    let duplicate = push.clone();
    memory.before_swap = Some(Box::new(move |memory| {
        memory.committed_elsewhere(&duplicate)
    }));
    let outcome = run(&mut memory, &push).unwrap();
    assert_eq!(
        outcome,
        CommitOutcome::Committed {
            version: memory.versions[&1].clone(),
            replayed: true,
            rebased: false,
        },
        "the duplicate's version, not a conflict with it"
    );
    assert_eq!(memory.versions.len(), 2, "versions 0 and 1, once each");
    assert_eq!(memory.receipts[&push.push_id].0.committed_version, Some(1));
}

#[test]
fn a_copy_that_loses_the_race_to_record_its_conflict_answers_the_same_conflict() {
    let mut memory = Memory::new();
    let push = request(&memory, 0, "late");
    let winner = request(&memory, 0, "first");
    let winner_root = winner.root;
    memory.before_swap = Some(Box::new(move |memory| memory.committed_elsewhere(&winner)));
    // The other copy of this push, which also lost, records its conflict first.
    let duplicate = push.clone();
    let recorded_first = Timestamp::from_unix_millis(7);
    memory.before_receipt = Some(Box::new(move |memory| {
        memory.record(&duplicate, None, recorded_first)
    }));
    let outcome = run(&mut memory, &push).unwrap();
    assert_eq!(
        outcome,
        CommitOutcome::Conflict {
            head_version: 1,
            head_root: winner_root,
        }
    );
    assert_eq!(
        memory.receipts[&push.push_id].1, recorded_first,
        "the duplicate's receipt is kept, not overwritten"
    );
    // Its retry answers the same.
    assert_eq!(run(&mut memory, &push).unwrap(), outcome);
}

#[test]
fn a_reused_push_id_is_refused_before_anything_is_written() {
    let mut memory = Memory::new();
    let push = request(&memory, 0, "one");
    run(&mut memory, &push).unwrap();
    let reused = CommitRequest {
        root: Object::Chunk(b"other".to_vec()).id(),
        ..push
    };
    assert!(matches!(
        run(&mut memory, &reused),
        Err(CatalogError::PushIdReused { .. })
    ));
    assert_eq!(memory.head.0, 1);
    assert_eq!(memory.commits, 1);
}
