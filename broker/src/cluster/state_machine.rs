//! The Raft state machine: an adapter that hands committed entries to the
//! store's [`ApplyLog`] and keeps what openraft needs beside it (the
//! membership history and the current snapshot's metadata in the cluster
//! database, the snapshot itself in a file: `snapshot_files`).
//!
//! Which index is applied is the store's word ([`ApplyLog::last_applied`]):
//! the adapter records no "applied" marker of its own, so it can never claim
//! more than the store kept. On open it reconciles: a store behind the
//! persisted snapshot (wiped, or crashed before its writes reached disk) is
//! first restored from that snapshot; the entries after it are re-applied by
//! openraft from the log.
//!
//! Snapshots are files, never whole in memory: the store writes its image
//! into a file in frames, openraft sends it in chunks of
//! `snapshot_max_chunk_size` read from the file and a follower writes the
//! chunks into a file of its own, which the store then reads back in
//! frames.
//!
//! Nothing here blocks a runtime worker: the applies, the image, the file
//! work and every sled flush run on blocking threads (`spawn_blocking`). sled
//! 0.34's `flush_async` is not used: it runs the flush on sled's own small
//! I/O pool, whose queued log writes the flush itself waits for.

// openraft's storage traits return its `StorageError` (large); the helpers
// here return the same type so `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, StorageIOError};
use tokio::io::AsyncWriteExt;

use super::codec;
use super::log_store::LogStore;
use super::snapshot_files::{PublishError, SnapshotFiles};
use super::stages::{self, Event};
use super::types::{
    Entry, LogId, Snapshot, SnapshotData, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::ApplyLog;

/// Membership configurations by the big-endian index of their entry.
const MEMBERSHIP_TREE: &str = "raft_membership";
/// The current snapshot's metadata (its data is a file named by its id).
const SNAPSHOT_TREE: &str = "raft_snapshot";
const KEY_SNAPSHOT_META: &[u8] = b"meta";
/// Where snapshot data was kept before snapshots became files: moved to a
/// file on open.
const KEY_SNAPSHOT_DATA: &[u8] = b"data";
/// The image is written through a buffer of this size (the store writes it
/// in frames; this only batches the file writes).
const IMAGE_BUFFER: usize = 256 * 1024;

/// Snapshot ids only need to be unique per node and build.
static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) struct StateMachine {
    apply: Arc<dyn ApplyLog>,
    memberships: sled::Tree,
    snapshots: sled::Tree,
    files: Arc<SnapshotFiles>,
    /// The file a snapshot from the leader is being received into.
    receiving: Option<PathBuf>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

fn read_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}

/// Runs blocking work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())))?
}

impl StateMachine {
    /// Opens the adapter over `apply`, reconciling the store with the
    /// persisted snapshot and the log (module doc). Blocks: call it off
    /// the runtime's workers. `dir` is the cluster's data directory.
    pub(crate) fn open(
        db: &sled::Db,
        log: &LogStore,
        apply: Arc<dyn ApplyLog>,
        dir: &Path,
    ) -> Result<StateMachine, StorageError> {
        let memberships = db
            .open_tree(MEMBERSHIP_TREE)
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let snapshots = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let files = Arc::new(SnapshotFiles::open(dir).map_err(read_error)?);
        let mut machine = StateMachine {
            apply,
            memberships,
            snapshots,
            files,
            receiving: None,
            last_applied: None,
            membership: StoredMembership::default(),
        };
        machine.move_legacy_snapshot()?;
        let snapshot = machine.read_snapshot()?;
        let store_index = machine.apply.last_applied();
        let snapshot_id = snapshot.as_ref().and_then(|(meta, _)| meta.last_log_id);
        let behind_snapshot = match (&snapshot_id, store_index) {
            (Some(snap), Some(store)) => store < snap.index,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if let (true, Some((meta, path))) = (behind_snapshot, snapshot) {
            tracing::info!(
                snapshot = ?meta.last_log_id,
                store = ?store_index,
                "cluster: the store is behind the last snapshot; restoring it from the snapshot"
            );
            let index = meta.last_log_id.as_ref().map_or(0, |id| id.index);
            let file = std::fs::File::open(&path).map_err(read_error)?;
            machine
                .apply
                .install_snapshot(index, &mut BufReader::new(file))
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

    /// Data dirs from before snapshot files kept the data in sled: write it
    /// to its file (published as snapshots are) and drop the sled copy.
    fn move_legacy_snapshot(&self) -> Result<(), StorageError> {
        let read = |key| {
            self.snapshots
                .get(key)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))
        };
        let Some(data) = read(KEY_SNAPSHOT_DATA)? else {
            return Ok(());
        };
        if let Some(meta) = read(KEY_SNAPSHOT_META)? {
            let meta = codec::decode_snapshot_meta(&meta).map_err(read_error)?;
            let (temp, mut file) = self.files.temp("legacy").map_err(read_error)?;
            std::io::Write::write_all(&mut file, &data)
                .and_then(|()| file.sync_all())
                .map_err(read_error)?;
            self.files
                .publish(&temp, &meta.snapshot_id, || Ok::<_, StorageError>(()))
                .map_err(publish_error)?;
        }
        self.snapshots
            .remove(KEY_SNAPSHOT_DATA)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.snapshots
            .flush()
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(())
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

    /// The current snapshot's metadata and file, if there is one. A file
    /// that is missing although its metadata exists (removed by hand) is
    /// reported as no snapshot: openraft builds a new one when it needs it.
    fn read_snapshot(&self) -> Result<Option<(SnapshotMeta, PathBuf)>, StorageError> {
        let Some(meta) = self
            .snapshots
            .get(KEY_SNAPSHOT_META)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        else {
            return Ok(None);
        };
        let meta = codec::decode_snapshot_meta(&meta).map_err(read_error)?;
        let path = self.files.path_of(&meta.snapshot_id);
        if !path.exists() {
            tracing::warn!(snapshot = %meta.snapshot_id, path = %path.display(), "cluster: the snapshot file is missing");
            return Ok(None);
        }
        Ok(Some((meta, path)))
    }
}

/// Records `membership` (after clearing the history when `reset`), flushed:
/// membership changes are rare and the store's own index may pass this
/// entry. Blocks.
fn record_membership(
    memberships: &sled::Tree,
    membership: &StoredMembership,
    reset: bool,
) -> Result<(), StorageError> {
    let Some(log_id) = membership.log_id() else {
        return Ok(());
    };
    let bytes = codec::encode_membership(membership)
        .map_err(|e| StorageIOError::write_state_machine(&e))?;
    if reset {
        memberships
            .clear()
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
    }
    memberships
        .insert(log_id.index.to_be_bytes(), bytes)
        .map_err(|e| StorageIOError::write_state_machine(&e))?;
    memberships
        .flush()
        .map_err(|e| StorageIOError::write_state_machine(&e))?;
    Ok(())
}

fn publish_error(e: PublishError<StorageError>) -> StorageError {
    match e {
        PublishError::Io(e) => StorageIOError::write_snapshot(None, &e).into(),
        PublishError::Record(e) => e,
    }
}

/// Makes the fsynced file `temp` the current snapshot `meta` (file, then
/// its metadata, flushed, because the log behind it is purged next).
/// Blocks.
fn publish(
    files: &SnapshotFiles,
    snapshots: &sled::Tree,
    temp: &Path,
    meta: &SnapshotMeta,
) -> Result<PathBuf, StorageError> {
    let signature = Some(meta.signature());
    let meta_bytes = codec::encode_snapshot_meta(meta)
        .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
    files
        .publish(temp, &meta.snapshot_id, || {
            snapshots
                .insert(KEY_SNAPSHOT_META, meta_bytes)
                .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
            snapshots
                .flush()
                .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
            Ok(())
        })
        .map_err(publish_error)
}

/// Builds a snapshot from the store's image, written to a file when it
/// was asked for.
pub(crate) struct SnapshotBuilder {
    /// The fsynced image file (a temporary name until published).
    image: Result<PathBuf, String>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: sled::Tree,
    files: Arc<SnapshotFiles>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let temp = self
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
        let (files, snapshots, published) =
            (self.files.clone(), self.snapshots.clone(), meta.clone());
        let path = blocking(move || {
            let path = publish(&files, &snapshots, &temp, &published);
            if path.is_err() {
                files.discard(&temp);
            }
            path
        })
        .await?;
        let file = tokio::fs::File::open(&path).await.map_err(read_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
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
        // The store's apply is a sled batch, and a sled write can wait on
        // sled's own locks and I/O buffers while a flush or a cursor read
        // runs: on a runtime worker that wait stalled every session and
        // the admin endpoint with it (one of two workers). So the whole
        // run of entries is applied on a blocking thread, in log order.
        let entries: Vec<Entry> = entries.into_iter().collect();
        let count = entries.len();
        let (apply, memberships) = (self.apply.clone(), self.memberships.clone());
        let (last_applied, membership) = blocking(move || {
            let mut last_applied = None;
            let mut membership = None;
            for entry in entries {
                let index = entry.log_id.index;
                stages::note(index, index, Event::ApplyStart, Instant::now());
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) => apply
                        .apply(index, &batch.0)
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                        record_membership(&memberships, &stored, false)?;
                        membership = Some(stored);
                    }
                }
                last_applied = Some(entry.log_id);
                stages::note(index, index, Event::ApplyEnd, Instant::now());
            }
            Ok((last_applied, membership))
        })
        .await?;
        if let Some(m) = membership {
            self.membership = m;
        }
        if last_applied.is_some() {
            self.last_applied = last_applied;
        }
        // openraft wants one response per entry (ours carry nothing).
        Ok(vec![(); count])
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // The image is written here, while the state machine's task waits
        // for it, so it is exactly the state at `last_applied` (no apply
        // runs in between); on a blocking thread, so the runtime's workers
        // (Raft, the peer links, the clients) go on meanwhile.
        let (apply, files) = (self.apply.clone(), self.files.clone());
        let image = tokio::task::spawn_blocking(move || write_image(&*apply, &files))
            .await
            .unwrap_or_else(|e| Err(format!("the snapshot image task failed: {e}")));
        SnapshotBuilder {
            image,
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
            files: self.files.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        let files = self.files.clone();
        let previous = self.receiving.take();
        let (path, file) = blocking(move || {
            // A stream the leader abandoned for this new one.
            if let Some(previous) = previous {
                files.discard(&previous);
            }
            files
                .temp("recv")
                .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
        })
        .await?;
        self.receiving = Some(path);
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let write_error = |e: std::io::Error| {
            StorageError::from(StorageIOError::write_snapshot(signature.clone(), &e))
        };
        let Some(temp) = self.receiving.take() else {
            return Err(write_error(std::io::Error::other(
                "a snapshot to install, but none is being received",
            )));
        };
        let mut file = *snapshot;
        // tokio's File finishes its last write in the background: wait.
        file.flush().await.map_err(write_error)?;
        let file = file.into_std().await;
        let index = meta.last_log_id.as_ref().map_or(0, |id| id.index);
        let (apply, files, snapshots, memberships, published) = (
            self.apply.clone(),
            self.files.clone(),
            self.snapshots.clone(),
            self.memberships.clone(),
            meta.clone(),
        );
        blocking(move || {
            // Durability ordering: the snapshot (file, then metadata) is on
            // disk before the store takes it, so a crash in between leaves
            // a store behind a persisted snapshot, which `open` repairs;
            // never a store ahead of everything.
            let synced = into_receiving_file(file, &temp);
            if let Err(e) = synced {
                files.discard(&temp);
                return Err(StorageIOError::write_snapshot(Some(published.signature()), &e).into());
            }
            let path = publish(&files, &snapshots, &temp, &published)?;
            record_membership(&memberships, &published.last_membership, true)?;
            let image = std::fs::File::open(&path).map_err(read_error)?;
            apply
                .install_snapshot(index, &mut BufReader::new(image))
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            Ok(())
        })
        .await?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(snapshot = ?meta.last_log_id, "cluster: installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // A build publishing meanwhile may remove the file just named:
        // read the metadata again then (bounded: a few publishes at most).
        for _ in 0..3 {
            let Some((meta, path)) = self.read_snapshot()? else {
                return Ok(None);
            };
            match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    return Ok(Some(Snapshot {
                        meta,
                        snapshot: Box::new(file),
                    }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_error(e)),
            }
        }
        Ok(None)
    }
}

/// Leaves the snapshot data `file` fsynced in the receiving file `temp`.
/// openraft hands back the file [`RaftStateMachine::begin_receiving_snapshot`]
/// gave it, written; any other file (its test suite passes a built
/// snapshot's) is copied into `temp` in bounded pieces. Blocks.
fn into_receiving_file(mut file: std::fs::File, temp: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (given, receiving) = (file.metadata()?, std::fs::metadata(temp)?);
    if (given.dev(), given.ino()) != (receiving.dev(), receiving.ino()) {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut target = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(temp)?;
        std::io::copy(&mut file, &mut target)?;
        file = target;
    }
    file.sync_all()
}

/// Writes the store's image to a new temporary file, fsynced. Blocks.
fn write_image(apply: &dyn ApplyLog, files: &SnapshotFiles) -> Result<PathBuf, String> {
    let (path, file) = files.temp("build").map_err(|e| e.to_string())?;
    let written = (|| {
        let mut out = BufWriter::with_capacity(IMAGE_BUFFER, file);
        apply.snapshot(&mut out).map_err(|e| e.to_string())?;
        let file = out
            .into_inner()
            .map_err(|e| format!("writing the snapshot image: {}", e.error()))?;
        file.sync_all()
            .map_err(|e| format!("syncing the snapshot image: {e}"))
    })();
    match written {
        Ok(()) => Ok(path),
        Err(e) => {
            files.discard(&path);
            Err(e)
        }
    }
}
