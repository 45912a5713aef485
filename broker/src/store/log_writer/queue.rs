//! What the appenders and the log writer thread share: the [`Queue`] of
//! entries and commits waiting for the next batch, what the writer is
//! waiting for ([`WriterWait`]), and the condvars that wake either side.
//!
//! Lock order: this queue's mutex is a leaf. It is taken under a
//! destination lock (`hand_off`), never the other way round, and nothing
//! is called while it is held but the queue's own bookkeeping.

use super::{WriterSettings, BATCH_BYTES, MAX_QUEUE_BYTES, MAX_QUEUE_FILE_BYTES};
use crate::store::lane_bytes::DestinationBytes;
use crate::store::{Handoff, LogEntry, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Resolves one [`crate::store::Commit`].
pub(super) type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// Entries, commits and deliveries waiting for the writer's next batch.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) entries: Vec<LogEntry>,
    pub(super) waiters: Vec<Waiter>,
    /// Receipts of single published messages, by seq, from append until
    /// the flush of their batch, or until an ack resolves them early.
    pub(super) by_seq: HashMap<u64, Waiter>,
    /// Deliveries to release once this batch is flushed.
    pub(super) handoffs: Vec<Handoff>,
    /// Seqs of the messages enqueued in `entries`: a delivery record of one
    /// of them is flushed with the message itself, so it needs no wait.
    pub(super) enqueued: HashSet<u64>,
    /// Bytes of `entries` (bounded by [`super::MAX_QUEUE_BYTES`]), but for
    /// the bodies bound for body files, which are `file_bytes`.
    pub(super) bytes: usize,
    /// Bytes of the bodies in `entries` that go to body files (bounded by
    /// [`super::MAX_QUEUE_FILE_BYTES`]).
    pub(super) file_bytes: usize,
    /// Seq and body length of those enqueues (see [`Queue::elide_consumed`]).
    pub(super) file_seqs: HashMap<u64, usize>,
    /// Bytes of the enqueues among them (for the disk limit).
    pub(super) enqueue_bytes: u64,
    /// Enqueues in `entries` already handed to a consumer and not acked
    /// yet: the writer gives their acks a moment ([`super::WriterSettings::ack_gather`]).
    pub(super) in_hand: HashSet<u64>,
    /// Publishes between their append and their dispatch (see
    /// [`super::LogWriter::append_for_dispatch`]).
    pub(super) dispatching: usize,
    /// Commits waiting on the entries queued (receipts to come).
    pub(super) receipts: usize,
    /// Commits the writer expects to be queued before its next batch: the
    /// ones its last flush released (their producers are about to send
    /// again) plus the ones queued by then. See `thread::gather`.
    pub(super) expect: usize,
    /// What the writer thread is waiting for, so that appends wake it only
    /// when it needs waking (a condvar notify is a system call each time).
    pub(super) writer: WriterWait,
    pub(super) closed: bool,
    /// Open [`crate::store::LogHold`]s: the writer starts no batch while there are any.
    pub(super) holds: usize,
    /// Set after a failed write: the store refuses everything from then on
    /// rather than acknowledge on top of a state it could not write.
    pub(super) broken: Option<StoreError>,
}

/// What the writer thread waits for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriterWait {
    /// Nothing: it is writing, and looks at the queue when done.
    #[default]
    Busy,
    /// Entries to write.
    Idle,
    /// `batch`: the group to grow to [`BATCH_BYTES`] (or its deadline).
    Batching,
    /// `always`: publishes to reach their consumers and acks to arrive
    /// (see `thread::gather`).
    Gathering,
}

impl Queue {
    /// Whether what just changed is what the writer is waiting for.
    /// Whether an append carrying `file_bytes` of bodies for body files
    /// must wait for the writer to take the queue (backpressure, see
    /// `LogWriter::push`). Bodies for body files wait only for their own
    /// bound, so a 1 KiB message is not held behind a 10 MB one's write,
    /// nor the reverse. Not while a hold is open (its holder may be the
    /// caller), nor once the store is closed or broken (the append fails).
    pub(super) fn must_wait(&self, file_bytes: usize) -> bool {
        let over = self.bytes >= MAX_QUEUE_BYTES
            || (file_bytes > 0 && self.file_bytes >= MAX_QUEUE_FILE_BYTES);
        over && self.holds == 0 && !self.closed && self.broken.is_none()
    }

    /// Takes out of the queue every enqueue with a body for body files that
    /// `acks` (all of them [`LogEntry::Ack`]) consumes, with its delivery
    /// marks, and those acks out of `acks`: the pair `entry::build` would
    /// elide once the batch is taken, elided now so that its body's bytes
    /// and memory go at once. Returns how many messages it elided.
    pub(super) fn elide_consumed(&mut self, acks: &mut Vec<LogEntry>) -> usize {
        let mut gone = HashSet::new();
        for e in acks.iter() {
            if let LogEntry::Ack { seq, .. } = e {
                if let Some(len) = self.file_seqs.remove(seq) {
                    self.file_bytes = self.file_bytes.saturating_sub(len);
                    gone.insert(*seq);
                }
            }
        }
        if gone.is_empty() {
            return 0;
        }
        let (mut bytes, mut enqueue_bytes) = (0, 0);
        self.entries.retain(|e| {
            let seq = match e {
                LogEntry::Enqueue { message, .. } => message.seq,
                LogEntry::Delivered { seq, .. } => *seq,
                _ => return true,
            };
            if !gone.contains(&seq) {
                return true;
            }
            if let LogEntry::Enqueue { message, .. } = e {
                // Its record's share of `bytes`; the body was `file_bytes`.
                bytes += e.queued_bytes() - message.body.len();
                enqueue_bytes += e.queued_bytes() as u64;
            } else {
                bytes += e.queued_bytes();
            }
            false
        });
        self.bytes = self.bytes.saturating_sub(bytes);
        self.enqueue_bytes = self.enqueue_bytes.saturating_sub(enqueue_bytes);
        for seq in &gone {
            self.enqueued.remove(seq);
            self.in_hand.remove(seq);
        }
        acks.retain(|e| !matches!(e, LogEntry::Ack { seq, .. } if gone.contains(seq)));
        gone.len()
    }

    /// `batch`: whether the group is big enough to write before its
    /// deadline (either bound of the queue reached).
    pub(super) fn batch_full(&self) -> bool {
        self.bytes >= BATCH_BYTES || self.file_bytes >= MAX_QUEUE_FILE_BYTES
    }

    pub(super) fn wakes_writer(&self) -> bool {
        match self.writer {
            WriterWait::Busy => false,
            WriterWait::Idle => true,
            WriterWait::Batching => self.batch_full(),
            WriterWait::Gathering => {
                self.dispatching == 0 && self.in_hand.is_empty() && self.receipts >= self.expect
            }
        }
    }
}

/// The queue with its condvars, settings and published figures.
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// Wakes the writer.
    pub(super) work: Condvar,
    /// Wakes producers waiting for queue space.
    pub(super) space: Condvar,
    pub(super) settings: WriterSettings,
    /// Bytes of live message records, published by the writer.
    pub(super) live_bytes: AtomicU64,
    /// Bytes of live message records per destination, published by the
    /// writer (by the replicated state's apply in cluster mode).
    pub(super) destination_bytes: DestinationBytes,
    /// Bytes of live bodies in memory, published by the writer.
    pub(super) resident_bytes: AtomicU64,
    /// Live messages whose body is paged out, published by the writer.
    pub(super) paged_messages: AtomicU64,
    /// Flush (fsync) latency, for the admin endpoint.
    pub(super) flush_latency: crate::metrics::LatencyHistogram,
    /// Persistent messages written to disk, and those consumed and
    /// acknowledged before their batch was written (never written), so far.
    pub(super) written: AtomicU64,
    pub(super) elided: AtomicU64,
}

/// One batch taken from the queue: its entries, the commits it resolves,
/// the deliveries it releases, and whether the store is closing.
pub(super) struct Batch {
    pub(super) entries: Vec<LogEntry>,
    pub(super) waiters: Vec<Waiter>,
    pub(super) handoffs: Vec<Handoff>,
    pub(super) closing: bool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the pager's gauges (both writers, after each batch).
    pub(super) fn publish_paging(&self, pager: &crate::store::paging::Pager) {
        self.resident_bytes
            .store(pager.resident_bytes(), std::sync::atomic::Ordering::Relaxed);
        self.paged_messages.store(
            pager.paged_messages() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Takes everything queued as the next batch, once no hold is taken: a
    /// hold taken while the writer gathered is waited out, so that a
    /// transaction is never split across batches. Both writers (local and
    /// replicated) form their batches here, with the queue locked.
    pub(super) fn take_batch<'a>(&'a self, mut q: MutexGuard<'a, Queue>) -> Batch {
        while q.holds > 0 && !q.closed {
            q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        let batch = Batch {
            entries: std::mem::take(&mut q.entries),
            waiters: std::mem::take(&mut q.waiters),
            handoffs: std::mem::take(&mut q.handoffs),
            closing: q.closed,
        };
        q.enqueued.clear();
        q.in_hand.clear();
        q.receipts = 0;
        q.bytes = 0;
        q.file_bytes = 0;
        q.file_seqs.clear();
        // Taken enqueues count as stored from now on (until the writer
        // publishes the exact figure after applying them).
        self.live_bytes
            .fetch_add(q.enqueue_bytes, Ordering::Relaxed);
        q.enqueue_bytes = 0;
        self.space.notify_all();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_bodies_and_records_wait_for_their_own_bound() {
        let mut q = Queue {
            // Ten 10 MB bodies' worth would not fit; three do.
            file_bytes: 3 * 10_000_000,
            bytes: 4096,
            ..Queue::default()
        };
        assert!(!q.must_wait(0), "a record waits only for records");
        assert!(!q.must_wait(10_000_000), "a body fits under its bound");
        q.file_bytes = MAX_QUEUE_FILE_BYTES;
        assert!(q.must_wait(10_000_000), "bodies over their bound wait");
        assert!(!q.must_wait(0), "records do not wait for bodies");
        q.file_bytes = 0;
        q.bytes = MAX_QUEUE_BYTES;
        assert!(
            q.must_wait(0) && q.must_wait(1),
            "records over theirs hold everyone"
        );
        q.holds = 1;
        assert!(!q.must_wait(1), "never while a hold is open");
        q.holds = 0;
        q.closed = true;
        assert!(!q.must_wait(0), "a closed store fails the append instead");
    }
}
