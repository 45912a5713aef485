//! [`LogWriter`]: the one thread that writes the log, with group commit.
//!
//! Every connection appends to one bounded queue; the writer thread takes
//! everything queued, applies it to the [`StateMachine`] (one atomic
//! `sled::Batch`), flushes once, and only then resolves every [`Commit`] of
//! the batch. While a flush runs, new entries pile up and share the next one:
//! with many producers one fsync serves many receipts.
//!
//! With `sync = always` the writer may wait a moment (at most
//! [`WriterSettings::ack_gather`]) before it takes a batch, for what is on
//! its way: a publish reaching its consumer, consumers' acks of messages
//! they already have (an enqueue acked in its own batch is never written),
//! and the producers its last flush answered (see [`gather`]). The queue
//! records what the writer waits for, so an append wakes it (a system call
//! and a context switch) only when that is what changed.
//!
//! It is an OS thread, not a tokio task, because `sled::Db::flush` blocks in
//! fsync. It holds no router lock, so a producer blocked on a full queue
//! (backpressure) always gets going again once the writer drains it.

use super::compact::Online;
use super::state::{Applied, StateMachine};
use super::{Commit, Handoff, LogEntry, LogHold, StoreError};
use ferromq_config::StoreSync;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// Bytes of entries the queue holds before producers wait for the writer.
const MAX_QUEUE_BYTES: usize = 32 << 20;
/// A `batch` group is written early once it holds this much.
const BATCH_BYTES: usize = 4 << 20;
/// With `sync = never`, how often the writer flushes anyway.
const NEVER_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Default of [`WriterSettings::ack_gather`]: about one fsync here, so a
/// receipt that does need the disk waits at most about twice as long.
pub const ACK_GATHER: Duration = Duration::from_micros(200);

/// How the writer makes entries durable.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// `store.sync`.
    pub sync: StoreSync,
    /// `store.batch_delay` (`batch` only).
    pub batch_delay: Duration,
    /// `store.disk_limit`: bytes of stored messages above which new
    /// persistent messages are refused.
    pub disk_limit: u64,
    /// With `sync = always`, how long the writer waits before starting a
    /// batch that holds messages already in consumers' hands, for their
    /// acks (an enqueue acknowledged within its batch is never written), or
    /// holds a publish that has not reached its consumer yet
    /// ([`ACK_GATHER`]; tests make it long to make the wait certain).
    pub ack_gather: Duration,
}

type Waiter = oneshot::Sender<Result<(), StoreError>>;

#[derive(Default)]
struct Queue {
    entries: Vec<LogEntry>,
    waiters: Vec<Waiter>,
    /// Receipts of single published messages, by seq, from append until
    /// the flush of their batch, or until an ack resolves them early.
    by_seq: HashMap<u64, Waiter>,
    /// Deliveries to release once this batch is flushed.
    handoffs: Vec<Handoff>,
    /// Seqs of the messages enqueued in `entries`: a delivery record of one
    /// of them is flushed with the message itself, so it needs no wait.
    enqueued: HashSet<u64>,
    /// Bytes of `entries` (bounded by [`MAX_QUEUE_BYTES`]).
    bytes: usize,
    /// Bytes of the enqueues among them (for the disk limit).
    enqueue_bytes: u64,
    /// Enqueues in `entries` already handed to a consumer and not acked
    /// yet: the writer gives their acks a moment ([`WriterSettings::ack_gather`]).
    in_hand: HashSet<u64>,
    /// Publishes between their append and their dispatch (see
    /// [`LogWriter::append_for_dispatch`]).
    dispatching: usize,
    /// Commits waiting on the entries queued (receipts to come).
    receipts: usize,
    /// Commits the writer expects to be queued before its next batch: the
    /// ones its last flush released (their producers are about to send
    /// again) plus the ones queued by then. See [`gather`].
    expect: usize,
    /// What the writer thread is waiting for, so that appends wake it only
    /// when it needs waking (a condvar notify is a system call each time).
    writer: WriterWait,
    closed: bool,
    /// Open [`LogHold`]s: the writer starts no batch while there are any.
    holds: usize,
    /// Set after a failed write: the store refuses everything from then on
    /// rather than acknowledge on top of a state it could not write.
    broken: Option<StoreError>,
}

/// What the writer thread waits for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum WriterWait {
    /// Nothing: it is writing, and looks at the queue when done.
    #[default]
    Busy,
    /// Entries to write.
    Idle,
    /// `batch`: the group to grow to [`BATCH_BYTES`] (or its deadline).
    Batching,
    /// `always`: publishes to reach their consumers and acks to arrive
    /// (see [`gather`]).
    Gathering,
}

impl Queue {
    /// Whether what just changed is what the writer is waiting for.
    fn wakes_writer(&self) -> bool {
        match self.writer {
            WriterWait::Busy => false,
            WriterWait::Idle => true,
            WriterWait::Batching => self.bytes >= BATCH_BYTES,
            WriterWait::Gathering => {
                self.dispatching == 0 && self.in_hand.is_empty() && self.receipts >= self.expect
            }
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes producers waiting for queue space.
    space: Condvar,
    settings: WriterSettings,
    /// Bytes of live message records, published by the writer.
    live_bytes: AtomicU64,
    /// Bytes of live bodies in memory, published by the writer.
    resident_bytes: AtomicU64,
    /// Live messages whose body is paged out, published by the writer.
    paged_messages: AtomicU64,
    /// Flush (fsync) latency, for the admin endpoint.
    flush_latency: crate::metrics::LatencyHistogram,
    /// Persistent messages written to disk, and those consumed and
    /// acknowledged before their batch was written (never written), so far.
    written: AtomicU64,
    elided: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What [`LogWriter::metrics`] reports.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    /// Bytes of live message records.
    pub live_bytes: u64,
    /// Bytes of live bodies held in memory.
    pub resident_bytes: u64,
    /// Live messages whose body is paged out.
    pub paged_messages: u64,
    /// Flush (fsync) latency.
    pub flush_latency: crate::metrics::LatencySnapshot,
    /// Persistent messages written to disk so far.
    pub written: u64,
    /// Persistent messages consumed before they were written (never written).
    pub elided: u64,
}

/// The handle producers append through.
pub struct LogWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts the writer thread over an opened, recovered store.
    /// With `online`, the writer also compacts the files while idle.
    pub fn start(
        db: sled::Db,
        state: StateMachine,
        settings: WriterSettings,
        online: Option<Online>,
    ) -> std::io::Result<LogWriter> {
        if settings.sync == StoreSync::Never {
            warn!(
                "store.sync = \"never\": RECEIPTs do not wait for the disk; persistent messages \
                 received in the last second before a crash WILL BE LOST (benchmarks and tests only)"
            );
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            space: Condvar::new(),
            live_bytes: AtomicU64::new(state.live_bytes()),
            resident_bytes: AtomicU64::new(state.resident_bytes()),
            paged_messages: AtomicU64::new(state.paged_messages() as u64),
            flush_latency: Default::default(),
            written: AtomicU64::new(0),
            elided: AtomicU64::new(0),
            settings,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ferromq-log-writer".into())
            .spawn(move || run(&s, db, state, online))?;
        Ok(LogWriter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Live message bytes, resident body bytes, paged messages and flush
    /// latency so far (admin metrics).
    pub fn metrics(&self) -> WriterMetrics {
        WriterMetrics {
            live_bytes: self.shared.live_bytes.load(Ordering::Relaxed),
            resident_bytes: self.shared.resident_bytes.load(Ordering::Relaxed),
            paged_messages: self.shared.paged_messages.load(Ordering::Relaxed),
            flush_latency: self.shared.flush_latency.snapshot(),
            written: self.shared.written.load(Ordering::Relaxed),
            elided: self.shared.elided.load(Ordering::Relaxed),
        }
    }

    /// Queues `entries`; the commit resolves after the batch holding them is
    /// flushed (per `store.sync`). Blocks while the queue is full.
    pub fn append(&self, entries: Vec<LogEntry>) -> Commit {
        self.push(entries, false)
    }

    /// [`LogWriter::append`]; with `dispatching`, also counts a publish
    /// under way (in the same critical section, so the writer cannot start
    /// a batch between the two).
    fn push(&self, entries: Vec<LogEntry>, dispatching: bool) -> Commit {
        if entries.is_empty() {
            return Commit::Done;
        }
        let settings = &self.shared.settings;
        let bytes: usize = entries.iter().map(LogEntry::queued_bytes).sum();
        let enqueue_bytes: u64 = entries
            .iter()
            .filter(|e| matches!(e, LogEntry::Enqueue { .. }))
            .map(|e| e.queued_bytes() as u64)
            .sum();
        let mut q = self.shared.lock();
        if enqueue_bytes > 0 {
            let stored = self.shared.live_bytes.load(Ordering::Relaxed) + q.enqueue_bytes;
            if stored + enqueue_bytes > settings.disk_limit {
                return Commit::Failed(StoreError::Full(format!(
                    "{stored} bytes of persistent messages are stored and store.disk_limit is {}; \
                     consume messages to free space",
                    settings.disk_limit
                )));
            }
        }
        // Backpressure: the disk is slower than the producers. Waiting here
        // blocks only this connection's task thread, and only until the
        // writer (which needs nothing from the caller) takes the queue.
        // Not while a hold is open: its holder may be the caller, and the
        // writer waits for it (a held transaction is bounded by
        // max_transaction_bytes, so the queue overshoots by that at most).
        while q.bytes >= MAX_QUEUE_BYTES && q.holds == 0 && !q.closed && q.broken.is_none() {
            q = self.shared.space.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(e) = &q.broken {
            return Commit::Failed(e.clone());
        }
        if q.closed {
            return Commit::Failed(StoreError::Closed);
        }
        for e in &entries {
            if let LogEntry::Enqueue { message } = e {
                q.enqueued.insert(message.seq);
                // Before the message is visible (appends precede publishing):
                // from now on its body counts against the store's budget and
                // may be paged out, not against its destination's limit.
                message.body.mark_stored();
            }
        }
        // Store-and-dispatch: a consumer's acks resolve the receipts of the
        // messages they consume at once, even if those are still queued or
        // being flushed. The contract holds: the receipt then means
        // "consumed and acknowledged" (and the pair is elided from the disk
        // when it meets in one batch). Only an append of nothing but acks
        // does this: a dead-letter move also acks, but its message is not
        // consumed until the copy is durable.
        let mut early = Vec::new();
        if entries.iter().all(|e| matches!(e, LogEntry::Ack { .. })) {
            for e in &entries {
                if let LogEntry::Ack { seq, .. } = e {
                    if let Some(w) = q.by_seq.remove(seq) {
                        early.push(w);
                        // Answered: no longer waited for, and its producer
                        // sends again without a flush.
                        if q.enqueued.contains(seq) {
                            q.receipts -= 1;
                        }
                        q.expect = q.expect.saturating_sub(1);
                    }
                    q.in_hand.remove(seq);
                }
            }
        }
        let single = match entries.as_slice() {
            [LogEntry::Enqueue { message }] => Some(message.seq),
            _ => None,
        };
        q.entries.extend(entries);
        q.bytes += bytes;
        q.enqueue_bytes += enqueue_bytes;
        if dispatching {
            q.dispatching += 1;
        }
        let commit = if settings.sync == StoreSync::Never {
            Commit::Done
        } else {
            let (tx, rx) = oneshot::channel();
            match single {
                Some(seq) => drop(q.by_seq.insert(seq, tx)),
                None => q.waiters.push(tx),
            }
            q.receipts += 1;
            Commit::Pending(rx)
        };
        // A publish under way wakes the writer when its guard drops, once
        // the delivery record has joined the enqueue: waking it now would
        // only make it wait for that.
        let wake = !dispatching && q.wakes_writer();
        drop(q);
        if wake {
            self.shared.work.notify_one();
        }
        for w in early {
            let _ = w.send(Ok(()));
        }
        commit
    }

    /// [`LogWriter::append`] for a message about to be dispatched: until
    /// the returned guard is dropped (right after the dispatch), the writer
    /// waits before starting a batch (at most [`WriterSettings::ack_gather`]), so that the
    /// record of the message's first delivery joins its enqueue in one
    /// batch and the consumer gets it without waiting for a flush.
    pub fn append_for_dispatch(&self, entries: Vec<LogEntry>) -> (Commit, LogHold) {
        let counted = self.shared.settings.sync == StoreSync::Always && !entries.is_empty();
        let commit = self.push(entries, counted);
        if commit.is_failed() || !counted {
            return (commit, LogHold::none());
        }
        let shared = self.shared.clone();
        let guard = LogHold::new(move || {
            let mut q = shared.lock();
            q.dispatching -= 1;
            let wake = q.wakes_writer();
            drop(q);
            if wake {
                shared.work.notify_one();
            }
        });
        (commit, guard)
    }

    /// See [`super::Store::hand_off`]. The record is queued without a
    /// commit; the handoff is held (and released by the writer after the
    /// flush) unless the message's own enqueue is still queued, in which case
    /// both reach the disk in the same atomic batch and the consumer may see
    /// the message now. Marks are few (bounded by consumer credit) and tiny,
    /// so they are not held back by the queue bound.
    pub fn hand_off(
        &self,
        mark: Option<(u64, u32)>,
        must_wait: bool,
        handoff: Handoff,
    ) -> Option<Handoff> {
        if self.shared.settings.sync == StoreSync::Never {
            // Nothing is waited for in this mode; record and go.
            if let Some((seq, count)) = mark {
                self.push_mark(seq, count);
            }
            return Some(handoff);
        }
        let mut q = self.shared.lock();
        if q.closed || q.broken.is_some() {
            return Some(handoff);
        }
        let free = match mark {
            Some((seq, count)) => {
                q.entries.push(LogEntry::Delivered { seq, count });
                q.bytes += 32;
                let fresh = q.enqueued.contains(&seq);
                if fresh {
                    q.in_hand.insert(seq);
                }
                fresh
            }
            None => true,
        };
        let result = if free && !must_wait {
            Some(handoff)
        } else {
            q.handoffs.push(handoff);
            None
        };
        let wake = q.wakes_writer();
        drop(q);
        if wake {
            self.shared.work.notify_one();
        }
        result
    }

    fn push_mark(&self, seq: u64, count: u32) {
        let mut q = self.shared.lock();
        if q.closed || q.broken.is_some() {
            return;
        }
        q.entries.push(LogEntry::Delivered { seq, count });
        q.bytes += 32;
    }

    /// See [`super::Store::hold`].
    pub fn hold(&self) -> LogHold {
        self.shared.lock().holds += 1;
        let shared = self.shared.clone();
        LogHold::new(move || {
            let mut q = shared.lock();
            q.holds -= 1;
            let last = q.holds == 0;
            drop(q);
            if last {
                shared.work.notify_one();
                shared.space.notify_all();
            }
        })
    }

    /// Writes what is queued, flushes, and stops the thread.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            if h.join().is_err() {
                error!("the store's log writer thread panicked");
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread's loop.
fn run(shared: &Shared, mut db: sled::Db, mut state: StateMachine, mut online: Option<Online>) {
    let settings = &shared.settings;
    let mut unflushed = false;
    let mut last_flush = Instant::now();
    let mut totals = Totals::default();
    loop {
        let (entries, waiters, handoffs, closing) = {
            let mut q = shared.lock();
            q.writer = WriterWait::Idle;
            while (q.entries.is_empty() && q.handoffs.is_empty() || q.holds > 0) && !q.closed {
                if unflushed {
                    // Only with sync = never: flush now and then anyway.
                    let (g, timeout) = shared
                        .work
                        .wait_timeout(q, NEVER_FLUSH_EVERY)
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    if timeout.timed_out() && q.holds == 0 {
                        break;
                    }
                } else if let Some(compactor) = online.as_mut() {
                    let (g, timeout) = shared
                        .work
                        .wait_timeout(q, compactor.check_every())
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    let idle = q.entries.is_empty() && q.handoffs.is_empty() && q.holds == 0;
                    if timeout.timed_out() && idle && q.broken.is_none() && !q.closed {
                        // Idle: appends made meanwhile just queue (the
                        // writer applies nothing until it is done).
                        drop(q);
                        match compactor.run(db, state.live_bytes()) {
                            Ok(next) => db = next,
                            Err(e) => {
                                error!(error = %e, "the store could not be reopened after compaction");
                                let mut q = shared.lock();
                                q.broken = Some(StoreError::Io(e.to_string()));
                                shared.space.notify_all();
                                drop(q);
                                return fail_forever(shared);
                            }
                        }
                        q = shared.lock();
                    }
                } else {
                    q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            }
            q.writer = WriterWait::Busy;
            if settings.sync == StoreSync::Batch && !q.entries.is_empty() {
                // Flush at most every batch_delay: gather more until then
                // (or until the batch is big). Fewer fsyncs, and more
                // enqueue/ack pairs meet inside one batch and are elided.
                q.writer = WriterWait::Batching;
                let deadline = last_flush + settings.batch_delay;
                while !q.closed && q.bytes < BATCH_BYTES {
                    let (woken, late) = wait_until(shared, q, deadline);
                    q = woken;
                    if late {
                        break;
                    }
                }
            }
            q.writer = WriterWait::Busy;
            if settings.sync == StoreSync::Always {
                q = gather(shared, q, settings.ack_gather);
            }
            // A hold taken while gathering: wait for it to end, so that a
            // transaction is never split across batches.
            while q.holds > 0 && !q.closed {
                q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            let entries = std::mem::take(&mut q.entries);
            let waiters = std::mem::take(&mut q.waiters);
            let handoffs = std::mem::take(&mut q.handoffs);
            q.enqueued.clear();
            q.in_hand.clear();
            q.receipts = 0;
            q.bytes = 0;
            // Taken enqueues count as stored from now on (until the writer
            // publishes the exact figure after applying them).
            shared
                .live_bytes
                .fetch_add(q.enqueue_bytes, Ordering::Relaxed);
            q.enqueue_bytes = 0;
            shared.space.notify_all();
            (entries, waiters, handoffs, q.closed)
        };
        let mut result = Ok(());
        if !entries.is_empty() {
            let mut batch = sled::Batch::default();
            result = state.apply(&entries, &mut batch).and_then(|applied| {
                shared
                    .written
                    .fetch_add(applied.written as u64, Ordering::Relaxed);
                shared
                    .elided
                    .fetch_add(applied.elided as u64, Ordering::Relaxed);
                totals.add(entries.len(), applied);
                db.apply_batch(batch)
                    .map_err(|e| StoreError::Io(e.to_string()))
            });
            if result.is_ok() {
                // The records are readable now (sled serves applied batches
                // before they are flushed): bodies over the budget may go.
                totals.paged += state.page_out(&entries) as u64;
            }
            unflushed = true;
        }
        // Durability ordering, part 1: flush (fsync) before resolving any
        // commit, so a RECEIPT released below means "on disk". sled's own
        // timer flusher is off (flush_every_ms = None): nothing depends on it.
        let due = settings.sync != StoreSync::Never
            || closing
            || last_flush.elapsed() >= NEVER_FLUSH_EVERY;
        if result.is_ok() && unflushed && due {
            let flush_started = Instant::now();
            result = db
                .flush()
                .map(|_| ())
                .map_err(|e| StoreError::Io(format!("flush: {e}")));
            shared.flush_latency.record(flush_started.elapsed());
            unflushed = false;
            last_flush = Instant::now();
            totals.flushes += 1;
        }
        shared
            .live_bytes
            .store(state.live_bytes(), Ordering::Relaxed);
        shared
            .resident_bytes
            .store(state.resident_bytes(), Ordering::Relaxed);
        shared
            .paged_messages
            .store(state.paged_messages() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            error!(error = %e, "store write failed; refusing persistent messages from now on");
            shared.lock().broken = Some(e.clone());
            shared.space.notify_all();
        }
        // Durability ordering, part 2: only now are the waiting commits (and
        // with them RECEIPTs) released.
        let mut waiters = waiters;
        {
            let mut q = shared.lock();
            for e in &entries {
                if let LogEntry::Enqueue { message } = e {
                    waiters.extend(q.by_seq.remove(&message.seq));
                }
            }
            q.expect = waiters.len() + q.receipts;
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
        // Deliveries whose records are now durable may reach consumers
        // (after a failed write too: the message was in memory all along).
        for h in handoffs {
            h.release();
        }
        if closing && entries.is_empty() {
            break;
        }
    }
    info!(
        live_messages = state.live_messages(),
        live_bytes = state.live_bytes(),
        entries = totals.entries,
        batches = totals.batches,
        flushes = totals.flushes,
        written = totals.applied.written,
        removed = totals.applied.removed,
        elided = totals.applied.elided,
        paged = totals.paged,
        "store closed"
    );
}

/// `always`: before starting a batch the writer waits, at most `limit`
/// ([`WriterSettings::ack_gather`], about one fsync), while
///
/// - the queue holds enqueues that consumers have and have not acked, or
///   publishes that have not reached their consumer yet: a message acked
///   before its batch is written is never written at all (store-and-dispatch,
///   its receipt released by the ack);
/// - fewer commits are queued than the writer expects ([`Queue::expect`]):
///   the producers its last flush answered are about to send again, and
///   waiting a round trip for them lets one fsync serve them all, rather
///   than the producers splitting into groups that alternate between
///   flushes half full.
///
/// Neither waits for anything that is not on its way: a lone producer is
/// expected alone, and without consumers nothing is in hand.
fn gather<'a>(
    shared: &'a Shared,
    mut q: MutexGuard<'a, Queue>,
    limit: Duration,
) -> MutexGuard<'a, Queue> {
    let started = Instant::now();
    q.writer = WriterWait::Gathering;
    while q.holds == 0 && !q.closed {
        // A publish under way is a few microseconds from its dispatch and
        // gets twice as long: a batch started in between would make its
        // delivery wait for the next flush.
        let deadline = if q.dispatching > 0 {
            started + limit * 2
        } else if !q.in_hand.is_empty() || q.receipts < q.expect {
            started + limit
        } else {
            break;
        };
        let (woken, late) = wait_until(shared, q, deadline);
        q = woken;
        if late {
            break;
        }
    }
    q.writer = WriterWait::Busy;
    q
}

/// Sleeps on the writer's condvar until woken or `deadline`; `true` with
/// the lock when the deadline had already passed.
fn wait_until<'a>(
    shared: &'a Shared,
    q: MutexGuard<'a, Queue>,
    deadline: Instant,
) -> (MutexGuard<'a, Queue>, bool) {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return (q, true);
    }
    let woken = shared
        .work
        .wait_timeout(q, left)
        .unwrap_or_else(|e| e.into_inner())
        .0;
    (woken, false)
}

/// The writer without a database (it could not be reopened after a
/// compaction): answers every commit with the error and releases every
/// delivery (their messages are in memory) until the store closes.
fn fail_forever(shared: &Shared) {
    let mut q = shared.lock();
    loop {
        let failure = q.broken.clone().unwrap_or(StoreError::Closed);
        let mut waiters = std::mem::take(&mut q.waiters);
        waiters.extend(q.by_seq.drain().map(|(_, w)| w));
        let handoffs = std::mem::take(&mut q.handoffs);
        q.entries.clear();
        q.enqueued.clear();
        q.bytes = 0;
        q.enqueue_bytes = 0;
        let closed = q.closed;
        drop(q);
        for w in waiters {
            let _ = w.send(Err(failure.clone()));
        }
        for h in handoffs {
            h.release();
        }
        if closed {
            return;
        }
        q = shared.lock();
        if q.handoffs.is_empty() && !q.closed {
            q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Counters for the log line at close (how well group commit and
/// store-and-dispatch worked).
#[derive(Default)]
struct Totals {
    entries: u64,
    batches: u64,
    flushes: u64,
    applied: Applied,
    /// Bodies paged out after their write.
    paged: u64,
}

impl Totals {
    fn add(&mut self, entries: usize, applied: Applied) {
        self.entries += entries as u64;
        self.batches += 1;
        self.applied.written += applied.written;
        self.applied.removed += applied.removed;
        self.applied.elided += applied.elided;
    }
}
