//! The Raft state machine: an adapter that hands committed entries to the
//! store's [`ApplyLog`] and keeps what openraft needs beside it (the
//! membership history and the current snapshot, in the cluster database).
//!
//! Which index is applied is the store's word ([`ApplyLog::last_applied`]):
//! the adapter records no "applied" marker of its own, so it can never claim
//! more than the store kept. On open it reconciles: a store behind the
//! persisted snapshot (wiped, or crashed before its writes reached disk) is
//! first restored from that snapshot; the entries after it are re-applied by
//! openraft from the log.

// openraft's storage traits return its `StorageError` (large); the helpers
// here return the same type so `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, StorageIOError};

use super::codec;
use super::log_store::LogStore;
use super::types::{
    Entry, LogId, Snapshot, SnapshotData, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::ApplyLog;

/// Membership configurations by the big-endian index of their entry.
const MEMBERSHIP_TREE: &str = "raft_membership";
/// The current snapshot: its metadata and its data.
const SNAPSHOT_TREE: &str = "raft_snapshot";
const KEY_SNAPSHOT_META: &[u8] = b"meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"data";

/// Snapshot ids only need to be unique per node and build.
static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) struct StateMachine {
    apply: Arc<dyn ApplyLog>,
    memberships: sled::Tree,
    snapshots: sled::Tree,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl StateMachine {
    /// Opens the adapter over `apply`, reconciling the store with the
    /// persisted snapshot and the log (module doc).
    pub(crate) fn open(
        db: &sled::Db,
        log: &LogStore,
        apply: Arc<dyn ApplyLog>,
    ) -> Result<StateMachine, StorageError> {
        let memberships = db
            .open_tree(MEMBERSHIP_TREE)
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let snapshots = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let mut machine = StateMachine {
            apply,
            memberships,
            snapshots,
            last_applied: None,
            membership: StoredMembership::default(),
        };
        let snapshot = machine.read_snapshot()?;
        let store_index = machine.apply.last_applied();
        let snapshot_id = snapshot.as_ref().and_then(|(meta, _)| meta.last_log_id);
        let behind_snapshot = match (&snapshot_id, store_index) {
            (Some(snap), Some(store)) => store < snap.index,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if let (true, Some((meta, data))) = (behind_snapshot, snapshot) {
            tracing::info!(
                snapshot = ?meta.last_log_id,
                store = ?store_index,
                "cluster: the store is behind the last snapshot; restoring it from the snapshot"
            );
            let index = meta.last_log_id.as_ref().map_or(0, |id| id.index);
            machine
                .apply
                .install_snapshot(index, &data)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            machine.last_applied = meta.last_log_id;
        } else if let Some(index) = store_index {
            machine.last_applied = if snapshot_id.as_ref().map(|id| id.index) == Some(index) {
                snapshot_id
            } else {
                // The store's index is past the snapshot, so the log still
                // holds its entry (the log is purged only behind snapshots).
                Some(log.log_id_at(index)?.ok_or_else(|| {
                    StorageIOError::read_state_machine(&std::io::Error::other(format!(
                        "the store reports index {index} applied, but the cluster log has no entry there"
                    )))
                })?)
            };
        }
        machine.membership = machine.membership_at(machine.last_applied.as_ref())?;
        Ok(machine)
    }

    /// The latest membership whose entry is at or before `applied`.
    fn membership_at(&self, applied: Option<&LogId>) -> Result<StoredMembership, StorageError> {
        let Some(applied) = applied else {
            return Ok(StoredMembership::default());
        };
        let found = self
            .memberships
            .range(..=applied.index.to_be_bytes())
            .next_back()
            .transpose()
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        match found {
            Some((_, bytes)) => codec::decode_membership(&bytes)
                .map_err(|e| StorageIOError::read_state_machine(&e).into()),
            None => Ok(StoredMembership::default()),
        }
    }

    async fn record_membership(
        &self,
        membership: &StoredMembership,
        reset: bool,
    ) -> Result<(), StorageError> {
        let Some(log_id) = membership.log_id() else {
            return Ok(());
        };
        let bytes = codec::encode_membership(membership)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        if reset {
            self.memberships
                .clear()
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
        }
        self.memberships
            .insert(log_id.index.to_be_bytes(), bytes)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        // Rare (membership changes only), and the store's own index may
        // pass this entry, so make it durable before going on.
        self.memberships
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        Ok(())
    }

    fn read_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let read = |key| {
            self.snapshots
                .get(key)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))
        };
        let (Some(meta), Some(data)) = (read(KEY_SNAPSHOT_META)?, read(KEY_SNAPSHOT_DATA)?) else {
            return Ok(None);
        };
        let meta = codec::decode_snapshot_meta(&meta)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some((meta, data.to_vec())))
    }
}

/// Persists `meta` and `data` as the current snapshot; flushed, because the
/// log behind it is purged next.
async fn persist_snapshot(
    snapshots: &sled::Tree,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    let signature = Some(meta.signature());
    let meta_bytes = codec::encode_snapshot_meta(meta)
        .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
    let mut batch = sled::Batch::default();
    batch.insert(KEY_SNAPSHOT_META, meta_bytes);
    batch.insert(KEY_SNAPSHOT_DATA, data);
    snapshots
        .apply_batch(batch)
        .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
    snapshots
        .flush_async()
        .await
        .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
    Ok(())
}

/// Builds a snapshot from the store's image taken when it was asked for.
pub(crate) struct SnapshotBuilder {
    image: Result<Bytes, String>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: sled::Tree,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = self
            .image
            .clone()
            .map_err(|reason| StorageIOError::read_state_machine(&std::io::Error::other(reason)))?;
        let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &self.last_applied {
            Some(id) => format!(
                "{}-{}-{}-{seq}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        persist_snapshot(&self.snapshots, &meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => self
                    .apply
                    .apply(entry.log_id.index, &batch.0)
                    .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembership::new(Some(entry.log_id), membership.clone());
                    self.record_membership(&stored, false).await?;
                    self.membership = stored;
                }
            }
            self.last_applied = Some(entry.log_id);
            responses.push(());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // The image is taken here, on the state machine's task, so it is
        // exactly the state at `last_applied` (no apply runs in between).
        SnapshotBuilder {
            image: self.apply.snapshot().map_err(|e| e.to_string()),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let index = meta.last_log_id.as_ref().map_or(0, |id| id.index);
        // Durability ordering: the snapshot is on disk before the store
        // takes it, so a crash in between leaves a store behind a persisted
        // snapshot, which `open` repairs; never a store ahead of everything.
        persist_snapshot(&self.snapshots, meta, &data).await?;
        self.record_membership(&meta.last_membership, true).await?;
        self.apply
            .install_snapshot(index, &data)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(snapshot = ?meta.last_log_id, "cluster: installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.read_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
