//! [`Proxy`]: a TCP proxy on loopback that a test puts on one direction of
//! a link (the connections one node opens to another) and then breaks and
//! mends on purpose, without root: pass, delay, blackhole, cut, heal.
//!
//! - **Pass**: bytes go through as they come.
//! - **Delay(d)**: every chunk is written `d` after it was read (latency,
//!   not a throughput cap: later chunks do not wait for earlier delays on
//!   top of their own).
//! - **Blackhole**: connections stay open and new ones are accepted, but
//!   every byte read either way is dropped: the peer sees silence, as
//!   behind a partition that loses packets.
//! - **Cut**: every connection is closed and new ones are closed as soon
//!   as they are accepted (the dialer sees its connection end before any
//!   answer, as with a refusal).
//! - **Heal**: back to pass. A connection that lost bytes to a blackhole
//!   is closed then (its stream has a hole; TCP would have reset it), so
//!   the peers reconnect on clean streams.
//!
//! Threads: one accepting, and per connection one reader and one writer
//! per direction. The writer's queue is bounded, so a slow reader holds
//! the proxy back instead of growing it. Everything stops when the proxy
//! is dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a blocked read waits before it looks at the mode again.
const POLL: Duration = Duration::from_millis(20);
/// Chunks queued per direction of a connection before the reader waits.
const QUEUE: usize = 256;
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the proxy does with traffic now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Forward each chunk this long after it was read.
    Delay(Duration),
    /// Keep connections, drop every byte.
    Blackhole,
    /// Close every connection, refuse new ones.
    Cut,
}

/// What the proxy has done so far (a test asserts the events it is about
/// happened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted and forwarded.
    pub accepted: u64,
    /// Connections closed at once because the link was cut.
    pub refused: u64,
    /// Connections closed by a cut (or a heal after a blackhole).
    pub closed: u64,
    /// Bytes forwarded.
    pub forwarded: u64,
    /// Bytes read while the link was delayed (forwarded late).
    pub delayed: u64,
    /// Bytes dropped by a blackhole.
    pub dropped: u64,
}

/// A proxy from its own loopback port to `upstream`. Stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Lock order: `live` before `mode` (a new connection registers under
/// `live` after reading the mode); [`Proxy::set`] releases `mode` before it
/// takes `live`.
struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    /// Both sockets of every open connection, to close them on a cut; and
    /// whether the connection lost bytes.
    live: Mutex<HashMap<u64, Live>>,
    stop: AtomicBool,
    accepted: AtomicU64,
    refused: AtomicU64,
    closed: AtomicU64,
    forwarded: AtomicU64,
    delayed: AtomicU64,
    dropped: AtomicU64,
}

struct Live {
    sockets: [TcpStream; 2],
    lost_bytes: bool,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    /// Closes every open connection (or only those that lost bytes).
    fn close_live(&self, only_holed: bool) {
        let mut live = self.live.lock().unwrap();
        live.retain(|_, conn| {
            if only_holed && !conn.lost_bytes {
                return true;
            }
            for socket in &conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
            self.closed.fetch_add(1, Ordering::Relaxed);
            false
        });
    }

    fn forget(&self, id: u64) {
        self.live.lock().unwrap().remove(&id);
    }

    fn lost_bytes(&self, id: u64) {
        if let Some(conn) = self.live.lock().unwrap().get_mut(&id) {
            conn.lost_bytes = true;
        }
    }
}

impl Proxy {
    /// A proxy on an ephemeral loopback port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            live: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        Ok(Proxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where to connect to go through the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Switches to `mode`; see the module doc for what each one does to
    /// the open connections.
    pub fn set(&self, mode: Mode) {
        let before = std::mem::replace(&mut *self.shared.mode.lock().unwrap(), mode);
        match mode {
            Mode::Cut => self.shared.close_live(false),
            Mode::Pass | Mode::Delay(_) if before == Mode::Blackhole => {
                self.shared.close_live(true)
            }
            _ => {}
        }
    }

    /// [`Mode::Cut`].
    pub fn cut(&self) {
        self.set(Mode::Cut);
    }

    /// [`Mode::Blackhole`].
    pub fn blackhole(&self) {
        self.set(Mode::Blackhole);
    }

    /// [`Mode::Delay`].
    pub fn delay(&self, by: Duration) {
        self.set(Mode::Delay(by));
    }

    /// [`Mode::Pass`].
    pub fn heal(&self) {
        self.set(Mode::Pass);
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            closed: s.closed.load(Ordering::Relaxed),
            forwarded: s.forwarded.load(Ordering::Relaxed),
            delayed: s.delayed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.close_live(false);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        if shared.mode() == Mode::Cut {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        // Connecting may take up to its timeout: not on the accepting thread.
        next_id += 1;
        let (id, shared) = (next_id, shared.clone());
        std::thread::spawn(move || connect_and_pump(id, client, &shared));
    }
}

fn connect_and_pump(id: u64, client: TcpStream, shared: &Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) else {
        // Nobody there: the dialer sees its connection closed, as it would
        // without the proxy.
        return;
    };
    let sockets = || -> std::io::Result<[TcpStream; 4]> {
        client.set_nonblocking(false)?;
        client.set_nodelay(true)?;
        upstream.set_nodelay(true)?;
        Ok([
            client.try_clone()?,
            upstream.try_clone()?,
            upstream.try_clone()?,
            client.try_clone()?,
        ])
    };
    let Ok([client_in, upstream_out, upstream_in, client_out]) = sockets() else {
        return;
    };
    {
        // Registered under the mode lock's decision: a cut that came in
        // meanwhile closes it here rather than missing it.
        let mut live = shared.live.lock().unwrap();
        if shared.mode() == Mode::Cut {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        live.insert(
            id,
            Live {
                sockets: [client, upstream],
                lost_bytes: false,
            },
        );
    }
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let there = {
        let shared = shared.clone();
        std::thread::spawn(move || pump(id, client_in, upstream_out, &shared))
    };
    pump(id, upstream_in, client_out, shared);
    let _ = there.join();
    shared.forget(id);
}

/// Copies `from` to `to` as the mode says, until either side ends, the
/// connection is closed by a cut, or the proxy stops; then closes both.
fn pump(id: u64, mut from: TcpStream, to: TcpStream, shared: &Arc<Shared>) {
    let (chunks, queued) = sync_channel::<(Instant, Vec<u8>)>(QUEUE);
    let writer = {
        let (to, shared) = (to.try_clone(), shared.clone());
        std::thread::spawn(move || {
            if let Ok(to) = to {
                write_when_due(to, &queued, &shared);
            }
        })
    };
    let _ = from.set_read_timeout(Some(POLL));
    let mut chunk = vec![0u8; 16 * 1024];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let due = match shared.mode() {
            Mode::Pass => Instant::now(),
            Mode::Delay(by) => {
                shared.delayed.fetch_add(n as u64, Ordering::Relaxed);
                Instant::now() + by
            }
            Mode::Blackhole => {
                shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
                shared.lost_bytes(id);
                continue;
            }
            Mode::Cut => break,
        };
        if chunks.send((due, chunk[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(chunks);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    let _ = writer.join();
}

/// Writes each chunk once it is due, in order.
fn write_when_due(mut to: TcpStream, queued: &Receiver<(Instant, Vec<u8>)>, shared: &Shared) {
    while let Ok((due, bytes)) = queued.recv() {
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        if to.write_all(&bytes).is_err() {
            return;
        }
        shared
            .forwarded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback; stops with the test process.
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn dial(proxy: &Proxy) -> TcpStream {
        let s = TcpStream::connect(proxy.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    /// Writes `text` and reads what comes back within the read timeout:
    /// `Ok(None)` for silence, `Err` for a closed connection.
    fn round_trip(s: &mut TcpStream, text: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        s.write_all(text)?;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < text.len() {
            match s.read(&mut buf) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(got))
    }

    /// Polls `what` for up to 5 s.
    fn eventually(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn passes_bytes_both_ways() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut s = dial(&proxy);
        assert_eq!(
            round_trip(&mut s, b"hello").unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(proxy.stats().accepted, 1);
        assert!(eventually(|| proxy.stats().forwarded == 10));
    }

    #[test]
    fn delay_holds_each_chunk_back() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut s = dial(&proxy);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        proxy.delay(Duration::from_millis(150));
        let start = Instant::now();
        assert_eq!(round_trip(&mut s, b"slow").unwrap(), Some(b"slow".to_vec()));
        // Delayed on the way there and on the way back.
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
        proxy.heal();
        let start = Instant::now();
        assert_eq!(round_trip(&mut s, b"fast").unwrap(), Some(b"fast".to_vec()));
        assert!(
            start.elapsed() < Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn blackhole_keeps_connections_open_and_drops_bytes_until_healed() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut old = dial(&proxy);
        assert!(round_trip(&mut old, b"x").unwrap().is_some());
        proxy.blackhole();
        assert_eq!(round_trip(&mut old, b"lost").unwrap(), None, "silence");
        // New connections are accepted, and get silence too.
        let mut new = dial(&proxy);
        assert_eq!(round_trip(&mut new, b"lost too").unwrap(), None);
        assert!(eventually(|| proxy.stats().dropped >= 12));
        assert_eq!(proxy.stats().accepted, 2);
        // Healed: the holed connections are closed, fresh ones work.
        proxy.heal();
        assert!(
            round_trip(&mut old, b"after").is_err(),
            "a holed stream is closed"
        );
        assert!(eventually(|| proxy.stats().closed == 2));
        let mut fresh = dial(&proxy);
        assert_eq!(round_trip(&mut fresh, b"ok").unwrap(), Some(b"ok".to_vec()));
    }

    #[test]
    fn cut_closes_connections_and_refuses_new_ones_until_healed() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut old = dial(&proxy);
        assert!(round_trip(&mut old, b"x").unwrap().is_some());
        proxy.cut();
        assert!(
            round_trip(&mut old, b"y").is_err(),
            "the open connection is closed"
        );
        let mut refused = dial(&proxy);
        assert!(
            round_trip(&mut refused, b"z").is_err(),
            "a new one is closed at once"
        );
        assert!(eventually(|| proxy.stats().refused == 1));
        assert_eq!(proxy.stats().closed, 1);
        proxy.heal();
        let mut s = dial(&proxy);
        assert_eq!(round_trip(&mut s, b"back").unwrap(), Some(b"back".to_vec()));
    }

    #[test]
    fn a_dead_upstream_closes_the_dialer() {
        // A port with nobody listening.
        let gone = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = Proxy::start(gone).unwrap();
        let mut s = dial(&proxy);
        assert!(round_trip(&mut s, b"anyone?").is_err());
        assert_eq!(proxy.stats().accepted, 0);
    }
}
