//! A deterministic simulation of the commit path under faults: clients, nodes, one database and
//! one object store in one thread, every interleaving and every fault drawn from one seed
//! (FoundationDB's simulation in spirit, at the scale of a test).
//!
//! What runs is the real thing where it decides: the protocol's machines (tree building, push
//! planning, the object stream, the push acceptor, the pull responder, the three-way merge) and
//! the catalog's shared commit rules (`rules::commit`: receipts, replay, the compare-and-swap),
//! over a simulated database that waits for row locks and re-checks as PostgreSQL does
//! ([`db`]). The nodes' handlers follow `api::sync` step for step ([`node`]); the clients follow
//! `cairn`'s push, retry and merge ([`client`]).
//!
//! The faults, at rates drawn per seed: requests delivered in any order, twice, or never;
//! answers lost; clients that stop waiting; nodes that crash between any two steps of a
//! handler, any two statements of a transaction (an open transaction is rolled back) or any two
//! layers of stored objects. After the clients' work, faults stop and every client syncs until
//! its working copy is committed; then [`check`] looks at the history: versions contiguous, one
//! per base, no push committed twice, every acknowledged push in the history as it was told,
//! every version's tree whole in the store, the store's closure invariant never broken, and the
//! head holding exactly what the clients wrote.
//!
//! Three planted bugs ([`Planted`]) show that the checks bite: committing before the push's
//! objects are stored, a compare-and-swap that does not re-check the head after waiting for its
//! row lock, and a client that forgets a push it gave up on. Each is found within the first
//! seeds, and the same seeds pass without it.
//!
//! Replay a seed with `CAIRN_SIM_SEED=n cargo test -p sync-server simulation`; run more seeds
//! with `CAIRN_SIM_SEEDS=100000` (and `CAIRN_SIM_FIRST_SEED`), in release for speed.

mod check;
mod client;
mod db;
mod exec;
mod net;
mod node;

use std::task::Poll;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use client::Client;
use db::Db;
use exec::{Task, poll_once};
use net::{Net, Outcome};
use node::{Node, Store};

/// A bug the simulation must find when it is switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Planted {
    None,
    /// The node commits the version before the push's objects are stored, and stores them
    /// after: a crash (or a pull) in between sees a version whose tree is not whole.
    StoreAfterCommit,
    /// The compare-and-swap checks the head before it has the row lock and not again after
    /// waiting for it (a read, then a blind write): two pushes on one base both move the head.
    CompareWithoutRecheck,
    /// The client forgets a push it gave up on, as `cairn` did before it settled them: one
    /// that committed after all comes back on a pull as somebody else's edit.
    UnsettledPush,
}

/// Steps after which a run that has not ended counts as stuck.
const STEP_LIMIT: u64 = 2_000_000;

/// What happened in one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    steps: u64,
    crashes: u64,
    dropped_requests: u64,
    duplicated_requests: u64,
    lost_answers: u64,
    timeouts: u64,
    acks: u64,
    versions: u64,
    conflicts: u64,
    rebased: u64,
    gave_up: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.steps += other.steps;
        self.crashes += other.crashes;
        self.dropped_requests += other.dropped_requests;
        self.duplicated_requests += other.duplicated_requests;
        self.lost_answers += other.lost_answers;
        self.timeouts += other.timeouts;
        self.acks += other.acks;
        self.versions += other.versions;
        self.conflicts += other.conflicts;
        self.rebased += other.rebased;
        self.gave_up += other.gave_up;
    }
}

/// One run's result: its counts, its violations, and a fingerprint of its history (equal
/// fingerprints for equal seeds show that a run replays).
#[derive(Debug)]
struct RunResult {
    counts: Counts,
    violations: Vec<String>,
    fingerprint: String,
}

/// Fault rates and sizes of one run, drawn from its seed.
#[derive(Debug)]
struct Setting {
    nodes: usize,
    clients: usize,
    ops: usize,
    drop_request: f64,
    duplicate: f64,
    lose_answer: f64,
    /// Relative weights of a crash and of a client's timeout against a step of work.
    crash: u32,
    timeout: u32,
}

impl Setting {
    fn draw(rng: &mut StdRng) -> Self {
        Self {
            nodes: rng.gen_range(1..=3),
            clients: rng.gen_range(2..=4),
            ops: rng.gen_range(3..=8),
            drop_request: rng.gen_range(0.0..0.15),
            duplicate: rng.gen_range(0.0..0.2),
            lose_answer: rng.gen_range(0.0..0.15),
            crash: rng.gen_range(0..4),
            timeout: rng.gen_range(0..3),
        }
    }
}

/// What the scheduler may do next.
#[derive(Debug, Clone, Copy)]
enum Action {
    PollClient(usize),
    Deliver(usize),
    PollNode(usize),
    Crash,
    Timeout,
}

/// The world of one run.
struct World {
    rng: StdRng,
    setting: Setting,
    faults: bool,
    net: net::SharedNet,
    node: Node,
    clients: Vec<Option<Task<Client>>>,
    done: Vec<Option<Client>>,
    /// Handlers in flight: node, attempt, task.
    handlers: Vec<(usize, u64, Task<net::Answer>)>,
    counts: Counts,
}

impl World {
    /// Runs the scheduler until every client task has ended. False if it got stuck.
    fn run_clients(&mut self) -> Result<(), String> {
        while self.done.iter().any(Option::is_none) {
            self.counts.steps += 1;
            if self.counts.steps > STEP_LIMIT {
                return Err(format!("no end after {STEP_LIMIT} steps"));
            }
            let actions = self.actions();
            if actions.is_empty() {
                // Only calls nobody will answer are left: their clients time out.
                if !self.end_orphans() {
                    return Err("every task waits and nothing can move: a deadlock".to_owned());
                }
                continue;
            }
            let total: u32 = actions.iter().map(|(_, weight)| weight).sum();
            let mut pick = self.rng.gen_range(0..total);
            let action = actions
                .iter()
                .find(|(_, weight)| {
                    let here = pick < *weight;
                    pick = pick.saturating_sub(*weight);
                    here
                })
                .map(|(action, _)| *action)
                .expect("a pick within the total");
            self.act(action);
        }
        Ok(())
    }

    fn actions(&self) -> Vec<(Action, u32)> {
        let net = self.net.borrow();
        let mut actions = Vec::new();
        for (index, task) in self.clients.iter().enumerate() {
            if task.is_some() && !net.blocks(index) {
                actions.push((Action::PollClient(index), 4));
            }
        }
        actions.extend((0..net.requests.len()).map(|index| (Action::Deliver(index), 3)));
        actions.extend((0..self.handlers.len()).map(|index| (Action::PollNode(index), 6)));
        if self.faults {
            if self.setting.crash > 0 && !self.handlers.is_empty() {
                actions.push((Action::Crash, self.setting.crash));
            }
            if self.setting.timeout > 0 && !net.waiting.is_empty() {
                actions.push((Action::Timeout, self.setting.timeout));
            }
        }
        actions
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::PollClient(index) => {
                let task = self.clients[index].as_mut().expect("a running client");
                if let Poll::Ready(client) = poll_once(task) {
                    self.clients[index] = None;
                    self.done[index] = Some(client);
                }
            }
            Action::Deliver(index) => {
                let (attempt, request) = self.net.borrow_mut().requests.swap_remove(index);
                if self.faults && self.rng.gen_bool(self.setting.drop_request) {
                    self.counts.dropped_requests += 1;
                    return;
                }
                if self.faults && self.rng.gen_bool(self.setting.duplicate) {
                    self.counts.duplicated_requests += 1;
                    self.net
                        .borrow_mut()
                        .requests
                        .push((attempt, request.clone()));
                }
                let node = self.rng.gen_range(0..self.setting.nodes);
                let task = Box::pin(self.node.clone().handle(request));
                self.handlers.push((node, attempt, task));
            }
            Action::PollNode(index) => {
                if let Poll::Ready(answer) = poll_once(&mut self.handlers[index].2) {
                    let (_, attempt, _) = self.handlers.swap_remove(index);
                    if self.faults && self.rng.gen_bool(self.setting.lose_answer) {
                        self.counts.lost_answers += 1;
                        return;
                    }
                    self.net.borrow_mut().end(attempt, Outcome::Answer(answer));
                }
            }
            Action::Crash => {
                // The node's handlers stop where they are; their open transactions roll back
                // and their clients see the connection reset.
                let node = self.rng.gen_range(0..self.setting.nodes);
                self.counts.crashes += 1;
                let (dead, alive) = std::mem::take(&mut self.handlers)
                    .into_iter()
                    .partition(|(at, _, _)| *at == node);
                self.handlers = alive;
                let dead: Vec<_> = dead;
                for (_, attempt, task) in dead {
                    drop(task);
                    self.net.borrow_mut().end(attempt, Outcome::Lost);
                }
            }
            Action::Timeout => {
                let mut net = self.net.borrow_mut();
                let attempts: Vec<u64> = net.waiting.keys().copied().collect();
                let attempt = attempts[self.rng.gen_range(0..attempts.len())];
                net.end(attempt, Outcome::Lost);
                self.counts.timeouts += 1;
            }
        }
    }

    /// Ends the calls that no request or handler will answer. True if there were any.
    fn end_orphans(&mut self) -> bool {
        let mut net = self.net.borrow_mut();
        let orphans: Vec<u64> = net
            .waiting
            .keys()
            .copied()
            .filter(|attempt| {
                !net.requests.iter().any(|(a, _)| a == attempt)
                    && !self.handlers.iter().any(|(_, a, _)| a == attempt)
            })
            .collect();
        for attempt in &orphans {
            net.end(*attempt, Outcome::Lost);
            self.counts.timeouts += 1;
        }
        !orphans.is_empty()
    }
}

/// One run of `seed`.
fn run(seed: u64, planted: Planted) -> RunResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let setting = Setting::draw(&mut rng);
    let db = Db::new(planted);
    let store = std::rc::Rc::new(std::cell::RefCell::new(Store::default()));
    let net = std::rc::Rc::new(std::cell::RefCell::new(Net::default()));
    let clients = (0..setting.clients)
        .map(|index| {
            let client = Client::new(index, rng.r#gen(), net.clone(), planted);
            Some(Box::pin(client.run(setting.ops)) as Task<Client>)
        })
        .collect();
    let mut world = World {
        rng,
        faults: true,
        done: (0..setting.clients).map(|_| None).collect(),
        setting,
        net,
        node: Node {
            db: db.clone(),
            store: store.clone(),
            planted,
        },
        clients,
        handlers: Vec::new(),
        counts: Counts::default(),
    };
    let mut violations = Vec::new();
    let worked = world.run_clients().and_then(|()| {
        // Faults stop; every client syncs until its work is committed, one after another
        // or at once as the scheduler draws.
        world.faults = false;
        world.clients = world
            .done
            .iter_mut()
            .map(|client| {
                let client = client.take().expect("a finished client");
                Some(Box::pin(client.settle()) as Task<Client>)
            })
            .collect();
        world.run_clients()?;
        // Then each pulls the head, which they must all agree on.
        world.clients = world
            .done
            .iter_mut()
            .map(|client| {
                let client = client.take().expect("a settled client");
                Some(Box::pin(client.catch_up()) as Task<Client>)
            })
            .collect();
        world.run_clients()
    });
    if let Err(stuck) = worked {
        violations.push(stuck);
    }
    let clients: Vec<Client> = world.done.iter_mut().filter_map(Option::take).collect();
    if violations.is_empty() {
        violations = check::violations(&db.borrow(), &store.borrow(), &clients);
    }
    let mut counts = world.counts;
    for client in &clients {
        counts.acks += client.log.acks.len() as u64;
        counts.conflicts += client.log.conflicts as u64;
        counts.rebased += client.log.rebased as u64;
        counts.gave_up += client.log.gave_up as u64;
    }
    let db = db.borrow();
    counts.versions = db.versions.len() as u64 - 1;
    let fingerprint = format!(
        "{:?} {:?} {:?}",
        db.versions,
        db.receipts,
        clients.iter().map(|client| &client.log).collect::<Vec<_>>()
    );
    RunResult {
        counts,
        violations,
        fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_number(name: &str) -> Option<u64> {
        std::env::var(name).ok().map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}"))
        })
    }

    /// Runs `seeds`, panicking at the first that breaks a promise with how to replay it.
    fn run_seeds(seeds: impl Iterator<Item = u64>, planted: Planted) -> (u64, Counts) {
        let mut totals = Counts::default();
        let mut runs = 0;
        for seed in seeds {
            let result = run(seed, planted);
            assert!(
                result.violations.is_empty(),
                "seed {seed} breaks a promise (replay: CAIRN_SIM_SEED={seed} cargo test -p \
                 sync-server simulation):\n{}",
                result.violations.join("\n")
            );
            totals += result.counts;
            runs += 1;
        }
        (runs, totals)
    }

    #[test]
    fn every_seed_keeps_every_promise() {
        let (runs, totals) = match env_number("CAIRN_SIM_SEED") {
            Some(seed) => run_seeds(seed..=seed, Planted::None),
            None => {
                let first = env_number("CAIRN_SIM_FIRST_SEED").unwrap_or(0);
                let count = env_number("CAIRN_SIM_SEEDS").unwrap_or(2_000);
                run_seeds(first..first + count, Planted::None)
            }
        };
        eprintln!("{runs} seeds: {totals:?}");
        if runs >= 100 {
            // The runs did meet every fault they are meant to survive.
            for (what, count) in [
                ("crashes", totals.crashes),
                ("dropped requests", totals.dropped_requests),
                ("duplicated requests", totals.duplicated_requests),
                ("lost answers", totals.lost_answers),
                ("timeouts", totals.timeouts),
                ("conflicts", totals.conflicts),
                ("rebased pushes", totals.rebased),
                ("pushes given up", totals.gave_up),
            ] {
                assert!(count > 0, "no {what} in {runs} seeds: {totals:?}");
            }
            assert!(totals.acks >= runs, "{totals:?}");
        }
    }

    #[test]
    fn a_run_replays_from_its_seed() {
        for seed in [3, 1_000_003] {
            let first = run(seed, Planted::None);
            let second = run(seed, Planted::None);
            assert_eq!(first.counts, second.counts);
            assert_eq!(first.fingerprint, second.fingerprint);
        }
        assert_ne!(
            run(1, Planted::None).fingerprint,
            run(2, Planted::None).fingerprint
        );
    }

    #[test]
    fn the_planted_bugs_are_found() {
        for planted in [
            Planted::StoreAfterCommit,
            Planted::CompareWithoutRecheck,
            Planted::UnsettledPush,
        ] {
            let found = (0..1_000).find_map(|seed| {
                let result = run(seed, planted);
                (!result.violations.is_empty()).then_some((seed, result.violations))
            });
            let (seed, violations) = found.unwrap_or_else(|| panic!("{planted:?} goes unnoticed"));
            eprintln!("{planted:?} is found at seed {seed}: {}", violations[0]);
            assert!(run(seed, Planted::None).violations.is_empty());
        }
    }
}
