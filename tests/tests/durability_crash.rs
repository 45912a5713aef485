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
//! Those properties also hold when nothing happens, so the run must show
//! that it tested something: every client of every broker life connected
//! before the kill timer started (a failed connection is a failure, not a
//! quiet early return), ACKs got receipts before a kill, and messages came
//! back marked redelivered after one.
//!
//! `FERROMQ_CRASH_LOOPS` sets the number of kills (default 5, which CI
//! runs); `FERROMQ_CRASH_SEED` replays a run (the seed is printed at the
//! start and again when the test fails). A longer run:
//! `FERROMQ_CRASH_LOOPS=200 cargo test -p ferromq-tests --test
//! durability_crash -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::conn::{transaction, Conn};
use ferromq_tests::{Broker, WAIT};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRODUCERS: usize = 3;
/// SENDs a producer keeps outstanding (receipt not yet seen).
const WINDOW: usize = 8;

/// A client thread's report that it is connected (and subscribed), or why
/// it could not be: a broker life whose clients never connected tests
/// nothing, so the round's kill timer starts only after every report.
type Ready = mpsc::Sender<Result<(), String>>;

/// Waits for `n` readiness reports; panics with the first failure.
fn await_ready(ready: &mpsc::Receiver<Result<(), String>>, n: usize, phase: &str) {
    for _ in 0..n {
        match ready.recv_timeout(WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{phase}: a client could not connect: {e}"),
            Err(e) => panic!("{phase}: a client did not connect within {WAIT:?}: {e}"),
        }
    }
}

/// The number of kills: `FERROMQ_CRASH_LOOPS`, default 5.
fn crash_loops() -> usize {
    std::env::var("FERROMQ_CRASH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// The seed of the kill times: `FERROMQ_CRASH_SEED`, else the clock.
fn crash_seed() -> u64 {
    std::env::var("FERROMQ_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// Prints the seed when the test fails, however it fails (an assertion, a
/// client thread's panic, the harness's broker-panic check): the seed is
/// what replays the run.
struct SeedOnFailure(u64);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "crash test failed; replay it with FERROMQ_CRASH_SEED={}",
                self.0
            );
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
    /// Deliveries that carried `redelivered:true`.
    marked_redelivered: usize,
    violations: Vec<String>,
}

impl Ledger {
    fn delivered(&mut self, body: &str, redelivered: bool) {
        if self.acked.contains(body) {
            self.violations.push(format!(
                "{body} delivered again after its ACK was receipted"
            ));
        }
        if redelivered {
            self.marked_redelivered += 1;
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
/// until the connection fails or `stop` is set. Reports on `ready` once
/// connected. Returns the next `k`.
fn produce(
    addr: SocketAddr,
    id: usize,
    mut k: u64,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
    ready: Ready,
) -> u64 {
    let mut c = match Conn::open(addr) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("producer {id}: {e}")));
            return k;
        }
    };
    let _ = ready.send(Ok(()));
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
/// a second. Reports on `ready` once the SUBSCRIBE got its receipt (or why
/// it never did).
fn consume(addr: SocketAddr, ledger: &Mutex<Ledger>, stop: &AtomicBool, drain: bool, ready: Ready) {
    let mut ready = Some(ready);
    let mut report = |r: Result<(), String>| {
        if let Some(ready) = ready.take() {
            let _ = ready.send(r.map_err(|e| format!("consumer: {e}")));
        }
    };
    let mut c = match Conn::open(addr) {
        Ok(c) => c,
        Err(e) => return report(Err(e.to_string())),
    };
    let sub = Frame::new(Command::Subscribe)
        .header("id", "s")
        .header("destination", "/queue/crash")
        .header("ack", "client-individual")
        .header("activemq.prefetchSize", "16")
        .header("receipt", "subscribed");
    if let Err(e) = c.send(&sub) {
        return report(Err(e.to_string()));
    }
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let f = match c.recv(Duration::from_millis(100)) {
            Ok(Some(f)) => f,
            Ok(None) => {
                if drain && idle_since.elapsed() > Duration::from_secs(1) {
                    return report(Err("no RECEIPT for SUBSCRIBE".into()));
                }
                continue;
            }
            Err(e) => return report(Err(format!("before the RECEIPT for SUBSCRIBE: {e}"))),
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
            Command::Receipt => match f.get("receipt-id") {
                Some("subscribed") => report(Ok(())),
                Some(r) => {
                    if let Some(body) = r.strip_prefix("a:") {
                        ledger.lock().unwrap().acked.insert(body.to_string());
                    }
                }
                None => {}
            },
            _ => {
                ledger
                    .lock()
                    .unwrap()
                    .violations
                    .push(format!("consumer got {f:?}"));
                return report(Err(format!("got {f:?}")));
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
    crash_run(None, |round| round % 3 != 1);
}

/// The same kills with a queue window of 16: the queue's messages are
/// mostly in the store's backlog, read back by its cursor, so kills hit it
/// while it is being filled (two rounds in three without the consumer)
/// and while it is being drained through the window.
#[test]
fn kill9_while_a_deep_backlog_fills_and_drains_loses_no_receipted_message() {
    crash_run(Some("[destinations]\nqueue_window = 16\n"), |round| {
        round % 3 == 2
    });
}

/// Kills the broker `FERROMQ_CRASH_LOOPS` times under `config`; the
/// consumer runs in the rounds `consume_in` says, the producers in all.
fn crash_run(config: Option<&str>, consume_in: fn(usize) -> bool) {
    let loops = crash_loops();
    let seed = crash_seed();
    let _seed_on_failure = SeedOnFailure(seed);
    eprintln!("crash test: {loops} kills, FERROMQ_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut next_k = [0u64; PRODUCERS];
    let mut broker = Broker::start_with(config, &[]);
    for round in 0..loops {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = broker.stomp;
        let (ready_tx, ready) = mpsc::channel();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let (ledger, stop, k) = (ledger.clone(), stop.clone(), next_k[id]);
                let ready = ready_tx.clone();
                std::thread::spawn(move || produce(addr, id, k, &ledger, &stop, ready))
            })
            .collect();
        // By default the consumer skips every third round, so that kills
        // also hit a queue that is filling up, and runs in the others (the
        // first included), so that most kills hit one being drained.
        let consume_now = consume_in(round);
        let consumer = consume_now.then(|| {
            let (ledger, stop) = (ledger.clone(), stop.clone());
            let ready = ready_tx.clone();
            std::thread::spawn(move || consume(addr, &ledger, &stop, false, ready))
        });
        drop(ready_tx);
        let clients = PRODUCERS + usize::from(consume_now);
        await_ready(&ready, clients, &format!("round {round}"));
        let run_ms = 50 + rng.next() % 600;
        std::thread::sleep(Duration::from_millis(run_ms));
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        for (id, p) in producers.into_iter().enumerate() {
            next_k[id] = p.join().unwrap();
        }
        if let Some(consumer) = consumer {
            consumer.join().unwrap();
        }
        let l = ledger.lock().unwrap();
        eprintln!(
            "round {round}: killed after {run_ms} ms (consumer {}); receipted {} acked {} \
             marked redelivered {} so far",
            if consume_now { "on" } else { "off" },
            l.receipted.len(),
            l.acked.len(),
            l.marked_redelivered
        );
        drop(l);
        broker = broker.restart();
    }
    // ACKs receipted before a kill are the ones "never delivered again"
    // is about; the drain's own come after the last kill.
    let acked_before_a_kill = ledger.lock().unwrap().acked.len();
    // Drain what is left, then check the whole history.
    let stop = AtomicBool::new(false);
    let (ready_tx, ready) = mpsc::channel();
    consume(broker.stomp, &ledger, &stop, true, ready_tx);
    await_ready(&ready, 1, "drain");
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
    // The properties above hold trivially unless something was receipted,
    // acknowledged with a receipt before a kill, and delivered again after
    // one.
    assert!(
        !l.receipted.is_empty(),
        "seed {seed}: no message was ever receipted"
    );
    assert!(
        acked_before_a_kill > 0,
        "seed {seed}: no ACK got a receipt before a kill"
    );
    assert!(
        l.marked_redelivered > 0,
        "seed {seed}: no delivery after a kill was marked redelivered \
         ({} bodies delivered, {} of them more than once)",
        l.deliveries.len(),
        l.deliveries.values().filter(|n| **n > 1).count()
    );
    for (p, ks) in &l.first_order {
        assert!(
            ks.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: producer {p}'s messages were first delivered out of order: {ks:?}"
        );
    }
    eprintln!(
        "crash test: {} receipted, {} acked before a kill, {} delivered, {} deliveries marked \
         redelivered, {} bodies delivered more than once",
        l.receipted.len(),
        acked_before_a_kill,
        l.deliveries.len(),
        l.marked_redelivered,
        l.deliveries.values().filter(|n| **n > 1).count()
    );
}

/// Commits transactions of `TX_SIZE` persistent messages `t{n}-{i}` until
/// the connection fails or `stop` is set; returns the next `n`, recording
/// the transactions whose COMMIT got a receipt. Reports on `ready` once
/// connected. Anything but a RECEIPT answering a COMMIT (an ERROR, or no
/// answer while the connection stays up) goes to `failures`: only the kill
/// may end a transaction's round trip.
fn produce_transactions(
    addr: SocketAddr,
    mut n: u64,
    committed: &Mutex<HashSet<u64>>,
    failures: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    ready: Ready,
) -> u64 {
    const TX_SIZE: usize = 5;
    let mut c = match Conn::open(addr) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("transaction producer from {n}: {e}")));
            return n;
        }
    };
    let _ = ready.send(Ok(()));
    while !stop.load(Ordering::Relaxed) {
        let tx = format!("tx{n}");
        let frames = transaction(n, TX_SIZE, "/queue/crash-tx");
        n += 1;
        for f in &frames {
            if c.send(f).is_err() {
                return n;
            }
        }
        match c.recv(WAIT) {
            Ok(Some(f)) if f.command == Command::Receipt && f.get("receipt-id") == Some(&tx) => {
                committed.lock().unwrap().insert(n - 1);
            }
            Ok(Some(f)) => {
                failures
                    .lock()
                    .unwrap()
                    .push(format!("COMMIT of {tx} answered with {f:?}"));
                return n;
            }
            Ok(None) => {
                failures
                    .lock()
                    .unwrap()
                    .push(format!("COMMIT of {tx} unanswered for {WAIT:?}"));
                return n;
            }
            // The broker was killed under it.
            Err(_) => return n,
        }
    }
    n
}

#[test]
fn kill9_never_splits_a_transaction() {
    let loops = crash_loops();
    let seed = crash_seed();
    let _seed_on_failure = SeedOnFailure(seed);
    eprintln!("transaction crash test: {loops} kills, FERROMQ_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let committed = Arc::new(Mutex::new(HashSet::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    // Producer p numbers its transactions from p * 10^9 up.
    let mut next = [0u64, 1_000_000_000];
    let mut broker = Broker::start();
    for round in 0..loops {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = broker.stomp;
        let (ready_tx, ready) = mpsc::channel();
        let producers: Vec<_> = next
            .iter()
            .map(|&n| {
                let (committed, failures, stop) =
                    (committed.clone(), failures.clone(), stop.clone());
                let ready = ready_tx.clone();
                std::thread::spawn(move || {
                    produce_transactions(addr, n, &committed, &failures, &stop, ready)
                })
            })
            .collect();
        drop(ready_tx);
        await_ready(&ready, next.len(), &format!("round {round}"));
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 400));
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        for (p, h) in producers.into_iter().enumerate() {
            next[p] = h.join().unwrap();
        }
        broker = broker.restart();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "seed {seed}: COMMITs failed while the broker was up: {failures:#?}"
    );
    let mut c = Conn::open(broker.stomp).unwrap();
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/crash-tx")
            .header("ack", "auto"),
    )
    .unwrap();
    let committed = committed.lock().unwrap();
    let mut per_tx: HashMap<u64, Vec<String>> = HashMap::new();
    // Until every committed transaction is back whole, a quiet second is
    // not the end: on a loaded machine the restarted broker can pause
    // longer than that between pages of its stored backlog. Then one quiet
    // second ends the drain (recovered transactions without a receipt).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let owed = committed
            .iter()
            .any(|n| per_tx.get(n).is_none_or(|b| b.len() < 5));
        let quiet = if owed && Instant::now() < deadline {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        };
        let Some(f) = c.recv(quiet).unwrap() else {
            break;
        };
        assert_eq!(f.command, Command::Message, "seed {seed}: {f:?}");
        let body = String::from_utf8_lossy(&f.body).into_owned();
        let n: u64 = body[1..body.find('-').unwrap()].parse().unwrap();
        per_tx.entry(n).or_default().push(body);
    }
    assert!(
        !committed.is_empty(),
        "seed {seed}: no transaction was ever committed"
    );
    for n in committed.iter() {
        assert!(
            per_tx.contains_key(n),
            "seed {seed}: committed transaction {n} lost"
        );
    }
    for (n, bodies) in &per_tx {
        let want: Vec<String> = (0..5).map(|i| format!("t{n}-{i}")).collect();
        assert_eq!(
            bodies, &want,
            "seed {seed}: transaction {n} came back split or out of order"
        );
    }
    eprintln!(
        "transactions: {} committed with receipt, {} recovered whole",
        committed.len(),
        per_tx.len()
    );
}
