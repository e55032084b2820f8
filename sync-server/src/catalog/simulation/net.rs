//! The network between clients and nodes: requests wait in one pool until the scheduler
//! delivers them (in any order, sometimes twice, sometimes never), and each call ends with the
//! node's answer or, when the request or answer was lost, the connection reset or the client
//! gave up waiting, with [`Outcome::Lost`]: the client cannot tell whether the node acted.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use sync_protocol::ObjectId;

use super::exec::wait_until;

/// What a client asks a node, as the HTTP API's push and pull carry it.
#[derive(Debug, Clone)]
pub(super) enum Request {
    /// `POST /v1/projects/{id}/push`: an object stream committed as `root` on `base`; with
    /// `rebase` (the `cairn-rebase` header), rebased onto the head when `base` is stale.
    Push {
        push_id: String,
        base: u64,
        root: ObjectId,
        stream: Vec<u8>,
        rebase: bool,
    },
    /// `GET /v1/projects/{id}/pull`, holding `have`.
    Pull { have: ObjectId },
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Committed {
        version: u64,
        root: ObjectId,
        rebased: bool,
    },
    Conflict {
        version: u64,
        root: ObjectId,
    },
    Pulled {
        version: u64,
        root: ObjectId,
        stream: Vec<u8>,
    },
    /// A refusal or a server error: never expected, since clients send valid requests and the
    /// simulated database and store do not fail.
    Refused(String),
}

/// How a call ended, as the client sees it.
#[derive(Debug)]
pub(super) enum Outcome {
    Answer(Answer),
    /// No answer: lost, reset or timed out.
    Lost,
}

/// Calls in flight, by attempt number.
#[derive(Debug, Default)]
pub(super) struct Net {
    next_attempt: u64,
    /// Sent and not yet delivered (or delivered and duplicated).
    pub requests: Vec<(u64, Request)>,
    /// Attempts whose client still waits, and for whom.
    pub waiting: BTreeMap<u64, usize>,
    /// Ended calls the client has not yet read.
    outcomes: BTreeMap<u64, Outcome>,
}

pub(super) type SharedNet = Rc<RefCell<Net>>;

impl Net {
    /// True while `client` waits for an answer.
    pub fn blocks(&self, client: usize) -> bool {
        self.waiting.values().any(|waiting| *waiting == client)
    }

    /// Ends `attempt` with `outcome`, if its client still waits for it.
    pub fn end(&mut self, attempt: u64, outcome: Outcome) {
        if self.waiting.remove(&attempt).is_some() {
            self.outcomes.insert(attempt, outcome);
        }
    }
}

/// Sends `request` for `client` and waits for how it ends.
pub(super) async fn call(net: &SharedNet, client: usize, request: Request) -> Outcome {
    let attempt = {
        let mut net = net.borrow_mut();
        net.next_attempt += 1;
        let attempt = net.next_attempt;
        net.requests.push((attempt, request));
        net.waiting.insert(attempt, client);
        attempt
    };
    wait_until(|| net.borrow().outcomes.contains_key(&attempt)).await;
    net.borrow_mut()
        .outcomes
        .remove(&attempt)
        .unwrap_or(Outcome::Lost)
}
