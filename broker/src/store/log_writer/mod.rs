//! [`LogWriter`]: the one thread that writes the log, with group commit;
//! this module is its handle (the appenders' side), `queue` what both
//! sides share, `thread` the thread itself.
//!
//! Every connection appends to one bounded queue; the writer thread takes
//! everything queued, builds one encoded batch of it (the log record, see
//! [`super::entry`]), applies that to the [`StateMachine`] (one atomic
//! `sled::Batch`), flushes once, and only then resolves every [`Commit`] of
//! the batch. While a flush runs, new entries pile up and share the next one:
//! with many producers one fsync serves many receipts.
//!
//! With `sync = always` the writer may wait a moment (at most
//! [`WriterSettings::ack_gather`]) before it takes a batch, for what is on
//! its way: a publish reaching its consumer, consumers' acks of messages
//! they already have (an enqueue acked in its own batch is never written),
//! and the producers its last flush answered (see `thread::gather`). The queue
//! records what the writer waits for, so an append wakes it (a system call
//! and a context switch) only when that is what changed.
//!
//! It is an OS thread, not a tokio task, because `sled::Db::flush` blocks in
//! fsync. It holds no router lock, so a producer blocked on a full queue
//! (backpressure) always gets going again once the writer drains it.

mod queue;
mod replicated;
mod thread;

use super::body_reclaim::BodyFiles;
use super::body_segments::goes_to_file;
use super::compact::Online;
use super::lane_bytes::DestinationBytes;
use super::paging::Pager;
use super::state_machine::StateMachine;
use super::{Commit, Handoff, LogEntry, LogHold, StoreError};
use crate::cluster::{Replicator, Role};
use ferromq_config::StoreSync;
use queue::{Queue, Shared};
pub use replicated::Replication;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{error, warn};

/// Bytes of entries the queue holds before producers wait for the writer.
/// The writer takes the whole queue as one batch, and sled's `apply_batch`
/// holds one epoch guard for all of it: every leaf version an insert
/// replaces (a copy of the leaf, ~16 KB for 1 KiB messages) stays allocated
/// until the batch ends. With async producers the queue is always full: at
/// 32 MiB the broker's RSS peaked at 1.25 GB, at 4 MiB at 489 MB, at 1 MiB
/// at 437 MB, at about the same rate (BENCHMARKS.md, "Deep queues"). 1 MiB
/// still gathers ~800 1 KiB messages per fsync.
const MAX_QUEUE_BYTES: usize = 1 << 20;
/// Bytes of bodies bound for body files (`store.body_inline_max`) the
/// queue holds before their producers wait for the writer; their records
/// count against [`MAX_QUEUE_BYTES`] as any other. Kept apart because
/// neither reason for that bound applies to them: they never enter sled's
/// batch, and the queue holds no copy (each is the router's `Bytes`, already
/// counted against the store's body budget once appended). Under the 1 MiB
/// bound one 10 MB body filled the queue, so each batch carried one body,
/// one write and two fsyncs, and the other producers waited (holding their
/// runtime workers) through all of it: 12-39 msg/s with 10 producers
/// (BENCHMARKS.md, "Body files"). Six 10 MB bodies fit.
const MAX_QUEUE_FILE_BYTES: usize = 64 << 20;
/// A `batch` group is written early once it holds this much: as soon as
/// the queue is full (producers wait for the writer from then on).
const BATCH_BYTES: usize = MAX_QUEUE_BYTES;
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
    /// `store.checkpoint_every`: bytes written between two reopens of the
    /// database ([`crate::store::checkpoint`]); only with online
    /// maintenance (a single node's store).
    pub checkpoint_bytes: u64,
}

/// What [`LogWriter::metrics`] reports.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    /// Bytes of live message records, and of their bodies in body files.
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
    /// Cluster mode: the writer's progress needs the async runtime (the
    /// proposals are Raft's futures), so an appender waiting for space
    /// must not hold a runtime worker (see `push`).
    needs_runtime: bool,
    /// Cluster mode: the node whose leadership an early answer needs (see
    /// [`LogWriter::may_answer_early`]); `None` on a single node.
    cluster: Option<Arc<OnceLock<Arc<dyn Replicator>>>>,
    /// `store.body_inline_max` when bodies above it go to body files (a
    /// single node's store; cluster mode keeps bodies inline): such bodies
    /// are bounded by [`MAX_QUEUE_FILE_BYTES`] instead of [`MAX_QUEUE_BYTES`].
    body_inline_max: Option<u64>,
}

impl LogWriter {
    /// Starts the writer thread over an opened, recovered store.
    /// With `online`, the writer also compacts the files while idle. Large
    /// bodies go to `bodies` (opened against `state`'s counts).
    pub fn start(
        db: sled::Db,
        mut state: StateMachine,
        pager: Pager,
        bodies: BodyFiles,
        settings: WriterSettings,
        online: Option<Online>,
    ) -> std::io::Result<LogWriter> {
        if settings.sync == StoreSync::Never {
            warn!(
                "store.sync = \"never\": RECEIPTs do not wait for the disk; persistent messages \
                 received in the last second before a crash WILL BE LOST (benchmarks and tests only)"
            );
        }
        let body_inline_max = Some(bodies.inline_max());
        let destination_bytes = DestinationBytes::default();
        destination_bytes.replace(state.lane_bytes_mut());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            space: Condvar::new(),
            live_bytes: AtomicU64::new(state.live_bytes() + state.body_bytes()),
            destination_bytes,
            resident_bytes: AtomicU64::new(pager.resident_bytes()),
            paged_messages: AtomicU64::new(pager.paged_messages() as u64),
            flush_latency: Default::default(),
            written: AtomicU64::new(0),
            elided: AtomicU64::new(0),
            settings,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ferromq-log-writer".into())
            .spawn(move || thread::run(&s, db, state, pager, bodies, online))?;
        Ok(LogWriter {
            shared,
            thread: Mutex::new(Some(thread)),
            needs_runtime: false,
            cluster: None,
            body_inline_max,
        })
    }

    /// Starts the cluster-mode writer thread (see `replicated`): batches
    /// are proposed to the cluster and applied through `state`, the
    /// store's [`crate::cluster::ApplyLog`]; `pager` pages bodies once
    /// their batch is applied here. No online compaction; `settings.sync`
    /// is `always` (the configuration requires it with a cluster).
    pub fn start_replicated(
        state: Arc<crate::store::replicated::ReplicatedState>,
        pager: Pager,
        settings: WriterSettings,
        replication: Replication,
    ) -> std::io::Result<LogWriter> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            space: Condvar::new(),
            live_bytes: AtomicU64::new(state.live_bytes()),
            destination_bytes: state.destination_bytes(),
            resident_bytes: AtomicU64::new(0),
            paged_messages: AtomicU64::new(0),
            flush_latency: Default::default(),
            written: AtomicU64::new(0),
            elided: AtomicU64::new(0),
            settings,
        });
        let s = shared.clone();
        let cluster = Some(replication.replicator.clone());
        let thread = std::thread::Builder::new()
            .name("ferromq-log-writer".into())
            .spawn(move || replicated::run(s, state, replication, pager))?;
        Ok(LogWriter {
            shared,
            thread: Mutex::new(Some(thread)),
            needs_runtime: true,
            cluster,
            body_inline_max: None,
        })
    }

    /// Whether a consumer's ack may answer a producer's receipt before the
    /// message's batch is committed (store-and-dispatch). Always on a single
    /// node. In cluster mode only while this node leads and holds its lease:
    /// a leader stopped (SIGSTOP, a long pause) or cut off past the election
    /// timeout still has its consumers connected when it runs again, and
    /// their acks would otherwise receipt SENDs that a deposed leader took
    /// (seen in `cluster_pause` under load). Such a receipt is a late
    /// success from a node that no longer accepts writes, which issue 16's
    /// contract forbids; its enqueue's proposal fails instead (fenced, or not
    /// the leader), and so does the receipt.
    fn may_answer_early(&self) -> bool {
        match &self.cluster {
            None => true,
            Some(node) => node
                .get()
                .is_some_and(|node| node.role() == Role::Leader && !node.is_fenced()),
        }
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

    /// Bytes of `destination`'s stored (live) message records.
    pub fn destination_bytes(&self, destination: &str) -> u64 {
        self.shared.destination_bytes.get(destination)
    }

    /// Queues `entries`; the commit resolves after the batch holding them is
    /// flushed (per `store.sync`). Blocks while the queue is full.
    pub fn append(&self, entries: Vec<LogEntry>) -> Commit {
        self.push(entries, false)
    }

    /// [`LogWriter::append`]; with `dispatching`, also counts a publish
    /// under way (in the same critical section, so the writer cannot start
    /// a batch between the two).
    fn push(&self, mut entries: Vec<LogEntry>, dispatching: bool) -> Commit {
        if entries.is_empty() {
            return Commit::Done;
        }
        let settings = &self.shared.settings;
        let file_body = |e: &LogEntry| match (e, self.body_inline_max) {
            (LogEntry::Enqueue { message, .. }, Some(inline_max))
                if goes_to_file(message.body.len(), inline_max) =>
            {
                Some((message.seq, message.body.len()))
            }
            _ => None,
        };
        let file_bytes: usize = entries
            .iter()
            .filter_map(file_body)
            .map(|(_, len)| len)
            .sum();
        let mut bytes: usize = entries
            .iter()
            .map(LogEntry::queued_bytes)
            .sum::<usize>()
            .saturating_sub(file_bytes);
        let enqueue_bytes: u64 = entries
            .iter()
            .filter(|e| matches!(e, LogEntry::Enqueue { .. }))
            .map(|e| e.queued_bytes() as u64)
            .sum();
        let acks_only = entries.iter().all(|e| matches!(e, LogEntry::Ack { .. }));
        // Asked before the queue's lock is taken: the lease is another
        // lock (a watch channel's), never taken inside this one.
        let answer_early = acks_only && self.may_answer_early();
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
        let full = |q: &Queue| q.must_wait(file_bytes);
        if full(&q) {
            let wait = move || {
                while full(&q) {
                    q = self.shared.space.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q
            };
            // In cluster mode the writer takes the queue only once earlier
            // proposals resolve, which needs the runtime's workers (Raft,
            // the peer links): with every worker waiting here no proposal
            // would ever resolve (seen: 10 producers of async sends froze a
            // leader). The wait gives up its worker to the runtime first.
            // So does a wait for room for a file body: it lasts a write and
            // fsync of tens of megabytes, during which the worker's other
            // connections (consumers taking and acking the bodies queued)
            // would stand still; with two workers, two such producers
            // stalled every delivery.
            q = if (self.needs_runtime || file_bytes > 0) && on_multi_thread_runtime() {
                tokio::task::block_in_place(wait)
            } else {
                wait()
            };
        }
        if let Some(e) = &q.broken {
            return Commit::Failed(e.clone());
        }
        if q.closed {
            return Commit::Failed(StoreError::Closed);
        }
        for e in &entries {
            if let Some((seq, len)) = file_body(e) {
                q.file_seqs.insert(seq, len);
            }
            if let LogEntry::Enqueue { message, .. } = e {
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
        // consumed until the copy is durable. In cluster mode only a leader
        // holding its lease answers early; otherwise the receipt waits for
        // its enqueue's proposal, which fails (see `may_answer_early`).
        let mut early = Vec::new();
        if answer_early {
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
            // A large body consumed while it waits for the writer leaves
            // the queue now, with its ack, rather than when the batch is
            // taken (where `entry::build` would elide the pair): its bytes
            // stop counting against MAX_QUEUE_FILE_BYTES and its memory
            // goes. So while consumers keep up, producers of large bodies
            // are not held by a write of bodies nobody will read back (the
            // writer spends ~100 ms per 10 MB body in fdatasync here).
            if !q.file_seqs.is_empty() {
                let elided = q.elide_consumed(&mut entries);
                if elided > 0 {
                    self.shared
                        .elided
                        .fetch_add(elided as u64, Ordering::Relaxed);
                    bytes = entries.iter().map(LogEntry::queued_bytes).sum();
                    if entries.is_empty() {
                        // Nothing left to write for these acks: their
                        // messages never reach the disk.
                        let wake = q.wakes_writer();
                        drop(q);
                        if wake {
                            self.shared.work.notify_one();
                        }
                        for w in early {
                            let _ = w.send(Ok(()));
                        }
                        return Commit::Done;
                    }
                }
            }
        }
        let single = match entries.as_slice() {
            [LogEntry::Enqueue { message, .. }] => Some(message.seq),
            _ => None,
        };
        q.entries.extend(entries);
        q.bytes += bytes;
        q.file_bytes += file_bytes;
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
    /// waits before starting a batch (at most twice
    /// [`WriterSettings::ack_gather`]), so that the record of the message's
    /// first delivery joins its enqueue in one batch and the consumer gets
    /// it without waiting for a flush.
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
                q.enqueued.contains(&seq)
            }
            None => true,
        };
        let result = if free && !must_wait {
            // Reaching its consumer now: the writer may give its ack a moment.
            if let Some((seq, _)) = mark {
                q.in_hand.insert(seq);
            }
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

/// Whether the calling thread belongs to a multi-threaded tokio runtime,
/// where `block_in_place` can hand its worker over (it panics elsewhere).
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
