//! The project's event stream (Server-Sent Events): one head per commit.

use std::io::{BufRead, BufReader};

use sync_protocol::wire::{Head, HeadEvent, Operation};

use crate::error::{AnswerError, RemoteError};

/// An open `GET /v1/projects/{id}/events` stream: the head when it opened, then one head per
/// commit. Events are hints (see the API page): a reader compares them with its base.
#[derive(Debug)]
pub struct Events {
    server: String,
    url: String,
    lines: BufReader<reqwest::blocking::Response>,
}

impl Events {
    pub(super) fn new(server: String, url: String, response: reqwest::blocking::Response) -> Self {
        Self {
            server,
            url,
            lines: BufReader::new(response),
        }
    }

    /// The next head; `Ok(None)` when the server ended the stream.
    pub fn next_head(&mut self) -> Result<Option<Head>, RemoteError> {
        let mut event = String::new();
        let mut data = String::new();
        loop {
            let mut line = String::new();
            let read = self
                .lines
                .read_line(&mut line)
                .map_err(|error| RemoteError::Network {
                    url: self.url.clone(),
                    detail: error.to_string(),
                })?;
            if read == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                // The end of one event.
                if event == "head" && !data.is_empty() {
                    let head: HeadEvent =
                        serde_json::from_str(&data).map_err(|error| RemoteError::BadAnswer {
                            server: self.server.clone(),
                            operation: Operation::Events,
                            reason: AnswerError::Json(error),
                        })?;
                    return Ok(Some(Head {
                        version: head.version,
                        root: head.root,
                    }));
                }
                event.clear();
                data.clear();
            } else if let Some(value) = line.strip_prefix("event:") {
                event = value.trim_start().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.trim_start());
            }
            // `id:` and `:` comments (keep-alives) need nothing.
        }
    }
}
