//! Progress of long transfers, reported to whoever shows it.
//!
//! The library never prints: `transport::Remote` reports every upload and download to the
//! [`Progress`] it was given (`Remote::with_progress`), and the `cairn` binary
//! draws it as a bar on standard error when that is a terminal (and not with `--json`).

use std::fmt::Debug;
use std::io::Read;
use std::sync::Arc;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Upload,
    Download,
}

/// What is known in advance about a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Objects to move, when known (a batched upload knows them, a download does not).
    pub objects: Option<u64>,
    /// Bytes to move, when known.
    pub bytes: Option<u64>,
}

/// A sink for progress reports. Calls come from one thread at a time, in order: `start`, any
/// number of `advance`, `finish`.
pub trait Progress: Debug + Send + Sync {
    fn start(&self, transfer: Transfer, totals: Totals);
    /// `objects` more objects (0 while one is under way) and `bytes` more bytes have moved.
    fn advance(&self, objects: u64, bytes: u64);
    /// The transfer ended, done or failed.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: Transfer, _: Totals) {}
    fn advance(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}

/// A request body that reports the bytes read from it, so an upload's progress is the bytes the
/// HTTP client actually took.
#[derive(Debug)]
pub(crate) struct CountingReader {
    bytes: std::io::Cursor<Vec<u8>>,
    progress: Arc<dyn Progress>,
}

impl CountingReader {
    pub(crate) fn new(bytes: Vec<u8>, progress: Arc<dyn Progress>) -> Self {
        Self {
            bytes: std::io::Cursor::new(bytes),
            progress,
        }
    }
}

impl Read for CountingReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.bytes.read(buffer)?;
        self.progress.advance(0, read as u64);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Recorder(Mutex<u64>);

    impl Progress for Recorder {
        fn start(&self, _: Transfer, _: Totals) {}
        fn advance(&self, _: u64, bytes: u64) {
            *self.0.lock().unwrap() += bytes;
        }
        fn finish(&self) {}
    }

    #[test]
    fn counting_reader_reports_every_byte_read() {
        let recorder = Arc::new(Recorder::default());
        let mut reader = CountingReader::new(vec![7; 100_000], recorder.clone());
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, vec![7; 100_000]);
        assert_eq!(*recorder.0.lock().unwrap(), 100_000);
    }
}
