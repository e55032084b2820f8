//! When a failed request is sent again, and after how long a pause.
//!
//! The server is a cluster behind a proxy. A node that dies or drains leaves its clients, for a
//! few seconds, with refused or reset connections, answers cut off mid-body, and the proxy's
//! `502`, `503` (perhaps with `Retry-After`) and `504`; then the proxy sends them to another
//! node. The client rides through that by sending the request again:
//!
//! - **Whether**: [`worth_retrying`]. A request that may be repeated ([`is_repeatable`]) is
//!   sent again after any transient failure ([`RemoteError::is_transient`]); any other only
//!   when it certainly never left this machine ([`RemoteError::never_sent`]: no connection was
//!   made). An error status is never such a certainty: the proxy's `503` when it has no node
//!   left was not carried out, but the server's own `503 unavailable` can come from a catalog
//!   failure after the work was done, and a proxy's page and the server's cannot be told apart
//!   in general. So a request that is not safe to repeat fails on them, and the person who
//!   asked decides.
//! - **How long**: [`Backoff`], exponential with equal jitter (half the ceiling, plus a random
//!   part of the other half, so a crowd of clients spreads out but none hammers the proxy), a
//!   server's `Retry-After` as the least pause (capped), and a bounded total of pausing, after
//!   which the last failure is the answer.
//!
//! [`retry`] runs the loop; the sleeping is passed in, so tests need not sleep.

use std::time::Duration;

use sync_protocol::wire::{Method, Operation};

use crate::error::{ClientError, RemoteError};

/// How long to pause between attempts, and how long in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first pause; each further retry doubles it.
    pub first: Duration,
    /// The largest ceiling of one pause.
    pub max_pause: Duration,
    /// The longest a server's `Retry-After` is followed.
    pub max_retry_after: Duration,
    /// The most pausing in all before the last failure is final (`Duration::MAX`: never).
    pub budget: Duration,
}

impl Backoff {
    /// The client's policy: ceilings of 100 ms, 200 ms, 400 ms, ... capped at 3 s, at most
    /// 12 s of pausing in all (8 to 12 retries, depending on the jitter), `Retry-After`
    /// followed up to 5 s. That outlasts a proxy's health checks noticing a dead node (a few
    /// seconds), and a server that is really gone is reported within about 12 s.
    pub const STANDARD: Backoff = Backoff {
        first: Duration::from_millis(100),
        max_pause: Duration::from_secs(3),
        max_retry_after: Duration::from_secs(5),
        budget: Duration::from_secs(12),
    };

    /// This policy without an end: for reconnecting that only stops when its reader does.
    #[must_use]
    pub fn endless(self) -> Backoff {
        Backoff {
            budget: Duration::MAX,
            ..self
        }
    }

    /// The pauses of one run of attempts.
    pub fn pauses(&self) -> Pauses {
        Pauses {
            backoff: *self,
            retries: 0,
            paused: Duration::ZERO,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::STANDARD
    }
}

/// The pauses of one run of attempts, in order.
#[derive(Debug, Clone)]
pub struct Pauses {
    backoff: Backoff,
    retries: u32,
    paused: Duration,
}

/// The shortest pause, so that a run always ends within its budget.
const MIN_PAUSE: Duration = Duration::from_millis(1);

impl Pauses {
    /// The pause before the next attempt, jittered at random; `None` once the budget is spent.
    /// `retry_after` is the server's wish, if it said one.
    pub fn next_pause(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.next_pause_with(retry_after, rand::random())
    }

    /// [`Pauses::next_pause`] with the jitter given: `unit` in `[0, 1]` picks the pause between
    /// half the ceiling and the whole of it.
    pub fn next_pause_with(
        &mut self,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        let left = self.backoff.budget.saturating_sub(self.paused);
        if left.is_zero() {
            return None;
        }
        let ceiling = self
            .backoff
            .first
            .saturating_mul(1 << self.retries.min(30))
            .min(self.backoff.max_pause);
        let mut pause = equal_jitter(ceiling, unit);
        if let Some(wish) = retry_after {
            pause = pause.max(wish.min(self.backoff.max_retry_after));
        }
        let pause = pause.max(MIN_PAUSE).min(left);
        self.retries += 1;
        self.paused = self.paused.saturating_add(pause);
        Some(pause)
    }

    /// Starts over, as after a success.
    pub fn reset(&mut self) {
        self.retries = 0;
        self.paused = Duration::ZERO;
    }
}

/// Half of `ceiling` plus `unit` (clamped to `[0, 1]`) of the other half.
pub fn equal_jitter(ceiling: Duration, unit: f64) -> Duration {
    let half = ceiling / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// True for the operations whose repetition is harmless: reads (every `GET`, a pull, the
/// missing-objects question); uploads of content-addressed objects, which are stored once
/// however often they come; and push, commit and restore, which carry a push id, so the
/// server answers a repeat with the receipt of the first. Not repeatable: logging in (each
/// would make a token), creating a project, team or account, and anything added later until
/// it is listed here.
pub fn is_repeatable(operation: Operation) -> bool {
    operation.route().method == Method::Get
        || matches!(
            operation,
            Operation::Pull
                | Operation::Missing
                | Operation::Upload
                | Operation::Push
                | Operation::Commit
                | Operation::Restore
        )
}

/// True when a request that failed with `error` is worth sending again: any transient failure
/// when it is `repeatable`, else only a connection that was never made.
pub fn worth_retrying(error: &RemoteError, repeatable: bool) -> bool {
    if repeatable {
        error.is_transient()
    } else {
        error.never_sent()
    }
}

/// A failure that may be a request's: what [`retry`] looks at. Any other failure is final.
pub trait Failure {
    fn request_error(&self) -> Option<&RemoteError>;
}

impl Failure for RemoteError {
    fn request_error(&self) -> Option<&RemoteError> {
        Some(self)
    }
}

impl Failure for ClientError {
    fn request_error(&self) -> Option<&RemoteError> {
        self.remote()
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the budget of `backoff` is spent;
/// between attempts it calls `sleep` with the pause.
pub fn retry<T, E: Failure>(
    backoff: &Backoff,
    repeatable: bool,
    mut sleep: impl FnMut(Duration),
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut pauses = backoff.pauses();
    loop {
        let error = match attempt() {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let pause = match error.request_error() {
            Some(failure) if worth_retrying(failure, repeatable) => {
                pauses.next_pause(failure.retry_after())
            }
            _ => None,
        };
        match pause {
            Some(pause) => sleep(pause),
            None => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NetworkStage;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Every pause of a run with the jitter fixed at `unit`, until the budget is spent.
    fn run(backoff: Backoff, unit: f64, retry_after: Option<Duration>) -> Vec<Duration> {
        let mut pauses = backoff.pauses();
        std::iter::from_fn(|| pauses.next_pause_with(retry_after, unit)).collect()
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_stop_at_the_budget() {
        let most = run(Backoff::STANDARD, 1.0, None);
        assert_eq!(
            most,
            [100, 200, 400, 800, 1600, 3000, 3000, 2900]
                .map(ms)
                .to_vec()
        );
        let least = run(Backoff::STANDARD, 0.0, None);
        assert_eq!(least[..7], [50, 100, 200, 400, 800, 1500, 1500].map(ms));
        assert!(least.iter().all(|pause| *pause <= ms(1500)));
        for pauses in [&most, &least] {
            assert_eq!(pauses.iter().sum::<Duration>(), Backoff::STANDARD.budget);
        }
        // With any jitter, every pause is between half its ceiling and the ceiling.
        for unit in [0.0, 0.3, 0.77, 1.0] {
            let pauses = run(Backoff::STANDARD, unit, None);
            let (last, full) = pauses.split_last().unwrap();
            for (retry, pause) in full.iter().enumerate() {
                let ceiling = ms(100 << retry).min(ms(3000));
                assert!(*pause >= ceiling / 2 && *pause <= ceiling, "{pauses:?}");
            }
            assert!(*last <= ms(3000));
            assert!((8..=13).contains(&pauses.len()), "{pauses:?}");
        }
    }

    #[test]
    fn retry_after_is_the_least_pause_up_to_its_cap() {
        let mut pauses = Backoff::STANDARD.pauses();
        assert_eq!(pauses.next_pause_with(Some(ms(2000)), 0.0), Some(ms(2000)));
        // A longer backoff pause wins over a short wish.
        let mut late = Backoff::STANDARD.pauses();
        for _ in 0..5 {
            late.next_pause_with(None, 1.0);
        }
        assert_eq!(late.next_pause_with(Some(ms(1000)), 1.0), Some(ms(3000)));
        // A wish past the cap is followed only up to it, and the budget still ends the run.
        let hours = run(Backoff::STANDARD, 0.5, Some(Duration::from_secs(3600)));
        assert_eq!(hours, [5000, 5000, 2000].map(ms).to_vec());
    }

    #[test]
    fn an_endless_backoff_keeps_pausing_at_the_cap_and_starts_over_when_reset() {
        let mut pauses = Backoff::STANDARD.endless().pauses();
        let first: Vec<_> = (0..100)
            .map(|_| pauses.next_pause_with(None, 1.0).unwrap())
            .collect();
        assert_eq!(first[99], ms(3000));
        pauses.reset();
        assert_eq!(pauses.next_pause_with(None, 1.0), Some(ms(100)));
    }

    #[test]
    fn a_zero_backoff_still_ends() {
        let zero = Backoff {
            first: Duration::ZERO,
            max_pause: Duration::ZERO,
            max_retry_after: Duration::ZERO,
            budget: ms(10),
        };
        assert_eq!(run(zero, 0.5, None).len(), 10);
    }

    fn network(stage: NetworkStage) -> RemoteError {
        RemoteError::Network {
            url: "http://cairn.test/v1/x".to_owned(),
            detail: "connection reset".to_owned(),
            stage,
        }
    }

    fn refused(status: u16, retry_after: Option<Duration>) -> RemoteError {
        RemoteError::Refused {
            server: "http://cairn.test".to_owned(),
            operation: Operation::Pull,
            status,
            problem: None,
            retry_after,
        }
    }

    #[test]
    fn only_reads_and_requests_with_a_push_id_are_repeatable() {
        for operation in [
            Operation::ListProjects,
            Operation::ShowProject,
            Operation::ListVersions,
            Operation::Pull,
            Operation::Missing,
            Operation::Upload,
            Operation::Push,
            Operation::Commit,
            Operation::Restore,
        ] {
            assert!(is_repeatable(operation), "{operation:?}");
        }
        for operation in [
            Operation::LogIn,
            Operation::SignUp,
            Operation::CreateToken,
            Operation::CreateTeam,
            Operation::CreateProject,
            Operation::SetMember,
            Operation::RemoveMember,
            Operation::RevokeToken,
        ] {
            assert!(!is_repeatable(operation), "{operation:?}");
        }
    }

    #[test]
    fn what_is_worth_retrying() {
        let connect = network(NetworkStage::Connect);
        let exchange = network(NetworkStage::Exchange);
        for error in [
            &connect,
            &exchange,
            &refused(502, None),
            &refused(503, None),
        ] {
            assert!(worth_retrying(error, true), "{error:?}");
        }
        assert!(worth_retrying(&connect, false));
        // The request may have been carried out: not repeated unless that is harmless.
        for error in [&exchange, &refused(503, None), &refused(504, None)] {
            assert!(!worth_retrying(error, false), "{error:?}");
        }
        for status in [400, 401, 404, 409, 413] {
            assert!(!worth_retrying(&refused(status, None), true), "{status}");
        }
    }

    /// Runs `retry` over `failures` (then a success), recording the pauses instead of sleeping.
    fn attempts(
        repeatable: bool,
        mut failures: Vec<RemoteError>,
    ) -> (Result<u32, RemoteError>, u32, Vec<Duration>) {
        failures.reverse();
        let mut count = 0;
        let mut slept = Vec::new();
        let result = retry(
            &Backoff::STANDARD,
            repeatable,
            |pause| slept.push(pause),
            || {
                count += 1;
                failures.pop().map_or(Ok(count), Err)
            },
        );
        (result, count, slept)
    }

    #[test]
    fn the_loop_retries_transient_failures_until_one_succeeds() {
        let (result, count, slept) = attempts(
            true,
            vec![
                refused(503, Some(ms(1000))),
                network(NetworkStage::Exchange),
            ],
        );
        assert_eq!(result.unwrap(), 3);
        assert_eq!(count, 3);
        assert_eq!(slept.len(), 2);
        assert!(slept[0] >= ms(1000), "Retry-After is followed: {slept:?}");
        assert!(slept[1] >= ms(100) && slept[1] <= ms(200), "{slept:?}");
    }

    #[test]
    fn the_loop_stops_at_a_final_failure_or_when_the_budget_is_spent() {
        let (result, count, slept) = attempts(true, vec![refused(404, None)]);
        assert_eq!(result.unwrap_err().status(), Some(404));
        assert_eq!((count, slept.len()), (1, 0));

        let (result, count, _) = attempts(false, vec![network(NetworkStage::Exchange)]);
        assert!(result.is_err());
        assert_eq!(
            count, 1,
            "a request that may have been done is not repeated"
        );

        let (result, count, _) = attempts(
            false,
            (0..2).map(|_| network(NetworkStage::Connect)).collect(),
        );
        assert_eq!(result.unwrap(), 3, "a request never sent is");
        assert_eq!(count, 3);

        let (result, count, slept) = attempts(true, (0..100).map(|_| refused(502, None)).collect());
        assert_eq!(result.unwrap_err().status(), Some(502));
        assert_eq!(slept.iter().sum::<Duration>(), Backoff::STANDARD.budget);
        assert_eq!(count as usize, slept.len() + 1);
    }
}
