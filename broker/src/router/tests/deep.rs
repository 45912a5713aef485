//! Router unit tests of the store cursor (a queue's window) over the real
//! sled store, with the router's errand task running the reads: durable
//! subscriptions paging while their subscriber is away, one delivery order
//! for persistent and non-persistent messages behind a stored backlog, and
//! purges and deletes of a backlog run off the caller in bounded pages.
//!
//! [`Deep`] is the bench: a router with a small window over a store in a
//! temporary directory that a test can close and reopen (a clean restart;
//! the `kill -9` cases are end-to-end, in `tests/tests/durability_deep_queue.rs`).

use crate::router::{
    AckMode, Address, Consumer, Delivery, DeliverySink, Destination, Message, Router, RouterConfig,
    SubscribeOptions,
};
use crate::store::log_writer::WriterSettings;
use crate::store::sled_store::{SledStore, StoreSettings};
use crate::store::{Commit, Store};
use bytes::Bytes;
use ferromq_config::StoreSync;
use ferromq_protocol::Headers;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waiting messages a queue holds in memory on the bench.
pub(super) const WINDOW: usize = 4;
/// How long a test waits for deliveries read back from the store.
const PATIENCE: Duration = Duration::from_secs(30);

/// A router over a sled store in a temporary directory, its errand task
/// running on the bench's own runtime.
pub(super) struct Deep {
    pub router: Arc<Router>,
    store: Arc<SledStore>,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

/// What a consumer was given, in order: `(seq, body)`.
#[derive(Default)]
pub(super) struct Got(Mutex<Vec<(u64, String)>>);

impl DeliverySink for Got {
    fn deliver(&self, d: Delivery) {
        let body = d
            .message
            .body
            .get()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("unreadable body: {e}"));
        self.0.lock().unwrap().push((d.message.seq, body));
    }
}

fn settings(path: &std::path::Path) -> StoreSettings {
    StoreSettings {
        path: path.to_path_buf(),
        writer: WriterSettings {
            sync: StoreSync::Never,
            batch_delay: Duration::from_millis(1),
            disk_limit: 1 << 30,
            ack_gather: crate::store::log_writer::ACK_GATHER,
            checkpoint_bytes: u64::MAX,
        },
        cache_bytes: 8 << 20,
        body_budget: 1 << 30,
        compact_min_bytes: 1 << 40,
        bodies: crate::store::body_segments::BodySettings::new(path.join("bodies"), 64 << 10),
    }
}

impl Deep {
    /// A fresh bench.
    pub fn new() -> Deep {
        let dir = tempfile::tempdir().unwrap();
        Deep::open(dir)
    }

    /// A fresh bench whose queues have `memory_limit` bytes.
    pub fn with_memory_limit(memory_limit: usize) -> Deep {
        let dir = tempfile::tempdir().unwrap();
        Deep::open_with(dir, memory_limit)
    }

    fn open(dir: tempfile::TempDir) -> Deep {
        Deep::open_with(dir, RouterConfig::default().memory_limit)
    }

    fn open_with(dir: tempfile::TempDir, memory_limit: usize) -> Deep {
        let (store, recovered) = SledStore::open(settings(dir.path())).unwrap();
        let store = Arc::new(store);
        let config = RouterConfig {
            queue_window: WINDOW,
            memory_limit,
            ..RouterConfig::default()
        };
        let router = Arc::new(Router::new(config, store.clone()));
        router.restore(recovered).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.spawn(router.clone().run_errands());
        Deep {
            router,
            store,
            rt,
            dir,
        }
    }

    /// Closes the store (everything appended is written) and opens it again
    /// under a new router.
    pub fn restart(self) -> Deep {
        let Deep {
            router,
            store,
            rt,
            dir,
        } = self;
        store.close();
        drop(router);
        rt.shutdown_timeout(Duration::from_secs(5));
        drop(store);
        Deep::open(dir)
    }

    /// The destination `name`, created when needed.
    pub fn destination(&self, name: &str) -> Arc<Destination> {
        self.router
            .destination(&Address::parse(name, 1).unwrap(), 1)
            .unwrap()
    }

    /// Sends a message with body `body` to `to`; waits for its commit.
    pub fn send(&self, to: &Arc<Destination>, body: &str, persistent: bool) {
        self.send_prio(to, body, persistent, crate::router::DEFAULT_PRIORITY);
    }

    /// [`Deep::send`] with a priority.
    pub fn send_prio(&self, to: &Arc<Destination>, body: &str, persistent: bool, priority: u8) {
        let message = Message {
            seq: self.router.next_seq(),
            destination: to.address.name.clone(),
            persistent,
            priority,
            expires: 0,
            timestamp: 1,
            headers: Headers::new(),
            body: Bytes::from(body.to_owned()).into(),
        };
        let commit = self.router.send(to, message).unwrap();
        self.wait(commit);
    }

    /// Waits for a commit.
    pub fn wait(&self, commit: Commit) {
        self.rt.block_on(commit.wait()).unwrap();
    }

    /// A client-individual subscription with a prefetch of 10.
    pub fn subscribe(&self, queue: &Arc<Destination>) -> (Arc<Consumer>, Arc<Got>) {
        let got = Arc::new(Got::default());
        let options = SubscribeOptions {
            prefetch: Some(10),
            ..SubscribeOptions::default()
        };
        let consumer = self.router.subscribe(
            queue.clone(),
            1,
            "s".into(),
            AckMode::ClientIndividual,
            options,
            got.clone(),
        );
        (consumer, got)
    }

    /// Receives and acknowledges `n` messages; returns their bodies in
    /// delivery order. Checks after each batch that the queue holds no more
    /// than its bounded number of windows in memory.
    pub fn drain(
        &self,
        queue: &Destination,
        consumer: &Arc<Consumer>,
        got: &Got,
        n: usize,
    ) -> Vec<String> {
        let started = Instant::now();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            // Only what is asked for: the rest stays unacknowledged, and
            // goes back to the queue when the consumer leaves.
            let batch: Vec<(u64, String)> = {
                let mut all = got.0.lock().unwrap();
                let k = all.len().min(n - out.len());
                all.drain(..k).collect()
            };
            if batch.is_empty() {
                assert!(
                    started.elapsed() < PATIENCE,
                    "only {} of {n} messages delivered: {:?}",
                    out.len(),
                    out.last()
                );
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            for (seq, body) in batch {
                drop(self.router.ack(consumer, seq).unwrap());
                out.push(body);
            }
            let held = queue.waiting_len();
            assert!(
                held <= WINDOW * crate::router::destination::backlog::GROWTH,
                "{held} messages held in memory"
            );
        }
        out
    }

    /// Bodies `m{from}`..`m{to}`.
    pub fn bodies(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("m{i}")).collect()
    }

    /// The data directory (kept until the bench is dropped).
    #[allow(dead_code)]
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// An offline durable subscriber: a hundred windows are published while it
/// is away, the queue holds one window in memory and the rest in the store,
/// and the subscriber gets everything in order, before and after a restart.
#[test]
fn an_offline_durable_subscription_pages_and_gets_everything_in_order_across_a_restart() {
    let n = 100 * WINDOW;
    let bench = Deep::new();
    let topic = bench.destination("/topic/t");
    let address = Address::parse("/topic/t", 1).unwrap();
    let queue = bench
        .router
        .durable_subscribe("app", "s", &address, None)
        .unwrap();
    for i in 0..n {
        bench.send(&topic, &format!("m{i}"), true);
    }
    assert!(
        queue.waiting_len() <= WINDOW,
        "{} copies held in memory",
        queue.waiting_len()
    );
    assert_eq!(queue.depth(), n, "every copy is counted, stored or held");
    let (consumer, got) = bench.subscribe(&queue);
    let first = bench.drain(&queue, &consumer, &got, n / 3);
    assert_eq!(first, Deep::bodies(0..n / 3));
    bench.router.unsubscribe(&consumer);
    // Messages published after the subscriber left queue behind the rest.
    for i in n..n + 2 * WINDOW {
        bench.send(&topic, &format!("m{i}"), true);
    }
    let bench = bench.restart();
    let queue = bench
        .router
        .durable_subscribe("app", "s", &address, None)
        .unwrap();
    let left = n + 2 * WINDOW - n / 3;
    assert_eq!(queue.depth(), left, "counted from the store at restart");
    let (consumer, got) = bench.subscribe(&queue);
    let rest = bench.drain(&queue, &consumer, &got, left);
    assert_eq!(rest, Deep::bodies(n / 3..n + 2 * WINDOW));
}

/// Unsubscribing a durable subscription drops what it left in the store:
/// nothing of it comes back at the next start.
#[test]
fn unsubscribing_a_durable_subscription_drops_its_stored_backlog() {
    let n = 20 * WINDOW;
    let bench = Deep::new();
    let topic = bench.destination("/topic/t");
    let address = Address::parse("/topic/t", 1).unwrap();
    let queue = bench
        .router
        .durable_subscribe("app", "gone", &address, None)
        .unwrap();
    for i in 0..n {
        bench.send(&topic, &format!("m{i}"), true);
    }
    assert_eq!(queue.depth(), n);
    assert!(bench.router.durable_unsubscribe("app", "gone"));
    // The acks of the stored part are appended a page at a time, off the
    // caller: wait for them before the restart.
    assert_eq!(queue.depth(), 0);
    wait_for_purge(&queue);
    let bench = bench.restart();
    let name = queue.name().to_owned();
    assert!(
        bench.router.lookup(&name).is_none_or(|q| q.depth() == 0),
        "the unsubscribed backlog came back"
    );
}

/// Waits until `queue`'s purge or delete has acknowledged its stored part.
fn wait_for_purge(queue: &Destination) {
    let deadline = Instant::now() + PATIENCE;
    while queue.purging_backlog() {
        assert!(Instant::now() < deadline, "the purge never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A purge answers at once with the count, stored part included, and
/// acknowledges the stored part in the background, a page at a time; what
/// is sent meanwhile is not purged and comes after, and nothing purged
/// comes back, neither to a consumer nor after a restart.
#[test]
fn a_purge_counts_the_stored_backlog_at_once_and_drops_it_in_the_background() {
    let n = 50 * WINDOW;
    let bench = Deep::new();
    let queue = bench.destination("/queue/p");
    for i in 0..n {
        bench.send(&queue, &format!("m{i}"), true);
    }
    assert_eq!(bench.router.purge(&queue), n);
    assert_eq!(queue.depth(), 0);
    for i in n..n + 3 * WINDOW {
        bench.send(&queue, &format!("m{i}"), true);
    }
    wait_for_purge(&queue);
    let (consumer, got) = bench.subscribe(&queue);
    let after = bench.drain(&queue, &consumer, &got, 2 * WINDOW);
    assert_eq!(after, Deep::bodies(n..n + 2 * WINDOW));
    bench.router.unsubscribe(&consumer);
    let bench = bench.restart();
    let queue = bench.destination("/queue/p");
    assert_eq!(queue.depth(), WINDOW, "purged messages came back");
    let (consumer, got) = bench.subscribe(&queue);
    let rest = bench.drain(&queue, &consumer, &got, WINDOW);
    assert_eq!(rest, Deep::bodies(n + 2 * WINDOW..n + 3 * WINDOW));
}

/// One producer mixing persistent and non-persistent messages into a queue
/// whose window is full: the non-persistent ones wait behind the stored
/// persistent ones sent before them, so the consumer gets the send order
/// exactly, in each priority lane; and the parked ones are counted as
/// waiting.
#[test]
fn persistent_and_non_persistent_messages_keep_one_order_behind_a_stored_backlog() {
    let n = 30 * WINDOW;
    let bench = Deep::new();
    let queue = bench.destination("/queue/mixed");
    // Every third message is non-persistent; runs of both kinds.
    let persistent = |i: usize| i % 3 != 0 && i % 7 != 0;
    for i in 0..n {
        bench.send(&queue, &format!("m{i}"), persistent(i));
    }
    assert_eq!(queue.depth(), n, "parked messages are counted");
    assert!(queue.waiting_len() <= WINDOW);
    let (consumer, got) = bench.subscribe(&queue);
    let all = bench.drain(&queue, &consumer, &got, n);
    assert_eq!(all, Deep::bodies(0..n), "send order broken");
    // Two priority lanes, sent while nobody consumes: each lane keeps its
    // send order, whichever the persistence (priority decides between
    // lanes, within what waits).
    bench.router.unsubscribe(&consumer);
    for i in n..2 * n {
        let priority = if i % 2 == 0 { 9 } else { 4 };
        bench.send_prio(&queue, &format!("m{i}"), persistent(i), priority);
    }
    let (consumer, got) = bench.subscribe(&queue);
    let all = bench.drain(&queue, &consumer, &got, n);
    let lane = |odd: usize| -> Vec<String> {
        (n..2 * n)
            .filter(|i| i % 2 == odd)
            .map(|i| format!("m{i}"))
            .collect()
    };
    let in_lane = |odd: usize| -> Vec<String> {
        let want = lane(odd);
        all.iter().filter(|b| want.contains(b)).cloned().collect()
    };
    assert_eq!(in_lane(0), lane(0), "priority 9 lane out of send order");
    assert_eq!(in_lane(1), lane(1), "priority 4 lane out of send order");
    assert_eq!(all[..WINDOW], lane(0)[..WINDOW], "priority 9 goes first");
    bench.router.unsubscribe(&consumer);
}

/// A queue deleted with a deep backlog and re-created at once by a send:
/// the new queue never delivers the deleted messages, although they are
/// still being acknowledged when it leaves its own to the store (its lanes
/// wait for the drop, then read on from past it).
#[test]
fn a_queue_re_created_while_its_deleted_backlog_is_dropped_gets_none_of_it() {
    let n = 50 * WINDOW;
    let bench = Deep::new();
    let queue = bench.destination("/queue/again");
    for i in 0..n {
        bench.send(&queue, &format!("old{i}"), true);
    }
    assert_eq!(bench.router.delete(&queue), Ok(n));
    let queue = bench.destination("/queue/again");
    for i in 0..3 * WINDOW {
        bench.send(&queue, &format!("m{i}"), true);
    }
    let (consumer, got) = bench.subscribe(&queue);
    let all = bench.drain(&queue, &consumer, &got, 3 * WINDOW);
    assert_eq!(all, Deep::bodies(0..3 * WINDOW));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        got.0.lock().unwrap().is_empty(),
        "a deleted message came back"
    );
    assert_eq!(queue.depth(), 0);
}

/// A durable subscription whose selector changes starts afresh: the new
/// one gets none of the old one's stored backlog.
#[test]
fn a_changed_durable_subscription_gets_none_of_the_old_stored_backlog() {
    let n = 50 * WINDOW;
    let bench = Deep::new();
    let topic = bench.destination("/topic/t");
    let address = Address::parse("/topic/t", 1).unwrap();
    bench
        .router
        .durable_subscribe("app", "s", &address, None)
        .unwrap();
    for i in 0..n {
        bench.send(&topic, &format!("old{i}"), true);
    }
    let selector = Arc::new(crate::selector::Selector::parse("1 = 1").unwrap());
    let queue = bench
        .router
        .durable_subscribe("app", "s", &address, Some(selector))
        .unwrap();
    for i in 0..3 * WINDOW {
        bench.send(&topic, &format!("m{i}"), true);
    }
    let (consumer, got) = bench.subscribe(&queue);
    let all = bench.drain(&queue, &consumer, &got, 3 * WINDOW);
    assert_eq!(all, Deep::bodies(0..3 * WINDOW));
    std::thread::sleep(Duration::from_millis(50));
    assert!(got.0.lock().unwrap().is_empty(), "an old copy came back");
}

/// Parked messages are bounded like any held non-persistent message: their
/// bytes count against the queue's memory limit, so producer flow control
/// holds their producers once it is reached, while the persistent backlog
/// in the store does not count.
#[test]
fn parked_messages_count_against_the_memory_limit() {
    const LIMIT: usize = 64 << 10;
    let bench = Deep::with_memory_limit(LIMIT);
    let queue = bench.destination("/queue/bounded");
    // A persistent backlog of many times the limit's worth of messages:
    // only the window is held, so producers are not held for it.
    let body = "x".repeat(1024);
    for _ in 0..20 * WINDOW {
        bench.send(&queue, &body, true);
    }
    assert!(!queue.is_over_limit(), "held for messages in the store");
    // Non-persistent messages now park behind it, until their bytes reach
    // the limit (each counts its body and 256 bytes of bookkeeping).
    let mut parked = 0;
    while !queue.is_over_limit() {
        bench.send(&queue, &body, false);
        parked += 1;
        assert!(
            parked <= LIMIT / 1024,
            "{parked} parked, never over the limit"
        );
    }
    assert!(
        parked > LIMIT / (1024 + 256) / 2,
        "over the limit after {parked}"
    );
    assert_eq!(queue.depth(), 20 * WINDOW + parked);
}
