//! Where a replicated commit spends its time: the `ferromq_raft_stage_seconds`
//! histograms, one per stage of a batch's way from the writer taking it to
//! its receipts, and the per-index timeline of Raft events they are
//! measured from.
//!
//! The stages of one batch on the leader, in order (each ends where the
//! next begins, so they add up to `total`):
//! - `encode`: the writer took the batch -> its bytes are built and proposed;
//! - `propose`: proposed -> openraft's core hands it to the log's `append`;
//! - `leader_write`: the sled write of the leader's append;
//! - `leader_flush`: the leader's fsync of it;
//! - `send`: flushed -> the first AppendEntries carrying it goes out;
//! - `follower`: that first send until the first successful answer to an
//!   AppendEntries carrying it, from any follower (network, the follower's
//!   append and fsync): in a 3-node cluster the first answer makes the
//!   quorum;
//! - `commit`: that answer -> the leader's state machine starts applying it;
//! - `apply`: the leader's apply into the store;
//! - `respond`: applied -> the writer's completer sees the proposal resolved
//!   (openraft's response, our reply channel, the completer's turn: it
//!   awaits the batches in log order);
//! - `receipt`: resolved -> every commit of the batch answered (the receipts
//!   are handed to the sessions);
//! - `total`: the writer took the batch -> its commits answered.
//!
//! Before the batch is taken, `gather`: the writer's wait for what is on
//! its way (`store::log_writer::thread::gather`, at most `ack_gather`).
//!
//! Stages measured on every node as they happen (a follower's own view):
//! `log_write` and `log_flush` (each append of the Raft log, leader or
//! follower) and `rpc_append` (a follower serving an AppendEntries that
//! carries entries, from its arrival to the answer).
//!
//! The timeline is one per process, not per node: a broker runs one node,
//! and the instrumentation stays out of every signature between the writer,
//! openraft's storage and the network. The in-process tests that run three
//! nodes in one process share it; their stage figures mean nothing and
//! nothing reads them. Its memory is bounded ([`SLOTS`] indexes, the latest
//! win), recording is a short mutex section or a few atomic adds, cheap
//! enough to stay on. Lock ordering: the timeline's mutex is a leaf; nothing
//! else is taken or called while it is held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bounds of the stage buckets, in seconds: finer than the store's
/// flush histogram (`crate::metrics::LATENCY_BOUNDS`), because the stages
/// that matter here are tens of microseconds to a few milliseconds and a
/// median read off the buckets is only as good as their spacing.
pub const STAGE_BOUNDS: [f64; 24] = [
    0.00002, 0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0007, 0.001, 0.0015,
    0.002, 0.003, 0.004, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0,
];

/// One stage, the label of its histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The writer's wait before it takes a batch.
    Gather,
    /// Batch taken -> proposed.
    Encode,
    /// Proposed -> the leader's append begins.
    Propose,
    /// The leader's sled write.
    LeaderWrite,
    /// The leader's fsync.
    LeaderFlush,
    /// Leader flushed -> first AppendEntries with the entry sent.
    Send,
    /// First send -> first successful answer, from any follower.
    Follower,
    /// First follower answer -> the leader's apply begins.
    Commit,
    /// The leader's apply.
    Apply,
    /// Applied -> the writer sees the proposal resolved.
    Respond,
    /// Resolved -> the batch's commits answered.
    Receipt,
    /// Batch taken -> its commits answered.
    Total,
    /// Any node: the sled write of one append.
    LogWrite,
    /// Any node: the fsync of one append.
    LogFlush,
    /// A follower: serving one AppendEntries with entries.
    RpcAppend,
}

/// Every stage, in the order `/metrics` lists them.
pub const STAGES: [Stage; 15] = [
    Stage::Gather,
    Stage::Encode,
    Stage::Propose,
    Stage::LeaderWrite,
    Stage::LeaderFlush,
    Stage::Send,
    Stage::Follower,
    Stage::Commit,
    Stage::Apply,
    Stage::Respond,
    Stage::Receipt,
    Stage::Total,
    Stage::LogWrite,
    Stage::LogFlush,
    Stage::RpcAppend,
];

impl Stage {
    /// The `stage` label.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Gather => "gather",
            Stage::Encode => "encode",
            Stage::Propose => "propose",
            Stage::LeaderWrite => "leader_write",
            Stage::LeaderFlush => "leader_flush",
            Stage::Send => "send",
            Stage::Follower => "follower",
            Stage::Commit => "commit",
            Stage::Apply => "apply",
            Stage::Respond => "respond",
            Stage::Receipt => "receipt",
            Stage::Total => "total",
            Stage::LogWrite => "log_write",
            Stage::LogFlush => "log_flush",
            Stage::RpcAppend => "rpc_append",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A fixed-bucket histogram over [`STAGE_BOUNDS`], const-constructible so
/// the process-wide set needs no lazy initialisation.
struct StageHistogram {
    /// Per-bucket counts (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; STAGE_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl StageHistogram {
    const fn new() -> StageHistogram {
        StageHistogram {
            buckets: [const { AtomicU64::new(0) }; STAGE_BOUNDS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = STAGE_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(STAGE_BOUNDS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> StageSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(STAGE_BOUNDS.len());
        for (bound, count) in STAGE_BOUNDS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let overflow = self.buckets.last().map_or(0, |b| b.load(Ordering::Relaxed));
        StageSnapshot {
            buckets,
            count: cumulative + overflow,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// One stage's histogram at one moment (cumulative `le` buckets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSnapshot {
    /// `(upper bound in seconds, cumulative count)`, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
}

static HISTOGRAMS: [StageHistogram; STAGES.len()] = [const { StageHistogram::new() }; STAGES.len()];

/// Records one observation of `stage`.
pub fn record(stage: Stage, elapsed: Duration) {
    if let Some(h) = HISTOGRAMS.get(stage.slot()) {
        h.record(elapsed);
    }
}

/// Every stage's histogram, for `/metrics`.
pub fn snapshot() -> Vec<(Stage, StageSnapshot)> {
    STAGES
        .iter()
        .map(|stage| {
            let snapshot = HISTOGRAMS
                .get(stage.slot())
                .map(StageHistogram::snapshot)
                .unwrap_or_default();
            (*stage, snapshot)
        })
        .collect()
}

/// Raft indexes whose events are kept; an index reuses the slot of the one
/// [`SLOTS`] before it. Far more than the batches in flight
/// (`cluster.max_in_flight`, 64 by default).
pub const SLOTS: usize = 1024;

/// An event in a log entry's life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `append` began.
    AppendStart,
    /// `append`'s sled write returned.
    AppendWritten,
    /// `append`'s flush returned.
    AppendFlushed,
    /// The first AppendEntries carrying the entry was sent.
    Sent,
    /// The first answer to such an AppendEntries arrived.
    Acked,
    /// The state machine began applying it.
    ApplyStart,
    /// The state machine applied it.
    ApplyEnd,
}

const EVENTS: usize = 7;

/// What is known of one index: when each event first happened.
#[derive(Clone, Copy)]
struct Stamps {
    index: u64,
    at: [Option<Instant>; EVENTS],
}

const EMPTY: Stamps = Stamps {
    index: u64::MAX,
    at: [None; EVENTS],
};

static TIMELINE: Mutex<[Stamps; SLOTS]> = Mutex::new([EMPTY; SLOTS]);

/// Notes `event` for the entries `first..=last` at `at`, unless an earlier
/// one was noted (the first send and the first answer are what count).
pub fn note(first: u64, last: u64, event: Event, at: Instant) {
    // A range wider than the timeline would only overwrite itself.
    let first = first.max(last.saturating_sub(SLOTS as u64 - 1));
    let mut timeline = TIMELINE.lock().unwrap_or_else(|e| e.into_inner());
    for index in first..=last {
        let Some(stamps) = timeline.get_mut((index % SLOTS as u64) as usize) else {
            continue;
        };
        if stamps.index != index {
            *stamps = Stamps {
                index,
                at: [None; EVENTS],
            };
        }
        if let Some(slot) = stamps.at.get_mut(event as usize) {
            slot.get_or_insert(at);
        }
    }
}

/// The leader's stages of the batch at `index` that the writer does not
/// time itself, recorded once it resolved (`resolved`): from `proposed`
/// (when the writer proposed it) through the events noted for it. A stage
/// whose end or start was not seen (the timeline slot was reused, or a
/// leader change) is left out rather than guessed. Returns how many
/// stages were recorded.
pub fn record_commit(index: u64, proposed: Instant, resolved: Instant) -> usize {
    let stamps = {
        let timeline = TIMELINE.lock().unwrap_or_else(|e| e.into_inner());
        match timeline.get((index % SLOTS as u64) as usize) {
            Some(stamps) if stamps.index == index => *stamps,
            _ => return 0,
        }
    };
    let at = |event: Event| stamps.at.get(event as usize).copied().flatten();
    let chain = [
        (Stage::Propose, Some(proposed), at(Event::AppendStart)),
        (
            Stage::LeaderWrite,
            at(Event::AppendStart),
            at(Event::AppendWritten),
        ),
        (
            Stage::LeaderFlush,
            at(Event::AppendWritten),
            at(Event::AppendFlushed),
        ),
        (Stage::Send, at(Event::AppendFlushed), at(Event::Sent)),
        (Stage::Follower, at(Event::Sent), at(Event::Acked)),
        (Stage::Commit, at(Event::Acked), at(Event::ApplyStart)),
        (Stage::Apply, at(Event::ApplyStart), at(Event::ApplyEnd)),
        (Stage::Respond, at(Event::ApplyEnd), Some(resolved)),
    ];
    let mut recorded = 0;
    for (stage, from, to) in chain {
        if let (Some(from), Some(to)) = (from, to) {
            // openraft may send an entry before its local flush returned
            // (then `send` is 0 and the flush overlaps the round trip).
            record(stage, to.saturating_duration_since(from));
            recorded += 1;
        }
    }
    recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(stage: Stage) -> u64 {
        snapshot()
            .into_iter()
            .find(|(s, _)| *s == stage)
            .map_or(0, |(_, h)| h.count)
    }

    #[test]
    fn a_commit_records_every_stage_it_saw_in_order() {
        // Indexes far from any other test's, which share the timeline.
        let index = 7_000_000_001;
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        note(index, index, Event::AppendStart, ms(1));
        note(index, index, Event::AppendWritten, ms(2));
        note(index, index, Event::AppendFlushed, ms(4));
        note(index, index + 1, Event::Sent, ms(5));
        // A later send of the same entry (a retry) does not move it.
        note(index, index, Event::Sent, ms(9));
        note(index, index, Event::Acked, ms(8));
        note(index, index, Event::ApplyStart, ms(10));
        note(index, index, Event::ApplyEnd, ms(11));
        let before: Vec<u64> = STAGES.iter().map(|s| count(*s)).collect();
        let sum_before = snapshot()
            .into_iter()
            .find(|(s, _)| *s == Stage::Follower)
            .map_or(0.0, |(_, h)| h.sum_seconds);
        assert_eq!(record_commit(index, t0, ms(12)), 8);
        let after: Vec<u64> = STAGES.iter().map(|s| count(*s)).collect();
        for (i, stage) in STAGES.iter().enumerate() {
            let expected = match stage {
                Stage::Gather | Stage::Encode | Stage::Receipt | Stage::Total => 0,
                Stage::LogWrite | Stage::LogFlush | Stage::RpcAppend => 0,
                _ => 1,
            };
            assert!(
                after[i] >= before[i] + expected,
                "{}: {} -> {}",
                stage.name(),
                before[i],
                after[i]
            );
        }
        let sum_after = snapshot()
            .into_iter()
            .find(|(s, _)| *s == Stage::Follower)
            .map_or(0.0, |(_, h)| h.sum_seconds);
        // Sent at 5 ms (the first send), acked at 8 ms: 3 ms.
        assert!(
            sum_after - sum_before >= 0.003 - 1e-9,
            "{sum_before} -> {sum_after}"
        );
    }

    #[test]
    fn a_reused_slot_or_missing_event_records_nothing_made_up() {
        let index = 8_000_000_003;
        let t0 = Instant::now();
        note(index, index, Event::AppendStart, t0);
        // The slot goes to the index SLOTS later.
        note(
            index + SLOTS as u64,
            index + SLOTS as u64,
            Event::AppendStart,
            t0,
        );
        assert_eq!(record_commit(index, t0, t0), 0);
        // The new owner of the slot saw only its append start: only the
        // `propose` stage has both ends.
        let later = index + SLOTS as u64;
        assert_eq!(record_commit(later, t0, t0 + Duration::from_millis(1)), 1);
    }

    #[test]
    fn buckets_are_cumulative() {
        let h = StageHistogram::new();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(120));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        let le = |bound: f64| s.buckets.iter().find(|(b, _)| *b == bound).map(|x| x.1);
        assert_eq!(le(0.00002), Some(1));
        assert_eq!(le(0.00015), Some(2));
        assert_eq!(le(0.003), Some(3));
        assert_eq!(le(1.0), Some(3));
    }
}
