//! The Raft log on sled: entries, the vote and the committed log id, in
//! their own trees of the cluster's sled database (`<data_dir>/raft/`).
//!
//! Durability ordering (the contract the quorum rests on, see Jepsen's NATS
//! 2.12.1 analysis): an appended entry is reported durable to openraft (the
//! `LogFlushed` callback) only after the log's flush has returned, and a
//! vote is saved only once it is flushed.
//!
//! Appends (their write and flush together) and the other flushes run on
//! tokio's blocking threads ([`flush`]), never on a runtime worker, and not
//! with sled
//! 0.34's `flush_async`: that one runs the flush on sled's own I/O pool,
//! which adds threads only once more than seven tasks are queued, while the
//! flush waits for log writes and file truncations queued on that same pool
//! (a purge frees segments at the file's end, which queues truncations).
//! Flushes that occupy the pool's threads could then wait for work that
//! no thread takes (sled issues 1241 and 1308: concurrent `flush_async`
//! deadlocks in 0.34.x, fixed only in unreleased sled). openraft counts a follower's
//! acknowledgement, and the leader's own copy, toward the commit quorum only
//! after that callback, so "committed" means "fsynced on a majority".

// openraft's storage traits return its `StorageError` (large); the helpers
// here return the same type so `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};

use super::codec;
use super::stages::{self, Event, Stage};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The tree of log entries, keyed by big-endian index (so sled's order is
/// the log's order).
const LOG_TREE: &str = "raft_log";
/// The tree of single-valued records below.
const META_TREE: &str = "raft_meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// The cluster database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the cluster log at {path}: {source}")]
pub struct OpenLogError {
    /// The directory.
    pub path: String,
    /// sled's reason.
    pub source: sled::Error,
}

/// Opens (creating if needed) the cluster's sled database at `dir` with
/// the default cache (`cluster.log_cache`'s default).
#[cfg(test)]
pub(crate) fn open_db(dir: &Path) -> Result<sled::Db, OpenLogError> {
    open_db_with_cache(dir, 64 << 20)
}

/// Opens (creating if needed) the cluster's sled database at `dir`. Its
/// timer flusher is off: every write that must be durable flushes itself.
/// Its page cache holds at most `cache_bytes` (`cluster.log_cache`):
/// sled's own default is 1 GiB, which a busy log fills with entries that
/// were replicated, applied and purged long ago.
pub(crate) fn open_db_with_cache(dir: &Path, cache_bytes: u64) -> Result<sled::Db, OpenLogError> {
    let config = sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .cache_capacity(cache_bytes);
    // sled's file lock outlives a dropped `Db` for a moment (its IO threads
    // still hold the file), which matters when a node restarts within one
    // process: retry a lock conflict briefly before reporting it.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("acquire lock") && attempts < 80 => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            opened => {
                return opened.map_err(|source| OpenLogError {
                    path: dir.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// The log store. Cheap to clone (sled trees are shared handles); a clone is
/// also the log reader openraft's replication tasks use.
#[derive(Clone)]
pub(crate) struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    /// One more than the index purged up to (0: nothing purged); entries
    /// at or below that index may still be in the tree until the purge
    /// thread removed them, and are never read.
    purged_below: Arc<AtomicU64>,
    /// The purge thread's queue: the index to remove entries up to.
    purges: mpsc::SyncSender<u64>,
}

/// Entries the purge thread removes per sled batch.
const PURGE_BATCH: usize = 1024;
/// Purges waiting for the thread, at most; one more is dropped, since the
/// next one removes everything below it too.
const PURGE_QUEUE: usize = 4;

impl LogStore {
    /// Opens the log of a node that is starting (see
    /// [`LogStore::forget_leadership`]).
    pub(crate) fn open(db: &sled::Db) -> Result<LogStore, StorageError> {
        let open = |name| {
            db.open_tree(name)
                .map_err(|e| StorageError::from(StorageIOError::read(&e)))
        };
        let log = open(LOG_TREE)?;
        let meta = open(META_TREE)?;
        let (purges, queued) = mpsc::sync_channel(PURGE_QUEUE);
        let store = LogStore {
            purged_below: Arc::new(AtomicU64::new(0)),
            log: log.clone(),
            meta,
            purges,
        };
        if let Some(purged) = store.read_log_id(KEY_PURGED)? {
            store
                .purged_below
                .store(purged.index.saturating_add(1), Ordering::Release);
            // Entries a crash left below the marker go too.
            let _ = store.purges.try_send(purged.index);
        }
        std::thread::Builder::new()
            .name("ferromq-raft-purge".into())
            .spawn(move || remove_purged(&log, queued))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        store.forget_leadership()?;
        Ok(store)
    }

    /// A node resumes no leadership across a restart: a saved vote that is
    /// this node's own committed one (it was leader when it stopped) is
    /// saved back uncommitted. openraft restores a node with such a vote as
    /// leader of that same term at once, and the broker's seq floor is per
    /// term (`leadership::seq_floor`): a second life serving the same term
    /// would hand out again seqs the first one gave to messages that never
    /// reached the log (store-and-dispatch) or were acked since, so one
    /// message id would name two messages. Uncommitted, the vote still binds
    /// this node to its term (it votes for no one else in it); it starts as
    /// a follower and must win a new term to lead again. A committed vote
    /// for another node is downgraded too: that leader commits it again
    /// with its next heartbeat.
    fn forget_leadership(&self) -> Result<(), StorageError> {
        let Some(bytes) = self
            .meta
            .get(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(&e))?
        else {
            return Ok(());
        };
        let mut vote = codec::decode_vote(&bytes).map_err(|e| StorageIOError::read_vote(&e))?;
        if !vote.committed {
            return Ok(());
        }
        vote.committed = false;
        self.meta
            .insert(KEY_VOTE, codec::encode_vote(&vote))
            .map_err(|e| StorageIOError::write_vote(&e))?;
        // Durability: flushed before openraft reads it, like every vote.
        self.meta
            .flush()
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    /// The log id of the entry at `index`, if it is still in the log.
    pub(crate) fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StorageError> {
        let Some(bytes) = self
            .log
            .get(index.to_be_bytes())
            .map_err(|e| StorageIOError::read_log_at_index(index, &e))?
        else {
            return Ok(None);
        };
        let entry = codec::decode_entry(&bytes)
            .map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
        Ok(Some(entry.log_id))
    }

    fn read_log_id(&self, key: &[u8]) -> Result<Option<LogId>, StorageError> {
        let Some(bytes) = self.meta.get(key).map_err(|e| StorageIOError::read(&e))? else {
            return Ok(None);
        };
        codec::decode_log_id(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read(&e).into())
    }
}

/// Flushes `tree` (its whole database) on a blocking thread (module doc:
/// why not sled's `flush_async`).
async fn flush(tree: &sled::Tree) -> Result<(), std::io::Error> {
    let tree = tree.clone();
    match tokio::task::spawn_blocking(move || tree.flush()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(e) => Err(std::io::Error::other(format!("the flush task failed: {e}"))),
    }
}

/// The purge thread: removes the entries at or below each index it is
/// sent, a batch at a time, until every `LogStore` handle is gone.
///
/// Why a thread: removing a purge's entries (10,000 at the default
/// `snapshot_every`) in the call took openraft's core task over a second
/// on this loaded machine, in which it sent no heartbeat and handled no
/// answer, so the leader's lease ran out and it fenced itself right after
/// its first snapshot (failover-snapshots-2026-12-08: purge_log at
/// 01:50:29.018, the core's next line 0.85 s later, fenced at 30.080).
/// Lock ordering: none; the thread shares only sled's own locks.
fn remove_purged(log: &sled::Tree, queued: mpsc::Receiver<u64>) {
    while let Ok(upto) = queued.recv() {
        loop {
            let mut batch = sled::Batch::default();
            let mut removed = 0;
            for item in log.range(..=upto.to_be_bytes()).keys().take(PURGE_BATCH) {
                match item {
                    Ok(key) => {
                        batch.remove(key);
                        removed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: reading the log to purge it");
                        break;
                    }
                }
            }
            if removed == 0 {
                break;
            }
            if let Err(e) = log.apply_batch(batch) {
                // Left for the next purge, which removes these too.
                tracing::warn!(error = %e, "cluster: removing purged log entries");
                break;
            }
        }
    }
}

fn index_key(bound: Bound<&u64>) -> Bound<[u8; 8]> {
    match bound {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let keys = (index_key(range.start_bound()), index_key(range.end_bound()));
        let purged_below = self.purged_below.load(Ordering::Acquire);
        let mut entries = Vec::new();
        for item in self.log.range::<[u8; 8], _>(keys) {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry = codec::decode_entry(&bytes).map_err(|e| StorageIOError::read_logs(&e))?;
            // Purged, not removed yet (`remove_purged`).
            if entry.log_id.index < purged_below {
                continue;
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.read_log_id(KEY_PURGED)?;
        let last = match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((_, bytes)) => Some(
                codec::decode_entry(&bytes)
                    .map_err(|e| StorageIOError::read_logs(&e))?
                    .log_id,
            ),
            None => None,
        };
        // Entries the purge thread has not removed yet are below the
        // marker: the last log id is never below it.
        let last_log_id = match (last, last_purged_log_id) {
            (Some(last), Some(purged)) if last.index <= purged.index => Some(purged),
            (last, purged) => last.or(purged),
        };
        Ok(LogState {
            last_log_id,
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta
            .insert(KEY_VOTE, codec::encode_vote(vote))
            .map_err(|e| StorageIOError::write_vote(&e))?;
        // Durability: a vote must survive a crash before it is acted on, or
        // a restarted node could vote twice in one term.
        flush(&self.meta)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let Some(bytes) = self
            .meta
            .get(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(&e))?
        else {
            return Ok(None);
        };
        codec::decode_vote(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: the committed id only saves re-learning it from the
        // leader after a restart; the next append's flush carries it anyway.
        let result = match committed {
            Some(log_id) => self
                .meta
                .insert(KEY_COMMITTED, codec::encode_log_id(&log_id)),
            None => self.meta.remove(KEY_COMMITTED),
        };
        result.map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_log_id(KEY_COMMITTED)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        let mut indexes: Option<(u64, u64)> = None;
        for entry in entries {
            let bytes = codec::encode_entry(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            let index = entry.log_id.index;
            indexes = Some(indexes.map_or((index, index), |(first, _)| (first, index)));
            batch.insert(&index.to_be_bytes(), bytes);
        }
        // The write and its flush run together on a blocking thread: a
        // sled write can wait on sled's locks while another flush runs, and
        // on a runtime worker that wait stalls every session. openraft
        // 0.9's core awaits the flush before it goes on either way.
        // Durability ordering: written, flushed, then reported. The callback
        // is what lets openraft count this copy toward the commit quorum.
        let log = self.log.clone();
        let written = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            log.apply_batch(batch)?;
            let written = Instant::now();
            log.flush()?;
            Ok::<_, sled::Error>((started, written, Instant::now()))
        })
        .await;
        let (started, written, done) = match written {
            Ok(Ok(times)) => times,
            Ok(Err(e)) => return Err(StorageIOError::write_logs(&e).into()),
            Err(e) => {
                let e = std::io::Error::other(format!("the cluster log's write task failed: {e}"));
                return Err(StorageIOError::write_logs(&e).into());
            }
        };
        // Readable from here on (openraft may read them back for
        // replication).
        stages::record(Stage::LogWrite, written - started);
        stages::record(Stage::LogFlush, done - written);
        if let Some((first, last)) = indexes {
            stages::note(first, last, Event::AppendStart, started);
            stages::note(first, last, Event::AppendWritten, written);
            stages::note(first, last, Event::AppendFlushed, done);
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Removes the conflicting suffix from `log_id.index` on. Not flushed
        // here: sled persists in write order, so the flush of the append that
        // replaces these entries makes the removal durable first; until then
        // the removed entries are uncommitted ones a restart may show again
        // and the leader will truncate again.
        let from = log_id.index.to_be_bytes();
        let mut batch = sled::Batch::default();
        for item in self.log.range(from..) {
            let (key, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Only the marker is written here; the entries behind it are
        // removed by the purge thread (`remove_purged`: why) and are never
        // read meanwhile. Not flushed: sled persists in write order, so the
        // next append's flush makes it durable, and a marker lost in a
        // crash only leaves entries openraft purges again.
        self.meta
            .insert(KEY_PURGED, codec::encode_log_id(&log_id))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.purged_below
            .fetch_max(log_id.index.saturating_add(1), Ordering::AcqRel);
        // A full queue already holds a purge, and each removes everything
        // at or below its index: this one is covered by the next.
        let _ = self.purges.try_send(log_id.index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restarted_node_forgets_that_it_led_but_not_its_vote() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut store = LogStore::open(&db).unwrap();
        store.save_vote(&Vote::new_committed(7, 2)).await.unwrap();
        // The same life reads what it saved.
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new_committed(7, 2))
        );
        // The next life: same term and node, no longer committed.
        let mut reopened = LogStore::open(&db).unwrap();
        assert_eq!(reopened.read_vote().await.unwrap(), Some(Vote::new(7, 2)));
        // An uncommitted vote is kept as it is.
        let mut again = LogStore::open(&db).unwrap();
        assert_eq!(again.read_vote().await.unwrap(), Some(Vote::new(7, 2)));
    }

    /// Writes entries 1..=n of term 1 as `append` does (openraft's flush
    /// callback cannot be made outside it).
    fn append_n(store: &LogStore, n: u64) {
        use openraft::{CommittedLeaderId, EntryPayload};
        for index in 1..=n {
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Blank,
            };
            store
                .log
                .insert(index.to_be_bytes(), codec::encode_entry(&entry).unwrap())
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_hides_its_entries_at_once_and_the_thread_removes_them() {
        use openraft::CommittedLeaderId;
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut store = LogStore::open(&db).unwrap();
        append_n(&store, 5000);
        let upto = LogId::new(CommittedLeaderId::new(1, 1), 4000);
        store.purge(upto).await.unwrap();
        // Never read again, whether or not removed yet.
        let left = store.try_get_log_entries(0..=5000).await.unwrap();
        assert_eq!(left.len(), 1000);
        assert_eq!(left[0].log_id.index, 4001);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(upto));
        assert_eq!(state.last_log_id.map(|id| id.index), Some(5000));
        // The thread removes them (bounded wait: 30 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while store.log.len() > 1000 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} left",
                store.log.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            store.log.first().unwrap().map(|(k, _)| k.to_vec()),
            Some(4001u64.to_be_bytes().to_vec())
        );
        // Purging everything: the last log id is the marker's.
        let all = LogId::new(CommittedLeaderId::new(1, 1), 5000);
        store.purge(all).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(all));
        assert!(store.try_get_log_entries(0..).await.unwrap().is_empty());
    }
}
