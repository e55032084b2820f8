//! The simulation's executor: futures polled by hand with a no-op waker, in the order the
//! scheduler's seeded generator picks. Nothing wakes anything: a task that waits (for a lock, an
//! answer) is polled again when it is picked again, and answers `Pending` until it can go on.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A task of a node or a client.
pub(super) type Task<T> = Pin<Box<dyn Future<Output = T>>>;

/// Polls `task` once.
pub(super) fn poll_once<T>(task: &mut Task<T>) -> Poll<T> {
    task.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Gives the scheduler a turn: a point where other tasks may run, or the node may crash.
pub(super) fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |_| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            Poll::Pending
        }
    })
}

/// Waits until `ready` holds, checking it each time the task is polled.
pub(super) fn wait_until(mut ready: impl FnMut() -> bool) -> impl Future<Output = ()> {
    poll_fn(move |_| {
        if ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}
