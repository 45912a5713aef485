//! [`SledStore`]: the durable [`Store`] on sled 0.34.
//!
//! Opening checks the data directory and the format version (upgrading a
//! format-2 store in place, [`super::upgrade`]), rebuilds the
//! [`StateMachine`] from what sled holds (the recovery the router restores
//! from) and starts the [`LogWriter`]. Every failure names the directory and
//! is returned, never panicked: sled itself panics on some corrupt files, so
//! its open runs under `catch_unwind`. [`SledBodies`] reads paged-out bodies
//! back for the sessions that deliver them, and queues' backlogs for the
//! router's cursors ([`super::cursor`]).
//!
//! Recovery reads no message: it returns the lanes that hold some
//! ([`Recovered::backlog`]), and the router reads each queue's head back as
//! it needs it, so a restart takes the same time whatever the backlog. The
//! body files are opened against their `B` counts ([`BodyFiles::open`]:
//! one directory listing, no message read).

use super::body_reclaim::BodyFiles;
use super::body_segments::{BodyError, BodyReader, BodySettings};
use super::compact;
use super::cursor::{self, BacklogRead};
use super::entry::StoredMessage;
use super::log_writer::{LogWriter, Replication, WriterSettings};
use super::paging::Pager;
use super::record::{
    self, QueueValue, SeqEntry, FORMAT, FORMAT_3, FORMAT_4, FORMAT_5, FORMAT_KEY, QUEUE_PREFIX,
    SEQ_PREFIX,
};
use super::replicated::ReplicatedState;
use super::state_machine::{LogKeep, StateMachine};
use super::upgrade;
use super::{Commit, Handoff, LogEntry, LogHold, OpenError, Recovered, Store, StoreError};
use crate::message::BodySource;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::Instant;
use tracing::info;

/// Where and how to open the store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The sled directory (created if missing).
    pub path: PathBuf,
    /// Writer settings (sync mode, batch delay, disk limit).
    pub writer: WriterSettings,
    /// sled's page cache, bytes.
    pub cache_bytes: u64,
    /// Bytes of live message bodies kept in memory (`store.memory_limit`);
    /// beyond it bodies are paged out and read back when needed.
    pub body_budget: u64,
    /// Compact (at open, and online when idle) when that many bytes or more
    /// can be won back (see [`compact::needed`]).
    pub compact_min_bytes: u64,
    /// The body files (`<data_dir>/bodies`, beside `path`) and which
    /// bodies go there.
    pub bodies: BodySettings,
}

/// The durable store.
pub struct SledStore {
    writer: LogWriter,
    path: PathBuf,
    /// The database readers use (swapped by online compaction on a single
    /// node).
    readers: Option<Arc<SledBodies>>,
    /// The first log index of this run (see [`cursor`]); in cluster mode
    /// the replicated state's, fixed when this node becomes leader.
    boot_index: u64,
    /// Cluster mode: the state applied from the cluster's log.
    replicated: Option<Arc<ReplicatedState>>,
    /// The body files' directory (its size counts in the metrics).
    bodies_dir: PathBuf,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SledStore {
    /// Opens (or creates) the store and recovers its messages.
    pub fn open(settings: StoreSettings) -> Result<(SledStore, Recovered), OpenError> {
        let path = settings.path.clone();
        let started = Instant::now();
        let dir_error = |reason: String| OpenError::Directory {
            path: path.clone(),
            reason,
        };
        compact::finish_interrupted(&path)?;
        std::fs::create_dir_all(&path).map_err(|e| dir_error(format!("cannot create it: {e}")))?;
        let meta = std::fs::metadata(&path).map_err(|e| dir_error(e.to_string()))?;
        if meta.permissions().readonly() {
            return Err(dir_error("it is read-only".into()));
        }
        // Each step of the open is timed and logged: sled's own open (its
        // snapshot, the log written since, its page table) is apart from
        // our recovery, and a deep store's open is mostly sled's.
        let mut db = open_sled(&path, settings.cache_bytes)?;
        let sled_open = started.elapsed();
        info!(
            path = %path.display(),
            elapsed_ms = sled_open.as_millis() as u64,
            "store open: sled opened (its snapshot and the log written since)"
        );
        check_format(&path, &db)?;
        let format_checked = started.elapsed();
        let (state, backlog, meta) =
            StateMachine::recover(&db, LogKeep::NONE).map_err(|reason| OpenError::Corrupt {
                path: path.clone(),
                reason,
            })?;
        let recovered_at = started.elapsed();
        let (files, opened) = BodyFiles::open(settings.bodies.clone(), state.body_counts())
            .map_err(|e| body_error(&settings.bodies, e))?;
        let bodies_opened = started.elapsed();
        info!(
            messages = state.live_messages(),
            lanes = backlog.len(),
            format_ms = (format_checked - sled_open).as_millis() as u64,
            recover_ms = (recovered_at - format_checked).as_millis() as u64,
            body_files_ms = (bodies_opened - recovered_at).as_millis() as u64,
            "store open: state recovered (format check, lane counts, body files)"
        );
        let bodies = Arc::new(SledBodies::new(files.reader()));
        let pager = Pager::new(settings.body_budget, bodies.clone());
        let boot_index = state.next_index();
        let recovered = Recovered {
            messages: Vec::new(),
            backlog,
            next_seq: state.max_seq() + 1,
            meta,
        };
        let mut on_disk = db.size_on_disk().unwrap_or(0);
        if compact::needed(on_disk, state.live_bytes(), settings.compact_min_bytes) {
            // The copy holds the very same keys, so the recovered state
            // stays valid for it.
            compact::compact(&path, db)?;
            db = open_sled(&path, settings.cache_bytes)?;
            check_format(&path, &db)?;
            on_disk = db.size_on_disk().unwrap_or(0);
        }
        // Paged bodies of recovered messages are read from the final
        // database (after compaction, the copy holds the same keys).
        bodies.attach(db.clone());
        info!(
            path = %path.display(),
            messages = state.live_messages(),
            lanes = recovered.backlog.len(),
            bytes = state.live_bytes(),
            on_disk,
            body_files = opened.kept,
            body_file_bytes = state.body_bytes(),
            body_files_deleted = opened.deleted,
            body_file_tails_cut = opened.cut,
            sled_open_ms = sled_open.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            sync = ?settings.writer.sync,
            "store opened"
        );
        let mut online = compact::Online::new(
            path.clone(),
            settings.cache_bytes,
            settings.compact_min_bytes,
            bodies.clone(),
        );
        online.open_cost = started.elapsed();
        let writer = LogWriter::start(db, state, pager, files, settings.writer, Some(online))
            .map_err(|e| dir_error(format!("cannot start the log writer thread: {e}")))?;
        Ok((
            SledStore {
                writer,
                path,
                readers: Some(bodies),
                boot_index,
                replicated: None,
                bodies_dir: settings.bodies.dir,
            },
            recovered,
        ))
    }

    /// Opens (or creates) the store for cluster mode: its state is applied
    /// from the cluster's log ([`ReplicatedState`], which the cluster node
    /// is started with) and the writer proposes its batches through
    /// `replication`. Nothing is restored here: a node restores its router
    /// from [`ReplicatedState::recovered`] when it becomes leader. Queue
    /// backlogs and body paging work as on a single node, on the records
    /// this node applied (see [`super::replicated`] for the ordering).
    pub fn open_replicated(
        settings: StoreSettings,
        replication: Replication,
    ) -> Result<(SledStore, Arc<ReplicatedState>), OpenError> {
        let path = settings.path.clone();
        let dir_error = |reason: String| OpenError::Directory {
            path: path.clone(),
            reason,
        };
        compact::finish_interrupted(&path)?;
        std::fs::create_dir_all(&path).map_err(|e| dir_error(format!("cannot create it: {e}")))?;
        let db = open_sled(&path, settings.cache_bytes)?;
        check_format(&path, &db)?;
        let corrupt = |reason: String| OpenError::Corrupt {
            path: path.clone(),
            reason,
        };
        let (machine, _, _) = StateMachine::recover(&db, LogKeep::NONE).map_err(corrupt)?;
        if let Some((segment, _)) = machine.body_counts().segments().next() {
            // Cluster mode keeps bodies inline (super::replicated): it
            // would deliver these as empty bodies.
            return Err(corrupt(format!(
                "it holds bodies in body files (segment {segment} in {}), written by a \
                 single node; cluster mode keeps bodies in the replicated log and does not \
                 read body files: drain the queues on a single node first",
                settings.bodies.dir.display()
            )));
        }
        // No online compaction in cluster mode: the database is never
        // swapped, so readers attach to it once.
        // Bodies are inline in cluster mode (the check above): the file
        // reader is there for the type, no record refers to it.
        let bodies = Arc::new(SledBodies::new(Arc::new(BodyReader::new(
            settings.bodies.dir.clone(),
        ))));
        bodies.attach(db.clone());
        let state = Arc::new(ReplicatedState::new(db, machine).map_err(corrupt)?);
        info!(path = %path.display(), raft_applied = ?crate::cluster::ApplyLog::last_applied(&*state), "store opened (cluster mode)");
        let pager = Pager::new(settings.body_budget, bodies.clone());
        let writer =
            LogWriter::start_replicated(state.clone(), pager, settings.writer, replication)
                .map_err(|e| dir_error(format!("cannot start the log writer thread: {e}")))?;
        Ok((
            SledStore {
                writer,
                path,
                readers: Some(bodies),
                boot_index: 0,
                replicated: Some(state.clone()),
                bodies_dir: settings.bodies.dir,
            },
            state,
        ))
    }

    /// The sled directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for SledStore {
    fn append(&self, entries: Vec<LogEntry>) -> Commit {
        self.writer.append(entries)
    }

    fn append_for_dispatch(&self, entries: Vec<LogEntry>) -> (Commit, LogHold) {
        self.writer.append_for_dispatch(entries)
    }

    fn metrics(&self) -> Option<crate::metrics::StoreMetrics> {
        let m = self.writer.metrics();
        Some(crate::metrics::StoreMetrics {
            live_bytes: m.live_bytes,
            resident_bytes: m.resident_bytes,
            paged_messages: m.paged_messages,
            disk_bytes: directory_size(&self.path, 2) + directory_size(&self.bodies_dir, 0),
            flush_latency: m.flush_latency,
            messages_written: m.written,
            messages_elided: m.elided,
        })
    }

    fn destination_bytes(&self, destination: &str) -> u64 {
        self.writer.destination_bytes(destination)
    }

    fn hand_off(
        &self,
        mark: Option<(u64, u32)>,
        must_wait: bool,
        handoff: Handoff,
    ) -> Option<Handoff> {
        self.writer.hand_off(mark, must_wait, handoff)
    }

    fn hold(&self) -> LogHold {
        self.writer.hold()
    }

    fn close(&self) {
        self.writer.close();
    }

    fn keeps_backlog(&self) -> bool {
        self.readers.is_some()
    }

    fn read_backlog(
        &self,
        destination: &str,
        priority: u8,
        after: u64,
        limit: usize,
    ) -> Result<BacklogRead, StoreError> {
        let Some(readers) = &self.readers else {
            return Ok(BacklogRead {
                messages: Vec::new(),
                position: after,
            });
        };
        let source: Arc<dyn BodySource> = readers.clone();
        let db = readers.db.read().unwrap_or_else(|e| e.into_inner());
        let db = db
            .as_ref()
            .ok_or_else(|| StoreError::Io("the store is not open".into()))?;
        let boot_index = self
            .replicated
            .as_ref()
            .map_or(self.boot_index, |state| state.boot_index());
        cursor::read(db, destination, priority, after, boot_index, limit, &source)
            .map_err(StoreError::Io)
    }
}

/// A body file error at open: a missing or short file is a damaged store,
/// anything else the directory's fault; both name the file.
fn body_error(settings: &BodySettings, e: BodyError) -> OpenError {
    match e {
        BodyError::Missing { .. } | BodyError::Truncated { .. } | BodyError::Checksum { .. } => {
            OpenError::Corrupt {
                path: settings.dir.clone(),
                reason: e.to_string(),
            }
        }
        BodyError::Io { .. } => OpenError::Directory {
            path: settings.dir.clone(),
            reason: e.to_string(),
        },
    }
}

/// Reads paged-out bodies from sled, or from the body file a record refers
/// to. Attached to the database once it is final, and moved to the new one
/// by online compaction.
pub struct SledBodies {
    db: RwLock<Option<sled::Db>>,
    files: Arc<BodyReader>,
}

impl SledBodies {
    /// Bodies read from sled (once attached) and from `files`.
    pub fn new(files: Arc<BodyReader>) -> SledBodies {
        SledBodies {
            db: RwLock::new(None),
            files,
        }
    }

    fn attach(&self, db: sled::Db) {
        *self.lock_for_swap() = Some(db);
    }

    /// Holds readers off while the database is replaced.
    pub(super) fn lock_for_swap(&self) -> RwLockWriteGuard<'_, Option<sled::Db>> {
        self.db.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl BodySource for SledBodies {
    fn read_body(&self, seq: u64) -> Result<bytes::Bytes, String> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = db.as_ref().ok_or("the store is not open")?;
        // The seq index names the record's lane and log index: its `Q` key.
        let at = db
            .get(record::key(SEQ_PREFIX, seq))
            .map_err(|e| e.to_string())?
            .ok_or("its record is gone")?;
        let at = SeqEntry::decode(&at).ok_or("its seq index entry is malformed")?;
        let raw = db
            .get(record::lane_key(QUEUE_PREFIX, &at.lane, Some(at.index)))
            .map_err(|e| e.to_string())?
            .ok_or("its record is gone")?;
        let value = QueueValue::decode(&raw).ok_or("its queue value is malformed")?;
        let message = StoredMessage::decode_record(value.record)?;
        match &message.body_ref {
            Some(r) => self.files.read(r).map_err(|e| e.to_string()),
            None => Ok(message.body),
        }
    }
}

/// Runs sled's open, turning a panic into an `Err` carrying its message.
///
/// sled 0.34 panics (instead of returning an error) on some kinds of damaged
/// files. The default hook is silenced meanwhile so the operator sees our
/// one-line error, not a backtrace; the swap is serialised so that two opens
/// at once (tests) cannot leave the silent hook installed.
fn open_catching_panics(
    config: &sled::Config,
) -> Result<sled::Result<sled::Db>, Box<dyn std::any::Any + Send>> {
    static HOOK_SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = HOOK_SWAP.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
    std::panic::set_hook(hook);
    opened
}

/// Bytes of the files under `dir`, `depth` levels deep (sled keeps its
/// blobs one level down); unreadable entries count as 0.
fn directory_size(dir: &Path, depth: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() && depth > 0 => directory_size(&entry.path(), depth - 1),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Opens sled with its timer flusher off (the writer flushes explicitly),
/// turning both its errors and its panics into [`OpenError`]s.
pub(super) fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db, OpenError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None);
    // sled's file lock outlives a dropped `Db` for a moment (its IO threads
    // still hold the file), which matters when compaction reopens at once:
    // retry a lock conflict briefly before reporting it.
    let mut attempts = 0;
    let opened = loop {
        let opened = open_catching_panics(&config);
        let locked = matches!(&opened, Ok(Err(sled::Error::Io(e))) if e.to_string().contains("acquire lock"));
        attempts += 1;
        if !locked || attempts >= 40 {
            break opened;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) => Err(OpenError::Directory {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Ok(Err(sled::Error::Corruption { at, .. })) => Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: match at {
                Some(at) => format!("sled found damaged data at {at:?}"),
                None => "sled found damaged data (a checksum or header does not match)".into(),
            },
        }),
        Ok(Err(e)) => Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "sled panicked while reading it".into());
            Err(OpenError::Corrupt {
                path: path.to_path_buf(),
                reason,
            })
        }
    }
}

/// Accepts a store written in [`FORMAT`], upgrades one written in format
/// 5, 4, 3 or 2 in place ([`upgrade`]), initialises an empty one, refuses
/// anything else (format 1, unknown formats, a store without a marker).
pub(super) fn check_format(path: &Path, db: &sled::Db) -> Result<(), OpenError> {
    let corrupt = |reason: String| OpenError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    match db.get(FORMAT_KEY).map_err(|e| corrupt(e.to_string()))? {
        Some(v) => match record::decode_u32(&v) {
            Some(FORMAT) => Ok(()),
            // Formats 4 and 3 (a lane's count alone in its `C` record) get
            // their lanes' bytes (format 5); then the records move into
            // their queue order (format 6). An older ferromq must not
            // open the result.
            Some(from @ (FORMAT_4 | FORMAT_3 | FORMAT_5)) => {
                let upgraded = if from == FORMAT_5 {
                    Ok(0)
                } else {
                    upgrade::from_format_4(db, from)
                };
                upgraded
                    .and_then(|_| upgrade::from_format_5(db))
                    .map(|_| ())
                    .map_err(|e| {
                        corrupt(format!(
                            "upgrading it from format {from} to {FORMAT} failed: {e}"
                        ))
                    })
            }
            Some(upgrade::FROM) => upgrade::from_format_2(db).map(|_| ()).map_err(|e| {
                corrupt(format!(
                    "upgrading it from format {} to {FORMAT} failed: {e}",
                    upgrade::FROM
                ))
            }),
            Some(other) => Err(OpenError::Format {
                path: path.to_path_buf(),
                found: other.to_string(),
                supported: FORMAT,
            }),
            None => Err(OpenError::Format {
                path: path.to_path_buf(),
                found: format!("an unreadable version marker ({} bytes)", v.len()),
                supported: FORMAT,
            }),
        },
        None if db.is_empty() && db.tree_names().len() <= 1 => db
            .insert(FORMAT_KEY, &FORMAT.to_be_bytes())
            .and_then(|_| db.flush())
            .map(|_| ())
            .map_err(|e| OpenError::Directory {
                path: path.to_path_buf(),
                reason: format!("cannot write to it: {e}"),
            }),
        None => Err(OpenError::Format {
            path: path.to_path_buf(),
            found: "none (the sled database has no ferromq format marker)".into(),
            supported: FORMAT,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::store::StoreError;
    use bytes::Bytes;
    use ferromq_config::StoreSync;
    use ferromq_protocol::Headers;
    use std::sync::Arc;
    use std::time::Duration;

    fn settings(path: &Path, disk_limit: u64) -> StoreSettings {
        StoreSettings {
            path: path.to_path_buf(),
            writer: WriterSettings {
                sync: StoreSync::Always,
                batch_delay: Duration::from_millis(2),
                disk_limit,
                ack_gather: crate::store::log_writer::ACK_GATHER,
                checkpoint_bytes: u64::MAX,
            },
            cache_bytes: 8 << 20,
            body_budget: 1 << 30,
            compact_min_bytes: 1 << 20,
            bodies: BodySettings::new(path.with_extension("bodies"), 64 << 10),
        }
    }

    fn enqueue(seq: u64, body: usize) -> LogEntry {
        LogEntry::Enqueue {
            message: Arc::new(Message {
                seq,
                destination: "/queue/t".into(),
                persistent: true,
                priority: 4,
                expires: 0,
                timestamp: 1,
                headers: Headers::new(),
                body: Bytes::from(vec![b'b'; body]).into(),
            }),
            backlog: false,
        }
    }

    /// Every recovered message, read back lane by lane with the cursor.
    fn read_all(store: &SledStore, rec: &Recovered) -> Vec<(Arc<Message>, u32)> {
        let mut out = Vec::new();
        for lane in &rec.backlog {
            let read = store
                .read_backlog(&lane.destination, lane.priority, 0, usize::MAX)
                .unwrap();
            assert_eq!(read.messages.len() as u64, lane.messages);
            out.extend(read.messages.into_iter().map(|m| (m.message, m.delivered)));
        }
        out
    }

    fn wait(c: Commit) -> Result<(), StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(c.wait())
    }

    #[test]
    fn appended_messages_are_recovered_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rec) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
        assert!(rec.messages.is_empty());
        wait(store.append(vec![enqueue(1, 10), enqueue(2, 10)])).unwrap();
        wait(store.append(vec![LogEntry::Delivered { seq: 2, count: 1 }])).unwrap();
        wait(store.append(vec![LogEntry::Ack {
            destination: "/queue/t".into(),
            seq: 1,
        }]))
        .unwrap();
        store.close();
        assert!(matches!(
            store.append(vec![enqueue(3, 1)]),
            Commit::Failed(StoreError::Closed)
        ));
        drop(store);
        let (store, rec) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
        assert!(rec.messages.is_empty(), "no message is loaded at open");
        assert_eq!(rec.backlog.len(), 1);
        assert_eq!(
            (rec.backlog[0].destination.as_str(), rec.backlog[0].priority),
            ("/queue/t", 4)
        );
        assert_eq!(rec.backlog[0].messages, 1);
        assert!(store.keeps_backlog());
        let read = store.read_backlog("/queue/t", 4, 0, 10).unwrap();
        let got: Vec<(u64, u32)> = read
            .messages
            .iter()
            .map(|m| (m.message.seq, m.delivered))
            .collect();
        assert_eq!(got, vec![(2, 1)]);
        assert_eq!(rec.next_seq, 3);
    }

    #[test]
    fn over_the_disk_limit_enqueues_fail_and_acks_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SledStore::open(settings(dir.path(), 10_000)).unwrap();
        let mut seq = 0;
        let failure = loop {
            seq += 1;
            assert!(seq < 100, "the disk limit never applied");
            match store.append(vec![enqueue(seq, 1000)]) {
                Commit::Failed(e) => break e,
                c => wait(c).unwrap(),
            }
        };
        assert!(matches!(failure, StoreError::Full(_)), "{failure:?}");
        assert!(seq > 5, "failed too early, at {seq}");
        wait(store.append(vec![LogEntry::Ack {
            destination: "/queue/t".into(),
            seq: 1,
        }]))
        .unwrap();
        wait(store.append(vec![enqueue(seq, 1000)])).unwrap();
    }

    #[test]
    fn another_format_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::store::test_db::open(dir.path());
            db.insert(FORMAT_KEY, &99u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let e = SledStore::open(settings(dir.path(), 1 << 30)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, OpenError::Format { .. }), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains("format 99"), "{text}");
    }

    /// Format 1 (message records without a log of batches) is refused,
    /// not misread: the error names the directory and both versions.
    #[test]
    fn a_format_1_store_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::store::test_db::open(dir.path());
            db.insert(FORMAT_KEY, &1u32.to_be_bytes()).unwrap();
            db.insert(
                record::key(record::MESSAGE_PREFIX, 1),
                &b"\x01old record"[..],
            )
            .unwrap();
            db.flush().unwrap();
        }
        let e = SledStore::open(settings(dir.path(), 1 << 30)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, OpenError::Format { .. }), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(
            text.contains("store format 1") && text.contains(&format!("reads format {FORMAT}")),
            "{text}"
        );
    }

    #[test]
    fn a_sled_database_without_our_marker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::store::test_db::open(dir.path());
            db.insert(b"something", &b"else"[..]).unwrap();
            db.flush().unwrap();
        }
        let e = SledStore::open(settings(dir.path(), 1 << 30)).unwrap_err();
        assert!(e.to_string().contains("no ferromq format marker"), "{e}");
    }

    #[test]
    fn garbage_files_give_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
            wait(store.append(vec![enqueue(1, 100)])).unwrap();
        }
        for name in ["conf", "db"] {
            let p = dir.path().join(name);
            if p.exists() {
                std::fs::write(&p, vec![0xA5u8; 4096]).unwrap();
            }
        }
        let e = SledStore::open(settings(dir.path(), 1 << 30)).unwrap_err();
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn a_path_below_a_file_is_a_directory_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let e = SledStore::open(settings(&file.join("store"), 1 << 30)).unwrap_err();
        assert!(matches!(e, OpenError::Directory { .. }), "{e}");
        assert!(e.to_string().contains("plain-file"), "{e}");
    }

    #[test]
    fn a_mostly_consumed_store_is_compacted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
        wait(store.append((1..=300).map(|seq| enqueue(seq, 10_000)).collect())).unwrap();
        wait(store.append(vec![LogEntry::Delivered { seq: 295, count: 2 }])).unwrap();
        let acks = (1..=290)
            .map(|seq| LogEntry::Ack {
                destination: "/queue/t".into(),
                seq,
            })
            .collect();
        wait(store.append(acks)).unwrap();
        store.close();
        drop(store);
        let size = |p: &Path| -> u64 {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        let before = size(dir.path());
        let (store, rec) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
        let after = size(dir.path());
        assert!(
            after * 2 < before,
            "not compacted: {before} -> {after} bytes"
        );
        let messages = read_all(&store, &rec);
        let got: Vec<(u64, u32)> = messages.iter().map(|(m, n)| (m.seq, *n)).collect();
        let want: Vec<(u64, u32)> = (291..=300).map(|s| (s, u32::from(s == 295) * 2)).collect();
        assert_eq!(got, want);
        assert_eq!(messages[0].1, 0);
        assert_eq!(messages[0].0.body.len(), 10_000);
        // Bodies this large are read back from disk when needed: they hold
        // the database open until dropped.
        drop(messages);
        // The compacted store keeps working and recovering.
        wait(store.append(vec![enqueue(301, 10)])).unwrap();
        store.close();
        drop(store);
        let (store, rec) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
        assert_eq!(read_all(&store, &rec).len(), 11);
        assert_eq!(rec.next_seq, 302);
    }

    #[test]
    fn a_consumer_ack_releases_a_receipt_before_the_flush_and_a_hold_keeps_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
        let ack = |seq| LogEntry::Ack {
            destination: "/queue/t".into(),
            seq,
        };
        // While held, the writer starts no batch: nothing is flushed.
        let hold = store.hold();
        let Commit::Pending(mut first) = store.append(vec![enqueue(1, 10)]) else {
            panic!("a pending commit expected");
        };
        let Commit::Pending(mut third) = store.append(vec![enqueue(3, 10)]) else {
            panic!("a pending commit expected");
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(first.try_recv().is_err(), "resolved while held");
        // A dead-letter move (copy and ack in one append) is not a consumer
        // ack: the receipt of message 3 keeps waiting for the disk.
        let moved = store.append(vec![enqueue(4, 10), ack(3)]);
        // A consumer's ack releases message 1's receipt at once.
        let acked = store.append(vec![ack(1)]);
        assert_eq!(first.try_recv(), Ok(Ok(())));
        assert!(third.try_recv().is_err(), "released by a dead-letter move");
        drop(hold);
        wait(moved).unwrap();
        wait(acked).unwrap();
        assert_eq!(wait_rx(third), Ok(()));
        store.close();
        drop(store);
        let (store, rec) = SledStore::open(settings(dir.path(), 1 << 30)).unwrap();
        let seqs: Vec<u64> = read_all(&store, &rec).iter().map(|(m, _)| m.seq).collect();
        assert_eq!(seqs, vec![4]);
    }

    fn wait_rx(
        rx: tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        wait(Commit::Pending(rx))
    }

    /// Group commit keeps the producers together: after a flush that
    /// answered three receipts, the writer waits (here: up to a long
    /// gather) until three commits are queued again before its next
    /// flush, instead of flushing each producer's next message alone.
    #[test]
    fn the_writer_waits_for_the_producers_its_last_flush_answered() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), 1 << 30);
        s.writer.ack_gather = Duration::from_secs(30);
        let (store, _) = SledStore::open(s).unwrap();
        let hold = store.hold();
        let first: Vec<Commit> = (1..=3)
            .map(|seq| store.append(vec![enqueue(seq, 10)]))
            .collect();
        drop(hold);
        for c in first {
            wait(c).unwrap();
        }
        let Commit::Pending(mut fourth) = store.append(vec![enqueue(4, 10)]) else {
            panic!("a pending commit expected");
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(fourth.try_recv().is_err(), "flushed alone");
        let rest: Vec<Commit> = (5..=6)
            .map(|seq| store.append(vec![enqueue(seq, 10)]))
            .collect();
        assert_eq!(wait_rx(fourth), Ok(()));
        for c in rest {
            wait(c).unwrap();
        }
        let m = store.metrics().unwrap();
        assert_eq!(m.messages_written, 6);
        assert_eq!(m.flush_latency.count, 2, "one flush per group of three");
    }

    /// The store in `<dir>/store`, its body files in `<dir>/store.bodies`,
    /// every body over 50 bytes in a file.
    fn with_files(dir: &tempfile::TempDir) -> StoreSettings {
        let mut s = settings(&dir.path().join("store"), 1 << 30);
        s.bodies.inline_max = 50;
        s
    }

    /// Bytes of the segment files.
    fn body_file_bytes(s: &StoreSettings) -> u64 {
        std::fs::read_dir(&s.bodies.dir)
            .map(|d| d.map(|e| e.unwrap().metadata().unwrap().len()).sum())
            .unwrap_or(0)
    }

    fn ack(seq: u64) -> LogEntry {
        LogEntry::Ack {
            destination: "/queue/t".into(),
            seq,
        }
    }

    /// Bodies in body files: the records refer to them, the cursor leaves
    /// them on disk and reads them back on demand after a reopen, the disk
    /// limit counts them, and once consumed their files are deleted.
    #[test]
    fn bodies_in_body_files_survive_a_reopen_and_their_space_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_files(&dir);
        let (store, _) = SledStore::open(s.clone()).unwrap();
        wait(store.append(vec![
            enqueue(1, 120_000),
            enqueue(2, 10),
            enqueue(3, 120_000),
        ]))
        .unwrap();
        assert_eq!(body_file_bytes(&s), 240_000, "two bodies in files, once");
        let m = store.metrics().unwrap();
        assert!(m.live_bytes > 240_000, "{}", m.live_bytes);
        assert!(m.disk_bytes > 240_000, "{}", m.disk_bytes);
        store.close();
        drop(store);
        let (store, rec) = SledStore::open(s.clone()).unwrap();
        let messages = read_all(&store, &rec);
        let bodies: Vec<(u64, bool, usize)> = messages
            .iter()
            .map(|(m, _)| (m.seq, m.body.is_resident(), m.body.len()))
            .collect();
        assert_eq!(
            bodies,
            vec![(1, false, 120_000), (2, true, 10), (3, false, 120_000)]
        );
        assert_eq!(messages[2].0.body.get().unwrap(), vec![b'b'; 120_000]);
        drop(messages);
        wait(store.append(vec![ack(1), ack(2), ack(3)])).unwrap();
        // The flush after the acks finds the segment without a live body,
        // but it is the one being appended to and small: it goes when the
        // writer is idle (checked every second).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while body_file_bytes(&s) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "body files never reclaimed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        store.close();
        drop(store);
        let (store, rec) = SledStore::open(s).unwrap();
        assert!(read_all(&store, &rec).is_empty());
    }

    /// A large body acked while it waits for the writer leaves the queue
    /// with its ack: the ack needs no write (done at once), the producer's
    /// receipt is released, and the body is never written; the other body
    /// queued with it is.
    #[test]
    fn a_large_body_acked_while_queued_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_files(&dir);
        let (store, _) = SledStore::open(s.clone()).unwrap();
        let hold = store.hold();
        let Commit::Pending(mut first) = store.append(vec![enqueue(1, 120_000)]) else {
            panic!("a pending commit expected");
        };
        let kept = store.append(vec![enqueue(2, 120_000)]);
        let acked = store.append(vec![ack(1)]);
        assert!(matches!(acked, Commit::Done), "the ack waits for a write");
        assert_eq!(first.try_recv(), Ok(Ok(())), "receipt not released");
        drop(hold);
        wait(kept).unwrap();
        let m = store.metrics().unwrap();
        assert_eq!((m.messages_written, m.messages_elided), (1, 1));
        assert_eq!(body_file_bytes(&s), 120_000, "one body written, once");
        store.close();
        drop(store);
        let (store, rec) = SledStore::open(s).unwrap();
        let seqs: Vec<u64> = read_all(&store, &rec).iter().map(|(m, _)| m.seq).collect();
        assert_eq!(seqs, vec![2]);
    }

    /// A live record whose body file was cut short: the store refuses to
    /// open, naming the file, instead of delivering a wrong body later.
    #[test]
    fn a_truncated_body_file_is_a_corrupt_store_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_files(&dir);
        {
            let (store, _) = SledStore::open(s.clone()).unwrap();
            wait(store.append(vec![enqueue(1, 5000)])).unwrap();
            store.close();
        }
        let file = crate::store::body_segments::segment_path(&s.bodies.dir, 1);
        std::fs::write(&file, b"short").unwrap();
        let e = SledStore::open(s).unwrap_err();
        assert!(matches!(e, OpenError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    }

    /// Format 3 (no body files, a lane's count alone in its `C` record) is
    /// upgraded: its lanes' bytes are summed, its marker rewritten, and its
    /// messages come back.
    #[test]
    fn a_format_3_store_is_upgraded_and_its_messages_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_files(&dir);
        let before = {
            let (store, _) = SledStore::open(s.clone()).unwrap();
            wait(store.append(vec![enqueue(1, 10)])).unwrap();
            store.close();
            drop(store);
            let db = crate::store::test_db::open(&s.path);
            let counts: Vec<(sled::IVec, sled::IVec)> = db
                .scan_prefix([record::COUNT_PREFIX])
                .map(|kv| kv.unwrap())
                .collect();
            assert_eq!(counts.len(), 1);
            for (k, v) in &counts {
                db.insert(k, &v[..8]).unwrap(); // the count alone
            }
            db.insert(FORMAT_KEY, &FORMAT_3.to_be_bytes()).unwrap();
            db.flush().unwrap();
            counts
        };
        let (store, rec) = SledStore::open(s.clone()).unwrap();
        assert_eq!(read_all(&store, &rec).len(), 1);
        store.close();
        drop(store);
        let db = crate::store::test_db::open(&s.path);
        let marker = db.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(record::decode_u32(&marker), Some(FORMAT));
        let after: Vec<(sled::IVec, sled::IVec)> = db
            .scan_prefix([record::COUNT_PREFIX])
            .map(|kv| kv.unwrap())
            .collect();
        assert_eq!(after, before, "the bytes summed are the ones applied");
    }
}
