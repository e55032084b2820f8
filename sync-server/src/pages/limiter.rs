//! Failed sign-ins, counted per account and per client address, so that guessing passwords
//! is slow for one account and for one client. Used by the sign-in page and by
//! `POST /v1/sessions` alike.
//!
//! The counts are the node's own (no shared state): behind the shipped HAProxy configuration
//! every sign-in path hashes to one node, so one node sees them all; elsewhere each node allows
//! its own share. A refused attempt is refused before the password is checked, so it costs no
//! hashing and tells nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins allowed per account within [`WINDOW`].
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 10;
/// Failed sign-ins allowed per client address within [`WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: u32 = 30;
/// The window failures are counted in, from the first.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Past this many keys, windows that have ended are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The failure counts of one node.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    windows: Mutex<HashMap<Key, Window>>,
}

impl SignInLimiter {
    /// How long until `login` (a name or email, compared ignoring case) from `address` may try
    /// again; `None` when it may try now.
    pub fn wait(&self, login: &str, address: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let wait = |key: Key, max: u32| {
            windows
                .get(&key)
                .filter(|window| window.failures >= max)
                .and_then(|window| WINDOW.checked_sub(now.duration_since(window.started)))
        };
        let account = wait(Key::Account(login.to_lowercase()), MAX_FAILURES_PER_ACCOUNT);
        let address =
            address.and_then(|address| wait(Key::Address(address), MAX_FAILURES_PER_ADDRESS));
        account.max(address).filter(|wait| !wait.is_zero())
    }

    /// Counts a failed sign-in of `login` from `address`.
    pub fn failed(&self, login: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, window| now.duration_since(window.started) < WINDOW);
        }
        let keys = [
            Some(Key::Account(login.to_lowercase())),
            address.map(Key::Address),
        ];
        for key in keys.into_iter().flatten() {
            let window = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(window.started) >= WINDOW {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures += 1;
        }
    }

    /// Forgets `login`'s failures after it signed in (its address's stay counted).
    pub fn succeeded(&self, login: &str) {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        windows.remove(&Key::Account(login.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_limited_at_its_maximum_and_not_before() {
        let limiter = SignInLimiter::default();
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT - 1 {
            limiter.failed("Alice", Some(address));
        }
        assert_eq!(limiter.wait("alice", Some(address)), None);
        limiter.failed("alice", Some(address));
        let wait = limiter.wait("ALICE", None).expect("limited");
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(60));
        assert_eq!(
            limiter.wait("bob", Some("192.0.2.2".parse().unwrap())),
            None
        );
        limiter.succeeded("alice");
        assert_eq!(limiter.wait("alice", None), None);
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let limiter = SignInLimiter::default();
        let address: IpAddr = "192.0.2.9".parse().unwrap();
        for index in 0..MAX_FAILURES_PER_ADDRESS - 1 {
            limiter.failed(&format!("user{index}"), Some(address));
        }
        assert_eq!(limiter.wait("someone", Some(address)), None);
        limiter.failed("another", Some(address));
        assert!(limiter.wait("someone", Some(address)).is_some());
        assert_eq!(
            limiter.wait("someone", Some("192.0.2.10".parse().unwrap())),
            None
        );
    }
}
