//! The simulated database: one project's head, versions and push receipts, with the two
//! behaviours of PostgreSQL that the commit's rules rely on, at `READ COMMITTED`:
//!
//! - the compare-and-swap of the head (`UPDATE ... WHERE head_version = base`) waits for the
//!   row lock of a concurrent transaction that moved the head, then re-checks its condition
//!   against the head that transaction committed;
//! - inserting a receipt whose key another open transaction has inserted waits for that
//!   transaction to end, then fails (`ON CONFLICT DO NOTHING`) if it committed.
//!
//! Reads see what is committed, plus the transaction's own writes. A commit applies every write
//! at once; a transaction dropped without committing (its node crashed) writes nothing and
//! releases its locks, as PostgreSQL does when a backend's connection dies. Every statement
//! starts with a yield, so the scheduler can interleave other tasks, or crash the node, between
//! any two statements.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use sync_protocol::ObjectId;

use super::super::Result;
use super::super::error::CatalogError;
use super::super::transaction::{
    CatalogTransaction, NewReceipt, NewVersion, ObjectRow, PackRow, Receipt, WriteError,
};
use super::super::types::{
    AccountId, PackId, Project, ProjectId, PushId, Role, Team, TeamId, Timestamp, Version,
    VersionNumber, empty_root,
};
use super::Planted;
use super::exec::{wait_until, yield_now};

/// A committed version row.
#[derive(Debug, Clone)]
pub(super) struct VersionRow {
    pub number: VersionNumber,
    pub root: ObjectId,
    pub parent: Option<VersionNumber>,
    pub push_id: Option<PushId>,
}

/// The committed state, shared by every node (the database outlives them all).
#[derive(Debug)]
pub(super) struct Db {
    pub project: ProjectId,
    pub author: AccountId,
    pub head: (VersionNumber, ObjectId),
    /// Every version, in the order they were committed (the checker looks at the numbers).
    pub versions: Vec<VersionRow>,
    pub receipts: BTreeMap<String, Receipt>,
    /// The open transaction holding the project's row lock, if any.
    head_lock: Option<u64>,
    /// Receipt keys inserted by open transactions, and which.
    receipt_locks: BTreeMap<String, u64>,
    next_transaction: u64,
    planted: Planted,
}

pub(super) type SharedDb = Rc<RefCell<Db>>;

impl Db {
    /// A project at version 0, the empty tree.
    pub fn new(planted: Planted) -> SharedDb {
        Rc::new(RefCell::new(Db {
            project: ProjectId::from_bytes([7; 16]),
            author: AccountId::from_bytes([9; 16]),
            head: (0, empty_root()),
            versions: vec![VersionRow {
                number: 0,
                root: empty_root(),
                parent: None,
                push_id: None,
            }],
            receipts: BTreeMap::new(),
            head_lock: None,
            receipt_locks: BTreeMap::new(),
            next_transaction: 0,
            planted,
        }))
    }
}

/// One open transaction and its buffered writes.
#[derive(Debug)]
pub(super) struct SimTransaction {
    db: SharedDb,
    id: u64,
    head: Option<(VersionNumber, ObjectId)>,
    version: Option<VersionRow>,
    receipt: Option<(String, Receipt)>,
    done: bool,
}

impl SimTransaction {
    pub fn begin(db: &SharedDb) -> Self {
        let id = {
            let mut state = db.borrow_mut();
            state.next_transaction += 1;
            state.next_transaction
        };
        Self {
            db: db.clone(),
            id,
            head: None,
            version: None,
            receipt: None,
            done: false,
        }
    }

    fn release(&self) {
        let mut db = self.db.borrow_mut();
        if db.head_lock == Some(self.id) {
            db.head_lock = None;
        }
        db.receipt_locks.retain(|_, holder| *holder != self.id);
    }

    fn version_of(&self, row: &VersionRow) -> Version {
        let db = self.db.borrow();
        Version {
            project: db.project,
            number: row.number,
            root: row.root,
            parent: row.parent,
            author: db.author,
            author_name: "sim".to_owned(),
            time: Timestamp::from_unix_millis(0),
            message: String::new(),
            push_id: row.push_id.clone(),
        }
    }
}

impl Drop for SimTransaction {
    /// A rollback: the node crashed or the rule failed half-way.
    fn drop(&mut self) {
        if !self.done {
            self.release();
        }
    }
}

fn not_simulated(operation: &'static str) -> CatalogError {
    CatalogError::database(operation, "not part of the simulation")
}

impl CatalogTransaction for SimTransaction {
    async fn receipt(&mut self, _: ProjectId, push_id: &PushId) -> Result<Option<Receipt>> {
        yield_now().await;
        if let Some((key, receipt)) = &self.receipt
            && key == push_id.as_str()
        {
            return Ok(Some(*receipt));
        }
        Ok(self.db.borrow().receipts.get(push_id.as_str()).copied())
    }

    async fn head(&mut self, _: ProjectId) -> Result<Option<(VersionNumber, ObjectId)>> {
        yield_now().await;
        Ok(Some(self.head.unwrap_or(self.db.borrow().head)))
    }

    async fn swap_head(
        &mut self,
        _: ProjectId,
        from: VersionNumber,
        to: VersionNumber,
        root: ObjectId,
    ) -> Result<bool> {
        yield_now().await;
        let matched_before_the_lock = self.db.borrow().head.0 == from;
        let (db, id) = (self.db.clone(), self.id);
        wait_until(|| db.borrow().head_lock.is_none_or(|holder| holder == id)).await;
        let mut db = self.db.borrow_mut();
        let matches = if db.planted == Planted::CompareWithoutRecheck {
            matched_before_the_lock
        } else {
            db.head.0 == from
        };
        if !matches {
            return Ok(false);
        }
        db.head_lock = Some(self.id);
        self.head = Some((to, root));
        Ok(true)
    }

    async fn insert_version(&mut self, version: &NewVersion<'_>) -> Result<(), WriteError> {
        yield_now().await;
        // The primary key (project, number): the head's row lock makes a clash impossible
        // unless the compare-and-swap is wrong.
        if self
            .db
            .borrow()
            .versions
            .iter()
            .any(|row| row.number == version.number)
        {
            return Err(WriteError::Failed(CatalogError::database(
                "insert version",
                format!("duplicate key: version {}", version.number),
            )));
        }
        self.version = Some(VersionRow {
            number: version.number,
            root: version.root,
            parent: version.parent,
            push_id: version.push_id.cloned(),
        });
        Ok(())
    }

    async fn insert_receipt(&mut self, receipt: &NewReceipt<'_>) -> Result<bool> {
        yield_now().await;
        let key = receipt.push_id.as_str().to_owned();
        let (db, id) = (self.db.clone(), self.id);
        wait_until(|| {
            db.borrow()
                .receipt_locks
                .get(&key)
                .is_none_or(|holder| *holder == id)
        })
        .await;
        let mut db = self.db.borrow_mut();
        if db.receipts.contains_key(&key) || self.receipt.is_some() {
            return Ok(false);
        }
        db.receipt_locks.insert(key.clone(), self.id);
        self.receipt = Some((key, receipt.receipt));
        Ok(true)
    }

    async fn version(&mut self, _: ProjectId, number: VersionNumber) -> Result<Option<Version>> {
        yield_now().await;
        if let Some(row) = self.version.as_ref().filter(|row| row.number == number) {
            return Ok(Some(self.version_of(row)));
        }
        let row = self
            .db
            .borrow()
            .versions
            .iter()
            .find(|row| row.number == number)
            .cloned();
        Ok(row.map(|row| self.version_of(&row)))
    }

    async fn insert_team(&mut self, _: &Team) -> Result<(), WriteError> {
        Err(not_simulated("insert team").into())
    }

    async fn lock_owners(&mut self, _: TeamId) -> Result<Vec<AccountId>> {
        Err(not_simulated("lock owners"))
    }

    async fn upsert_membership(
        &mut self,
        _: TeamId,
        _: AccountId,
        _: Role,
    ) -> Result<(), WriteError> {
        Err(not_simulated("upsert membership").into())
    }

    async fn delete_membership(&mut self, _: TeamId, _: AccountId) -> Result<bool> {
        Err(not_simulated("delete membership"))
    }

    async fn insert_project(&mut self, _: &Project) -> Result<(), WriteError> {
        Err(not_simulated("insert project").into())
    }

    async fn insert_pack(&mut self, _: ProjectId, _: &PackRow) -> Result<(), WriteError> {
        Err(not_simulated("insert pack").into())
    }

    async fn insert_objects(
        &mut self,
        _: ProjectId,
        _: PackId,
        _: &[ObjectRow],
        _: Timestamp,
    ) -> Result<()> {
        Err(not_simulated("insert objects"))
    }

    async fn move_objects(&mut self, _: ProjectId, _: PackId, _: &[ObjectRow]) -> Result<u64> {
        Err(not_simulated("move objects"))
    }

    async fn commit(mut self) -> Result<()> {
        yield_now().await;
        {
            let mut db = self.db.borrow_mut();
            if let Some(head) = self.head {
                db.head = head;
            }
            if let Some(row) = self.version.take() {
                db.versions.push(row);
            }
            if let Some((key, receipt)) = self.receipt.take() {
                db.receipts.insert(key, receipt);
            }
        }
        self.release();
        self.done = true;
        Ok(())
    }
}
