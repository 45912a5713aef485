//! Persistent load on a cluster while a test breaks it, and the ledger of
//! what the clients saw, checked against the durability contract (issue
//! 16) with the rigour of the single-node crash test:
//!
//! - every message whose SEND got a RECEIPT is delivered at least once;
//! - a message whose ACK got a RECEIPT is never delivered again;
//! - per-producer order: within one consumer session, the deliveries not
//!   marked `redelivered` of each producer's messages come in the order
//!   they were sent (across sessions no order is promised: a session that
//!   ends leaves its unacked messages to be redelivered elsewhere);
//! - transactions (BEGIN, SENDs, COMMIT with a receipt) all or nothing:
//!   every one whose COMMIT got a receipt comes back whole and in order,
//!   none comes back in part;
//! - no two nodes accept writes in the same term, read two ways: from the
//!   nodes' logs, each `serving clients term=T` line (a node that starts
//!   serving as leader of term T) names one node per term; from the
//!   messages, a message id's sequence number is at least `T << 40` for the
//!   term T of the leader that accepted it (`leadership::seq_floor`), so
//!   every delivered message's term must be a term some node served in, and
//!   one sequence number never names two different messages (two leaders
//!   of one term would both count up from the same floor).
//!
//! A [`Witness`] holds a session on one node through a stop or a cut to
//! read what that node answers afterwards.
//!
//! Clients find the leader themselves: they follow the `leader` header of a
//! `not the leader` refusal, else try the next node; a session that stalls
//! (no frame for [`STALL`] with a receipt owed, as behind a stopped
//! leader) is given up like a broken one. A pending receipt that never came
//! (the connection closed, or an ERROR with its receipt-id) is counted as
//! failed: never a success.

mod ledger;

pub use ledger::{check_terms, serving_terms, Ledger};

use crate::cluster::{one_cluster_at_a_time, start_all, wait_for_leader, Node, BOUND};
use crate::conn::{body_of, transaction, Conn};
use ferromq_protocol::stomp::{Command, Frame};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The queue the producers and consumers use.
pub const QUEUE: &str = "/queue/chaos";
/// The queue of the transactions (drained only at the end).
pub const TX_QUEUE: &str = "/queue/chaos-tx";
/// SENDs a producer keeps outstanding.
const WINDOW: usize = 8;
/// Messages per transaction.
const TX_SIZE: usize = 5;
/// A session owed a frame for this long is given up.
pub const STALL: Duration = Duration::from_secs(3);

/// Where the clients connect: every node's STOMP address (fixed across
/// restarts).
#[derive(Clone)]
struct Targets(Arc<Vec<SocketAddr>>);

impl Targets {
    /// A session on the leader, and the index of its node; `None` once
    /// `stop` is set.
    fn connect(&self, stop: &AtomicBool, ledger: &Mutex<Ledger>) -> Option<(Conn, usize)> {
        let mut next = 0;
        while !stop.load(Ordering::Relaxed) {
            let i = next % self.0.len();
            match Conn::open_or_refusal(self.0[i]) {
                Ok(Ok(conn)) => {
                    ledger.lock().unwrap().sessions += 1;
                    return Some((conn, i));
                }
                Ok(Err(refusal)) => {
                    // Follow the redirect, else try the next node.
                    next = refusal
                        .get("leader")
                        .and_then(|l| self.0.iter().position(|a| a.to_string() == l))
                        .unwrap_or(i + 1);
                }
                Err(_) => next = i + 1,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// What a chaos test holds for its whole length: its turn among the tests
/// that run clusters ([`one_cluster_at_a_time`]) and its nodes' directory.
pub struct Held {
    _turn: std::sync::MutexGuard<'static, ()>,
    _root: tempfile::TempDir,
}

/// How every chaos test starts: waits for its turn, builds the nodes in a
/// fresh directory with `build` (which may hand back more, such as the
/// partition test's proxies), starts them, waits for a leader and starts
/// the load (3 producers, 2 consumers). Keep the [`Held`] until the end.
pub fn loaded_cluster<T>(
    build: impl FnOnce(&Path) -> (Vec<Node>, T),
) -> (Held, Vec<Node>, T, Load) {
    let turn = one_cluster_at_a_time();
    let root = tempfile::tempdir().expect("tempdir");
    let (mut nodes, more) = build(root.path());
    start_all(&mut nodes);
    wait_for_leader(&nodes, BOUND);
    let load = Load::start(&nodes, 3, 2);
    let held = Held {
        _turn: turn,
        _root: root,
    };
    (held, nodes, more, load)
}

/// Producers, consumers and transactions running against a cluster.
pub struct Load {
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    threads: Vec<JoinHandle<()>>,
    next_session: Arc<AtomicU64>,
    targets: Targets,
}

impl Load {
    /// Starts `producers` producers of persistent messages with receipts,
    /// `consumers` consumers acking with receipts, and one transaction
    /// producer, on the leader of `nodes`.
    pub fn start(nodes: &[Node], producers: usize, consumers: usize) -> Load {
        let targets = Targets(Arc::new(nodes.iter().map(|n| n.stomp).collect()));
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ledger: Arc::new(Mutex::new(Ledger::default())),
            threads: Vec::new(),
            next_session: Arc::new(AtomicU64::new(0)),
            targets,
        };
        load.spawn(producers, consumers)
    }

    fn spawn(mut self, producers: usize, consumers: usize) -> Load {
        for p in 0..producers {
            let (t, s, l) = (self.targets.clone(), self.stop.clone(), self.ledger.clone());
            self.threads
                .push(std::thread::spawn(move || produce(&t, p, &s, &l)));
        }
        for _ in 0..consumers {
            let (t, s, l, n) = (
                self.targets.clone(),
                self.stop.clone(),
                self.ledger.clone(),
                self.next_session.clone(),
            );
            self.threads
                .push(std::thread::spawn(move || consume(&t, &s, &l, &n, None)));
        }
        let (t, s, l) = (self.targets.clone(), self.stop.clone(), self.ledger.clone());
        self.threads
            .push(std::thread::spawn(move || transact(&t, &s, &l)));
        self
    }

    /// The ledger so far.
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }

    /// Waits (up to `bound`) until `what` holds of the ledger.
    pub fn wait_until(&self, bound: Duration, what: impl Fn(&Ledger) -> bool) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if what(&self.ledger()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the clients (and waits for them).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }

    /// Stops the clients, then drains both queues from the leader: what is
    /// left of [`QUEUE`] is consumed and acked (into the ledger), [`TX_QUEUE`]
    /// is returned per transaction. Then checks the ledger
    /// ([`Ledger::check`]) and the terms ([`check_terms`]).
    pub fn finish(mut self, nodes: &[Node]) -> Arc<Mutex<Ledger>> {
        self.stop();
        let drain_stop = AtomicBool::new(false);
        consume(
            &self.targets,
            &drain_stop,
            &self.ledger,
            &self.next_session,
            Some(Duration::from_secs(2)),
        );
        let tx = drain_transactions(&self.targets, &self.ledger);
        let ledger = self.ledger.lock().unwrap();
        let terms = check_terms(&ledger, nodes);
        ledger.check(&tx);
        eprintln!(
            "load: {}; {} transactions drained; served terms {terms:?}",
            ledger.summary(),
            tx.len()
        );
        drop(ledger);
        self.ledger.clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends persistent messages `p{id}-{k}` with receipts, [`WINDOW`] at a
/// time, reconnecting after every broken or stalled session, until `stop`.
fn produce(targets: &Targets, id: usize, stop: &AtomicBool, ledger: &Mutex<Ledger>) {
    let mut k = 0u64;
    while let Some((mut c, node)) = targets.connect(stop, ledger) {
        let mut outstanding: HashSet<String> = HashSet::new();
        let mut last_frame = Instant::now();
        let broken = loop {
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            while outstanding.len() < WINDOW {
                let body = format!("p{id}-{k}");
                k += 1;
                let f = Frame::new(Command::Send)
                    .header("destination", QUEUE)
                    .header("persistent", "true")
                    .header("receipt", &body)
                    .body(body.clone());
                if c.send(&f).is_err() {
                    break;
                }
                outstanding.insert(body);
            }
            match c.recv(Duration::from_millis(100)) {
                Ok(Some(f)) => {
                    last_frame = Instant::now();
                    if !answer(f, &mut outstanding, node, ledger, |l, r| {
                        l.receipted.insert(r.to_string());
                    }) {
                        break true;
                    }
                }
                Ok(None) if last_frame.elapsed() > STALL => break true,
                Ok(None) => {}
                Err(_) => break true,
            }
        };
        if broken {
            ledger.lock().unwrap().failed_receipts += outstanding.len() as u64;
        }
        if !broken {
            return;
        }
    }
}

/// Books a frame answering a client's requests: a RECEIPT for one of
/// `outstanding` (`on_receipt` records it), an ERROR (counted; ends the
/// session). Anything else is a violation. Returns whether the session
/// goes on.
fn answer(
    f: Frame,
    outstanding: &mut HashSet<String>,
    node: usize,
    ledger: &Mutex<Ledger>,
    on_receipt: impl FnOnce(&mut Ledger, &str),
) -> bool {
    let mut l = ledger.lock().unwrap();
    match f.command {
        Command::Receipt => {
            let Some(r) = f.get("receipt-id") else {
                l.violations
                    .push(format!("a RECEIPT without receipt-id: {f:?}"));
                return false;
            };
            if !outstanding.remove(r) {
                l.violations
                    .push(format!("a RECEIPT for nothing outstanding: {f:?}"));
                return false;
            }
            *l.receipts_by_node.entry(node).or_default() += 1;
            on_receipt(&mut l, r);
            true
        }
        Command::Error => {
            if let Some(r) = f.get("receipt-id") {
                l.errors_with_receipt_id += 1;
                if outstanding.remove(r) {
                    l.failed_receipts += 1;
                }
            }
            false
        }
        _ => {
            l.violations.push(format!("a producer got {f:?}"));
            false
        }
    }
}

/// Consumes [`QUEUE`] with client-individual acks and receipts until
/// `stop` (reconnecting after a broken or stalled session) or, with
/// `drain`, until nothing arrives for that long.
fn consume(
    targets: &Targets,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
    sessions: &AtomicU64,
    drain: Option<Duration>,
) {
    while let Some((mut c, _)) = targets.connect(stop, ledger) {
        let session = sessions.fetch_add(1, Ordering::Relaxed);
        let sub = Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", QUEUE)
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "16")
            .header("receipt", "subscribed");
        if c.send(&sub).is_err() {
            continue;
        }
        let mut acks_owed = 0usize;
        let mut last_frame = Instant::now();
        let broken = loop {
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            let f = match c.recv(Duration::from_millis(100)) {
                Ok(Some(f)) => f,
                Ok(None) => match drain {
                    Some(idle) if last_frame.elapsed() > idle => break false,
                    _ if acks_owed > 0 && last_frame.elapsed() > STALL => break true,
                    _ => continue,
                },
                Err(_) => break true,
            };
            last_frame = Instant::now();
            match f.command {
                Command::Message => {
                    let body = body_of(&f);
                    ledger.lock().unwrap().delivered(session, &f);
                    let ack = Frame::new(Command::Ack)
                        .header("id", f.get("ack").unwrap_or(""))
                        .header("receipt", &format!("a:{body}"));
                    ledger.lock().unwrap().ack_sent.insert(body);
                    if c.send(&ack).is_err() {
                        break true;
                    }
                    acks_owed += 1;
                }
                Command::Receipt => {
                    if let Some(body) = f.get("receipt-id").and_then(|r| r.strip_prefix("a:")) {
                        acks_owed = acks_owed.saturating_sub(1);
                        ledger.lock().unwrap().acked.insert(body.to_string());
                    }
                }
                Command::Error => {
                    if f.get("receipt-id").is_some() {
                        ledger.lock().unwrap().errors_with_receipt_id += 1;
                    }
                    break true;
                }
                _ => {
                    ledger
                        .lock()
                        .unwrap()
                        .violations
                        .push(format!("a consumer got {f:?}"));
                    break true;
                }
            }
        };
        if !broken {
            return;
        }
        // A drain that breaks tries again on the (new) leader.
    }
}

/// Commits transactions of [`TX_SIZE`] persistent messages `t{n}-{i}` to
/// [`TX_QUEUE`], one at a time, until `stop`.
fn transact(targets: &Targets, stop: &AtomicBool, ledger: &Mutex<Ledger>) {
    let mut n = 0u64;
    while let Some((mut c, node)) = targets.connect(stop, ledger) {
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let tx = format!("tx{n}");
            let frames = transaction(n, TX_SIZE, TX_QUEUE);
            let this = n;
            n += 1;
            if frames.iter().any(|f| c.send(f).is_err()) {
                ledger.lock().unwrap().failed_receipts += 1;
                break;
            }
            let mut outstanding = HashSet::from([tx]);
            let answered = match c.recv(STALL) {
                Ok(Some(f)) => answer(f, &mut outstanding, node, ledger, |l, _| {
                    l.committed_tx.insert(this);
                }),
                Ok(None) | Err(_) => false,
            };
            if !answered {
                ledger.lock().unwrap().failed_receipts += outstanding.len() as u64;
                break;
            }
        }
    }
}

/// Everything on [`TX_QUEUE`], per transaction, from the leader.
fn drain_transactions(targets: &Targets, ledger: &Mutex<Ledger>) -> BTreeMap<u64, Vec<String>> {
    let never = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "could not drain {TX_QUEUE}");
        let Some((mut c, _)) = targets.connect(&never, ledger) else {
            unreachable!("`never` is never set");
        };
        let sub = Frame::new(Command::Subscribe)
            .header("id", "tx")
            .header("destination", TX_QUEUE)
            .header("ack", "auto");
        if c.with_receipt(sub, "tx-sub").is_err() {
            continue;
        }
        let mut per_tx: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let complete = loop {
            match c.recv(Duration::from_secs(2)) {
                Ok(Some(f)) if f.command == Command::Message => {
                    let body = body_of(&f);
                    let n = body
                        .strip_prefix('t')
                        .and_then(|b| b.split_once('-'))
                        .and_then(|(n, _)| n.parse().ok())
                        .unwrap_or_else(|| panic!("not a transaction message: {body}"));
                    per_tx.entry(n).or_default().push(body);
                }
                Ok(Some(f)) => panic!("draining {TX_QUEUE}: {f:?}"),
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        if complete {
            return per_tx;
        }
    }
}

/// A producer session held open on one node through what the test does to
/// that node, to see what the node answers afterwards: the load's clients
/// give a stalled session up, so they never see a late answer.
pub struct Witness {
    conn: Conn,
    outstanding: HashSet<String>,
    tag: usize,
    sent: u64,
}

/// What a [`Witness`] session got.
#[derive(Debug, Default)]
pub struct Answers {
    /// Bodies whose SEND got a RECEIPT.
    pub receipted: Vec<String>,
    /// Receipts answered by an ERROR carrying their receipt-id.
    pub failed_by_error: usize,
    /// Receipts still owed when the connection closed.
    pub failed_by_close: usize,
}

impl Witness {
    /// A session on the node at `addr` (which must serve); its messages
    /// are `w{tag}-{k}`, k from 0.
    pub fn open(addr: SocketAddr, tag: usize) -> std::io::Result<Witness> {
        Ok(Witness {
            conn: Conn::open(addr)?,
            outstanding: HashSet::new(),
            tag,
            sent: 0,
        })
    }

    /// Sends `n` persistent messages `w{tag}-{k}` with receipts to [`QUEUE`],
    /// without waiting (the node may be stopped or cut off).
    pub fn send(&mut self, n: usize) -> std::io::Result<()> {
        for _ in 0..n {
            let body = format!("w{}-{}", self.tag, self.sent);
            self.sent += 1;
            self.conn.send(
                &Frame::new(Command::Send)
                    .header("destination", QUEUE)
                    .header("persistent", "true")
                    .header("receipt", &body)
                    .body(body.clone()),
            )?;
            self.outstanding.insert(body);
        }
        Ok(())
    }

    /// Reads answers until none is owed or the connection ends; panics if
    /// that takes longer than `bound` (a node must not leave a client
    /// waiting forever).
    pub fn answers(mut self, bound: Duration) -> Answers {
        let mut answers = Answers::default();
        let deadline = Instant::now() + bound;
        while !self.outstanding.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} receipts neither sent nor failed within {bound:?}",
                self.outstanding.len()
            );
            match self.conn.recv(Duration::from_millis(200)) {
                Ok(Some(f)) if f.command == Command::Receipt => {
                    let r = f.get("receipt-id").unwrap_or_default().to_string();
                    assert!(self.outstanding.remove(&r), "unexpected {f:?}");
                    answers.receipted.push(r);
                }
                Ok(Some(f)) if f.command == Command::Error => {
                    if let Some(r) = f.get("receipt-id") {
                        if self.outstanding.remove(r) {
                            answers.failed_by_error += 1;
                        }
                    }
                }
                Ok(Some(f)) => panic!("a witness got {f:?}"),
                Ok(None) => {}
                Err(_) => {
                    answers.failed_by_close = self.outstanding.len();
                    break;
                }
            }
        }
        answers
    }
}
