//! The router side of a persistent queue's cursor: which messages a queue
//! holds in memory (a window at its head) and which it leaves in the store,
//! to read back in order as consumers drain it, like ActiveMQ's store
//! cursor. [`Backlog`] is the bookkeeping (pure, unit-tested);
//! `destination::window` applies it under the destination's lock.
//! The store read itself runs off the lock, in a task the router's errand
//! loop starts (`Router::read_backlog`, in `router::refill`).
//!
//! Rules:
//!
//! - A persistent message for a stored queue is left to the store
//!   (`LogEntry::Enqueue::backlog`) when its priority lane already has
//!   messages there (FIFO within a lane) or the window already holds
//!   `destinations.queue_window` waiting messages. It is then counted per
//!   lane, and nothing of it stays in memory once its batch is written.
//! - When fewer than half the window wait, the highest lane holding stored
//!   messages is read back (up to the window) and appended behind what that
//!   lane has in memory. When consumers have credit and nothing in the
//!   window they may take (selectors, message groups, exclusivity, or
//!   priority below), a further page is read, up to [`GROWTH`] windows:
//!   past that a consumer whose selector matches only messages deeper in
//!   the store waits until others drain the window (ActiveMQ's
//!   `maxPageSize` has the same limit).
//! - Strict priority across the store: waiting messages of a priority
//!   below the highest lane with stored messages are not dispatched until
//!   that lane is read back (`PendingQueue::pop_from`).
//! - A read that comes back short (the writer has not applied the newest
//!   messages yet) is retried after [`RETRY`]; a lane whose count the store
//!   never meets (its batch failed to write) is given up after
//!   [`MAX_EMPTY_READS`] tries, with an error: those messages come back at
//!   the next start, if they were stored at all.
//!
//! Operations that reach past the window: browsing reads the store lanes
//! from the cursor's position, at most [`BROWSE_SCAN`] records per request
//! beyond what it returns; expiry is checked when a message is read back
//! (it is dropped, or dead-lettered under `expired_to_dlq`, then), not
//! while it lies in the store; purging and deleting a queue acknowledge
//! its stored messages by reading them back a page at a time, off the
//! caller (`Router::drop_backlog`): the lanes are taken off the books at
//! once (the count is the caller's answer) and marked purging, so no read
//! of theirs starts from the old position meanwhile. A queue created under
//! the name of a deleted one whose drop still runs holds all its lanes the
//! same way until that drop is done and hands it the positions past the
//! dropped messages (`Router::drop_backlog`); a purge of it meanwhile
//! leaves its stored messages alone (they are not known to start at its
//! position).
//!
//! One order for persistent and non-persistent messages: a message
//! arriving while its lane has stored messages waits behind them in memory
//! (see `destination::parked`).

use super::super::pending::Pending;
use super::parked::Parking;
use std::time::Duration;

/// Priority lanes (JMS priorities 0-9).
pub(super) const LANES: usize = 10;
/// How many windows a queue may hold waiting while consumers with credit
/// find nothing they can take in them.
pub const GROWTH: usize = 4;
/// Wait before reading again after a short read.
pub const RETRY: Duration = Duration::from_millis(5);
/// Short reads in a row before a lane's count is given up (about 10 s).
pub const MAX_EMPTY_READS: u32 = 2000;
/// Records a browse may read and skip (selector) beyond those it returns.
pub const BROWSE_SCAN: usize = 10_000;

/// One lane's cursor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Lane {
    /// Messages left to the store and not read back yet.
    stored: u64,
    /// The log index read up to.
    position: u64,
    /// A purge or delete is acknowledging this lane's stored messages from
    /// `position` on (`Router::drop_backlog`): no read of it until it is
    /// done and has moved `position` past them ([`Backlog::skip`]).
    purging: bool,
    /// Messages ever left to this lane of the store (this run, plus those
    /// found there at start): a parked message's place is a value of it.
    left: u64,
    /// Of those, how many were read back or purged.
    read: u64,
}

/// A read the store is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPlan {
    /// Which read (a landing of another is ignored).
    pub id: u64,
    /// The lane.
    pub priority: u8,
    /// Read after this log index.
    pub after: u64,
    /// At most this many messages.
    pub limit: usize,
}

/// What the reader does after a landing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more (another read, if needed, was planned by the dispatch).
    Done,
    /// The store had not applied what was expected: poke again after
    /// [`RETRY`].
    Retry,
}

/// A queue's messages in the store, by lane.
#[derive(Debug)]
pub struct Backlog {
    window: usize,
    enabled: bool,
    lanes: [Lane; LANES],
    stored: u64,
    /// A read under way.
    reading: Option<u64>,
    next_id: u64,
    /// A short read happened: no read until poked.
    paused: bool,
    empty_reads: u32,
    /// Messages that arrived while their lane had stored messages.
    parked: Parking,
}

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog::new(0, false)
    }
}

impl Backlog {
    /// A queue holding at most `window` waiting messages before it leaves
    /// persistent ones to the store; `enabled` false: never leaves any.
    pub fn new(window: usize, enabled: bool) -> Backlog {
        Backlog {
            window: window.max(1),
            enabled,
            lanes: [Lane::default(); LANES],
            stored: 0,
            reading: None,
            next_id: 1,
            paused: false,
            empty_reads: 0,
            parked: Parking::default(),
        }
    }

    /// Whether this queue may leave messages to the store.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Messages in the store not read back.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// Whether the store holds none of this queue's messages.
    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    /// The lowest priority that may be dispatched: the highest lane with
    /// stored messages (0 when none).
    pub fn floor(&self) -> u8 {
        (0..LANES)
            .rev()
            .find(|&p| self.lanes[p].stored > 0)
            .map_or(0, |p| p as u8)
    }

    /// Whether a persistent message of `priority` is left to the store,
    /// with `waiting` messages in the window.
    pub fn should_leave(&self, priority: u8, waiting: usize) -> bool {
        self.enabled && (self.lane(priority).stored > 0 || waiting >= self.window)
    }

    fn lane(&self, priority: u8) -> &Lane {
        &self.lanes[usize::from(priority.min(9))]
    }

    fn lane_mut(&mut self, priority: u8) -> &mut Lane {
        &mut self.lanes[usize::from(priority.min(9))]
    }

    /// A message of `priority` was left to the store (or, `count`, found
    /// there at restart).
    pub fn add(&mut self, priority: u8, count: u64) {
        let lane = self.lane_mut(priority);
        lane.stored += count;
        lane.left += count;
        self.stored += count;
    }

    /// A message counted by [`Backlog::add`] was not appended after all.
    /// (A message parked behind it meanwhile waits one message longer than
    /// it should when another was left after it; never longer than the
    /// lane's stored messages last: see [`Backlog::release`].)
    pub fn cancel(&mut self, priority: u8) {
        let lane = self.lane_mut(priority);
        if lane.stored > 0 {
            lane.stored -= 1;
            lane.left -= 1;
            self.stored -= 1;
        }
    }

    /// Whether a message of `priority` arriving now must wait behind the
    /// lane's stored messages rather than join the window.
    pub fn should_park(&self, priority: u8) -> bool {
        self.enabled && self.lane(priority).stored > 0
    }

    /// Holds `pending` behind what its lane has in the store now.
    pub fn park(&mut self, pending: Pending) {
        let after = self.lane(pending.message.priority).left;
        self.parked.park(after, pending);
    }

    /// Bytes the parked messages hold.
    pub fn parked_bytes(&self) -> usize {
        self.parked.bytes()
    }

    /// Messages parked (see [`Backlog::park`]).
    pub fn parked_len(&self) -> usize {
        self.parked.len()
    }

    /// The parked messages of lane `priority` that may join the window
    /// now: those whose place the cursor has read up to, or all of them
    /// once the lane has no stored message left.
    pub fn release(&mut self, priority: u8) -> Vec<Pending> {
        let lane = *self.lane(priority);
        self.parked.release(priority, lane.read, lane.stored == 0)
    }

    /// Notes that the cursor read one more message of lane `priority` (a
    /// landing, one message at a time) and returns the parked messages
    /// that follow it. By place only: the landing already took its
    /// messages off the lane's stored count, and the ones not added yet
    /// still come first (the landing ends with [`Backlog::release`]).
    pub fn read_one(&mut self, priority: u8) -> Vec<Pending> {
        let lane = self.lane_mut(priority);
        lane.read += 1;
        let read = lane.read;
        self.parked.release(priority, read, false)
    }

    /// Every parked message, lane by lane (purge, delete).
    pub fn drain_parked(&mut self) -> Vec<Pending> {
        self.parked.drain()
    }

    /// The parked messages of lane `priority`, in order (browsing).
    pub fn parked(&self, priority: u8) -> impl Iterator<Item = &Pending> + '_ {
        self.parked.lane(priority)
    }

    /// The read to make now, if any: `waiting` messages are in the window
    /// and `wanting` says consumers have credit left after a dispatch.
    /// Marks it under way.
    pub fn plan(&mut self, waiting: usize, wanting: bool) -> Option<ReadPlan> {
        if self.reading.is_some() || self.paused || self.stored == 0 {
            return None;
        }
        let low = (self.window / 2).max(1);
        let limit = if waiting < low {
            self.window - waiting.min(self.window)
        } else if wanting && waiting < self.window.saturating_mul(GROWTH) {
            low
        } else {
            return None;
        };
        let priority = self.floor();
        let lane = *self.lane(priority);
        if lane.purging {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.reading = Some(id);
        Some(ReadPlan {
            id,
            priority,
            after: lane.position,
            limit: limit.min(usize::try_from(lane.stored).unwrap_or(usize::MAX)),
        })
    }

    /// Read `plan` came back with `count` messages, having looked up to log
    /// index `position`. `false`: not the read under way (ignored).
    /// The lane's read count is not moved here: the caller moves it one
    /// message at a time ([`Backlog::read_one`]) as it adds them to the
    /// window, so parked messages join between them, in their place.
    pub fn landed(&mut self, plan: &ReadPlan, count: usize, position: u64) -> Option<Next> {
        if self.reading != Some(plan.id) {
            return None;
        }
        self.reading = None;
        let lane = self.lane_mut(plan.priority);
        lane.position = lane.position.max(position);
        let taken = (count as u64).min(lane.stored);
        lane.stored -= taken;
        let left = lane.stored;
        self.stored -= taken;
        if count > 0 || left == 0 {
            self.empty_reads = 0;
            return Some(Next::Done);
        }
        self.empty_reads += 1;
        if self.empty_reads >= MAX_EMPTY_READS {
            tracing::error!(
                priority = plan.priority,
                missing = left,
                "messages left to the store never appeared there (their write failed?); \
                 given up until the next start"
            );
            self.lane_mut(plan.priority).stored = 0;
            self.stored -= left;
            self.empty_reads = 0;
            return Some(Next::Done);
        }
        self.paused = true;
        Some(Next::Retry)
    }

    /// A read failed (store error): allow another later.
    pub fn failed(&mut self, plan: &ReadPlan) {
        if self.reading == Some(plan.id) {
            self.reading = None;
            self.paused = true;
        }
    }

    /// Lifts the pause after a short read.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Each lane with stored messages, highest first: `(priority, position,
    /// stored)` (browsing).
    pub fn lanes(&self) -> Vec<(u8, u64, u64)> {
        (0..LANES)
            .rev()
            .filter(|&p| self.lanes[p].stored > 0)
            .map(|p| (p as u8, self.lanes[p].position, self.lanes[p].stored))
            .collect()
    }

    /// Moves lane `priority`'s position to `position` at least (its
    /// messages up to there were acknowledged by a purge), and ends its
    /// purge.
    pub fn skip(&mut self, priority: u8, position: u64) {
        let lane = self.lane_mut(priority);
        lane.position = lane.position.max(position);
        lane.purging = false;
    }

    /// Holds every lane (no read) as if purging: see
    /// `Destination::with_backlog_held`.
    pub fn hold(&mut self) {
        for lane in &mut self.lanes {
            lane.purging = true;
        }
    }

    /// Whether a purge of some lane is still under way.
    pub fn purging(&self) -> bool {
        self.lanes.iter().any(|l| l.purging)
    }

    /// Forgets a read under way and a pause (the cursor moves to another
    /// destination object: the read's landing goes to the old one, which
    /// ignores it, so the same page is read again from the same position).
    pub fn forget_read(&mut self) {
        self.reading = None;
        self.paused = false;
        self.empty_reads = 0;
    }

    /// Takes every stored message off the books (the queue was purged or
    /// deleted and the caller acknowledges them): returns each lane's
    /// `(priority, position, stored)` and marks it purging until
    /// [`Backlog::skip`]. A lane already being purged is left out: what
    /// was left to it since is not known to start at its position, and
    /// stays for the next purge.
    pub fn take_for_purge(&mut self) -> Vec<(u8, u64, u64)> {
        let mut out = Vec::new();
        for p in (0..LANES).rev() {
            let lane = &mut self.lanes[p];
            if lane.stored == 0 || lane.purging {
                continue;
            }
            out.push((p as u8, lane.position, lane.stored));
            self.stored -= lane.stored;
            lane.stored = 0;
            lane.read = lane.left;
            lane.purging = true;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn messages_are_left_once_the_window_is_full_and_then_per_lane() {
        let mut b = Backlog::new(4, true);
        assert!(!b.should_leave(4, 3));
        assert!(b.should_leave(4, 4));
        b.add(4, 1);
        // Lane 4 has stored messages: FIFO keeps later ones there too,
        // however empty the window; other lanes still fill the window.
        assert!(b.should_leave(4, 0));
        assert!(!b.should_leave(7, 0));
        assert_eq!((b.stored(), b.floor()), (1, 4));
        b.cancel(4);
        assert!(b.is_empty());
        assert!(!Backlog::new(4, false).should_leave(4, 100));
    }

    #[test]
    fn reads_start_below_half_the_window_highest_lane_first_one_at_a_time() {
        let mut b = Backlog::new(10, true);
        b.add(2, 30);
        b.add(8, 3);
        assert_eq!(b.floor(), 8);
        assert_eq!(b.plan(5, false), None, "half full: no read");
        let plan = b.plan(4, false).unwrap();
        assert_eq!((plan.priority, plan.after, plan.limit), (8, 0, 3));
        assert_eq!(b.plan(0, true), None, "one read at a time");
        assert_eq!(b.landed(&plan, 3, 17), Some(Next::Done));
        assert_eq!(b.floor(), 2);
        let plan = b.plan(0, false).unwrap();
        assert_eq!((plan.priority, plan.after, plan.limit), (2, 0, 10));
        assert_eq!(b.landed(&plan, 10, 40), Some(Next::Done));
        let plan = b.plan(0, false).unwrap();
        assert_eq!(plan.after, 40, "the next read starts after the last");
        // A landing of an older read is ignored.
        let stale = ReadPlan { id: 1, ..plan };
        assert_eq!(b.landed(&stale, 5, 99), None);
        assert_eq!(b.stored(), 20);
    }

    #[test]
    fn starving_consumers_grow_the_window_up_to_its_bound() {
        let mut b = Backlog::new(10, true);
        b.add(4, 1000);
        assert_eq!(b.plan(10, false), None);
        let plan = b.plan(10, true).unwrap();
        assert_eq!(plan.limit, 5);
        b.landed(&plan, 5, 5);
        assert_eq!(b.plan(10 * GROWTH, true), None, "bounded");
    }

    #[test]
    fn a_short_read_pauses_until_resumed_and_is_given_up_eventually() {
        let mut b = Backlog::new(10, true);
        b.add(4, 2);
        let plan = b.plan(0, false).unwrap();
        assert_eq!(b.landed(&plan, 1, 3), Some(Next::Done), "partial: fine");
        let plan = b.plan(0, false).unwrap();
        assert_eq!(b.landed(&plan, 0, 3), Some(Next::Retry));
        assert_eq!(b.plan(0, false), None, "paused");
        b.resume();
        for _ in 2..MAX_EMPTY_READS {
            let plan = b.plan(0, false).unwrap();
            assert_eq!(b.landed(&plan, 0, 3), Some(Next::Retry));
            b.resume();
        }
        let plan = b.plan(0, false).unwrap();
        assert_eq!(b.landed(&plan, 0, 3), Some(Next::Done));
        assert!(b.is_empty(), "given up");
    }

    fn pending(seq: u64, priority: u8) -> Pending {
        Pending {
            message: Arc::new(crate::message::Message {
                seq,
                destination: "/queue/q".into(),
                persistent: false,
                priority,
                expires: 0,
                timestamp: 0,
                headers: Default::default(),
                body: Default::default(),
            }),
            redeliveries: 0,
        }
    }

    fn seqs(v: Vec<Pending>) -> Vec<u64> {
        v.into_iter().map(|p| p.message.seq).collect()
    }

    #[test]
    fn parked_messages_join_behind_the_stored_ones_that_preceded_them() {
        let mut b = Backlog::new(4, true);
        assert!(!b.should_park(4), "nothing stored: straight to the window");
        b.add(4, 2); // stored messages 1 and 2
        assert!(b.should_park(4) && !b.should_park(7));
        b.park(pending(100, 4)); // after stored message 2
        b.add(4, 1); // stored message 3
        b.park(pending(101, 4)); // after 3
        b.park(pending(102, 4)); // after 3
        assert_eq!(b.parked_len(), 3);
        let plan = b.plan(0, false).unwrap();
        assert_eq!(b.landed(&plan, 2, 10), Some(Next::Done));
        assert!(b.read_one(4).is_empty(), "behind message 2, not 1");
        assert_eq!(seqs(b.read_one(4)), vec![100]);
        assert!(b.release(4).is_empty(), "message 3 is still stored");
        let plan = b.plan(0, false).unwrap();
        b.landed(&plan, 1, 11);
        assert_eq!(seqs(b.read_one(4)), vec![101, 102]);
        assert_eq!(b.parked_len(), 0);
        // A landing that empties the lane: its messages still come before
        // what was parked behind them.
        b.add(4, 2);
        b.park(pending(103, 4));
        let plan = b.plan(0, false).unwrap();
        b.landed(&plan, 2, 13);
        assert!(b.read_one(4).is_empty(), "released before the last read");
        assert_eq!(seqs(b.read_one(4)), vec![103]);
    }

    #[test]
    fn parked_messages_are_not_stranded_when_their_lane_empties_otherwise() {
        let mut b = Backlog::new(4, true);
        b.add(4, 1);
        b.park(pending(100, 4));
        b.cancel(4); // the stored message's append was refused
        assert_eq!(seqs(b.release(4)), vec![100]);
        b.add(4, 1);
        b.park(pending(101, 4));
        assert_eq!(b.take_for_purge(), vec![(4, 0, 1)]);
        assert_eq!(seqs(b.drain_parked()), vec![101]);
        assert_eq!(b.parked_len(), 0);
    }

    #[test]
    fn a_purged_lane_is_not_read_until_the_purge_moves_past_it() {
        let mut b = Backlog::new(10, true);
        b.add(4, 5);
        b.add(2, 3);
        let plan = b.plan(0, false).unwrap();
        b.landed(&plan, 2, 9);
        assert_eq!(b.lanes(), vec![(4, 9, 3), (2, 0, 3)]);
        assert_eq!(b.take_for_purge(), vec![(4, 9, 3), (2, 0, 3)]);
        assert!(b.is_empty() && b.purging());
        // Left to lane 4 during the purge: not read from the old position
        // (that would find the purged messages), nor purged twice.
        b.add(4, 1);
        assert_eq!(b.plan(0, false), None);
        assert_eq!(b.take_for_purge(), vec![]);
        b.skip(4, 30);
        b.skip(2, 12);
        assert!(!b.purging());
        let plan = b.plan(0, false).unwrap();
        assert_eq!((plan.priority, plan.after, plan.limit), (4, 30, 1));
    }
}
