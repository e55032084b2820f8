//! Where a command's time goes: [`timed`] measures a phase when `CAIRN_TIMINGS` is set, and
//! [`free_in_background`] keeps freeing large structures off a command's critical path.
//!
//! The lowest layer of the library: it imports nothing from the crate.

use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that turns the timings on.
pub const TIMINGS_ENV: &str = "CAIRN_TIMINGS";

/// Runs `work` and, when the environment variable `CAIRN_TIMINGS` is set, prints how long it
/// took to standard error as `cairn timing: <phase> <ms> ms`. For finding where a command's time
/// goes; the output is not a stable interface.
pub fn timed<T>(phase: &str, work: impl FnOnce() -> T) -> T {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    if !*ENABLED.get_or_init(|| std::env::var_os(TIMINGS_ENV).is_some()) {
        return work();
    }
    let started = Instant::now();
    let out = work();
    eprintln!(
        "cairn timing: {phase} {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    out
}

/// Frees `value` on a thread of its own. A large working copy's listings and caches hold tens
/// of thousands of paths, and freeing them takes milliseconds that a command need not wait for;
/// when the process exits first, the system reclaims the memory at once.
pub fn free_in_background<T: Send + 'static>(value: T) {
    // If no thread can be made, the value comes back inside the error and is freed here.
    let _ = std::thread::Builder::new()
        .name("cairn-free".to_owned())
        .spawn(move || drop(value));
}
