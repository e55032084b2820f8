//! A fault-injecting S3 proxy: [`FaultyS3`] sits between a server and s3s-fs on loopback and,
//! for a seeded share of the requests of each kind, answers what a real S3 sometimes does
//! instead of the right answer (issue 13).
//!
//! The faults ([`Fault`]):
//!
//! - `InternalError`: a `500` with S3's XML error document; the request is not forwarded.
//! - `SlowDown`: a `503 SlowDown` (throttling), likewise.
//! - `Reset`: the connection is reset (`SO_LINGER` 0) once the request has arrived, before any
//!   answer; the request is not forwarded.
//! - `Truncate`: the request is forwarded (so it takes effect), then the answer's head and half
//!   its body are sent and the connection closed; an answer without a body is lost whole.
//! - `Latency`: the request is forwarded after a pause drawn from the plan's latency range.
//! - `ErrorBody`: S3's "200 with an error body". S3 does that for `CompleteMultipartUpload` and
//!   `CopyObject`, which Cairn does not use, so it is modelled on `GET`s: the answer's status and
//!   headers are the real ones, its body an XML `<Error>` document cut or padded to the real
//!   length. Only `GET`s with a body get it; a reader must never take it for data.
//! - `Stall`: the request is forwarded, then the answer's head and half its body are sent and
//!   the connection held open, silent, until the client gives up on it. Not among
//!   [`Fault::ALL`] (each one costs the reader its whole stall timeout): a plan asks for it by
//!   name with [`FaultPlan::with_faults`].
//!
//! Whether a request gets a fault, and which, is [`FaultPlan::decide`]: a pure function of the
//! plan's seed, the request's [`RequestKind`] and its number among the requests of that kind, so
//! a plan injects the same faults into the n-th `PUT` whatever else runs concurrently.
//!
//! The proxy speaks just enough HTTP/1.1: request heads with `Content-Length` or chunked
//! bodies, `Expect: 100-continue`, keep-alive, and answers with `Content-Length`, chunked or
//! read-to-close bodies. Each client connection gets its own connection to the target. Answers
//! are read whole before they are sent on (test bodies are small; a pack is at most 64 MiB).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The kinds of S3 request, told apart by method and query as S3 bills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    Get,
    Put,
    Head,
    List,
    Delete,
}

impl RequestKind {
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Get,
        RequestKind::Put,
        RequestKind::Head,
        RequestKind::List,
        RequestKind::Delete,
    ];

    /// The kind of a request from its method and target (`/bucket/key?query`).
    pub fn of(method: &str, target: &str) -> RequestKind {
        let query = target.split_once('?').map_or("", |(_, query)| query);
        let has_param = |name: &str| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some(name))
        };
        match method {
            "HEAD" => RequestKind::Head,
            "PUT" => RequestKind::Put,
            "DELETE" => RequestKind::Delete,
            "POST" if has_param("delete") => RequestKind::Delete,
            "POST" => RequestKind::Put,
            "GET" if has_param("list-type") => RequestKind::List,
            _ => RequestKind::Get,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the proxy does instead of relaying a request faithfully (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    InternalError,
    SlowDown,
    Reset,
    Truncate,
    Latency,
    ErrorBody,
    Stall,
}

impl Fault {
    /// The faults a plan picks from unless told otherwise: all but [`Fault::Stall`].
    pub const ALL: [Fault; 6] = [
        Fault::InternalError,
        Fault::SlowDown,
        Fault::Reset,
        Fault::Truncate,
        Fault::Latency,
        Fault::ErrorBody,
    ];

    /// Whether S3 can answer a request of `kind` so: an error body or a stalled body only
    /// comes with a `GET`.
    pub fn applies_to(self, kind: RequestKind) -> bool {
        !matches!(self, Fault::ErrorBody | Fault::Stall) || kind == RequestKind::Get
    }
}

/// One request's fate: a fault, and for [`Fault::Latency`] the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    pub fault: Fault,
    /// Zero unless `fault` is [`Fault::Latency`].
    pub delay: Duration,
}

/// Which requests get which fault: a rate per kind, the faults to pick from (equally likely,
/// among those that apply to the kind) and the range of added latency, all from one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    seed: u64,
    rates: [f64; 5],
    faults: Vec<Fault>,
    latency: Range<Duration>,
}

impl FaultPlan {
    /// No faults at all: a faithful relay.
    pub fn none() -> FaultPlan {
        FaultPlan {
            seed: 0,
            rates: [0.0; 5],
            faults: Fault::ALL.to_vec(),
            latency: Duration::from_millis(100)..Duration::from_millis(500),
        }
    }

    /// `rate` (0 to 1) of the requests of every kind get a fault, any of [`Fault::ALL`] that
    /// applies; added latency is 100 to 500 ms.
    pub fn uniform(seed: u64, rate: f64) -> FaultPlan {
        FaultPlan {
            seed,
            rates: [rate.clamp(0.0, 1.0); 5],
            ..FaultPlan::none()
        }
    }

    /// This plan with `rate` for the requests of `kind`.
    #[must_use]
    pub fn with_rate(mut self, kind: RequestKind, rate: f64) -> FaultPlan {
        self.rates[kind.index()] = rate.clamp(0.0, 1.0);
        self
    }

    /// This plan picking only among `faults`.
    #[must_use]
    pub fn with_faults(mut self, faults: &[Fault]) -> FaultPlan {
        self.faults = faults.to_vec();
        self
    }

    /// This plan adding latency drawn from `latency`.
    #[must_use]
    pub fn with_latency(mut self, latency: Range<Duration>) -> FaultPlan {
        self.latency = latency;
        self
    }

    pub fn rate(&self, kind: RequestKind) -> f64 {
        self.rates[kind.index()]
    }

    /// The fate of the `sequence`-th request (from 0) of `kind`: `None` to relay it faithfully.
    pub fn decide(&self, kind: RequestKind, sequence: u64) -> Option<Injection> {
        let mut random = SplitMix64(
            self.seed
                ^ (kind.index() as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F)
                ^ sequence.wrapping_mul(0xE703_7ED1_A0B4_28DB),
        );
        if random.unit() >= self.rate(kind) {
            return None;
        }
        let applicable: Vec<Fault> = self
            .faults
            .iter()
            .copied()
            .filter(|fault| fault.applies_to(kind))
            .collect();
        if applicable.is_empty() {
            return None;
        }
        let fault = applicable[random.below(applicable.len() as u64) as usize];
        let delay = if fault == Fault::Latency {
            let span = self.latency.end.saturating_sub(self.latency.start);
            self.latency.start + span.mul_f64(random.unit())
        } else {
            Duration::ZERO
        };
        Some(Injection { fault, delay })
    }
}

/// SplitMix64: a tiny, fully specified generator, so a seed means the same faults (or, to
/// other tests, the same choices) on every platform and version.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// What a proxy has seen and done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests received, by kind.
    pub requests: BTreeMap<RequestKind, u64>,
    /// Faults injected, by kind of request and fault.
    pub injected: BTreeMap<(RequestKind, Fault), u64>,
}

impl FaultCounts {
    /// All faults injected.
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }

    /// What happened between `before` (an earlier snapshot) and `self`.
    pub fn since(&self, before: &FaultCounts) -> FaultCounts {
        let minus = |count: u64, earlier: Option<&u64>| count - earlier.copied().unwrap_or(0);
        FaultCounts {
            requests: self
                .requests
                .iter()
                .map(|(kind, count)| (*kind, minus(*count, before.requests.get(kind))))
                .filter(|(_, count)| *count > 0)
                .collect(),
            injected: self
                .injected
                .iter()
                .map(|(key, count)| (*key, minus(*count, before.injected.get(key))))
                .filter(|(_, count)| *count > 0)
                .collect(),
        }
    }

    /// All requests received.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Faults of `fault` injected, over every kind of request.
    pub fn of_fault(&self, fault: Fault) -> u64 {
        self.injected
            .iter()
            .filter(|((_, injected), _)| *injected == fault)
            .map(|(_, count)| count)
            .sum()
    }
}

impl fmt::Display for FaultCounts {
    /// One line per kind of request: `GET 812 requests, 160 faults (InternalError 27, ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, requests) in &self.requests {
            let faults: Vec<String> = self
                .injected
                .iter()
                .filter(|((of, _), _)| of == kind)
                .map(|((_, fault), count)| format!("{fault:?} {count}"))
                .collect();
            let total: u64 = self
                .injected
                .iter()
                .filter(|((of, _), _)| of == kind)
                .map(|(_, count)| count)
                .sum();
            writeln!(
                f,
                "{kind:?}: {requests} requests, {total} faults ({})",
                faults.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The state shared by the proxy's connections.
#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    plan: Mutex<Arc<FaultPlan>>,
    /// Requests so far: the next one's number (error documents name it).
    requests: AtomicU64,
    /// Requests so far of each kind: the next one's sequence number.
    sequences: [AtomicU64; 5],
    counts: Mutex<FaultCounts>,
}

/// A fault-injecting proxy on a free port of 127.0.0.1, relaying to an S3 service at `target`
/// (see the module doc). It runs on a thread of its own with its own runtime, so it serves sync
/// and async tests alike; dropping it stops it and closes every connection.
#[derive(Debug)]
pub struct FaultyS3 {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultyS3 {
    /// Listens on 127.0.0.1 on a free port and relays to `target` according to `plan`.
    pub fn start(target: SocketAddr, plan: FaultPlan) -> FaultyS3 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            target,
            plan: Mutex::new(Arc::new(plan)),
            requests: AtomicU64::new(0),
            sequences: Default::default(),
            counts: Mutex::new(FaultCounts::default()),
        });
        let (stop, stopped) = watch::channel(false);
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("faulty-s3-{}", address.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                runtime.block_on(accept(listener, serving, stopped));
                // Dropping the runtime ends the connections still open.
            })
            .expect("the proxy's thread");
        FaultyS3 {
            address,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// `host:port` of `url` (`http://127.0.0.1:9100`), for [`FaultyS3::start`]'s target.
    pub fn target_of(url: &str) -> SocketAddr {
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        std::net::ToSocketAddrs::to_socket_addrs(authority)
            .ok()
            .and_then(|mut addresses| addresses.next())
            .unwrap_or_else(|| panic!("{url} names no reachable address"))
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The URL to give an S3 client as its endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Follows `plan` from the next request on (the sequence numbers go on counting).
    pub fn set_plan(&self, plan: FaultPlan) {
        if let Ok(mut current) = self.shared.plan.lock() {
            *current = Arc::new(plan);
        }
    }

    /// The requests and faults so far.
    pub fn counts(&self) -> FaultCounts {
        self.shared
            .counts
            .lock()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }
}

impl Drop for FaultyS3 {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    let _ = client.set_nodelay(true);
                    tokio::spawn(relay(client, Arc::clone(&shared)));
                }
            }
        }
    }
}

/// The largest request or answer the proxy holds in memory.
const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// A connection with what has been read from it and not yet used.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads more into the buffer; false at end of stream or on error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(read) => {
                self.buffer.extend_from_slice(&chunk[..read]);
                self.buffer.len() <= MAX_MESSAGE
            }
        }
    }

    /// A message head, up to and including its blank line; `None` if the stream ends first.
    async fn head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                return Some(self.buffer.drain(..end + 4).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Exactly `len` more bytes.
    async fn take(&mut self, len: usize) -> Option<Vec<u8>> {
        while self.buffer.len() < len {
            if len > MAX_MESSAGE || !self.fill().await {
                return None;
            }
        }
        Some(self.buffer.drain(..len).collect())
    }

    /// One line with its `\r\n`.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n") {
                return Some(self.buffer.drain(..end + 2).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// A chunked body as sent (sizes, chunks, trailers), to relay unchanged.
    async fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text.trim(), 16).ok()?;
            body.extend_from_slice(&line);
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let trailer = self.line().await?;
                    body.extend_from_slice(&trailer);
                    if trailer == b"\r\n" {
                        return Some(body);
                    }
                }
            }
            body.extend_from_slice(&self.take(size + 2).await?);
            if body.len() > MAX_MESSAGE {
                return None;
            }
        }
    }

    /// Everything up to the end of the stream.
    async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buffer)
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }
}

/// A parsed message head: its first line's words and its headers.
#[derive(Debug)]
struct Head {
    raw: Vec<u8>,
    first: Vec<String>,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: Vec<u8>) -> Head {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines
            .next()
            .unwrap_or_default()
            .splitn(3, ' ')
            .map(str::to_owned)
            .collect();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Head {
            raw,
            first,
            headers,
        }
    }

    fn word(&self, index: usize) -> &str {
        self.first.get(index).map_or("", String::as_str)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name).is_some_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }

    fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }
}

/// A whole answer from the target.
#[derive(Debug)]
struct Answer {
    head: Head,
    body: Vec<u8>,
    /// The body was chunked: cutting it is still a cut, but replacing it would need re-framing.
    chunked: bool,
    close: bool,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head.word(1).parse().unwrap_or(0)
    }
}

/// Relays one client connection, request by request, until either side closes or a fault
/// ends it.
async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let mut client = Connection::new(client);
    let mut target: Option<Connection> = None;
    loop {
        let Some(raw) = client.head().await else {
            return;
        };
        let head = Head::parse(raw);
        if head.has_token("expect", "100-continue")
            && !client.send(b"HTTP/1.1 100 Continue\r\n\r\n").await
        {
            return;
        }
        let body = if head.chunked() {
            client.chunked().await
        } else {
            client.take(head.content_length().unwrap_or(0)).await
        };
        let Some(body) = body else { return };
        let kind = RequestKind::of(head.word(0), head.word(1));
        let (request, injection) = shared.injection(kind);
        let keep_alive = !head.has_token("connection", "close");
        let refusal = match injection.map(|injection| injection.fault) {
            Some(Fault::InternalError) => Some((
                500,
                "InternalError",
                "We encountered an internal error. Please try again.",
            )),
            Some(Fault::SlowDown) => Some((503, "SlowDown", "Please reduce your request rate.")),
            _ => None,
        };
        if let Some((status, code, message)) = refusal {
            let answer = error_answer(status, code, message, request);
            if !client.send(&answer).await || !keep_alive {
                let _ = client.stream.shutdown().await;
                return;
            }
            continue;
        }
        match injection.map(|injection| injection.fault) {
            Some(Fault::Reset) => {
                let _ = client.stream.set_zero_linger();
                return;
            }
            Some(Fault::Latency) => {
                if let Some(injection) = injection {
                    tokio::time::sleep(injection.delay).await;
                }
            }
            _ => {}
        }
        let Some(answer) = forward(&shared, &mut target, &head, &body).await else {
            // The target failed: the client sees the connection end.
            return;
        };
        let close = answer.close || !keep_alive;
        match injection.map(|injection| injection.fault) {
            Some(Fault::Truncate) => {
                if !answer.body.is_empty() {
                    let mut cut = answer.head.raw.clone();
                    cut.extend_from_slice(&answer.body[..answer.body.len() / 2]);
                    client.send(&cut).await;
                }
                let _ = client.stream.shutdown().await;
                return;
            }
            Some(Fault::Stall) if !answer.body.is_empty() => {
                let mut cut = answer.head.raw.clone();
                cut.extend_from_slice(&answer.body[..answer.body.len() / 2]);
                if client.send(&cut).await {
                    // Silent until the client hangs up (or a minute has passed).
                    let mut byte = [0u8; 1];
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        client.stream.read(&mut byte),
                    )
                    .await;
                }
                return;
            }
            Some(Fault::ErrorBody)
                if (200..300).contains(&answer.status())
                    && !answer.body.is_empty()
                    && !answer.chunked =>
            {
                let mut bytes = answer.head.raw.clone();
                bytes.extend_from_slice(&error_body_of_len(answer.body.len(), request));
                if !client.send(&bytes).await {
                    return;
                }
            }
            _ => {
                let mut bytes = answer.head.raw;
                bytes.extend_from_slice(&answer.body);
                if !client.send(&bytes).await {
                    return;
                }
            }
        }
        if close {
            let _ = client.stream.shutdown().await;
            return;
        }
    }
}

impl Shared {
    /// Numbers the request (among all, and among its kind), asks the plan and counts what it
    /// says: the request's number and its fate.
    fn injection(&self, kind: RequestKind) -> (u64, Option<Injection>) {
        let request = self.requests.fetch_add(1, Ordering::SeqCst);
        let sequence = self.sequences[kind.index()].fetch_add(1, Ordering::SeqCst);
        let plan = self
            .plan
            .lock()
            .map(|plan| Arc::clone(&plan))
            .unwrap_or_else(|_| Arc::new(FaultPlan::none()));
        let injection = plan.decide(kind, sequence);
        if let Ok(mut counts) = self.counts.lock() {
            *counts.requests.entry(kind).or_default() += 1;
            if let Some(injection) = injection {
                *counts.injected.entry((kind, injection.fault)).or_default() += 1;
            }
        }
        (request, injection)
    }
}

/// Sends the request to the target (connecting, or reconnecting once if a kept-alive
/// connection turns out closed) and reads its whole answer.
async fn forward(
    shared: &Shared,
    target: &mut Option<Connection>,
    head: &Head,
    body: &[u8],
) -> Option<Answer> {
    let mut request = head.raw.clone();
    request.extend_from_slice(body);
    for fresh in [false, true] {
        if fresh || target.is_none() {
            let stream = TcpStream::connect(shared.target).await.ok()?;
            let _ = stream.set_nodelay(true);
            *target = Some(Connection::new(stream));
        }
        let connection = target.as_mut()?;
        if !connection.send(&request).await {
            continue;
        }
        match read_answer(connection, head.word(0) == "HEAD").await {
            Some(answer) => {
                if answer.close {
                    *target = None;
                }
                return Some(answer);
            }
            // Nothing came back on a reused connection: the target had closed it.
            None if !fresh => continue,
            None => return None,
        }
    }
    None
}

/// Reads an answer from the target, skipping interim `1xx` answers.
async fn read_answer(target: &mut Connection, to_head: bool) -> Option<Answer> {
    loop {
        let head = Head::parse(target.head().await?);
        let status: u16 = head.word(1).parse().ok()?;
        if (100..200).contains(&status) {
            continue;
        }
        let close = head.has_token("connection", "close");
        let chunked = head.chunked();
        let body = if to_head || status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            target.chunked().await?
        } else if let Some(len) = head.content_length() {
            target.take(len).await?
        } else {
            target.rest().await
        };
        let close = close || (!chunked && head.content_length().is_none() && !to_head);
        return Some(Answer {
            head,
            body,
            chunked,
            close,
        });
    }
}

/// S3's XML error document, naming the request (so two are never the same bytes).
fn error_document(code: &str, message: &str, request: u64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><RequestId>{request:016X}\
         </RequestId><Code>{code}</Code><Message>{message}</Message></Error>"
    )
}

/// A whole error answer, kept alive.
fn error_answer(status: u16, code: &str, message: &str, request: u64) -> Vec<u8> {
    let body = error_document(code, message, request);
    let reason = if status == 503 {
        "Service Unavailable"
    } else {
        "Internal Server Error"
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\
         x-amz-request-id: faulty-s3\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An error document cut or padded with spaces to exactly `len` bytes.
fn error_body_of_len(len: usize, request: u64) -> Vec<u8> {
    let mut body = error_document(
        "InternalError",
        "We encountered an internal error.",
        request,
    )
    .into_bytes();
    body.resize(len, b' ');
    body
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_method_and_query() {
        let kind = RequestKind::of;
        assert_eq!(kind("GET", "/b/packs/p/x"), RequestKind::Get);
        assert_eq!(kind("GET", "/b?list-type=2&prefix=p"), RequestKind::List);
        assert_eq!(kind("HEAD", "/b/k"), RequestKind::Head);
        assert_eq!(kind("PUT", "/b/k"), RequestKind::Put);
        assert_eq!(kind("POST", "/b?delete"), RequestKind::Delete);
        assert_eq!(kind("DELETE", "/b/k"), RequestKind::Delete);
    }

    #[test]
    fn a_seed_decides_the_same_faults_every_time() {
        let plan = FaultPlan::uniform(7, 0.2);
        let run = |plan: &FaultPlan| -> Vec<Option<Injection>> {
            (0..500)
                .map(|sequence| plan.decide(RequestKind::Get, sequence))
                .collect()
        };
        assert_eq!(run(&plan), run(&plan.clone()));
        assert_ne!(run(&plan), run(&FaultPlan::uniform(8, 0.2)));
        // Kinds draw independently: the n-th GET and the n-th PUT differ somewhere.
        let puts: Vec<_> = (0..500)
            .map(|sequence| plan.decide(RequestKind::Put, sequence))
            .collect();
        assert_ne!(run(&plan), puts);
    }

    #[test]
    fn the_rate_and_the_faults_are_as_planned() {
        let plan = FaultPlan::uniform(42, 0.2).with_rate(RequestKind::Head, 0.0);
        let draws = 20_000;
        let mut by_fault = BTreeMap::new();
        let mut injected = 0;
        for sequence in 0..draws {
            if let Some(injection) = plan.decide(RequestKind::Get, sequence) {
                injected += 1;
                *by_fault.entry(injection.fault).or_insert(0u64) += 1;
                if injection.fault == Fault::Latency {
                    assert!(
                        (Duration::from_millis(100)..Duration::from_millis(500))
                            .contains(&injection.delay)
                    );
                } else {
                    assert_eq!(injection.delay, Duration::ZERO);
                }
            }
            assert_eq!(plan.decide(RequestKind::Head, sequence), None);
            if let Some(injection) = plan.decide(RequestKind::Put, sequence) {
                assert!(injection.fault.applies_to(RequestKind::Put));
                assert_ne!(injection.fault, Fault::ErrorBody);
            }
        }
        let share = injected as f64 / draws as f64;
        assert!((0.19..0.21).contains(&share), "{share}");
        assert_eq!(by_fault.len(), Fault::ALL.len(), "{by_fault:?}");
        for count in by_fault.values() {
            let share = *count as f64 / injected as f64;
            assert!((0.14..0.19).contains(&share), "{by_fault:?}");
        }
        assert_eq!(FaultPlan::none().decide(RequestKind::Get, 3), None);
        let only = FaultPlan::uniform(1, 1.0).with_faults(&[Fault::SlowDown]);
        assert!((0..100).all(
            |sequence| only.decide(RequestKind::Put, sequence).map(|i| i.fault)
                == Some(Fault::SlowDown)
        ));
        // A GET-only fault never reaches another kind.
        let error_bodies = FaultPlan::uniform(1, 1.0).with_faults(&[Fault::ErrorBody]);
        assert_eq!(error_bodies.decide(RequestKind::Put, 0), None);
        assert!(error_bodies.decide(RequestKind::Get, 0).is_some());
    }

    #[test]
    fn error_bodies_keep_the_length() {
        assert_eq!(error_body_of_len(10, 1), b"<?xml vers");
        let long = error_body_of_len(4096, 1);
        assert_eq!(long.len(), 4096);
        assert!(long.starts_with(b"<?xml"));
        // Each names its request, as S3's do: two are never the same bytes.
        assert_ne!(error_body_of_len(100, 1), error_body_of_len(100, 2));
    }

    /// The proxy against a tiny upstream: a kept-alive exchange relays faithfully, and each
    /// fault shows as the client would see it.
    #[test]
    fn the_proxy_relays_and_injects() {
        use std::io::{Read, Write};

        let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = upstream.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in upstream.incoming().flatten() {
                std::thread::spawn(move || serve_upstream(stream));
            }
        });
        let proxy = FaultyS3::start(target, FaultPlan::none());
        let exchange = |request: &str| -> Vec<u8> {
            let mut stream = std::net::TcpStream::connect(proxy.address()).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            answer
        };
        let get = "GET /b/k HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        let answer = exchange(get);
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with(b"0123456789"));

        let put =
            "PUT /b/k HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc";
        proxy.set_plan(FaultPlan::uniform(1, 1.0).with_faults(&[Fault::SlowDown]));
        let answer = String::from_utf8(exchange(put)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("<Code>SlowDown</Code>"), "{answer}");

        proxy.set_plan(FaultPlan::uniform(1, 1.0).with_faults(&[Fault::Truncate]));
        let answer = exchange(get);
        assert!(answer.ends_with(b"\r\n\r\n01234"), "{answer:?}");

        proxy.set_plan(FaultPlan::uniform(1, 1.0).with_faults(&[Fault::ErrorBody]));
        let answer = String::from_utf8(exchange(get)).unwrap();
        assert!(answer.ends_with("\r\n\r\n<?xml vers"), "{answer}");

        proxy.set_plan(FaultPlan::uniform(1, 1.0).with_faults(&[Fault::Reset]));
        assert!(exchange(get).is_empty());

        let counts = proxy.counts();
        assert_eq!(counts.requests[&RequestKind::Get], 4);
        assert_eq!(counts.total_requests(), 5);
        let later = FaultCounts {
            requests: BTreeMap::from([(RequestKind::Get, 6), (RequestKind::Put, 1)]),
            injected: counts.injected.clone(),
        };
        let since = later.since(&counts);
        assert_eq!(since.requests, BTreeMap::from([(RequestKind::Get, 2)]));
        assert!(since.injected.is_empty());
        assert_eq!(counts.injected[&(RequestKind::Put, Fault::SlowDown)], 1);
        assert_eq!(counts.total_injected(), 4);
        assert_eq!(counts.of_fault(Fault::Reset), 1);
    }

    /// Answers every request with ten digits, keep-alive.
    fn serve_upstream(stream: std::net::TcpStream) {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789";
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    }
}
