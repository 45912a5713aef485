//! [`ReplicatedState`]: the store's state machine when a cluster orders
//! the log, and its [`ApplyLog`] implementation.
//!
//! In cluster mode the log writer does not apply its batches: it proposes
//! them (`log_writer::replicated`), and every node, the leader included,
//! applies each committed batch here, in log order, from the cluster's
//! state-machine task. The Raft index of the last batch applied is written
//! in the same `sled::Batch` as the state it produced, so the store and its
//! index can never disagree after a crash (the cluster re-applies from the
//! index the store reports, and `apply` ignores what it already has).
//!
//! Applies are not flushed one by one: the Raft log is on disk (fsynced)
//! before an entry commits, and the cluster replays it from
//! [`ApplyLog::last_applied`] after a restart. A snapshot install is
//! flushed, because the log behind it may be gone.
//!
//! # The queue window in cluster mode: what is applied where, and when
//!
//! The leader's router keeps a window of each persistent queue in memory
//! and leaves the rest to the store (`LogEntry::Enqueue::backlog`, see
//! `router::destination::backlog`), as on a single node. What differs is
//! when a message is in the store: on a single node once the writer has
//! applied its batch; here once its batch is committed by a majority and
//! applied by this node's [`ApplyLog::apply`], which every node runs on the
//! same batches in the same (Raft log) order. The ordering, step by step:
//!
//! 1. The leader's router decides (window full, or its lane already has
//!    messages in the store) and counts the message in its lane; the
//!    message is appended with `backlog: true` and leaves the router's
//!    memory. From here until step 3 it is in neither the router nor the
//!    store this node reads: it is in the writer's queue or in a proposed
//!    batch.
//! 2. The writer proposes batches in the order it takes them
//!    (`log_writer::replicated`); the Raft log keeps that order.
//! 3. Each node applies a committed batch here, under `state`: its records
//!    (the message's queue-order `Q` key with the backlog flag and its
//!    record, the lane count `C`) and the Raft index, in one `sled::Batch`. Entries get
//!    their store log index in apply order, so an index is never handed out
//!    below one already applied.
//! 4. The router's cursor reads a lane after the last index it looked at
//!    ([`super::cursor`]): it sees exactly what step 3 applied, never a
//!    proposed batch. A read that comes back short (the batch is still in
//!    flight) is retried; since everything applied later has a higher
//!    index, a message in flight can be neither skipped nor read twice.
//!    A batch that does not commit makes the leader restart (`diverged`),
//!    so the router never waits for a message that will not come.
//! 5. A node becoming leader restores its router with [`ReplicatedState::recovered`]
//!    once every entry in its log is applied (`crate::leadership`): it
//!    reads lane counts, no message, and fixes the boot index (the next
//!    store index) under `state`, so every record below it, whatever its
//!    flag, is the cursor's to read, and every record at or above it is
//!    this leader's own, readable only if its router left it to the store
//!    (flag 1); those it held (flag 0) are in its memory.
//!
//! Body paging (`store.memory_limit`) needs what an apply changed, which
//! only the applying node knows: once the router is restored this keeps the
//! [`super::state_machine::Applied`] of the latest applies (a bounded few) for the writer, which
//! takes each one when its proposal resolves (after the apply) and pages
//! bodies out then ([`super::paging`]): a paged body's record is always in
//! the store before its message refers to it.
//!
//! Bodies stay inline in cluster mode (a decision, for now): the
//! replicated log carries every body, and each node's apply keeps it in
//! its message record; no node writes body files
//! ([`super::body_segments`]). Body files are a node's local layout (which
//! segment and offset a body gets would differ per node and must never be
//! replicated); putting them here would mean each node externalizing the
//! bodies of a committed batch before applying it, under `state`, with a
//! flush before each deletion. A single node's data
//! directory holding body files is refused by `SledStore::open_replicated`.
//!
//! Lock order: `state`, then `changes`; `state` is also taken before the
//! [`DestinationBytes`] view's lock (a leaf); nothing else is called under
//! them but sled.

use super::lane_bytes::DestinationBytes;
use super::record::{
    self, COUNT_PREFIX, DELIVERED_PREFIX, LANE_BYTES_PREFIX, LOG_PREFIX, MESSAGE_PREFIX,
    META_PREFIX, QUEUE_PREFIX, SEQ_PREFIX,
};
use super::snapshot_image;
use super::state_machine::{Applied as Changes, LogKeep, SledRecords, StateMachine};
use super::Recovered;
use crate::cluster::{ApplyError, ApplyLog, LogIndex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Key of the last Raft index applied to the store (cluster mode only).
pub const RAFT_APPLIED_KEY: &[u8] = b"\x00raft_applied";

/// Applies whose changes are kept for the writer's pager, at most: the
/// writer has at most `cluster.max_in_flight` proposals unresolved, far
/// fewer; older ones are dropped (their bodies are then not counted).
const KEPT_CHANGES: usize = 1024;

/// Keys removed per sled batch when a snapshot install clears the store
/// (one batch for a deep store would hold every key in memory).
const REMOVALS_PER_BATCH: usize = 4096;

/// The store's state in cluster mode, shared by the cluster's apply task
/// (which changes it) and the writer and leader startup (which read it).
pub struct ReplicatedState {
    db: sled::Db,
    state: Mutex<Applied>,
    /// Set by the writer when a batch it proposed did not commit: the
    /// router's memory may now be ahead of the log (see `diverged`).
    diverged: AtomicBool,
    /// The first store index of the leader's router (module doc, step 5);
    /// 0 until [`ReplicatedState::recovered`].
    boot_index: AtomicU64,
    /// Set by [`ReplicatedState::recovered`]: this node leads, its writer
    /// pages bodies and takes the applies' changes.
    leading: AtomicBool,
    /// The latest applies' changes, by Raft index (only while `leading`).
    changes: Mutex<VecDeque<(LogIndex, Changes)>>,
    /// Stored bytes per destination, republished after every apply.
    destination_bytes: DestinationBytes,
}

struct Applied {
    machine: StateMachine,
    index: Option<LogIndex>,
}

impl ReplicatedState {
    /// Wraps an opened, recovered store.
    pub fn new(db: sled::Db, mut machine: StateMachine) -> Result<ReplicatedState, String> {
        let index = match db.get(RAFT_APPLIED_KEY).map_err(|e| e.to_string())? {
            None => None,
            Some(raw) => Some(
                record::decode_u64(&raw).ok_or("the store's applied Raft index is malformed")?,
            ),
        };
        let destination_bytes = DestinationBytes::default();
        destination_bytes.replace(machine.lane_bytes_mut());
        Ok(ReplicatedState {
            db,
            state: Mutex::new(Applied { machine, index }),
            diverged: AtomicBool::new(false),
            boot_index: AtomicU64::new(0),
            leading: AtomicBool::new(false),
            changes: Mutex::new(VecDeque::new()),
            destination_bytes,
        })
    }

    /// Records that a proposed batch did not commit (or may not have).
    pub fn mark_diverged(&self) {
        self.diverged.store(true, Ordering::Release);
    }

    /// Whether a proposed batch did not commit since start: the leader
    /// must stop serving and rebuild its router (`crate::leadership`).
    pub fn diverged(&self) -> bool {
        self.diverged.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The highest message sequence number any applied batch used.
    pub fn max_seq(&self) -> u64 {
        self.lock().machine.max_seq()
    }

    /// Bytes of live message records.
    pub fn live_bytes(&self) -> u64 {
        self.lock().machine.live_bytes()
    }

    /// Stored bytes per destination, as applied on this node.
    pub fn destination_bytes(&self) -> DestinationBytes {
        self.destination_bytes.clone()
    }

    /// Everything applied so far, as a restart would recover it: what a
    /// node that becomes leader restores its router from. Like a single
    /// node's restart it reads lane counts, not messages (the queues read
    /// their messages back with the cursor), and it fixes the boot index
    /// the cursor reads with (module doc, step 5). Call it once every entry
    /// in this node's log is applied, and before the router appends.
    pub fn recovered(&self) -> Result<Recovered, String> {
        // Under `state`: no apply runs between reading the counts and
        // fixing the boot index, so each record is counted here or is the
        // new leader's own.
        let _applied = self.lock();
        let (machine, backlog, meta) = StateMachine::recover(&self.db, LogKeep::NONE)?;
        self.boot_index
            .store(machine.next_index(), Ordering::Release);
        self.leading.store(true, Ordering::Release);
        Ok(Recovered {
            messages: Vec::new(),
            backlog,
            next_seq: machine.max_seq() + 1,
            meta,
        })
    }

    /// The first store index of the leader's router: records below it are
    /// all the cursor's to read (see [`super::cursor`]).
    pub fn boot_index(&self) -> u64 {
        self.boot_index.load(Ordering::Acquire)
    }

    /// What the apply of Raft entry `index` changed, taken (the writer's
    /// pager, once the proposal of `index` resolved: after its apply).
    /// `None` when nothing was kept for it (not leading, or not a batch of
    /// this writer's).
    pub fn take_changes(&self, index: LogIndex) -> Option<Changes> {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        // In log order: anything older was never asked for (a proposal
        // that failed) and is dropped with it.
        while let Some((at, _)) = changes.front() {
            if *at > index {
                return None;
            }
            let (at, applied) = changes.pop_front()?;
            if at == index {
                return Some(applied);
            }
        }
        None
    }

    /// Flushes what was applied (at shutdown).
    pub fn flush(&self) -> Result<(), String> {
        self.db.flush().map(|_| ()).map_err(|e| e.to_string())
    }
}

impl ApplyLog for ReplicatedState {
    fn apply(&self, index: LogIndex, payload: &[u8]) -> Result<(), ApplyError> {
        let mut applied = self.lock();
        if applied.index.is_some_and(|last| index <= last) {
            return Ok(());
        }
        // On a copy: a batch that does not decode changes nothing.
        let mut machine = applied.machine.clone();
        let mut batch = SledRecords::new(&self.db);
        let changed = machine
            .apply_encoded(payload, &mut batch)
            .map_err(|e| ApplyError::new(format!("batch at index {index}: {e}")))?;
        // Same sled batch as the state it produced (module doc).
        batch.insert(RAFT_APPLIED_KEY, &index.to_be_bytes());
        self.db
            .apply_batch(batch.into_batch())
            .map_err(|e| ApplyError::new(format!("store write at index {index}: {e}")))?;
        applied.machine = machine;
        applied.index = Some(index);
        self.destination_bytes
            .publish(applied.machine.lane_bytes_mut());
        // Ordering: kept only after the records are in sled, so the pager
        // never refers a body to a record a reader cannot find yet.
        if self.leading.load(Ordering::Acquire) {
            let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
            if changes.len() >= KEPT_CHANGES {
                changes.pop_front();
            }
            changes.push_back((index, changed));
        }
        Ok(())
    }

    fn snapshot(&self, out: &mut dyn std::io::Write) -> Result<(), ApplyError> {
        // Under `state`: no apply runs while the image is read, so it is
        // the state at `index`. Written frame by frame (snapshot_image).
        let applied = self.lock();
        snapshot_image::write(&self.db, applied.machine.max_seq(), out)
            .map(|_| ())
            .map_err(|e| ApplyError::new(format!("store snapshot: {e}")))
    }

    fn install_snapshot(
        &self,
        index: LogIndex,
        data: &mut dyn std::io::Read,
    ) -> Result<(), ApplyError> {
        let mut applied = self.lock();
        let fail = |e: String| ApplyError::new(format!("snapshot install at index {index}: {e}"));
        // Durability ordering: the applied index goes first, in a write of
        // its own. The install takes several sled batches (memory stays
        // bounded by one frame), and sled recovers writes in order, so a
        // crash part way leaves a store with no applied index, which the
        // cluster restores from its persisted snapshot again on open
        // (`cluster::state_machine`); never a half-installed store that
        // claims an index.
        self.db
            .remove(RAFT_APPLIED_KEY)
            .map_err(|e| fail(e.to_string()))?;
        applied.index = None;
        // Everything the state consists of goes; the snapshot's records
        // replace it.
        let mut removals = sled::Batch::default();
        let mut pending = 0;
        for prefix in [
            LOG_PREFIX,
            MESSAGE_PREFIX,
            DELIVERED_PREFIX,
            META_PREFIX,
            SEQ_PREFIX,
            QUEUE_PREFIX,
            COUNT_PREFIX,
            LANE_BYTES_PREFIX,
        ] {
            for item in self.db.scan_prefix([prefix]) {
                let (key, _) = item.map_err(|e| fail(e.to_string()))?;
                removals.remove(key);
                pending += 1;
                if pending >= REMOVALS_PER_BATCH {
                    self.db
                        .apply_batch(std::mem::take(&mut removals))
                        .map_err(|e| fail(e.to_string()))?;
                    pending = 0;
                }
            }
        }
        for key in [
            record::APPLIED_KEY,
            record::BATCH_KEY,
            record::MAX_SEQ_KEY,
            record::LIVE_KEY,
        ] {
            removals.remove(key);
        }
        self.db
            .apply_batch(removals)
            .map_err(|e| fail(e.to_string()))?;
        // The image's frames are applied in order, each in its own batch,
        // as the single batch they stand for would have been.
        let mut machine = StateMachine::default();
        while let Some(frame) = snapshot_image::read_frame(data).map_err(fail)? {
            let mut batch = SledRecords::new(&self.db);
            machine.apply_encoded(&frame, &mut batch).map_err(fail)?;
            self.db
                .apply_batch(batch.into_batch())
                .map_err(|e| fail(e.to_string()))?;
        }
        self.db
            .insert(RAFT_APPLIED_KEY, &index.to_be_bytes())
            .map_err(|e| fail(e.to_string()))?;
        // Durability ordering: the log behind the snapshot may be purged, so
        // the installed state is on disk before this returns.
        self.db.flush().map_err(|e| fail(format!("flush: {e}")))?;
        applied.machine = machine;
        applied.index = Some(index);
        self.destination_bytes
            .replace(applied.machine.lane_bytes_mut());
        Ok(())
    }

    fn last_applied(&self) -> Option<LogIndex> {
        self.lock().index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BodySource;
    use crate::store::cursor::{self, BacklogRead};
    use crate::store::entry::{self, Ack, EncodedBatch, Entry, Kind, StoredMessage};
    use bytes::Bytes;
    use std::sync::Arc;

    struct NoBodies;

    impl BodySource for NoBodies {
        fn read_body(&self, _index: u64) -> Result<Bytes, String> {
            Err("not in this test".into())
        }
    }

    /// Reads lane (`/queue/a`, 0) after `after` as the leader's cursor
    /// does.
    fn read_lane(state: &ReplicatedState, after: u64) -> BacklogRead {
        let bodies: Arc<dyn BodySource> = Arc::new(NoBodies);
        cursor::read(
            &state.db,
            "/queue/a",
            0,
            after,
            state.boot_index(),
            1000,
            &bodies,
        )
        .unwrap()
    }

    fn seqs(read: &BacklogRead) -> Vec<u64> {
        read.messages.iter().map(|m| m.message.seq).collect()
    }

    /// Restores as a new leader does (lane counts only) and reads every
    /// lane back with the cursor: the live messages' seqs.
    fn restored(state: &ReplicatedState) -> (Vec<u64>, Recovered) {
        let recovered = state.recovered().unwrap();
        assert!(recovered.messages.is_empty(), "a restore reads no message");
        let mut all = Vec::new();
        for lane in &recovered.backlog {
            assert_eq!((lane.destination.as_str(), lane.priority), ("/queue/a", 0));
            let read = read_lane(state, 0);
            assert_eq!(read.messages.len() as u64, lane.messages);
            all.extend(seqs(&read));
        }
        (all, recovered)
    }

    fn left(seq: u64) -> Kind {
        Kind::Enqueue(StoredMessage {
            backlog: true,
            ..message(seq)
        })
    }

    /// The live messages a snapshot image holds.
    fn snapshot_messages(mut data: &[u8]) -> Result<Vec<StoredMessage>, String> {
        let mut messages = Vec::new();
        while let Some(frame) = snapshot_image::read_frame(&mut data)? {
            let batch = EncodedBatch::from_bytes(&frame)?;
            messages.extend(batch.entries.into_iter().filter_map(|e| match e.kind {
                Some(Kind::Enqueue(m)) => Some(m),
                _ => None,
            }));
        }
        Ok(messages)
    }

    /// The image [`ApplyLog::snapshot`] writes, in memory.
    fn image(state: &ReplicatedState) -> Vec<u8> {
        let mut image = Vec::new();
        state.snapshot(&mut image).unwrap();
        image
    }

    fn open(dir: &std::path::Path) -> ReplicatedState {
        let db = crate::store::test_db::open(dir);
        let (machine, _, _) = StateMachine::recover(&db, LogKeep::NONE).unwrap();
        ReplicatedState::new(db, machine).unwrap()
    }

    fn message(seq: u64) -> StoredMessage {
        StoredMessage {
            seq,
            destination: "/queue/a".into(),
            body: Bytes::from_static(b"hello"),
            ..Default::default()
        }
    }

    fn batch(entries: Vec<Kind>, max_seq: u64) -> Vec<u8> {
        EncodedBatch {
            format: entry::FORMAT,
            max_seq,
            entries: entries
                .into_iter()
                .map(|kind| Entry { kind: Some(kind) })
                .collect(),
        }
        .to_bytes()
    }

    #[test]
    fn apply_is_idempotent_per_index_and_the_index_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let first = batch(
            vec![Kind::Enqueue(message(1)), Kind::Enqueue(message(2))],
            2,
        );
        state.apply(5, &first).unwrap();
        // Replayed after a restart: ignored.
        state.apply(5, &first).unwrap();
        state.apply(4, &first).unwrap();
        assert_eq!(restored(&state).0, vec![1, 2]);
        let ack = batch(
            vec![Kind::Ack(Ack {
                seq: 1,
                ..Default::default()
            })],
            2,
        );
        state.apply(6, &ack).unwrap();
        assert_eq!(state.last_applied(), Some(6));
        state.flush().unwrap();
        drop(state);
        let state = open(dir.path());
        assert_eq!(state.last_applied(), Some(6));
        let (seqs, recovered) = restored(&state);
        assert_eq!(seqs, vec![2]);
        assert_eq!(recovered.next_seq, 3);
    }

    #[test]
    fn a_batch_that_does_not_decode_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        assert!(state.apply(1, b"\xff\xff garbage").is_err());
        assert_eq!(state.last_applied(), None);
        assert_eq!(state.max_seq(), 0);
    }

    #[test]
    fn a_snapshot_installed_elsewhere_replaces_the_whole_state() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = open(a.path());
        leader
            .apply(
                1,
                &batch(
                    vec![
                        Kind::Enqueue(message(1)),
                        Kind::Enqueue(message(2)),
                        Kind::Ack(Ack {
                            seq: 1,
                            ..Default::default()
                        }),
                    ],
                    7,
                ),
            )
            .unwrap();
        let image = image(&leader);
        assert_eq!(snapshot_messages(&image).unwrap().len(), 1);
        let follower = open(b.path());
        // State the snapshot does not have must go.
        let mut other = message(9);
        other.destination = "/queue/z".into();
        follower
            .apply(1, &batch(vec![Kind::Enqueue(other)], 9))
            .unwrap();
        assert!(follower.destination_bytes().get("/queue/z") > 0);
        follower.install_snapshot(3, &mut &image[..]).unwrap();
        assert_eq!(follower.last_applied(), Some(3));
        let (seqs, recovered) = restored(&follower);
        assert_eq!(seqs, vec![2]);
        assert_eq!(recovered.next_seq, 8);
        // The follower derived the same queue order and lane counts as the
        // leader, nothing of the state it had before.
        let (_, lanes, _) = StateMachine::recover(&follower.db, LogKeep::NONE).unwrap();
        let counted: Vec<(String, u64)> = lanes
            .into_iter()
            .map(|l| (l.destination, l.messages))
            .collect();
        assert_eq!(counted, vec![("/queue/a".to_string(), 1)]);
        let ordered = |db: &sled::Db| -> Vec<Vec<u8>> {
            db.scan_prefix([QUEUE_PREFIX])
                .values()
                .map(|v| v.unwrap().to_vec())
                .collect()
        };
        assert_eq!(ordered(&follower.db), ordered(&leader.db));
        // Stored bytes per destination: the same on both nodes, live and
        // after a reopen; the follower's own message 9 (on another
        // destination, see below) left nothing behind.
        let stored = leader.destination_bytes().get("/queue/a");
        assert!(stored > 0);
        assert_eq!(follower.destination_bytes().get("/queue/a"), stored);
        assert_eq!(follower.destination_bytes().get("/queue/z"), 0);
        drop(follower);
        let reopened = open(b.path());
        assert_eq!(reopened.last_applied(), Some(3));
        assert_eq!(reopened.destination_bytes().get("/queue/a"), stored);
        assert_eq!(reopened.destination_bytes().get("/queue/z"), 0);
    }

    /// A writer that keeps only a count and the largest single write: the
    /// image builder must hand over bounded pieces, not the whole image.
    #[derive(Default)]
    struct Measured {
        bytes: usize,
        largest: usize,
        data: Vec<u8>,
    }

    impl std::io::Write for Measured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes += buf.len();
            self.largest = self.largest.max(buf.len());
            self.data.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A reader that hands out at most 1000 bytes per call, like a file
    /// read in small pieces.
    struct Trickle<'a>(&'a [u8]);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1000).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_snapshot_larger_than_a_frame_round_trips_in_bounded_pieces() {
        const MESSAGES: u64 = 3000;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = open(a.path());
        let body = Bytes::from(vec![7u8; 1024]);
        for chunk in 0..MESSAGES / 100 {
            let kinds = (1..=100)
                .map(|i| {
                    let mut m = message(chunk * 100 + i);
                    m.body = body.clone();
                    Kind::Enqueue(m)
                })
                .collect();
            leader
                .apply(chunk + 1, &batch(kinds, (chunk + 1) * 100))
                .unwrap();
        }
        // Some delivery counts, interleaved with the messages' order.
        let delivered = (1..=MESSAGES)
            .step_by(7)
            .map(|seq| Kind::Delivered(entry::Delivered { seq, count: 2 }))
            .collect();
        leader.apply(100, &batch(delivered, MESSAGES)).unwrap();
        let mut out = Measured::default();
        leader.snapshot(&mut out).unwrap();
        // ~3 MB of bodies: several frames, and no write near the image's
        // size (each write is one frame or its length).
        assert!(out.bytes > 2 * snapshot_image::FRAME_BYTES, "{}", out.bytes);
        assert!(
            out.largest <= snapshot_image::FRAME_BYTES + 2048,
            "largest write {} of {}",
            out.largest,
            out.bytes
        );
        let follower = open(b.path());
        follower
            .install_snapshot(100, &mut Trickle(&out.data))
            .unwrap();
        assert_eq!(follower.last_applied(), Some(100));
        let recovered = follower.recovered().unwrap();
        assert_eq!(recovered.backlog[0].messages, MESSAGES);
        assert_eq!(recovered.next_seq, MESSAGES + 1);
        // Read back in pages, as the leader's cursor does.
        let (mut got, mut position) = (Vec::new(), 0);
        for _ in 0..MESSAGES {
            let read = read_lane(&follower, position);
            if read.messages.is_empty() {
                break;
            }
            assert!(read
                .messages
                .iter()
                .all(|m| m.message.body.len() == body.len()));
            position = read.position;
            got.extend(seqs(&read));
        }
        assert_eq!(got, (1..=MESSAGES).collect::<Vec<_>>());
        let counts = |db: &sled::Db| -> Vec<Vec<u8>> {
            db.scan_prefix([DELIVERED_PREFIX])
                .values()
                .map(|v| v.unwrap().to_vec())
                .collect()
        };
        assert_eq!(counts(&follower.db).len() as u64, MESSAGES.div_ceil(7));
        assert_eq!(
            follower.destination_bytes().get("/queue/a"),
            leader.destination_bytes().get("/queue/a")
        );
        // A truncated image is refused, and the store is left with no
        // applied index (the cluster restores it from its snapshot file).
        let cut = &out.data[..out.data.len() / 2];
        assert!(follower.install_snapshot(200, &mut Trickle(cut)).is_err());
        assert_eq!(follower.last_applied(), None);
    }

    #[test]
    fn a_new_leaders_cursor_reads_what_came_before_it_and_then_only_what_its_router_left() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        // The previous leader held 1 and 2 in memory and left 3 to the
        // store: for the new leader all three are in the store.
        let before = batch(
            vec![
                Kind::Enqueue(message(1)),
                Kind::Enqueue(message(2)),
                left(3),
            ],
            3,
        );
        state.apply(1, &before).unwrap();
        assert_eq!(state.take_changes(1), None, "kept only once leading");
        let (all, recovered) = restored(&state);
        assert_eq!(all, vec![1, 2, 3]);
        assert_eq!(recovered.backlog[0].messages, 3);
        let position = read_lane(&state, 0).position;
        // This leader's batches: 4 held by its router, 5 and 6 left to the
        // store, in two batches proposed one after the other.
        let first = batch(vec![Kind::Enqueue(message(4)), left(5)], 5);
        let second = batch(vec![left(6)], 6);
        // Proposed, not applied: nothing to read, and the position stays
        // where it was, so nothing is skipped once they are applied.
        let short = read_lane(&state, position);
        assert!(short.messages.is_empty());
        assert_eq!(short.position, position);
        state.apply(2, &first).unwrap();
        let read = read_lane(&state, position);
        assert_eq!(seqs(&read), vec![5], "4 is in the router's memory");
        let in_flight = read_lane(&state, read.position);
        assert!(in_flight.messages.is_empty(), "{:?}", seqs(&in_flight));
        assert_eq!(in_flight.position, read.position);
        state.apply(3, &second).unwrap();
        let read = read_lane(&state, read.position);
        assert_eq!(seqs(&read), vec![6]);
        assert!(read_lane(&state, read.position).messages.is_empty());
        // The pager gets each apply's changes once, in log order.
        let changes = state.take_changes(2).unwrap();
        let stored: Vec<u64> = changes.stored.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(stored, vec![4, 5]);
        assert_eq!(state.take_changes(2), None);
        assert_eq!(state.take_changes(3).unwrap().stored.len(), 1);
    }

    /// Applies race the cursor's reads (the cluster's apply task and the
    /// router's reader run on different threads): every message left to
    /// the store is read exactly once, in log order, and a read never
    /// returns what is not applied yet.
    #[test]
    fn reads_racing_applies_neither_skip_nor_repeat_a_message() {
        const N: u64 = 300;
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(open(dir.path()));
        restored(&state);
        let applier = {
            let state = state.clone();
            std::thread::spawn(move || {
                for seq in 1..=N {
                    // One held message between two left ones now and then.
                    let mut kinds = vec![left(seq * 2)];
                    if seq % 3 == 0 {
                        kinds.push(Kind::Enqueue(message(seq * 2 + 1)));
                    }
                    state.apply(seq, &batch(kinds, seq * 2 + 1)).unwrap();
                }
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let (mut got, mut position) = (Vec::new(), 0);
        while (got.len() as u64) < N {
            assert!(std::time::Instant::now() < deadline, "read {}", got.len());
            let applied_before = state.last_applied().unwrap_or(0);
            let read = read_lane(&state, position);
            let applied_after = state.last_applied().unwrap_or(0);
            // Never past what is applied: the newest seq read was applied
            // by the time the read returned.
            if let Some(last) = read.messages.last() {
                assert!(last.message.seq / 2 <= applied_after);
            }
            assert!(read.position >= position);
            position = read.position;
            got.extend(seqs(&read));
            if read.messages.is_empty() && applied_before == N {
                break;
            }
        }
        applier.join().unwrap();
        let want: Vec<u64> = (1..=N).map(|s| s * 2).collect();
        assert_eq!(got, want);
    }
}
