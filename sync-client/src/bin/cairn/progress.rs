//! Progress bars for uploads and downloads, on standard error.
//!
//! Drawn only when standard error is a terminal and the output is not `--json` (indicatif's
//! stderr target also hides itself when it is not a terminal). A bar appears only once a
//! transfer has run for [`SHOW_AFTER`], so a small push or pull prints nothing extra; it shows
//! objects, bytes and the rate, and is cleared when the transfer ends.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sync_client::progress::{Progress, Totals, Transfer};

/// Transfers shorter than this draw nothing.
const SHOW_AFTER: Duration = Duration::from_millis(300);

/// The terminal's progress bars.
#[derive(Debug)]
pub(crate) struct Bars {
    state: Mutex<Option<State>>,
}

#[derive(Debug)]
struct State {
    transfer: Transfer,
    totals: Totals,
    started: Instant,
    objects: u64,
    bytes: u64,
    bar: Option<ProgressBar>,
}

impl Bars {
    /// Bars when they can be seen: standard error is a terminal and the output is not JSON.
    pub(crate) fn for_terminal(json: bool) -> Option<Self> {
        (!json && std::io::stderr().is_terminal()).then(|| Self {
            state: Mutex::new(None),
        })
    }
}

impl State {
    fn draw(&mut self) {
        if self.bar.is_none() && self.started.elapsed() >= SHOW_AFTER {
            let (bar, template) = match (self.totals.bytes, self.totals.objects) {
                (Some(bytes), _) => (
                    ProgressBar::new(bytes),
                    "{prefix} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                ),
                (None, Some(objects)) => (
                    ProgressBar::new(objects),
                    "{prefix} [{bar:20}] {pos}/{len} objects {msg}",
                ),
                (None, None) => (ProgressBar::new_spinner(), "{prefix} {spinner} {msg}"),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(match self.transfer {
                Transfer::Upload => "Uploading",
                Transfer::Download => "Downloading",
            });
            self.bar = Some(bar);
        }
        let Some(bar) = &self.bar else { return };
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = HumanBytes((self.bytes as f64 / seconds) as u64);
        match self.totals.bytes {
            Some(_) => {
                bar.set_position(self.bytes);
                bar.set_message(format!("{} objects", self.objects));
            }
            None => {
                if self.totals.objects.is_some() {
                    bar.set_position(self.objects);
                } else {
                    bar.tick();
                }
                bar.set_message(format!("{}, {rate}/s", HumanBytes(self.bytes)));
            }
        }
    }
}

impl Progress for Bars {
    fn start(&self, transfer: Transfer, totals: Totals) {
        if let Ok(mut state) = self.state.lock() {
            *state = Some(State {
                transfer,
                totals,
                started: Instant::now(),
                objects: 0,
                bytes: 0,
                bar: None,
            });
        }
    }

    fn advance(&self, objects: u64, bytes: u64) {
        if let Ok(mut state) = self.state.lock()
            && let Some(state) = state.as_mut()
        {
            state.objects += objects;
            state.bytes += bytes;
            state.draw();
        }
    }

    fn finish(&self) {
        if let Ok(mut state) = self.state.lock()
            && let Some(state) = state.take()
            && let Some(bar) = state.bar
        {
            bar.finish_and_clear();
        }
    }
}
