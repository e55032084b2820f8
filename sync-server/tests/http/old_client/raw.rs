//! HTTP/1.1 messages as raw bytes: parsing a recorded or received message (head, then a body
//! by `Content-Length` or chunked framing), and sending one raw request on a connection of its
//! own. Only what the replay needs: no `Expect`, no upgrades.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 message: its head (start line and header lines, as sent) and its body
/// (de-chunked when it travelled chunked).
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub(super) start_line: String,
    /// Header names lowercased, values trimmed, in order.
    pub(super) headers: Vec<(String, String)>,
    /// The head's raw text, up to and including the empty line.
    pub(super) head: String,
    /// The body as it travelled (for a request, what is sent again).
    pub(super) raw_body: Vec<u8>,
    /// The body's content.
    pub(super) body: Vec<u8>,
    /// The status of an answer; 0 for a request.
    pub(super) status: u16,
}

impl Message {
    /// Parses one whole message; `method` is `None` for a request, else the method of the
    /// request this answers.
    pub(super) fn parse(raw: &[u8], method: Option<&str>) -> Result<Message, String> {
        let (message, used) = Self::parse_prefix(raw, method)?
            .ok_or_else(|| "the message is incomplete".to_owned())?;
        if used != raw.len() {
            return Err(format!("{} bytes after the message", raw.len() - used));
        }
        Ok(message)
    }

    /// Parses the message at the start of `raw`: `None` while it is incomplete, else the
    /// message and the bytes it took.
    pub(super) fn parse_prefix(
        raw: &[u8],
        method: Option<&str>,
    ) -> Result<Option<(Message, usize)>, String> {
        let Some(head_end) = raw.windows(4).position(|window| window == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&raw[..head_end + 4])
            .map_err(|_| "the head is not UTF-8".to_owned())?
            .to_owned();
        let mut lines = head.split("\r\n");
        let start_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(candidate, _)| candidate == name)
                .map(|(_, value)| value.clone())
        };
        let status = match method {
            None => 0,
            Some(_) => start_line
                .split(' ')
                .nth(1)
                .and_then(|status| status.parse().ok())
                .ok_or_else(|| format!("no status in {start_line:?}"))?,
        };
        let rest = &raw[head_end + 4..];
        let no_body = status == 204 || status == 304 || (100..200).contains(&status);
        let (raw_body, body) = if no_body {
            (Vec::new(), Vec::new())
        } else if header("transfer-encoding")
            .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
        {
            match dechunk(rest)? {
                Some((body, used)) => (rest[..used].to_vec(), body),
                None => return Ok(None),
            }
        } else if let Some(length) = header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("content-length {length:?}"))?;
            if rest.len() < length {
                return Ok(None);
            }
            (rest[..length].to_vec(), rest[..length].to_vec())
        } else if method.is_some() {
            return Err("an answer without a length".to_owned());
        } else {
            (Vec::new(), Vec::new())
        };
        let used = head_end + 4 + raw_body.len();
        Ok(Some((
            Message {
                start_line,
                headers,
                head,
                raw_body,
                body,
                status,
            },
            used,
        )))
    }

    pub(super) fn request_line(&self) -> (String, String) {
        let mut parts = self.start_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        (method, target)
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn media_type(&self) -> &str {
        self.header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
    }
}

/// A chunked body: its content and the bytes it took, or `None` while incomplete.
fn dechunk(raw: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = raw[at..].windows(2).position(|window| window == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&raw[at..at + line_end]).map_err(|_| "chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("chunk size {line:?}"))?;
        at += line_end + 2;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let Some(end) = raw[at..].windows(2).position(|window| window == b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if raw.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&raw[at..at + size]);
        at += size + 2;
    }
}

/// Sends one raw request on a connection of its own; the raw answer.
pub(super) async fn send(host: &str, request: &[u8]) -> Vec<u8> {
    let mut connection = tokio::net::TcpStream::connect(host)
        .await
        .expect("connecting to the server");
    connection.write_all(request).await.expect("sending");
    let method = String::from_utf8_lossy(request)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut answer = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if let Ok(Some((_, used))) = Message::parse_prefix(&answer, Some(&method)) {
            answer.truncate(used);
            return answer;
        }
        let read = connection
            .read(&mut buffer)
            .await
            .expect("reading the answer");
        if read == 0 {
            return answer;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
}
