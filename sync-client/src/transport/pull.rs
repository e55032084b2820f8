//! A pull's answer, read item by item as it arrives.
//!
//! An answer that stops early (the node serving it was killed, the connection reset) is a
//! network failure, so the caller retries it: a read error, and as well a body that ends
//! cleanly before the stream's trailer, which a proxy passing on a close-delimited answer
//! shows for the same cut. An answer that is whole but wrong (a frame that does not hash to
//! its id, a bad trailer) is a bad answer and is not retried.

use std::io::Read;

use sync_protocol::stream::{Item, StreamDecoder};
use sync_protocol::wire::Operation;
use sync_protocol::{ObjectId, StreamError};

use super::Remote;
use crate::error::{AnswerError, NetworkStage, RemoteError};

/// What a pull delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    pub version: u64,
    pub root: ObjectId,
    /// Frames and change records in the answer.
    pub objects: u32,
    pub bytes: u64,
}

/// The answer to a pull, read as it arrives: every object frame verified against its id and
/// kind by `sync_protocol::stream::StreamDecoder`, and the change records, in stream order.
/// Progress is reported as the bytes come in; dropping the stream ends the report.
#[derive(Debug)]
pub struct PullStream {
    remote: Remote,
    url: String,
    response: reqwest::blocking::Response,
    decoder: StreamDecoder,
    buffer: Vec<u8>,
    version: u64,
    root: ObjectId,
    finished: bool,
}

impl PullStream {
    pub(super) fn new(
        remote: Remote,
        url: String,
        response: reqwest::blocking::Response,
        version: u64,
        root: ObjectId,
    ) -> Self {
        Self {
            remote,
            url,
            response,
            decoder: StreamDecoder::new(),
            buffer: vec![0u8; 256 * 1024],
            version,
            root,
            finished: false,
        }
    }

    /// The version delivered (the `Cairn-Version` header).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The root delivered (the `Cairn-Root` header).
    pub fn root(&self) -> ObjectId {
        self.root
    }

    fn invalid(&self, error: StreamError) -> RemoteError {
        self.remote
            .bad_answer(Operation::Pull, AnswerError::Stream(Box::new(error)))
    }

    /// The answer broke off: `detail` says how.
    fn cut(&self, detail: String) -> RemoteError {
        RemoteError::Network {
            url: self.url.clone(),
            detail,
            stage: NetworkStage::Exchange,
        }
    }

    /// The next item of the answer, `None` once the body has ended.
    pub fn next_item(&mut self) -> Result<Option<Item>, RemoteError> {
        loop {
            match self.decoder.next_item() {
                Ok(Some(item)) => {
                    self.remote.progress.advance(1, 0);
                    return Ok(Some(item));
                }
                Ok(None) => {}
                Err(error) => return Err(self.invalid(error)),
            }
            let read = match self.response.read(&mut self.buffer) {
                Ok(0) => return Ok(None),
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.cut(format!("the answer broke off: {error}"))),
            };
            self.remote.progress.advance(0, read as u64);
            self.decoder.feed(&self.buffer[..read]);
        }
    }

    /// Checks that the stream ended whole (its trailer, counts and digest) and says what came.
    /// Call it once [`PullStream::next_item`] has returned `None`.
    pub fn finish(mut self) -> Result<Pulled, RemoteError> {
        self.end_progress();
        let decoder = std::mem::take(&mut self.decoder);
        let summary = decoder.finish().map_err(|error| match error {
            StreamError::Truncated { offset, .. } => self.cut(format!(
                "the answer ended after {offset} bytes, before the end of its object stream"
            )),
            other => self.invalid(other),
        })?;
        Ok(Pulled {
            version: self.version,
            root: self.root,
            objects: summary.frames,
            bytes: summary.len,
        })
    }

    fn end_progress(&mut self) {
        if !self.finished {
            self.finished = true;
            self.remote.progress.finish();
        }
    }
}

impl Drop for PullStream {
    fn drop(&mut self) {
        self.end_progress();
    }
}
