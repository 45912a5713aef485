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

/// What sled appends per removed message: the deletes of its `Q`, `S` and
/// `D` keys (an `M` key too before store format 6; not re-measured since),
/// each a small log fragment with a header, and a share of the leaves
/// rewritten when their fragments are consolidated.
pub const REMOVAL_BYTES: u64 = 256;

/// A reopen's cost grows with the backlog, not only with what it replays:
/// sled reads, rewrites and loads its whole page table at every open (0.8 s
/// at 1M messages, 8-20 s at 2.3-5M, measured under load 13-21), and every
/// persistent producer and every ack waits for it. So a checkpoint is
/// skipped when the last open's cost, scaled to the messages live now,
/// predicts a pause over [`MAX_PAUSE`] (with a deep backlog the open is the
/// page table's anyway, and a bounded replay saves little of it), and the
/// next one waits at least [`PAUSE_FACTOR`] times as long as the last
/// reopen took (at most 5% of the writer's time).
pub const MAX_PAUSE: Duration = Duration::from_millis(500);
/// See [`MAX_PAUSE`].
pub const PAUSE_FACTOR: u32 = 20;
/// Below this many live messages an open's cost is taken as fixed (sled's
/// own start, the files' headers), and a checkpoint is never skipped; above
/// it, as proportional to the messages.
pub const SCALE_FROM: u64 = 100_000;

/// What the writer decides after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not yet: too little written, or too soon after the last reopen.
    Wait,
    /// Reopen now.
    Reopen,
    /// Enough written, but the reopen would pause the store too long:
    /// start counting again.
    Skip,
}

/// Counts the bytes written since the database was last opened, how long
/// ago that was, and what that open cost for how many live messages.
#[derive(Debug)]
pub struct Checkpoint {
    every: u64,
    since_open: u64,
    opened: Instant,
    last_cost: Duration,
    last_live: u64,
}

impl Checkpoint {
    /// A checkpoint after every `every` bytes written; the store's own open
    /// took `open_cost` with `live` messages.
    pub fn new(every: u64, open_cost: Duration, live: u64) -> Checkpoint {
        Checkpoint {
            every,
            since_open: 0,
            opened: Instant::now(),
            last_cost: open_cost,
            last_live: live,
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

    /// Whether to reopen now, with `live` messages in the store.
    pub fn decide(&self, live: u64) -> Decision {
        self.decide_at(Instant::now(), live)
    }

    fn decide_at(&self, now: Instant, live: u64) -> Decision {
        if self.since_open < self.every
            || now.saturating_duration_since(self.opened) < self.last_cost * PAUSE_FACTOR
        {
            return Decision::Wait;
        }
        if live > SCALE_FROM && self.predicted_cost(live) > MAX_PAUSE {
            Decision::Skip
        } else {
            Decision::Reopen
        }
    }

    /// The last open's cost scaled to `live` messages (see [`SCALE_FROM`]);
    /// never less than the last cost.
    fn predicted_cost(&self, live: u64) -> Duration {
        let ratio = live as f64 / self.last_live.max(SCALE_FROM) as f64;
        self.last_cost.mul_f64(ratio.clamp(1.0, 1e6))
    }

    /// Bytes counted since the database was opened.
    pub fn since_open(&self) -> u64 {
        self.since_open
    }

    /// A reopen was skipped: count from zero, keeping the last cost.
    pub fn skipped(&mut self) {
        self.since_open = 0;
    }

    /// The database was reopened with `live` messages, which took `cost`:
    /// count from zero.
    pub fn done(&mut self, cost: Duration, live: u64) {
        self.since_open = 0;
        self.opened = Instant::now();
        self.last_cost = cost;
        self.last_live = live;
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
        let mut c = Checkpoint::new(10_000, Duration::ZERO, 0);
        assert_eq!(c.decide(0), Decision::Wait);
        c.count(9_000, 0);
        assert_eq!(c.decide(0), Decision::Wait);
        c.count(500, 2);
        assert_eq!(
            c.decide(0),
            Decision::Reopen,
            "9,500 bytes of records and two removals are over 10,000"
        );
        c.done(Duration::ZERO, 0);
        assert_eq!(c.decide(0), Decision::Wait);
        // A drain writes little record data but removes many messages:
        // 36 acks of 20 bytes and one removal each are 9,936 bytes.
        for _ in 0..36 {
            c.count(20, 1);
        }
        assert_eq!(c.decide(0), Decision::Wait);
        c.count(64, 0);
        assert_eq!(c.decide(0), Decision::Reopen, "exactly 10,000");
        c.count(usize::MAX, usize::MAX);
        assert_eq!(
            c.decide(0),
            Decision::Reopen,
            "saturates instead of wrapping"
        );
    }

    #[test]
    fn a_reopen_that_took_long_delays_the_next_one_by_twenty_times_as_long() {
        let mut c = Checkpoint::new(100, Duration::ZERO, 0);
        c.done(Duration::from_millis(200), 1000);
        c.count(1_000, 0);
        let opened = c.opened;
        let early = opened + Duration::from_millis(3_999);
        assert_eq!(
            c.decide_at(early, 1000),
            Decision::Wait,
            "written, but too soon"
        );
        let later = opened + Duration::from_secs(4);
        assert_eq!(c.decide_at(later, 1000), Decision::Reopen);
    }

    #[test]
    fn a_reopen_predicted_to_pause_too_long_for_the_backlog_is_skipped() {
        // The open took 300 ms with 100,000 messages: 200,000 would take
        // about 600 ms, over MAX_PAUSE; 150,000 about 450 ms, under it.
        let mut c = Checkpoint::new(100, Duration::from_millis(300), 100_000);
        c.count(1_000, 0);
        let later = c.opened + Duration::from_secs(60);
        assert_eq!(c.decide_at(later, 150_000), Decision::Reopen);
        assert_eq!(c.decide_at(later, 200_000), Decision::Skip);
        c.skipped();
        assert_eq!(
            c.decide_at(later, 200_000),
            Decision::Wait,
            "counts from zero"
        );
        // Fewer live messages than at the last open predict no less than it.
        assert_eq!(c.predicted_cost(10), Duration::from_millis(300));
        // A fresh store that took long to open (a loaded machine) is still
        // checkpointed while its backlog is shallow.
        let mut c = Checkpoint::new(100, Duration::from_secs(2), 0);
        c.count(1_000, 0);
        let later = c.opened + Duration::from_secs(60);
        assert_eq!(c.decide_at(later, 50_000), Decision::Reopen);
        assert_eq!(c.decide_at(later, 100_001), Decision::Skip);
    }

    #[test]
    fn a_reopened_store_has_what_was_written_and_bodies_read_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let db = open_sled(&path, 8 << 20).unwrap();
        check_format(&path, &db).unwrap();
        db.insert(b"k", b"v".as_slice()).unwrap();
        db.flush().unwrap();
        let files = crate::store::body_segments::BodyReader::new(dir.path().join("bodies"));
        let bodies = SledBodies::new(std::sync::Arc::new(files));
        *bodies.lock_for_swap() = Some(db.clone());
        let db = reopen(&path, 8 << 20, &bodies, db, 1).unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(b"v".as_slice()));
        let readers = bodies.lock_for_swap();
        let reader = readers.as_ref().unwrap();
        assert_eq!(reader.get(b"k").unwrap().as_deref(), Some(b"v".as_slice()));
    }
}
