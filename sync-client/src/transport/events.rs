//! The project's event stream (Server-Sent Events): one head per commit, and the server's
//! reconnection hint.
//!
//! A node that drains sends the standard SSE `retry:` field (milliseconds) just before it ends
//! the stream, so its watchers come back after that pause (to another node) instead of all at
//! once or after a fixed wait. [`Events::retry`] hands it to the reader, which reconnects.

use std::io::{self, BufRead, BufReader};
use std::time::Duration;

use sync_protocol::wire::{Head, HeadEvent, Operation};

use crate::error::{AnswerError, NetworkStage, RemoteError};

/// An open `GET /v1/projects/{id}/events` stream: the head when it opened, then one head per
/// commit. Events are hints (see the API page): a reader compares them with its base.
#[derive(Debug)]
pub struct Events {
    server: String,
    url: String,
    reader: SseReader<BufReader<reqwest::blocking::Response>>,
}

impl Events {
    pub(super) fn new(server: String, url: String, response: reqwest::blocking::Response) -> Self {
        Self {
            server,
            url,
            reader: SseReader::new(BufReader::new(response)),
        }
    }

    /// The next head; `Ok(None)` when the server ended the stream.
    pub fn next_head(&mut self) -> Result<Option<Head>, RemoteError> {
        loop {
            let event = self
                .reader
                .next_event()
                .map_err(|error| RemoteError::Network {
                    url: self.url.clone(),
                    detail: error.to_string(),
                    stage: NetworkStage::Exchange,
                })?;
            let Some(event) = event else {
                return Ok(None);
            };
            if event.kind != "head" || event.data.is_empty() {
                continue;
            }
            let head: HeadEvent =
                serde_json::from_str(&event.data).map_err(|error| RemoteError::BadAnswer {
                    server: self.server.clone(),
                    operation: Operation::Events,
                    reason: AnswerError::Json(error),
                })?;
            return Ok(Some(Head {
                version: head.version,
                root: head.root,
            }));
        }
    }

    /// The last reconnection time the server sent (`retry:`), if any: how long to wait before
    /// opening the stream again once it has ended or failed.
    pub fn retry(&self) -> Option<Duration> {
        self.reader.retry
    }
}

/// One event of the stream: its type (`event:`) and its data lines joined by newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    kind: String,
    data: String,
}

/// The Server-Sent Events format, read line by line from any `BufRead`.
#[derive(Debug)]
struct SseReader<R> {
    lines: R,
    retry: Option<Duration>,
}

impl<R: BufRead> SseReader<R> {
    fn new(lines: R) -> Self {
        Self { lines, retry: None }
    }

    /// The next event with data; `Ok(None)` at the end of the stream (an event cut off by it
    /// is dropped, as the standard says). A `retry:` field is kept whatever event it is in.
    fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut kind = String::new();
        let mut data: Option<String> = None;
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let text = line.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                // The end of one event; one without data is no event.
                if let Some(data) = data.take() {
                    return Ok(Some(SseEvent { kind, data }));
                }
                kind.clear();
                continue;
            }
            // `:` starts a comment (the keep-alives); a line without a colon is a field with
            // an empty value.
            let (field, value) = text.split_once(':').unwrap_or((text, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => kind = value.to_owned(),
                "data" => {
                    let data = data.get_or_insert_with(String::new);
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                // Only ASCII digits, as the standard says; anything else is ignored.
                "retry" if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) => {
                    if let Ok(millis) = value.parse::<u64>() {
                        self.retry = Some(Duration::from_millis(millis));
                    }
                }
                // `id:`, comments and fields this client does not know need nothing.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &str) -> SseReader<&[u8]> {
        SseReader::new(text.as_bytes())
    }

    fn event(kind: &str, data: &str) -> SseEvent {
        SseEvent {
            kind: kind.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_comments_and_multi_line_data() {
        let mut events = reader(
            ": keep-alive\n\nevent: head\ndata: {\"a\":1}\nid: 7\n\n\
             event:other\r\ndata:one\r\ndata: two\r\n\r\nevent: lonely\n\n",
        );
        assert_eq!(
            events.next_event().unwrap(),
            Some(event("head", "{\"a\":1}"))
        );
        assert_eq!(
            events.next_event().unwrap(),
            Some(event("other", "one\ntwo"))
        );
        // An event without data is none; then the stream ends.
        assert_eq!(events.next_event().unwrap(), None);
        assert_eq!(events.retry, None);
    }

    #[test]
    fn retry_is_kept_and_outlives_the_end_of_the_stream() {
        let mut events = reader("retry: 2500\n\nevent: head\ndata: x\n\nretry: 750\n\n");
        assert_eq!(events.next_event().unwrap(), Some(event("head", "x")));
        assert_eq!(events.retry, Some(Duration::from_millis(2500)));
        assert_eq!(events.next_event().unwrap(), None);
        assert_eq!(events.retry, Some(Duration::from_millis(750)));
    }

    #[test]
    fn a_retry_that_is_not_digits_is_ignored() {
        for line in [
            "retry: 1.5",
            "retry: -3",
            "retry: soon",
            "retry:",
            "retry",
            "retry:  80",
        ] {
            let text = format!("retry: 100\n{line}\n\n");
            let mut events = reader(&text);
            assert_eq!(events.next_event().unwrap(), None);
            assert_eq!(events.retry, Some(Duration::from_millis(100)), "{line}");
        }
        // As warp writes a stopping node's last event: no space, a comment, no data.
        let mut events = reader("retry:40\n:this node is stopping: reconnect\n\n");
        assert_eq!(events.next_event().unwrap(), None);
        assert_eq!(events.retry, Some(Duration::from_millis(40)));
    }
}
