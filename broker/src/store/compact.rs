//! Compaction: giving consumed messages' disk space back.
//!
//! While the broker runs, sled reuses the space of removed records (its
//! files stop growing under steady produce/consume), but it keeps them at
//! their high-water mark: after a burst of a million messages is consumed
//! the files still hold hundreds of megabytes. So when the files are much
//! larger than the live records in them, the live records are copied into a
//! fresh sled database which then replaces the old one: at open, and while
//! the broker runs ([`Online`]), by the log writer when it is idle and few
//! records are live, so the pause is short.
//!
//! Crash safety: the copy is built in `<store>.compact` and flushed before
//! anything is renamed; then `<store>` becomes `<store>.old`, the copy
//! becomes `<store>`, and `<store>.old` is deleted. [`finish_interrupted`]
//! completes or discards an interrupted run at the next open, so at any
//! kill point the store is either the old one or the complete copy.

use super::sled_store::{check_format, open_sled, SledBodies};
use super::OpenError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info};

/// How often an idle writer looks at the file size.
const ONLINE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Online compaction only copies this much: the writer, and with it every
/// persistent producer, pauses while it runs.
const ONLINE_MAX_LIVE: u64 = 16 << 20;

/// Compaction while the broker runs, driven by the log writer thread (the
/// only writer, so nothing is appended to the old files meanwhile).
pub struct Online {
    /// The store directory.
    pub path: PathBuf,
    /// sled page cache for the reopened database.
    pub cache_bytes: u64,
    /// Least number of bytes worth winning back (as at open).
    pub min_bytes: u64,
    /// Readers of paged bodies, moved to the new database.
    pub bodies: Arc<SledBodies>,
    /// How long the store's open took (sled's open and recovery): what
    /// the first checkpoint is expected to cost ([`super::checkpoint`]).
    pub open_cost: Duration,
    last_check: Instant,
}

impl Online {
    /// Online compaction of the store at `path`.
    pub fn new(path: PathBuf, cache_bytes: u64, min_bytes: u64, bodies: Arc<SledBodies>) -> Online {
        Online {
            path,
            cache_bytes,
            min_bytes,
            bodies,
            open_cost: Duration::ZERO,
            last_check: Instant::now(),
        }
    }

    /// How long an idle writer may sleep before calling [`Online::run`].
    pub fn check_every(&self) -> Duration {
        ONLINE_CHECK_EVERY
    }

    /// Compacts when it is worth it and cheap (`live` record bytes are
    /// few); returns the database to go on with: `db` itself, or the
    /// compacted one at the same path. The copy holds the very same keys,
    /// so the state machine stays valid. An `Err` means no database could be
    /// reopened: the store must refuse writes from then on.
    pub fn run(&mut self, db: sled::Db, live: u64) -> Result<sled::Db, OpenError> {
        if self.last_check.elapsed() < ONLINE_CHECK_EVERY {
            return Ok(db);
        }
        self.last_check = Instant::now();
        let on_disk = db.size_on_disk().unwrap_or(0);
        if live > ONLINE_MAX_LIVE || !needed(on_disk, live, self.min_bytes) {
            return Ok(db);
        }
        // Lock order: the body readers' lock only, taken by this thread
        // alone; readers wait for the swap (they would otherwise hold the
        // old files open, and sled locks its directory).
        let mut readers = self.bodies.lock_for_swap();
        readers.take();
        if let Err(e) = compact(&self.path, db) {
            // Whatever happened, one complete store is at `path` (or is
            // restored there by `finish_interrupted`): reopen it.
            error!(path = %self.path.display(), error = %e, "online compaction failed; keeping the old files");
        }
        finish_interrupted(&self.path)?;
        let db = open_sled(&self.path, self.cache_bytes)?;
        check_format(&self.path, &db)?;
        *readers = Some(db.clone());
        Ok(db)
    }
}

/// Whether a store whose files take `on_disk` bytes for `live` bytes of
/// records is worth compacting: at least `min_bytes` to win back, and the
/// files more than four times the live data.
pub fn needed(on_disk: u64, live: u64, min_bytes: u64) -> bool {
    on_disk > min_bytes && on_disk > live.saturating_mul(4).saturating_add(min_bytes)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn dir_error(path: &Path, what: &str, e: std::io::Error) -> OpenError {
    OpenError::Directory {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    }
}

/// Completes or discards a compaction a crash interrupted. Call before
/// opening `path`.
pub fn finish_interrupted(path: &Path) -> Result<(), OpenError> {
    let copy = sibling(path, ".compact");
    let old = sibling(path, ".old");
    if !path.exists() && copy.exists() && old.exists() {
        // Killed between the two renames: the copy is complete (it was
        // flushed before the first rename).
        std::fs::rename(&copy, path)
            .map_err(|e| dir_error(path, "cannot finish an interrupted compaction", e))?;
    }
    for leftover in [copy, old] {
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover)
                .map_err(|e| dir_error(&leftover, "cannot remove a compaction leftover", e))?;
        }
    }
    Ok(())
}

/// Copies every record of `db` (at `path`) into a fresh database and swaps
/// it in. The caller reopens `path` afterwards.
pub fn compact(path: &Path, db: sled::Db) -> Result<(), OpenError> {
    let copy = sibling(path, ".compact");
    let old = sibling(path, ".old");
    let before = db.size_on_disk().unwrap_or(0);
    let fresh = sled::Config::new()
        .path(&copy)
        .flush_every_ms(None)
        .open()
        .map_err(|e| OpenError::Directory {
            path: copy.clone(),
            reason: format!("cannot create the compaction copy: {e}"),
        })?;
    let copy_error = |e: sled::Error| OpenError::Directory {
        path: copy.clone(),
        reason: format!("cannot write the compaction copy: {e}"),
    };
    let mut records = 0u64;
    for item in db.iter() {
        let (k, v) = item.map_err(|e| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        fresh.insert(k, v).map_err(copy_error)?;
        records += 1;
    }
    fresh.flush().map_err(copy_error)?;
    let after = fresh.size_on_disk().unwrap_or(0);
    drop(fresh);
    drop(db);
    std::fs::rename(path, &old)
        .map_err(|e| dir_error(path, "cannot move the old store away", e))?;
    std::fs::rename(&copy, path)
        .map_err(|e| dir_error(path, "cannot move the copy in place", e))?;
    if let Some(parent) = path.parent() {
        // Make the renames durable before the old files go.
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    std::fs::remove_dir_all(&old).map_err(|e| dir_error(&old, "cannot remove the old store", e))?;
    info!(
        path = %path.display(),
        records,
        before_bytes = before,
        after_bytes = after,
        "store compacted"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_is_worth_it_only_for_mostly_empty_big_files() {
        assert!(!needed(10 << 20, 0, 64 << 20), "too small to bother");
        assert!(needed(700 << 20, 0, 64 << 20));
        assert!(!needed(1600 << 20, 1000 << 20, 64 << 20), "mostly live");
        assert!(needed(1600 << 20, 100 << 20, 64 << 20));
    }

    #[test]
    fn an_interrupted_compaction_is_completed_or_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        // Killed between the renames: the copy becomes the store.
        std::fs::create_dir_all(sibling(&store, ".compact")).unwrap();
        std::fs::write(sibling(&store, ".compact").join("marker"), b"copy").unwrap();
        std::fs::create_dir_all(sibling(&store, ".old")).unwrap();
        finish_interrupted(&store).unwrap();
        assert_eq!(std::fs::read(store.join("marker")).unwrap(), b"copy");
        assert!(!sibling(&store, ".old").exists());
        // Killed while copying: the copy is dropped, the store kept.
        std::fs::create_dir_all(sibling(&store, ".compact")).unwrap();
        finish_interrupted(&store).unwrap();
        assert!(!sibling(&store, ".compact").exists());
        assert_eq!(std::fs::read(store.join("marker")).unwrap(), b"copy");
    }
}
