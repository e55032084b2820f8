//! A TCP relay that adds network latency between a client and a server on loopback, so a
//! benchmark can run a server against an S3 (or a database) that is a round trip of `rtt` away
//! (issue 11; meant for reuse by later benchmarks).
//!
//! The model, per relayed connection:
//!
//! - Every chunk of bytes is forwarded `rtt / 2` after it arrived, in each direction, so a
//!   request and its response cost one extra `rtt`, however many requests are in flight.
//! - Nothing is serialized and no bandwidth is limited: each direction has a reader thread that
//!   timestamps what it reads and queues it at once, and a writer thread that sends each chunk
//!   when it is due. A large body arrives `rtt / 2` late, not slower.
//! - A new connection costs one more `rtt` before its first byte reaches the server, as the TCP
//!   handshake with a far-away server would. TLS is not modelled (its handshake would add one or
//!   two more to a new connection), so connection reuse is, if anything, rewarded too little.
//! - TCP_NODELAY on both legs: the relay never holds bytes back to coalesce them. And
//!   TCP_QUICKACK after every read: the relay acknowledges at once what it receives. Without it
//!   a peer that writes a response's head and body separately with Nagle on (s3s-fs does)
//!   waits for the relay's delayed ACK, about 40 ms per response, which no real S3 costs.
//!
//! With `rtt` zero the relay only adds a loopback hop and a thread handoff.
//!
//! [`LatencyRelay::trace_to`] logs every chunk as it arrives (UTC time, connection, direction,
//! size, and the first line when it starts like an HTTP request or response), to see which
//! requests an operation made and where its time went.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// What a relay has carried so far, over all its connections.
#[derive(Debug)]
struct Counters {
    connections: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
    /// Where chunks are logged, if anywhere.
    trace: Mutex<Option<File>>,
}

impl Counters {
    fn trace(&self, connection: u64, up: bool, chunk: &[u8]) {
        let Ok(mut trace) = self.trace.lock() else {
            return;
        };
        let Some(file) = trace.as_mut() else { return };
        let first_line = chunk
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(&[]);
        let looks_http = [
            &b"GET "[..],
            b"PUT ",
            b"POST ",
            b"HEAD ",
            b"DELETE ",
            b"HTTP/",
        ]
        .iter()
        .any(|start| first_line.starts_with(start));
        let _ = writeln!(
            file,
            "{}  conn {connection:<4} {} {:>9} B  {}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now()),
            if up { "up  " } else { "down" },
            chunk.len(),
            if looks_http {
                String::from_utf8_lossy(&first_line[..first_line.len().min(160)])
            } else {
                "".into()
            }
        );
    }
}

/// A snapshot of a relay's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTraffic {
    /// Connections accepted (each one to the target).
    pub connections: u64,
    /// Bytes from clients to the target.
    pub up: u64,
    /// Bytes from the target to clients.
    pub down: u64,
}

impl std::ops::Sub for RelayTraffic {
    type Output = RelayTraffic;
    fn sub(self, before: RelayTraffic) -> RelayTraffic {
        RelayTraffic {
            connections: self.connections - before.connections,
            up: self.up - before.up,
            down: self.down - before.down,
        }
    }
}

/// A relay listening on a loopback port, forwarding to `target` with added latency. Dropping it
/// stops accepting connections; connections already open run until either side closes.
#[derive(Debug)]
pub struct LatencyRelay {
    port: u16,
    round_trip: Duration,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl LatencyRelay {
    /// Listens on a free port of 127.0.0.1 and relays every connection to `target`, adding
    /// `round_trip` to each request/response exchange (see the module documentation).
    pub fn start(target: SocketAddr, round_trip: Duration) -> io::Result<LatencyRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters {
            connections: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            trace: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (Arc::clone(&counters), Arc::clone(&stop));
        thread::Builder::new()
            .name(format!("relay-{port}"))
            .spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let accepted = Instant::now();
                    // A target that refuses is the client's problem: it sees the close.
                    if let Ok(server) = TcpStream::connect(target) {
                        let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                        relay(client, server, connection, accepted, round_trip, &shared);
                    }
                }
            })?;
        Ok(LatencyRelay {
            port,
            round_trip,
            counters,
            stop,
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn round_trip(&self) -> Duration {
        self.round_trip
    }

    /// Logs every chunk from now on to `path` (created or truncated): the UTC time it arrived
    /// (to the microsecond, comparable with the servers' logs), connection number, direction, size, and the first line of what looks like
    /// an HTTP request or response.
    pub fn trace_to(&self, path: &std::path::Path) -> io::Result<()> {
        let file = File::create(path)?;
        if let Ok(mut trace) = self.counters.trace.lock() {
            *trace = Some(file);
        }
        Ok(())
    }

    pub fn traffic(&self) -> RelayTraffic {
        RelayTraffic {
            connections: self.counters.connections.load(Ordering::SeqCst),
            up: self.counters.up.load(Ordering::SeqCst),
            down: self.counters.down.load(Ordering::SeqCst),
        }
    }
}

impl Drop for LatencyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One chunk on its way: when it is due at the other end, and the bytes (`None`: the sender
/// closed its side, to be passed on when due).
type Due = (Instant, Option<Vec<u8>>);

/// Starts the four threads of one connection: a reader and a writer per direction.
fn relay(
    client: TcpStream,
    server: TcpStream,
    connection: u64,
    accepted: Instant,
    round_trip: Duration,
    counters: &Arc<Counters>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let half = round_trip / 2;
    // Nothing reaches the server before the handshake a real network would have needed.
    let handshake_done = accepted + round_trip;
    for (from, to, up) in [(&client, &server, true), (&server, &client, false)] {
        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        };
        let not_before = if up { handshake_done } else { accepted };
        let counters = Arc::clone(counters);
        let (sender, receiver) = mpsc::channel::<Due>();
        let spawned = thread::Builder::new()
            .name("relay-read".into())
            .spawn(move || {
                let side = Side {
                    connection,
                    up,
                    half,
                    not_before,
                };
                read_side(from, sender, side, &counters)
            })
            .and_then(|_| {
                thread::Builder::new()
                    .name("relay-write".into())
                    .spawn(move || write_side(to, receiver))
            });
        if spawned.is_err() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// One direction of one connection.
#[derive(Debug, Clone, Copy)]
struct Side {
    connection: u64,
    /// Client to target.
    up: bool,
    /// How late each chunk is delivered.
    half: Duration,
    /// Nothing is delivered before `not_before + half`.
    not_before: Instant,
}

/// Reads `from` as fast as it delivers and queues every chunk, due `half` later (never before
/// `not_before + half`).
fn read_side(mut from: TcpStream, queue: mpsc::Sender<Due>, side: Side, counters: &Counters) {
    let Side {
        connection,
        up,
        half,
        not_before,
    } = side;
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let (read, chunk) = match from.read(&mut buffer) {
            Ok(0) | Err(_) => (0, None),
            Ok(read) => (read, Some(buffer[..read].to_vec())),
        };
        // Linux turns quick ACKs off again on its own: ask after every read.
        let _ = socket2::SockRef::from(&from).set_tcp_quickack(true);
        let counter = if up { &counters.up } else { &counters.down };
        counter.fetch_add(read as u64, Ordering::SeqCst);
        if let Some(chunk) = &chunk {
            counters.trace(connection, up, chunk);
        }
        let due = (Instant::now() + half).max(not_before + half);
        let done = chunk.is_none();
        if queue.send((due, chunk)).is_err() || done {
            break;
        }
    }
}

/// Sends each queued chunk to `to` when it is due; passes the close on, or closes both ways
/// when `to` cannot take more (so the reader on the other side stops too).
fn write_side(mut to: TcpStream, queue: mpsc::Receiver<Due>) {
    for (due, chunk) in queue {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        match chunk {
            Some(bytes) => {
                if to.write_all(&bytes).is_err() {
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
            }
            None => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server: answers every chunk with the same bytes.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(read) = stream.read(&mut buffer) {
                        if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    fn exchange(stream: &mut TcpStream, message: &[u8]) {
        stream.write_all(message).unwrap();
        let mut answer = vec![0u8; message.len()];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(answer, message);
    }

    #[test]
    fn adds_a_round_trip_per_exchange_and_one_for_the_handshake() {
        let round_trip = Duration::from_millis(40);
        let relay = LatencyRelay::start(echo_server(), round_trip).unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", relay.port())).unwrap();
        stream.set_nodelay(true).unwrap();
        let start = Instant::now();
        exchange(&mut stream, b"first");
        let first = start.elapsed();
        assert!(first >= round_trip * 2, "{first:?}");
        let start = Instant::now();
        exchange(&mut stream, b"second");
        let second = start.elapsed();
        assert!(second >= round_trip, "{second:?}");
        assert!(second < round_trip * 2, "{second:?}");
        assert_eq!(relay.traffic().connections, 1);
        assert_eq!(relay.traffic().up, 11);
    }

    #[test]
    fn pipelined_chunks_are_not_serialized() {
        let round_trip = Duration::from_millis(40);
        let relay = LatencyRelay::start(echo_server(), round_trip).unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", relay.port())).unwrap();
        stream.set_nodelay(true).unwrap();
        exchange(&mut stream, b"warm up");
        // Ten messages sent back to back come back about one round trip later, not ten.
        let start = Instant::now();
        for index in 0..10u8 {
            stream.write_all(&[index; 100]).unwrap();
            thread::sleep(Duration::from_millis(1));
        }
        let mut answer = vec![0u8; 1000];
        stream.read_exact(&mut answer).unwrap();
        let took = start.elapsed();
        assert!(took < round_trip * 2, "{took:?}");
    }
}
