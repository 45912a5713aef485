//! The store: an ordered log of typed [`LogEntry`]s describing every state
//! change a persistent message goes through.
//!
//! The router appends entries and decides everything about them (what is
//! stored, when a delivery is recorded, what expires, what a transaction
//! holds together); a [`Store`] makes them durable and tells the caller
//! when through a [`Commit`]. The store never sees a protocol and never
//! imports the router: it knows messages ([`crate::message`]), destinations
//! as names, and sequence numbers.
//!
//! - [`memory`]: no persistence at all.
//! - [`sled_store`]: the durable store on sled (open, recover, close).
//! - [`replicated`]: the state applied from a cluster's log (cluster mode).
//! - [`log_writer`]: the single log writer doing group commit.
//! - [`entry`]: the encoded log: one [`entry::EncodedBatch`] per group
//!   commit, prost-encoded, with a format version.
//! - [`state_machine`]: the deterministic state machine the log is applied to.
//! - [`paging`]: which stored bodies stay in memory (outside the apply).
//! - [`body_segments`], [`body_counts`], [`body_reclaim`]: large bodies kept
//!   out of sled in append-only segment files (`<data_dir>/bodies/`): the
//!   files, their live counts in sled, and deleting those no body is in.
//! - [`cursor`]: reading a queue's backlog back in order, a page at a time.
//! - [`record`]: the key layout in sled.
//! - [`lane_bytes`]: bytes of stored messages per destination.
//! - [`upgrade`]: the in-place upgrade of a format-2 store at open.
//! - [`compact`]: giving consumed space back.
//! - [`checkpoint`]: reopening sled now and then so its open stays short.
//!
//! # The replication seam
//!
//! The log writer turns everything queued for one group commit into one
//! encoded batch: bytes ([`entry::build`], then
//! [`entry::EncodedBatch::to_bytes`]). Those bytes are the log record: the
//! store can keep the latest batches under `L` keys ([`state_machine::LogKeep`]:
//! none on a single node, where keeping them halved persistent throughput
//! without consumers; a replicated log keeps its own) and derives the
//! records that serve reads (messages, delivery counts, metadata) from them in
//! [`state_machine::StateMachine::apply`], which reads no clock and touches nothing
//! but the store's own state. So a replicated store needs no router on a
//! follower:
//!
//! 1. the leader's writer builds the batch exactly as now (store-and-dispatch
//!    elision included: a pair consumed within the batch is not in it);
//! 2. the cluster layer proposes the bytes as one replicated (Raft) entry
//!    instead of applying them at once;
//! 3. once a quorum has it, every node applies the same bytes with
//!    [`state_machine::StateMachine::apply_encoded`] into a `sled::Batch` and
//!    applies that atomically; the leader then flushes and resolves the
//!    batch's commits (a [`Commit`] means "durable on a quorum"), and only
//!    then releases the deliveries held by [`Store::hand_off`];
//! 4. a follower too far behind gets a snapshot:
//!    [`state_machine::StateMachine::snapshot`] builds one batch from the live
//!    records, which applied to an empty store gives the same live state.
//!
//! Batches are numbered one per group commit (`state_machine::StateMachine::last_batch`),
//! the number a replicated log would index them by.
//!
//! With `[cluster]` this is what runs: `log_writer::replicated` proposes each
//! batch instead of step 3's local apply, [`replicated::ReplicatedState`]
//! is the apply on every node (with the Raft index in the same sled batch),
//! and `crate::leadership` restores the router from it on a new leader
//! (lane counts, as after a single node's restart). Queue windows and body
//! paging work on the leader as on a single node; when a message left to
//! the store becomes readable there is written down in [`replicated`].
//!
//! # Sequence numbers
//!
//! A message's sequence number is its identity inside the broker (message
//! ids, acks, redelivery), and a consumer has the message, seq included,
//! before the writer forms the batch (store-and-dispatch: the delivery
//! record joins the enqueue, so the consumer never waits for a flush). So
//! the writer cannot assign seqs without making every persistent delivery
//! wait for its batch, which is the cost store-and-dispatch exists to
//! avoid. Seqs therefore come from the router's counter before the append,
//! and the log carries them: every entry names its seq, each batch carries
//! the highest seq used so far (elided ones included), and apply never
//! invents one, so a leader and its followers agree on every seq by
//! construction. What replication needs on top: a new leader must continue
//! above every seq a deposed leader may have handed out, including ones in
//! batches that never committed; e.g. start its counter at the applied
//! `max_seq` plus a per-term gap (or put the term in the seq's high bits),
//! via `Router::restore`'s `next_seq`.
//!
//! # The durability contract, and where each part is kept
//!
//! - A persistent message's enqueue is appended before the message becomes
//!   visible (`Router::publish`), so the log never holds an ack before its
//!   enqueue. The writer starts no batch between that append and the
//!   dispatch ([`Store::append_for_dispatch`]), so the record of the first
//!   delivery joins the enqueue and the consumer never waits for a flush.
//! - A RECEIPT (SEND, ACK, COMMIT) is written only after its [`Commit`]
//!   resolves (`stomp/writer.rs`); a commit resolves after the batch holding
//!   its entries is applied and flushed (`log_writer::run`), or, for a SEND,
//!   when a consumer has acknowledged the message (store-and-dispatch: the
//!   receipt then means "consumed and acknowledged").
//! - A delivery of a stored message is recorded before the consumer can
//!   see it (the router's `DeliveryMarks` decides which deliveries are
//!   recorded; [`Store::hand_off`] releases each once its record is
//!   durable), so after a crash it comes back `redelivered`.
//! - A transaction's appends are one atomic batch: the router's
//!   `Transaction::commit` takes [`Store::hold`] around them.
//! - sled's own timer flusher is off; only the writer flushes.
//! - A body kept in a body file is written and fdatasync'ed before the sled
//!   batch whose record refers to it is applied ([`body_segments`]), so no
//!   record on disk refers to bytes that are not; a file is deleted only
//!   after the flush that made the removal of its last body durable
//!   ([`body_reclaim`]).
//!
//! What a crash can lose: messages without a receipt, acks without a
//! receipt (the message comes back, marked redelivered), and delivery
//! counts of deliveries not yet written to a socket.

pub mod body_counts;
pub mod body_reclaim;
pub mod body_segments;
pub mod checkpoint;
pub mod compact;
pub mod cursor;
pub mod entry;
pub mod lane_bytes;
pub mod log_writer;
pub mod memory;
pub mod paging;
pub mod record;
pub mod replicated;
pub mod sled_store;
pub mod snapshot_image;
pub mod state_machine;
#[cfg(test)]
pub mod test_db;
pub mod upgrade;

use crate::message::Message;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::oneshot;

/// One state change of a persistent message or of durable metadata.
///
/// Entries are applied in append order; that order is the log order, which
/// is also the order messages come back in after a restart (message sequence
/// numbers are not: a transaction's sends get theirs long before COMMIT).
#[derive(Debug, Clone)]
pub enum LogEntry {
    /// A persistent message was published.
    Enqueue {
        /// The message (its destination is inside).
        message: Arc<Message>,
        /// The router did not keep it in memory (its queue's window was
        /// full): it is read back in queue order by the queue's cursor
        /// ([`Store::read_backlog`]), and the pager does not count it.
        backlog: bool,
    },
    /// A persistent message was consumed.
    Ack {
        /// Its destination.
        destination: Arc<str>,
        /// Its sequence number.
        seq: u64,
    },
    /// A persistent message has been handed to consumers `count` times in
    /// total (first delivery, NACKs, returns from closed subscriptions). Kept
    /// so that after a restart it comes back marked redelivered, with its
    /// delivery count.
    Delivered {
        /// Its sequence number.
        seq: u64,
        /// Deliveries so far, this one included.
        count: u32,
    },
    /// Durable router metadata (a durable subscription, a destination's
    /// settings): `value` under `key`, replacing any earlier value. The
    /// store does not interpret either; [`Recovered::meta`] returns them.
    Put {
        /// Namespaced by the caller, e.g. `durable-sub/<client>/<name>`.
        key: Arc<str>,
        /// The caller's own encoding.
        value: bytes::Bytes,
    },
    /// Removes metadata `key`.
    Delete {
        /// The key given to [`LogEntry::Put`].
        key: Arc<str>,
    },
}

impl LogEntry {
    /// Bytes this entry holds while it waits for the writer (for the write
    /// queue's bound and the disk limit).
    pub fn queued_bytes(&self) -> usize {
        match self {
            // About the size of its record (entry::StoredMessage): the
            // fields, each header with its two lengths, the body.
            LogEntry::Enqueue { message, .. } => {
                let headers: usize = message
                    .headers
                    .iter()
                    .map(|(k, v)| 4 + k.len() + v.len())
                    .sum();
                48 + message.destination.len() + headers + message.body.len()
            }
            LogEntry::Ack { .. } | LogEntry::Delivered { .. } => 32,
            LogEntry::Put { key, value } => 32 + key.len() + value.len(),
            LogEntry::Delete { key } => 32 + key.len(),
        }
    }
}

/// A store failure, reported to the producer instead of a receipt.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Writing or flushing failed.
    #[error("store write failed: {0}")]
    Io(String),
    /// The store is over its disk limit.
    #[error("store is full ({0})")]
    Full(String),
    /// The store has shut down.
    #[error("store is closed")]
    Closed,
    /// Cluster mode: the batch was not committed by a majority (this node
    /// is not, or no longer, the leader; or the outcome is unknown).
    #[error("not committed by the cluster: {0}")]
    NotCommitted(String),
}

/// Why the store could not be opened. Always names the data directory.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The directory cannot be created, read or written.
    #[error("data directory {path}: {reason}")]
    Directory {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The files exist but cannot be read as a ferromq store.
    #[error("data directory {path} holds a corrupt store: {reason}")]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store was written by another (newer or unknown) format version.
    #[error(
        "data directory {path} was written in store format {found}, this ferromq reads format {supported} only; \
         refusing to open it (use the ferromq version that wrote it, or move the directory away)"
    )]
    Format {
        /// The data directory.
        path: PathBuf,
        /// The version (or description) found on disk.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
}

/// When appended entries become durable.
#[derive(Debug)]
pub enum Commit {
    /// Already durable (or nothing needed writing).
    Done,
    /// Durable when the receiver yields `Ok(())`.
    Pending(oneshot::Receiver<Result<(), StoreError>>),
    /// Refused before anything was written (store full or closed): the
    /// entries were not appended and must not take effect.
    Failed(StoreError),
}

impl Commit {
    /// Waits until durable.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self {
            Commit::Done => Ok(()),
            Commit::Pending(rx) => rx.await.unwrap_or(Err(StoreError::Closed)),
            Commit::Failed(e) => Err(e),
        }
    }

    /// Whether the append was refused outright.
    pub fn is_failed(&self) -> bool {
        matches!(self, Commit::Failed(_))
    }

    /// Why the append was refused, if it was.
    pub fn failure(&self) -> Option<StoreError> {
        match self {
            Commit::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }
}

/// What a store holds after a restart: the state machine rebuilt from the log.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Messages published and not acknowledged, in log (publication) order,
    /// each with the number of times it had been delivered, for a store
    /// that keeps no backlog: the router holds them all. The sled store
    /// (single node and cluster alike) returns none of them, only lanes.
    pub messages: Vec<(Arc<Message>, u32)>,
    /// A store that keeps a backlog ([`Store::keeps_backlog`]) loads no
    /// message: these lanes hold live messages, which the router reads back
    /// with [`Store::read_backlog`] as its queues drain.
    pub backlog: Vec<state_machine::Lane>,
    /// One past the highest message sequence number ever used.
    pub next_seq: u64,
    /// Metadata written by [`LogEntry::Put`] and not deleted, by key.
    pub meta: Vec<(String, bytes::Bytes)>,
}

/// A durable log of [`LogEntry`]s.
pub trait Store: Send + Sync {
    /// Appends entries in order. The returned [`Commit`] resolves once every
    /// one of them is durable. May block the calling thread briefly when the
    /// write queue is full (backpressure from the disk); never call it while
    /// holding a destination lock.
    fn append(&self, entries: Vec<LogEntry>) -> Commit;

    /// [`Store::append`] for a message about to be dispatched to its
    /// consumers. The store may wait for the returned guard, briefly, before
    /// writing: drop it right after the dispatch, so that the first delivery
    /// is recorded together with the enqueue (no wait for a flush before the
    /// consumer sees it) and an ack arriving soon after can spare the write.
    fn append_for_dispatch(&self, entries: Vec<LogEntry>) -> (Commit, LogHold);

    /// Records a delivery of a stored message (`mark`: its seq and delivery
    /// count) and decides when it may reach the consumer: the delivery
    /// record must be durable no later than the consumer can see the
    /// message, or a crash could bring it back without `redelivered`.
    ///
    /// Returns the handoff when it may go out at once (the record will be
    /// flushed together with the message's own enqueue, or nothing needs
    /// recording); otherwise keeps it and releases it after the flush that
    /// makes the record durable. `must_wait` keeps a subscription's
    /// deliveries in order behind ones still held. Never blocks: it is
    /// called with a destination lock held.
    fn hand_off(
        &self,
        mark: Option<(u64, u32)>,
        must_wait: bool,
        handoff: Handoff,
    ) -> Option<Handoff>;

    /// Keeps the writer from starting a batch until the returned guard is
    /// dropped, so that everything appended meanwhile is applied in one
    /// atomic batch: a transaction's sends and acks are all durable after a
    /// crash, or none is. Hold it only around code that does not wait.
    fn hold(&self) -> LogHold;

    /// Writes everything still queued, flushes, and stops accepting entries.
    /// Called once at shutdown, after the connections are gone.
    fn close(&self);

    /// Size and flush latency for the admin endpoint (`None`: not measured).
    fn metrics(&self) -> Option<crate::metrics::StoreMetrics>;

    /// Bytes of the records of `destination`'s stored messages (persistent,
    /// not yet acknowledged or removed), as applied so far: the admin
    /// endpoint's `store_bytes` ([`lane_bytes`]). 0 for a store that keeps
    /// nothing.
    fn destination_bytes(&self, destination: &str) -> u64 {
        let _ = destination;
        0
    }

    /// Whether the router may leave persistent queue messages in this store
    /// (`LogEntry::Enqueue::backlog`) and read them back with
    /// [`Store::read_backlog`]. A store that says no gets every message held
    /// in memory.
    fn keeps_backlog(&self) -> bool {
        false
    }

    /// Reads up to `limit` messages of one lane (`destination`,
    /// `priority`) after log index `after` that the router does not hold:
    /// see [`cursor`]. Blocks on disk reads: call it outside any
    /// destination lock, off the async workers.
    fn read_backlog(
        &self,
        destination: &str,
        priority: u8,
        after: u64,
        limit: usize,
    ) -> Result<cursor::BacklogRead, StoreError> {
        let _ = (destination, priority, limit);
        Ok(cursor::BacklogRead {
            messages: Vec::new(),
            position: after,
        })
    }
}

/// A delivery the router hands to the store with its delivery record
/// ([`Store::hand_off`]): released (run) once the record is durable. The
/// store does not know what it releases; the router's `DeliveryMarks` puts a
/// delivery for a consumer in it.
pub struct Handoff(Box<dyn FnOnce() + Send>);

impl Handoff {
    /// What to run once the delivery record is durable.
    pub fn new(release: impl FnOnce() + Send + 'static) -> Handoff {
        Handoff(Box::new(release))
    }

    /// Runs it.
    pub fn release(self) {
        (self.0)()
    }
}

/// See [`Store::hold`]. Releases the hold when dropped.
pub struct LogHold {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl LogHold {
    /// A guard that holds nothing.
    pub fn none() -> LogHold {
        LogHold { release: None }
    }

    /// A guard that runs `release` when dropped.
    pub fn new(release: impl FnOnce() + Send + 'static) -> LogHold {
        LogHold {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for LogHold {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}
