//! The Raft log on sled: entries, the vote and the committed log id, in
//! their own trees of the cluster's sled database (`<data_dir>/raft/`).
//!
//! Durability ordering (the contract the quorum rests on, see Jepsen's NATS
//! 2.12.1 analysis): an appended entry is reported durable to openraft (the
//! `LogFlushed` callback) only after the log's flush has returned, and a
//! vote is saved only once it is flushed.
//!
//! Flushes run on tokio's blocking threads ([`flush`]), not with sled
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

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};

use super::codec;
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

/// Opens (creating if needed) the cluster's sled database at `dir`. Its
/// timer flusher is off: every write that must be durable flushes itself.
pub(crate) fn open_db(dir: &Path) -> Result<sled::Db, OpenLogError> {
    let config = sled::Config::new().path(dir).flush_every_ms(None);
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
}

impl LogStore {
    /// Opens the log of a node that is starting (see
    /// [`LogStore::forget_leadership`]).
    pub(crate) fn open(db: &sled::Db) -> Result<LogStore, StorageError> {
        let open = |name| {
            db.open_tree(name)
                .map_err(|e| StorageError::from(StorageIOError::read(&e)))
        };
        let store = LogStore {
            log: open(LOG_TREE)?,
            meta: open(META_TREE)?,
        };
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
        let mut entries = Vec::new();
        for item in self.log.range::<[u8; 8], _>(keys) {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            entries.push(codec::decode_entry(&bytes).map_err(|e| StorageIOError::read_logs(&e))?);
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
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
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
        for entry in entries {
            let bytes = codec::encode_entry(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        // Readable as soon as `apply_batch` returns (openraft may read them
        // back for replication before they are durable; that is allowed).
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Durability ordering: flush, then report. The callback is what lets
        // openraft count this copy toward the commit quorum.
        let flushed = flush(&self.log).await;
        callback.log_io_completed(
            flushed.map_err(|e| std::io::Error::other(format!("flushing the cluster log: {e}"))),
        );
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
        // The purge marker goes first: should a crash come between the two
        // writes, the state says "purged up to here" and the leftover entries
        // below it are never read.
        self.meta
            .insert(KEY_PURGED, codec::encode_log_id(&log_id))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let to = log_id.index.to_be_bytes();
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=to) {
            let (key, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
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
}
