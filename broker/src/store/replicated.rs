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
//! Lock order: `state` is taken before the [`DestinationBytes`] view's
//! lock (a leaf); nothing else is called under it but sled.

use super::lane_bytes::DestinationBytes;
use super::record::{
    self, COUNT_PREFIX, DELIVERED_PREFIX, LANE_BYTES_PREFIX, LOG_PREFIX, MESSAGE_PREFIX,
    META_PREFIX, QUEUE_PREFIX, SEQ_PREFIX,
};
use super::state_machine::{LogKeep, Records, SledRecords, StateMachine};
use super::Recovered;
use crate::cluster::{ApplyError, ApplyLog, LogIndex};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Key of the last Raft index applied to the store (cluster mode only).
pub const RAFT_APPLIED_KEY: &[u8] = b"\x00raft_applied";

/// The store's state in cluster mode, shared by the cluster's apply task
/// (which changes it) and the writer and leader startup (which read it).
pub struct ReplicatedState {
    db: sled::Db,
    state: Mutex<Applied>,
    /// Set by the writer when a batch it proposed did not commit: the
    /// router's memory may now be ahead of the log (see `diverged`).
    diverged: AtomicBool,
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
    /// node that becomes leader restores its router from. Every message is
    /// read and held in memory: paging and the queues' backlog (the
    /// cursor) are not wired for cluster mode, though every node applies
    /// and keeps the same records for them.
    pub fn recovered(&self) -> Result<Recovered, String> {
        let _applied = self.lock();
        let (machine, _, meta) = StateMachine::recover(&self.db, LogKeep::NONE)?;
        let records = StateMachine::live_records(&self.db)?;
        Ok(Recovered {
            messages: records
                .into_iter()
                .map(|r| (Arc::new(r.message.into_message(None)), r.delivered))
                .collect(),
            backlog: Vec::new(),
            next_seq: machine.max_seq() + 1,
            meta,
        })
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
        machine
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
        Ok(())
    }

    fn snapshot(&self) -> Result<Bytes, ApplyError> {
        let applied = self.lock();
        let image = applied
            .machine
            .snapshot(&self.db)
            .map_err(|e| ApplyError::new(format!("store snapshot: {e}")))?;
        Ok(Bytes::from(image.to_bytes()))
    }

    fn install_snapshot(&self, index: LogIndex, data: &[u8]) -> Result<(), ApplyError> {
        let mut applied = self.lock();
        let fail = |e: String| ApplyError::new(format!("snapshot install at index {index}: {e}"));
        // The removals go through the same records as the apply, whose
        // reads then see the store empty.
        let mut batch = SledRecords::new(&self.db);
        // Everything the state consists of goes; the snapshot's records
        // (written to the same batch after the removals) replace it.
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
                batch.remove(&key);
            }
        }
        for key in [
            record::APPLIED_KEY,
            record::BATCH_KEY,
            record::MAX_SEQ_KEY,
            record::LIVE_KEY,
        ] {
            batch.remove(key);
        }
        let mut machine = StateMachine::default();
        machine.apply_encoded(data, &mut batch).map_err(fail)?;
        batch.insert(RAFT_APPLIED_KEY, &index.to_be_bytes());
        self.db
            .apply_batch(batch.into_batch())
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
    use crate::store::entry::{self, Ack, EncodedBatch, Entry, Kind, StoredMessage};

    /// The live messages a snapshot holds.
    fn snapshot_messages(data: &[u8]) -> Result<Vec<StoredMessage>, String> {
        let batch = EncodedBatch::from_bytes(data)?;
        Ok(batch
            .entries
            .into_iter()
            .filter_map(|e| match e.kind {
                Some(Kind::Enqueue(m)) => Some(m),
                _ => None,
            })
            .collect())
    }

    fn open(dir: &std::path::Path) -> ReplicatedState {
        let db = sled::open(dir).unwrap();
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
        assert_eq!(state.recovered().unwrap().messages.len(), 2);
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
        let recovered = state.recovered().unwrap();
        assert_eq!(recovered.messages.len(), 1);
        assert_eq!(recovered.messages[0].0.seq, 2);
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
        let image = leader.snapshot().unwrap();
        assert_eq!(snapshot_messages(&image).unwrap().len(), 1);
        let follower = open(b.path());
        // State the snapshot does not have must go.
        let mut other = message(9);
        other.destination = "/queue/z".into();
        follower
            .apply(1, &batch(vec![Kind::Enqueue(other)], 9))
            .unwrap();
        assert!(follower.destination_bytes().get("/queue/z") > 0);
        follower.install_snapshot(3, &image).unwrap();
        assert_eq!(follower.last_applied(), Some(3));
        let recovered = follower.recovered().unwrap();
        let seqs: Vec<u64> = recovered.messages.iter().map(|(m, _)| m.seq).collect();
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
}
