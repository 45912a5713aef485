//! The log writer thread: takes a batch from the [`Queue`], writes its large
//! bodies to the body files and syncs them, applies it to the state machine
//! in one atomic `sled::Batch`, flushes, deletes the body files without a
//! live body, and only then resolves the batch's commits and releases its
//! held deliveries. Before a batch it may wait a moment for what is on its
//! way ([`gather`]).

use super::queue::{Queue, Shared, WriterWait};
use super::NEVER_FLUSH_EVERY;
use crate::store::body_reclaim::BodyFiles;
use crate::store::checkpoint::{self, Checkpoint, Decision};
use crate::store::compact::Online;
use crate::store::entry;
use crate::store::paging::Pager;
use crate::store::state_machine::{SledRecords, StateMachine};
use crate::store::{LogEntry, StoreError};
use ferromq_config::StoreSync;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};
use tracing::{error, info};

/// The writer thread's loop.
pub(super) fn run(
    shared: &Shared,
    mut db: sled::Db,
    mut state: StateMachine,
    mut pager: Pager,
    mut bodies: BodyFiles,
    mut online: Option<Online>,
) {
    let settings = &shared.settings;
    let mut unflushed = false;
    let mut last_flush = Instant::now();
    let mut totals = Totals::default();
    let mut checkpoint = Checkpoint::new(
        settings.checkpoint_bytes,
        online.as_ref().map_or(Duration::ZERO, |o| o.open_cost),
    );
    loop {
        let (entries, waiters, handoffs, closing) = {
            let mut q = shared.lock();
            q.writer = WriterWait::Idle;
            while (q.entries.is_empty() && q.handoffs.is_empty() || q.holds > 0) && !q.closed {
                if unflushed {
                    // Only with sync = never: flush now and then anyway.
                    let (g, timeout) = shared
                        .work
                        .wait_timeout(q, NEVER_FLUSH_EVERY)
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    if timeout.timed_out() && q.holds == 0 {
                        break;
                    }
                } else if let Some(compactor) = online.as_mut() {
                    let (g, timeout) = shared
                        .work
                        .wait_timeout(q, compactor.check_every())
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    let idle = q.entries.is_empty() && q.handoffs.is_empty() && q.holds == 0;
                    if timeout.timed_out() && idle && q.broken.is_none() && !q.closed {
                        // Idle: appends made meanwhile just queue (the
                        // writer applies nothing until it is done).
                        drop(q);
                        // Everything applied is flushed (`unflushed` is
                        // false here): body files without a live body go,
                        // the one being appended to included.
                        reclaim(&mut bodies, &state, true);
                        match compactor.run(db, state.live_bytes()) {
                            Ok(next) => db = next,
                            Err(e) => {
                                error!(error = %e, "the store could not be reopened after compaction");
                                let mut q = shared.lock();
                                q.broken = Some(StoreError::Io(e.to_string()));
                                shared.space.notify_all();
                                drop(q);
                                return fail_forever(shared);
                            }
                        }
                        q = shared.lock();
                    }
                } else {
                    q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            }
            q.writer = WriterWait::Busy;
            if settings.sync == StoreSync::Batch && !q.entries.is_empty() {
                // Flush at most every batch_delay: gather more until then
                // (or until the batch is big). Fewer fsyncs, and more
                // enqueue/ack pairs meet inside one batch and are elided.
                q.writer = WriterWait::Batching;
                let deadline = last_flush + settings.batch_delay;
                while !q.closed && !q.batch_full() {
                    let (woken, late) = wait_until(shared, q, deadline);
                    q = woken;
                    if late {
                        break;
                    }
                }
            }
            q.writer = WriterWait::Busy;
            if settings.sync == StoreSync::Always {
                q = gather(shared, q, settings.ack_gather);
            }
            let b = shared.take_batch(q);
            (b.entries, b.waiters, b.handoffs, b.closing)
        };
        let mut result = Ok(());
        if !entries.is_empty() {
            // The log record: one encoded batch per group commit. This is
            // the seam replication sits in: in cluster mode `replicated::run`
            // proposes these bytes instead, and every node (the leader too)
            // applies them once a quorum has them, with no router.
            result = entry::build(&entries, state.max_seq())
                .map_err(|e| StoreError::Io(e.to_string()))
                .and_then(|(mut built, pruned)| {
                    // Durability ordering, part 0: the bodies that go to body
                    // files are written and fdatasync'ed before the sled
                    // batch referring to them is applied (sled may write an
                    // applied batch out before any flush, whatever
                    // store.sync says), so no record on disk refers to bytes
                    // that are not. The batch then carries references: it
                    // is this node's, never replicated (cluster mode runs
                    // `replicated::run`, which keeps bodies inline).
                    let written = bodies
                        .externalize(&mut built)
                        .map_err(|e| StoreError::Io(e.to_string()))?;
                    if written > 0 {
                        bodies.sync().map_err(|e| StoreError::Io(e.to_string()))?;
                    }
                    let raw = built.to_bytes();
                    let mut batch = SledRecords::new(&db);
                    let applied = state
                        .apply(&built, &raw, &mut batch)
                        .map_err(StoreError::Io)?;
                    shared
                        .written
                        .fetch_add(applied.stored.len() as u64, Ordering::Relaxed);
                    shared
                        .elided
                        .fetch_add(pruned.elided as u64, Ordering::Relaxed);
                    totals.add(entries.len(), &applied, pruned.elided);
                    checkpoint.count(raw.len(), applied.removed.len());
                    db.apply_batch(batch.into_batch())
                        .map(|_| applied)
                        .map_err(|e| StoreError::Io(e.to_string()))
                })
                .map(|applied| {
                    // The records are readable now (sled serves applied
                    // batches before they are flushed): bodies over the
                    // budget may go. Outside the apply: it touches the
                    // router's messages.
                    totals.paged += pager.after_apply(&entries, &applied) as u64;
                });
            unflushed = true;
        }
        // Durability ordering, part 1: flush (fsync) before resolving any
        // commit, so a RECEIPT released below means "on disk". sled's own
        // timer flusher is off (flush_every_ms = None): nothing depends on it.
        let due = settings.sync != StoreSync::Never
            || closing
            || last_flush.elapsed() >= NEVER_FLUSH_EVERY;
        if result.is_ok() && unflushed && due {
            let flush_started = Instant::now();
            result = db
                .flush()
                .map(|_| ())
                .map_err(|e| StoreError::Io(format!("flush: {e}")));
            shared.flush_latency.record(flush_started.elapsed());
            unflushed = false;
            last_flush = Instant::now();
            totals.flushes += 1;
            // Durability ordering, last part: a body file goes only after
            // the flush that made the removal of its last body durable.
            if result.is_ok() {
                reclaim(&mut bodies, &state, false);
            }
        }
        shared
            .live_bytes
            .store(state.live_bytes() + state.body_bytes(), Ordering::Relaxed);
        shared.destination_bytes.publish(state.lane_bytes_mut());
        shared.publish_paging(&pager);
        if let Err(e) = &result {
            error!(error = %e, "store write failed; refusing persistent messages from now on");
            shared.lock().broken = Some(e.clone());
            shared.space.notify_all();
        }
        // Durability ordering, part 2: only now are the waiting commits (and
        // with them RECEIPTs) released.
        let mut waiters = waiters;
        {
            let mut q = shared.lock();
            for e in &entries {
                if let LogEntry::Enqueue { message, .. } = e {
                    waiters.extend(q.by_seq.remove(&message.seq));
                }
            }
            // Only commits someone still awaits bring a producer back (an
            // auto-ack's commit is dropped at once).
            q.expect = waiters.iter().filter(|w| !w.is_closed()).count() + q.receipts;
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
        // Deliveries whose records are now durable may reach consumers
        // (after a failed write too: the message was in memory all along).
        for h in handoffs {
            h.release();
        }
        if closing && entries.is_empty() {
            break;
        }
        // Durability ordering, part 3: a checkpoint only after the flush
        // above and with no batch under way, so the reopened database holds
        // everything any commit was told about. Commits queued meanwhile
        // wait for the reopen (tens of milliseconds for a shallow store,
        // seconds for a deep one: `checkpoint::PAUSE_FACTOR` spaces them).
        let decision = match (&result, unflushed, online.as_ref()) {
            (Ok(()), false, Some(_)) => checkpoint.decide(),
            _ => Decision::Wait,
        };
        if let (Decision::Reopen, Some(o)) = (decision, online.as_ref()) {
            let started = Instant::now();
            let written = checkpoint.since_open();
            match checkpoint::reopen(&o.path, o.cache_bytes, &o.bodies, db, written) {
                Ok(next) => db = next,
                Err(e) => {
                    error!(error = %e, "the store could not be reopened at a checkpoint");
                    let mut q = shared.lock();
                    q.broken = Some(StoreError::Io(e.to_string()));
                    shared.space.notify_all();
                    drop(q);
                    return fail_forever(shared);
                }
            }
            totals.checkpoints += 1;
            checkpoint.done(started.elapsed());
        }
    }
    info!(
        live_messages = state.live_messages(),
        live_bytes = state.live_bytes(),
        entries = totals.entries,
        batches = totals.batches,
        flushes = totals.flushes,
        written = totals.written,
        removed = totals.removed,
        elided = totals.elided,
        paged = totals.paged,
        checkpoints = totals.checkpoints,
        "store closed"
    );
}

/// Deletes the body files without a live body (call only when everything
/// applied is flushed); a failure costs only disk space, so it is logged,
/// not fatal.
fn reclaim(bodies: &mut BodyFiles, state: &StateMachine, idle: bool) {
    if let Err(e) = bodies.reclaim(state.body_counts(), idle) {
        error!(error = %e, "a body file without live bodies could not be deleted");
    }
}

/// `always`: before starting a batch the writer waits, at most `limit`
/// ([`super::WriterSettings::ack_gather`], about one fsync), while
///
/// - the queue holds enqueues that consumers have and have not acked, or
///   publishes that have not reached their consumer yet: a message acked
///   before its batch is written is never written at all (store-and-dispatch,
///   its receipt released by the ack);
/// - fewer commits are queued than the writer expects ([`Queue::expect`]):
///   the producers its last flush answered are about to send again, and
///   waiting a round trip for them lets one fsync serve them all, rather
///   than the producers splitting into groups that alternate between
///   flushes half full.
///
/// Neither waits for anything that is not on its way: a lone producer is
/// expected alone, and without consumers nothing is in hand.
pub(super) fn gather<'a>(
    shared: &'a Shared,
    mut q: MutexGuard<'a, Queue>,
    limit: Duration,
) -> MutexGuard<'a, Queue> {
    let started = Instant::now();
    q.writer = WriterWait::Gathering;
    while q.holds == 0 && !q.closed {
        // A publish under way is a few microseconds from its dispatch and
        // gets twice as long: a batch started in between would make its
        // delivery wait for the next flush.
        let deadline = if q.dispatching > 0 {
            started + limit * 2
        } else if !q.in_hand.is_empty() || q.receipts < q.expect {
            started + limit
        } else {
            break;
        };
        let (woken, late) = wait_until(shared, q, deadline);
        q = woken;
        if late {
            break;
        }
    }
    q.writer = WriterWait::Busy;
    q
}

/// Sleeps on the writer's condvar until woken or `deadline`; `true` with
/// the lock when the deadline had already passed.
fn wait_until<'a>(
    shared: &'a Shared,
    q: MutexGuard<'a, Queue>,
    deadline: Instant,
) -> (MutexGuard<'a, Queue>, bool) {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return (q, true);
    }
    let woken = shared
        .work
        .wait_timeout(q, left)
        .unwrap_or_else(|e| e.into_inner())
        .0;
    (woken, false)
}

/// The writer without a database (it could not be reopened after a
/// compaction): answers every commit with the error and releases every
/// delivery (their messages are in memory) until the store closes.
fn fail_forever(shared: &Shared) {
    let mut q = shared.lock();
    loop {
        let failure = q.broken.clone().unwrap_or(StoreError::Closed);
        let mut waiters = std::mem::take(&mut q.waiters);
        waiters.extend(q.by_seq.drain().map(|(_, w)| w));
        let handoffs = std::mem::take(&mut q.handoffs);
        q.entries.clear();
        q.enqueued.clear();
        q.bytes = 0;
        q.enqueue_bytes = 0;
        let closed = q.closed;
        drop(q);
        for w in waiters {
            let _ = w.send(Err(failure.clone()));
        }
        for h in handoffs {
            h.release();
        }
        if closed {
            return;
        }
        q = shared.lock();
        if q.handoffs.is_empty() && !q.closed {
            q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Counters for the log line at close (how well group commit and
/// store-and-dispatch worked).
#[derive(Default)]
struct Totals {
    entries: u64,
    batches: u64,
    flushes: u64,
    /// Message records written, and removed.
    written: u64,
    removed: u64,
    /// Enqueue/ack pairs never written.
    elided: u64,
    /// Bodies paged out after their write.
    paged: u64,
    /// Reopens at a checkpoint ([`checkpoint`]).
    checkpoints: u64,
}

impl Totals {
    fn add(
        &mut self,
        entries: usize,
        applied: &crate::store::state_machine::Applied,
        elided: usize,
    ) {
        self.entries += entries as u64;
        self.batches += 1;
        self.written += applied.stored.len() as u64;
        self.removed += applied.removed.len() as u64;
        self.elided += elided as u64;
    }
}
