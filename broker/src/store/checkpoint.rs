//! Checkpoints: bounding what sled replays when the store opens.
//!
//! sled 0.34.7 writes the snapshot of its page table only when it opens a
//! database, and its open reads every log segment written since that
//! snapshot (`Config::snapshot_after_ops` is a no-op in this version). So a
//! store that was written for a long time since the broker started takes the
//! longer to open after a crash the more was written: 1.25 s for the 2 GB of
//! a 1.1M-message backlog (BENCHMARKS.md, "Deep queues"), and it would grow
//! with a 10M one. The log writer therefore closes and reopens the database
//! once about `store.checkpoint_every` bytes were written since it was last
//! opened ([`Checkpoint`]): the reopen replays that much, writes a fresh
//! snapshot, and the next open (after a crash too) starts from there. A
//! reopen also costs time in proportion to the backlog (sled's page table),
//! so checkpoints are spaced to keep that under 5% of the writer's time
//! ([`PAUSE_FACTOR`]).
//!
//! What the writer counts is an estimate of what sled appends to its log,
//! not a measure of it (sled does not expose its log position): the encoded
//! batch (bodies and headers of the messages written) plus
//! [`REMOVAL_BYTES`] per message removed, for the deletes of its records.

use super::sled_store::{check_format, open_sled, SledBodies};
use super::OpenError;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::info;

/// What sled appends per removed message: the deletes of its `M`, `S`, `Q`
/// and `D` keys, each a small log fragment with a header, and a share of
/// the leaves rewritten when their fragments are consolidated.
pub const REMOVAL_BYTES: u64 = 256;

/// A reopen's cost grows with the backlog, not only with what it replays
/// (sled reads, rewrites and loads its whole page table at every open:
/// 0.8 s at 1M messages and 5-6 s at 2.4M, measured under load 13-18), and
/// persistent producers wait for it. So the next checkpoint waits at least
/// this many times as long as the last reopen took: the writer spends at
/// most 1/20 (5%) of its time reopening, and the replay after a crash grows
/// with the backlog only as far as that requires.
pub const PAUSE_FACTOR: u32 = 20;

/// Counts the bytes written since the database was last opened, and how
/// long ago that was.
#[derive(Debug)]
pub struct Checkpoint {
    every: u64,
    since_open: u64,
    opened: Instant,
    last_cost: Duration,
}

impl Checkpoint {
    /// A checkpoint after every `every` bytes written.
    pub fn new(every: u64) -> Checkpoint {
        Checkpoint {
            every,
            since_open: 0,
            opened: Instant::now(),
            last_cost: Duration::ZERO,
        }
    }

    /// One applied batch: `batch_bytes` of encoded log record, `removed`
    /// messages deleted.
    pub fn count(&mut self, batch_bytes: usize, removed: usize) {
        self.since_open = self
            .since_open
            .saturating_add(batch_bytes as u64)
            .saturating_add((removed as u64).saturating_mul(REMOVAL_BYTES));
    }

    /// Whether a reopen is due now: enough was written, and the last one
    /// was long enough ago ([`PAUSE_FACTOR`]).
    pub fn due(&self) -> bool {
        self.due_at(Instant::now())
    }

    fn due_at(&self, now: Instant) -> bool {
        self.since_open >= self.every
            && now.saturating_duration_since(self.opened) >= self.last_cost * PAUSE_FACTOR
    }

    /// Bytes counted since the database was opened.
    pub fn since_open(&self) -> u64 {
        self.since_open
    }

    /// The database was reopened, which took `cost`: count from zero.
    pub fn done(&mut self, cost: Duration) {
        self.since_open = 0;
        self.opened = Instant::now();
        self.last_cost = cost;
    }
}

/// Closes `db` and opens the store at `path` again, moving the body readers
/// to the new handle. Only the log writer calls it, between batches, after
/// a flush: nothing is being written, and everything written is on disk.
pub fn reopen(
    path: &Path,
    cache_bytes: u64,
    bodies: &SledBodies,
    db: sled::Db,
    written: u64,
) -> Result<sled::Db, OpenError> {
    let started = Instant::now();
    // Lock order: the body readers' lock only, taken by this thread alone;
    // readers wait for the swap (a reader's clone would keep the old files
    // open, and sled locks its directory).
    let mut readers = bodies.lock_for_swap();
    readers.take();
    drop(db);
    let closed_ms = started.elapsed().as_millis() as u64;
    let db = open_sled(path, cache_bytes)?;
    check_format(path, &db)?;
    *readers = Some(db.clone());
    info!(
        path = %path.display(),
        written_bytes = written,
        closed_ms,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store checkpointed (reopened so that sled's next open replays little)"
    );
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_after_the_configured_bytes_and_counts_from_zero_after_it() {
        let mut c = Checkpoint::new(10_000);
        assert!(!c.due());
        c.count(9_000, 0);
        assert!(!c.due());
        c.count(500, 2);
        assert!(
            c.due(),
            "9,500 bytes of records and two removals are over 10,000"
        );
        c.done(Duration::ZERO);
        assert!(!c.due());
        // A drain writes little record data but removes many messages:
        // 36 acks of 20 bytes and one removal each are 9,936 bytes.
        for _ in 0..36 {
            c.count(20, 1);
        }
        assert!(!c.due());
        c.count(64, 0);
        assert!(c.due(), "exactly 10,000");
        c.count(usize::MAX, usize::MAX);
        assert!(c.due(), "saturates instead of wrapping");
    }

    #[test]
    fn a_reopen_that_took_long_delays_the_next_one_by_twenty_times_as_long() {
        let mut c = Checkpoint::new(100);
        c.done(Duration::from_secs(2));
        c.count(1_000, 0);
        let opened = c.opened;
        assert!(
            !c.due_at(opened + Duration::from_secs(39)),
            "written, but too soon"
        );
        assert!(c.due_at(opened + Duration::from_secs(40)));
        c.done(Duration::from_millis(1));
        assert!(!c.due(), "nothing written yet");
    }

    #[test]
    fn a_reopened_store_has_what_was_written_and_bodies_read_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let db = open_sled(&path, 8 << 20).unwrap();
        check_format(&path, &db).unwrap();
        db.insert(b"k", b"v".as_slice()).unwrap();
        db.flush().unwrap();
        let bodies = SledBodies::default();
        *bodies.lock_for_swap() = Some(db.clone());
        let db = reopen(&path, 8 << 20, &bodies, db, 1).unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(b"v".as_slice()));
        let readers = bodies.lock_for_swap();
        let reader = readers.as_ref().unwrap();
        assert_eq!(reader.get(b"k").unwrap().as_deref(), Some(b"v".as_slice()));
    }
}
