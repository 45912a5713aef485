//! A deep persistent queue in a three-node cluster (issues 16 and 19): the
//! leader holds a window of `destinations.queue_window` messages in memory
//! and leaves the rest to the replicated store, and a node that becomes
//! leader restores lane counts, not messages (`store::replicated`).
//!
//! - Three producers fill one queue with many times the window (16 here,
//!   so CI stays fast). The leader's queue then counts every message
//!   (`ferromq_destination_messages`) but holds only a few windows of them
//!   (`ferromq_destination_bytes`), and its store's resident body bytes
//!   (`ferromq_store_resident_bytes`) stay within the same bound, above 0.
//! - A consumer drains a third, then stops acknowledging and holds a
//!   prefetch of messages; the leader is killed (SIGKILL). The new leader,
//!   once it serves, again holds only a window of the rest, and the
//!   consumer drains it there.
//! - The drain is complete; each producer's messages come in order
//!   (deliveries not marked `redelivered`, across both leaders); a message
//!   comes again only marked `redelivered`, never after its ACK was
//!   receipted; every message held unacknowledged at the kill comes back
//!   marked.
//!
//! `FERROMQ_CLUSTER_DEEP_COUNT` sets the number of messages (default 3000,
//! about 190 windows).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::cluster::{
    cluster, connect_leader, knob, one_cluster_at_a_time, start_all, wait_for_leader,
    wait_for_leader_except, Node, BOUND,
};
use ferromq_tests::conn::{body_of, Conn};
use ferromq_tests::{http_get, metric};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const WINDOW: usize = 16;
const PRODUCERS: usize = 3;
const BODY: usize = 1024;
const PREFETCH: usize = 20;
const QUEUE: &str = "/queue/cluster-deep";
/// Messages a queue may hold in memory: at most four windows
/// (`destination::backlog::GROWTH`) waiting plus the consumer's
/// unacknowledged prefetch.
const HELD: usize = 4 * WINDOW + PREFETCH;
/// The bound on the queue's bytes: 256 per held message (the router's
/// allowance for headers and bookkeeping; a stored body counts in the
/// store's resident bytes instead). All 3000 messages held would be 768 KB.
const HELD_BYTES: f64 = (HELD * 256) as f64;
/// The bound on the store's resident body bytes: the held messages' bodies.
const RESIDENT_BYTES: f64 = (HELD * BODY) as f64;

/// Producer `p`'s message `i`: `p{p}-{i}-` padded to [`BODY`] bytes.
fn body(p: usize, i: usize) -> String {
    let head = format!("p{p}-{i}-");
    format!("{head}{}", "x".repeat(BODY - head.len()))
}

/// The producer and number of a body made by [`body`].
fn parse(body: &str) -> (usize, usize) {
    let mut parts = body.trim_start_matches('p').split('-');
    let p = parts.next().and_then(|v| v.parse().ok());
    let i = parts.next().and_then(|v| v.parse().ok());
    p.zip(i)
        .unwrap_or_else(|| panic!("not a test body: {body:.40}"))
}

/// Sends `n` persistent messages, at most 64 receipts outstanding, and
/// waits for every receipt.
fn produce(mut c: Conn, p: usize, n: usize) {
    let receipt = |c: &mut Conn| {
        let f = c
            .recv(Duration::from_secs(30))
            .unwrap()
            .expect("a receipt within 30 s");
        assert_eq!(f.command, Command::Receipt, "{f:?}");
    };
    let mut outstanding = 0;
    for i in 0..n {
        let send = Frame::new(Command::Send)
            .header("destination", QUEUE)
            .header("persistent", "true")
            .header("receipt", &format!("p{p}-{i}"))
            .body(body(p, i));
        c.send(&send).unwrap();
        outstanding += 1;
        if outstanding >= 64 {
            receipt(&mut c);
            outstanding -= 1;
        }
    }
    for _ in 0..outstanding {
        receipt(&mut c);
    }
}

/// The node's `/metrics` samples for the queue: (messages, bytes held),
/// and its store's resident body bytes.
fn queue_gauges(node: &Node) -> (f64, f64, f64) {
    let (status, text) = http_get(node.admin, "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let series = |name: &str| format!("{name}{{destination=\"{QUEUE}\",kind=\"queue\"}}");
    let get = |series: &str| {
        metric(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    };
    (
        get(&series("ferromq_destination_messages")),
        get(&series("ferromq_destination_bytes")),
        get("ferromq_store_resident_bytes"),
    )
}

/// What the consumer saw, over both leaders.
#[derive(Default)]
struct Drain {
    /// Deliveries per message (`p{p}-{i}`).
    deliveries: HashMap<(usize, usize), u32>,
    /// Messages whose ACK got a RECEIPT.
    acked: HashSet<(usize, usize)>,
    /// ACKs sent, by receipt id, not yet receipted.
    pending: HashMap<String, (usize, usize)>,
    /// Messages received and deliberately not acknowledged.
    held: Vec<(usize, usize)>,
    /// Per producer, the last message number delivered without
    /// `redelivered`.
    last: HashMap<usize, usize>,
    /// Deliveries marked `redelivered`.
    redelivered: u64,
    /// Deliveries on the second leader.
    after_kill: u64,
    acks_sent: u64,
    violations: Vec<String>,
}

impl Drain {
    /// Subscribes on `c` and takes frames until `done` says so; ACKs each
    /// message (with a receipt) unless `ack` says no.
    fn session(
        &mut self,
        c: &mut Conn,
        second: bool,
        ack: impl Fn(&Drain) -> bool,
        done: impl Fn(&Drain) -> bool,
    ) {
        c.send(
            &Frame::new(Command::Subscribe)
                .header("id", "s")
                .header("destination", QUEUE)
                .header("ack", "client-individual")
                .header("activemq.prefetchSize", &PREFETCH.to_string()),
        )
        .unwrap();
        let deadline = Instant::now() + BOUND * 4;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "the drain stalled: {} of the messages delivered, {} acked, {} held",
                self.deliveries.len(),
                self.acked.len(),
                self.held.len()
            );
            let Some(f) = c.recv(Duration::from_millis(200)).unwrap() else {
                continue;
            };
            match f.command {
                Command::Message => self.delivered(c, &f, second, ack(self)),
                Command::Receipt => {
                    let id = f.get("receipt-id").unwrap_or_default().to_string();
                    if let Some(key) = self.pending.remove(&id) {
                        self.acked.insert(key);
                    }
                }
                _ => panic!("unexpected frame: {f:?}"),
            }
        }
    }

    fn delivered(&mut self, c: &mut Conn, f: &Frame, second: bool, ack: bool) {
        let key = parse(&body_of(f));
        let redelivered = f.get("redelivered") == Some("true");
        if self.acked.contains(&key) {
            self.violations
                .push(format!("{key:?} delivered after its ACK was receipted"));
        }
        let count = self.deliveries.entry(key).or_default();
        *count += 1;
        if *count > 1 && !redelivered {
            self.violations
                .push(format!("{key:?} delivered again without redelivered"));
        }
        if redelivered {
            self.redelivered += 1;
        } else {
            let (p, i) = key;
            if self.last.get(&p).is_some_and(|&last| i <= last) {
                self.violations.push(format!(
                    "producer {p}: {i} delivered after {}",
                    self.last[&p]
                ));
            }
            self.last.insert(p, i);
        }
        if second {
            self.after_kill += 1;
        }
        if !ack {
            self.held.push(key);
            return;
        }
        self.acks_sent += 1;
        let id = format!("a{}", self.acks_sent);
        let frame = Frame::new(Command::Ack)
            .header("id", f.get("ack").expect("an ack header"))
            .header("receipt", &id);
        c.send(&frame).unwrap();
        self.pending.insert(id, key);
    }
}

#[test]
fn a_deep_queue_stays_in_the_store_and_drains_complete_across_a_leader_kill() {
    let _one = one_cluster_at_a_time();
    let per_producer = knob("FERROMQ_CLUSTER_DEEP_COUNT", 3000) / PRODUCERS;
    let total = per_producer * PRODUCERS;
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster(root.path());
    for node in &nodes {
        node.configure("destinations", &format!("queue_window = {WINDOW}"));
    }
    start_all(&mut nodes);
    let leader = wait_for_leader(&nodes, BOUND);
    let rss = |node: &Node| node.process.as_ref().map_or(0, |b| b.rss_kib());
    let rss_before = rss(&nodes[leader]);
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let c = connect_leader(&nodes[leader], BOUND);
            std::thread::spawn(move || produce(c, p, per_producer))
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let rss_filled = rss(&nodes[leader]);
    let (waiting, held, resident) = queue_gauges(&nodes[leader]);
    eprintln!(
        "filled {total} messages in {:?}; leader RSS {rss_before} KiB -> {rss_filled} KiB; \
         queue holds {held} bytes, store resident {resident} bytes",
        started.elapsed()
    );
    assert_eq!(waiting, total as f64, "the queue counts every message");
    assert!(
        held <= HELD_BYTES,
        "the leader holds {held} bytes of the queue (bound {HELD_BYTES}): not a window"
    );
    assert!(
        resident > 0.0 && resident <= RESIDENT_BYTES,
        "the store's resident bytes {resident} (bound {RESIDENT_BYTES})"
    );

    // A third is drained and acknowledged, then the consumer holds a few
    // messages unacknowledged, and the leader dies under it.
    let mut drain = Drain::default();
    let draining = Instant::now();
    let mut c = connect_leader(&nodes[leader], BOUND);
    drain.session(
        &mut c,
        false,
        |d| d.acked.len() + d.pending.len() < total / 3,
        |d| d.acked.len() >= total / 3 && d.held.len() >= PREFETCH / 2,
    );
    let held_at_kill = drain.held.clone();
    eprintln!("first third drained in {:?}", draining.elapsed());
    nodes[leader].kill9();
    drop(c);
    let new = wait_for_leader_except(&nodes, leader, BOUND);
    // The new leader restored counts, not messages: it holds a window.
    let (waiting, held, _) = queue_gauges(&nodes[new]);
    let least_left = total - drain.acked.len() - drain.pending.len();
    eprintln!(
        "node {} killed after {} acks ({} unreceipted, {} held); node {} leads with {waiting} \
         waiting, {held} bytes held",
        nodes[leader].id,
        drain.acked.len(),
        drain.pending.len(),
        held_at_kill.len(),
        nodes[new].id
    );
    assert!(
        waiting >= least_left as f64,
        "{waiting} waiting on the new leader, at least {least_left} expected"
    );
    assert!(
        held <= HELD_BYTES,
        "the new leader holds {held} bytes of the queue (bound {HELD_BYTES}): not a window"
    );
    drain.pending.clear(); // their outcome died with the old leader
    let mut c = connect_leader(&nodes[new], BOUND);
    drain.session(
        &mut c,
        true,
        |_| true,
        |d| d.deliveries.len() == total && d.pending.is_empty(),
    );
    // Nothing more comes.
    let extra = c.recv(Duration::from_millis(500)).unwrap();
    assert!(extra.is_none(), "more after the drain: {extra:?}");
    eprintln!(
        "drained {total} messages in {:?}, {} deliveries marked redelivered, {} on the new leader",
        draining.elapsed(),
        drain.redelivered,
        drain.after_kill
    );
    assert_eq!(drain.violations, Vec::<String>::new());
    assert_eq!(drain.deliveries.len(), total, "incomplete drain");
    assert!(drain.after_kill > 0, "nothing drained on the new leader");
    for key in &held_at_kill {
        assert!(
            drain.deliveries[key] >= 2,
            "{key:?}, held unacknowledged at the kill, did not come back"
        );
    }
    assert!(drain.redelivered >= held_at_kill.len() as u64);
}
