//! Crash test in sled's style: the real `ferromq` binary is killed with
//! SIGKILL at random moments while producers send persistent messages with
//! receipts and a consumer acknowledges with receipts; after every restart
//! the clients carry on. At the end everything left is drained and checked:
//!
//! - every message that got a RECEIPT was delivered and acknowledged;
//! - no message was delivered after its ACK got a RECEIPT;
//! - a message delivered more than once carries `redelivered:true` on every
//!   delivery after the first (delivered "exactly once or marked");
//! - each producer's messages are first delivered in the order they were sent.
//!
//! `FERROMQ_CRASH_LOOPS` sets the number of kills (default 5, which CI
//! runs); `FERROMQ_CRASH_SEED` replays a run (the seed is printed). A longer
//! run: `FERROMQ_CRASH_LOOPS=200 cargo test -p ferromq-tests --test
//! durability_crash -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use ferromq_protocol::stomp::{encode_frame, Command, Decoder, Frame, Limits, Version};
use ferromq_tests::Broker;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRODUCERS: usize = 3;
/// SENDs a producer keeps outstanding (receipt not yet seen).
const WINDOW: usize = 8;

/// A STOMP 1.2 connection whose every failure is an `Err` (the broker dies
/// under it on purpose).
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            decoder: Decoder::new(Limits::default()),
            buf: BytesMut::new(),
        };
        c.send(
            &Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "/"),
        )?;
        let f = c.recv(Duration::from_secs(10))?;
        if f.as_ref().map(|f| f.command) != Some(Command::Connected) {
            return Err(std::io::Error::other(format!("no CONNECTED: {f:?}")));
        }
        c.decoder.set_version(Version::V1_2);
        Ok(c)
    }

    fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        encode_frame(f, Version::V1_2, &mut b);
        self.stream.write_all(&b)
    }

    /// The next frame, `None` after `wait` without one.
    fn recv(&mut self, wait: Duration) -> std::io::Result<Option<Frame>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?
            {
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
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
    }
}

/// What the clients observed, across every broker life.
#[derive(Default)]
struct Ledger {
    /// Bodies whose SEND got a RECEIPT.
    receipted: HashSet<String>,
    /// Bodies an ACK was sent for.
    ack_sent: HashSet<String>,
    /// Bodies whose ACK got a RECEIPT: must never be delivered again.
    acked: HashSet<String>,
    /// Deliveries per body.
    deliveries: HashMap<String, u32>,
    /// Per producer, the message numbers in first-delivery order.
    first_order: HashMap<usize, Vec<u64>>,
    violations: Vec<String>,
}

impl Ledger {
    fn delivered(&mut self, body: &str, redelivered: bool) {
        if self.acked.contains(body) {
            self.violations.push(format!(
                "{body} delivered again after its ACK was receipted"
            ));
        }
        let n = self.deliveries.entry(body.to_string()).or_default();
        *n += 1;
        if *n > 1 && !redelivered {
            self.violations.push(format!(
                "{body} delivered {n} times, the last without redelivered:true"
            ));
        }
        if *n == 1 {
            if let Some((p, k)) = parse_body(body) {
                self.first_order.entry(p).or_default().push(k);
            }
        }
    }
}

fn parse_body(body: &str) -> Option<(usize, u64)> {
    let (p, k) = body.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, k.parse().ok()?))
}

/// Sends persistent messages `p{id}-{k}` with receipts, WINDOW at a time,
/// until the connection fails or `stop` is set. Returns the next `k`.
fn produce(
    addr: SocketAddr,
    id: usize,
    mut k: u64,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
) -> u64 {
    let Ok(mut c) = Conn::open(addr) else {
        return k;
    };
    let mut outstanding = 0;
    while !stop.load(Ordering::Relaxed) {
        while outstanding < WINDOW {
            let body = format!("p{id}-{k}");
            let f = Frame::new(Command::Send)
                .header("destination", "/queue/crash")
                .header("persistent", "true")
                .header("receipt", &body)
                .body(body.clone());
            if c.send(&f).is_err() {
                return k + 1;
            }
            k += 1;
            outstanding += 1;
        }
        match c.recv(Duration::from_millis(200)) {
            Ok(Some(f)) if f.command == Command::Receipt => {
                if let Some(id) = f.get("receipt-id") {
                    ledger.lock().unwrap().receipted.insert(id.to_string());
                }
                outstanding -= 1;
            }
            Ok(Some(f)) => {
                ledger
                    .lock()
                    .unwrap()
                    .violations
                    .push(format!("producer {id} got {f:?}"));
                return k;
            }
            Ok(None) => {}
            Err(_) => return k,
        }
    }
    k
}

/// Consumes `/queue/crash` with client-individual acks and receipts until
/// the connection fails, `stop` is set, or (when `drain`) nothing arrives for
/// a second.
fn consume(addr: SocketAddr, ledger: &Mutex<Ledger>, stop: &AtomicBool, drain: bool) {
    let Ok(mut c) = Conn::open(addr) else { return };
    let sub = Frame::new(Command::Subscribe)
        .header("id", "s")
        .header("destination", "/queue/crash")
        .header("ack", "client-individual")
        .header("activemq.prefetchSize", "16");
    if c.send(&sub).is_err() {
        return;
    }
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let f = match c.recv(Duration::from_millis(100)) {
            Ok(Some(f)) => f,
            Ok(None) => {
                if drain && idle_since.elapsed() > Duration::from_secs(1) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        idle_since = Instant::now();
        match f.command {
            Command::Message => {
                let body = String::from_utf8_lossy(&f.body).into_owned();
                let redelivered = f.get("redelivered") == Some("true");
                ledger.lock().unwrap().delivered(&body, redelivered);
                let ack = Frame::new(Command::Ack)
                    .header("id", f.get("ack").unwrap_or(""))
                    .header("receipt", &format!("a:{body}"));
                ledger.lock().unwrap().ack_sent.insert(body);
                if c.send(&ack).is_err() {
                    return;
                }
            }
            Command::Receipt => {
                if let Some(body) = f.get("receipt-id").and_then(|r| r.strip_prefix("a:")) {
                    ledger.lock().unwrap().acked.insert(body.to_string());
                }
            }
            _ => {
                ledger
                    .lock()
                    .unwrap()
                    .violations
                    .push(format!("consumer got {f:?}"));
                return;
            }
        }
    }
}

/// xorshift64*: enough randomness for kill times, replayable from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn kill9_at_random_points_loses_no_receipted_message() {
    let loops: usize = std::env::var("FERROMQ_CRASH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("FERROMQ_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test: {loops} kills, FERROMQ_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut next_k = [0u64; PRODUCERS];
    let mut broker = Broker::start();
    for round in 0..loops {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = broker.stomp;
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let (ledger, stop, k) = (ledger.clone(), stop.clone(), next_k[id]);
                std::thread::spawn(move || produce(addr, id, k, &ledger, &stop))
            })
            .collect();
        let consumer = {
            let (ledger, stop) = (ledger.clone(), stop.clone());
            // Start consuming only in some rounds, so that kills also hit
            // a queue that is filling up and one being drained.
            let consume_now = rng.next() % 3 != 0;
            std::thread::spawn(move || {
                if consume_now {
                    consume(addr, &ledger, &stop, false)
                }
            })
        };
        let run_ms = 50 + rng.next() % 600;
        std::thread::sleep(Duration::from_millis(run_ms));
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        for (id, p) in producers.into_iter().enumerate() {
            next_k[id] = p.join().unwrap();
        }
        consumer.join().unwrap();
        let l = ledger.lock().unwrap();
        eprintln!(
            "round {round}: killed after {run_ms} ms; receipted {} acked {} so far",
            l.receipted.len(),
            l.acked.len()
        );
        drop(l);
        broker = broker.restart();
    }
    // Drain what is left, then check the whole history.
    let stop = AtomicBool::new(false);
    consume(broker.stomp, &ledger, &stop, true);
    let l = ledger.lock().unwrap();
    assert!(
        l.violations.is_empty(),
        "seed {seed}: {} violations, first ones: {:#?}",
        l.violations.len(),
        &l.violations[..l.violations.len().min(10)]
    );
    let lost: Vec<_> = l.receipted.difference(&l.ack_sent).take(10).collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: receipted messages never delivered after restart: {lost:?}"
    );
    assert!(!l.receipted.is_empty(), "no message was ever receipted");
    for (p, ks) in &l.first_order {
        assert!(
            ks.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: producer {p}'s messages were first delivered out of order: {ks:?}"
        );
    }
    eprintln!(
        "crash test: {} receipted, {} delivered, {} redelivered",
        l.receipted.len(),
        l.deliveries.len(),
        l.deliveries.values().filter(|n| **n > 1).count()
    );
}

/// Commits transactions of `TX_SIZE` persistent messages `t{n}-{i}` until
/// the connection fails or `stop` is set; returns the next `n`, recording
/// the transactions whose COMMIT got a receipt.
fn produce_transactions(
    addr: SocketAddr,
    mut n: u64,
    committed: &Mutex<HashSet<u64>>,
    stop: &AtomicBool,
) -> u64 {
    const TX_SIZE: usize = 5;
    let Ok(mut c) = Conn::open(addr) else {
        return n;
    };
    while !stop.load(Ordering::Relaxed) {
        let tx = format!("tx{n}");
        let mut frames = vec![Frame::new(Command::Begin).header("transaction", &tx)];
        for i in 0..TX_SIZE {
            frames.push(
                Frame::new(Command::Send)
                    .header("destination", "/queue/crash-tx")
                    .header("persistent", "true")
                    .header("transaction", &tx)
                    .body(format!("t{n}-{i}")),
            );
        }
        frames.push(
            Frame::new(Command::Commit)
                .header("transaction", &tx)
                .header("receipt", &tx),
        );
        n += 1;
        for f in &frames {
            if c.send(f).is_err() {
                return n;
            }
        }
        match c.recv(Duration::from_secs(5)) {
            Ok(Some(f)) if f.command == Command::Receipt => {
                committed.lock().unwrap().insert(n - 1);
            }
            _ => return n,
        }
    }
    n
}

#[test]
fn kill9_never_splits_a_transaction() {
    let loops: usize = std::env::var("FERROMQ_CRASH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1);
    let committed = Arc::new(Mutex::new(HashSet::new()));
    // Producer p numbers its transactions from p * 10^9 up.
    let mut next = [0u64, 1_000_000_000];
    let mut broker = Broker::start();
    for _ in 0..loops {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = broker.stomp;
        let producers: Vec<_> = next
            .iter()
            .map(|&n| {
                let (committed, stop) = (committed.clone(), stop.clone());
                std::thread::spawn(move || produce_transactions(addr, n, &committed, &stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 400));
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        for (p, h) in producers.into_iter().enumerate() {
            next[p] = h.join().unwrap();
        }
        broker = broker.restart();
    }
    let mut c = Conn::open(broker.stomp).unwrap();
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/crash-tx")
            .header("ack", "auto"),
    )
    .unwrap();
    let mut per_tx: HashMap<u64, Vec<String>> = HashMap::new();
    while let Some(f) = c.recv(Duration::from_secs(1)).unwrap() {
        assert_eq!(f.command, Command::Message, "{f:?}");
        let body = String::from_utf8_lossy(&f.body).into_owned();
        let n: u64 = body[1..body.find('-').unwrap()].parse().unwrap();
        per_tx.entry(n).or_default().push(body);
    }
    let committed = committed.lock().unwrap();
    assert!(!committed.is_empty(), "no transaction was ever committed");
    for n in committed.iter() {
        assert!(per_tx.contains_key(n), "committed transaction {n} lost");
    }
    for (n, bodies) in &per_tx {
        let want: Vec<String> = (0..5).map(|i| format!("t{n}-{i}")).collect();
        assert_eq!(
            bodies, &want,
            "transaction {n} came back split or out of order"
        );
    }
    eprintln!(
        "transactions: {} committed with receipt, {} recovered whole",
        committed.len(),
        per_tx.len()
    );
}
