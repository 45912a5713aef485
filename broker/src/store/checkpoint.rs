//! Checkpoints: bounding what sled replays when the store opens.
//!
//! sled 0.34.7 writes the snapshot of its page table only when it opens a
//! database, and its open reads every log segment written since that
//! snapshot (`Config::snapshot_after_ops` is a no-op in this version). So a
//! store that was written for a long time since the broker started takes the
//! longer to open after a crash the more was written. The log writer
//! therefore closes and reopens the database once about
//! `store.checkpoint_every` bytes were written since it was last opened
//! ([`Checkpoint`]): the reopen replays that much, writes a fresh snapshot,
//! and the next open (after a crash too) starts from there.
//!
//! A reopen also costs time in proportion to the backlog (sled loads its
//! page table, one entry per tree node), and every persistent producer and
//! every ack waits for it. So checkpoints are spaced to keep that under 5%
//! of the writer's time ([`PAUSE_FACTOR`]), but never so far apart that the
//! next open would replay more than [`MAX_REPLAY_FACTOR`] times
//! `checkpoint_every`: what an open replays is bounded whatever the
//! backlog. (Until 2026-12-08 a checkpoint was skipped while the backlog
//! was deep, predicting a long pause; a 4M-message fill then skipped every
//! checkpoint after the first 235k messages, and the open after a `kill -9`
//! replayed all 7.6 GB the fill had written: 40.7 s, BENCHMARKS.md "Deep
//! queues".)
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

/// A reopen's cost grows with the backlog, not only with what it replays
/// (sled loads its whole page table at every open), and every persistent
/// producer and every ack waits for it. So the next checkpoint waits at
/// least [`PAUSE_FACTOR`] times as long as the last reopen took (at most 5%
/// of the writer's time)...
pub const PAUSE_FACTOR: u32 = 20;
/// ...unless waiting would let the bytes written since the last open (what
/// the next open replays) pass this many times `checkpoint_every`: then the
/// reopen is due however long it takes. With the default 256 MiB that is
/// 512 MiB of log at most: sled replayed 5.6 GB in 17-19 s at open
/// (bench-client/results/sled-open-2026-12-08), so about 1.5 s on top of
/// loading the page table.
pub const MAX_REPLAY_FACTOR: u64 = 2;

/// What the writer decides after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not yet: too little written, or too soon after the last reopen.
    Wait,
    /// Reopen now.
    Reopen,
}

/// Counts the bytes written since the database was last opened, how long
/// ago that was, and what that open cost.
#[derive(Debug)]
pub struct Checkpoint {
    every: u64,
    since_open: u64,
    opened: Instant,
    last_cost: Duration,
}

impl Checkpoint {
    /// A checkpoint after every `every` bytes written; the store's own open
    /// took `open_cost`.
    pub fn new(every: u64, open_cost: Duration) -> Checkpoint {
        Checkpoint {
            every,
            since_open: 0,
            opened: Instant::now(),
            last_cost: open_cost,
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

    /// Whether to reopen now.
    pub fn decide(&self) -> Decision {
        self.decide_at(Instant::now())
    }

    fn decide_at(&self, now: Instant) -> Decision {
        if self.since_open < self.every {
            return Decision::Wait;
        }
        let spaced = now.saturating_duration_since(self.opened) >= self.last_cost * PAUSE_FACTOR;
        if spaced || self.since_open >= self.every.saturating_mul(MAX_REPLAY_FACTOR) {
            Decision::Reopen
        } else {
            Decision::Wait
        }
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
        let mut c = Checkpoint::new(10_000, Duration::ZERO);
        assert_eq!(c.decide(), Decision::Wait);
        c.count(9_000, 0);
        assert_eq!(c.decide(), Decision::Wait);
        c.count(500, 2);
        assert_eq!(
            c.decide(),
            Decision::Reopen,
            "9,500 bytes of records and two removals are over 10,000"
        );
        c.done(Duration::ZERO);
        assert_eq!(c.decide(), Decision::Wait);
        // A drain writes little record data but removes many messages:
        // 36 acks of 20 bytes and one removal each are 9,936 bytes.
        for _ in 0..36 {
            c.count(20, 1);
        }
        assert_eq!(c.decide(), Decision::Wait);
        c.count(64, 0);
        assert_eq!(c.decide(), Decision::Reopen, "exactly 10,000");
        c.count(usize::MAX, usize::MAX);
        assert_eq!(
            c.decide(),
            Decision::Reopen,
            "saturates instead of wrapping"
        );
    }

    #[test]
    fn a_reopen_that_took_long_delays_the_next_one_by_twenty_times_as_long() {
        let mut c = Checkpoint::new(1_000, Duration::ZERO);
        c.done(Duration::from_millis(200));
        c.count(1_000, 0);
        let opened = c.opened;
        let early = opened + Duration::from_millis(3_999);
        assert_eq!(c.decide_at(early), Decision::Wait, "written, but too soon");
        let later = opened + Duration::from_secs(4);
        assert_eq!(c.decide_at(later), Decision::Reopen);
    }

    #[test]
    fn what_the_next_open_replays_stays_bounded_however_slow_the_last_reopen() {
        // A deep store whose reopens take 30 s (spacing them 10 minutes
        // apart), written 1 MiB per batch with the clock standing still:
        // the spacing alone would never allow a reopen, and the rule before
        // 2026-12-08 skipped them all for a deep backlog, so the open after
        // a crash replayed everything written since the broker started.
        let every = 64 << 20;
        let mut c = Checkpoint::new(every, Duration::from_secs(30));
        let now = c.opened;
        let batch = 1 << 20;
        let (mut reopens, mut most_unreplayed) = (0, 0);
        for _ in 0..4096 {
            c.count(batch, 10);
            most_unreplayed = most_unreplayed.max(c.since_open());
            if c.decide_at(now) == Decision::Reopen {
                reopens += 1;
                c.done(Duration::from_secs(30));
            }
        }
        assert!(reopens >= 30, "4 GiB written, 128 MiB apart: {reopens}");
        let bound = every * MAX_REPLAY_FACTOR + batch as u64 + 10 * REMOVAL_BYTES;
        assert!(
            most_unreplayed <= bound,
            "at most {bound} bytes to replay, found {most_unreplayed}"
        );
        // Below the bound the spacing still holds the reopen back.
        let mut c = Checkpoint::new(every, Duration::from_secs(30));
        c.count(every as usize * 3 / 2, 0);
        assert_eq!(c.decide_at(c.opened), Decision::Wait);
        assert_eq!(
            c.decide_at(c.opened + Duration::from_secs(600)),
            Decision::Reopen
        );
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
