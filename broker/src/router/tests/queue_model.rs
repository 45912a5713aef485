//! [`QueueModel`]: a small reference model of one queue, written for
//! obviousness rather than speed (plain lists, linear scans), that the
//! property test in [`super::queue_property`] runs side by side with the
//! router. Its doc comment is the statement of how a queue is meant to
//! behave.

use super::harness::Got;
use std::collections::HashMap;

/// A message as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ModelMessage {
    pub seq: u64,
    pub priority: u8,
    pub group: Option<u8>,
    /// The last message of its group (`JMSXGroupSeq: -1`).
    pub closes_group: bool,
    /// Matched by selective consumers' selector.
    pub red: bool,
}

/// A message waiting or delivered, with how often it was delivered before.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub message: ModelMessage,
    pub redeliveries: u32,
    /// Delivered and acknowledged or rejected inside an open transaction.
    pub staged: bool,
}

/// How a consumer subscribed.
#[derive(Debug, Clone, Copy)]
pub(super) struct ModelSubscription {
    pub prefetch: usize,
    /// `client` mode: ACK and NACK cover what was delivered before too.
    pub cumulative: bool,
    pub exclusive: bool,
    /// Only red messages.
    pub selective: bool,
    /// A credit-based link: nothing until credit is granted.
    pub link: bool,
}

#[derive(Debug)]
pub(super) struct ModelConsumer {
    /// Identity for group ownership.
    key: usize,
    how: ModelSubscription,
    /// Links: deliveries still allowed.
    link_credit: Option<u32>,
    /// Delivered and not acknowledged, in delivery order.
    pub unacked: Vec<Entry>,
    /// Deliveries not yet compared with the router's.
    pub inbox: Vec<Got>,
}

/// One queue, as the router is meant to run it. The rules:
///
/// - **Order.** Waiting messages form one list in delivery order: higher
///   priority first; within a priority, a message returned to the queue
///   (rejected, or unacknowledged by a consumer that closed) goes in front
///   of everything that waited, and a batch returned by one operation keeps
///   its delivery order there. New messages go behind everything of their
///   priority.
/// - **Credit.** A consumer may have `prefetch` unacknowledged messages,
///   not counting those staged by an open transaction; a link also needs
///   link credit, which each delivery uses up.
/// - **Who may have a message.** While an exclusive consumer exists, only
///   the first one subscribed receives. A selective consumer takes red
///   messages only. A grouped message may go only to its group's owner, if
///   the group has one. A group gets an owner when one of its messages is
///   delivered, and loses it when its closing message is delivered or the
///   owner closes.
/// - **Dispatch.** After every operation: starting at the round-robin
///   cursor, find the first consumer with credit for which some waiting
///   message is eligible; give it the first such message in delivery order;
///   move the cursor just past it (modulo the number of consumers); repeat
///   until no consumer with credit may have any waiting message. So the
///   dispatch invariant holds between operations by construction.
/// - **Cursor.** Consumers are kept in subscription order. When one closes,
///   the cursor stays on the consumer it pointed at (or its successor, if it
///   pointed at the one closing).
/// - **Ack / nack.** Naming a message the consumer does not hold
///   unacknowledged is an error and changes nothing. An individual ack
///   consumes the message named; a cumulative one consumes every message
///   delivered up to and including it, except those a transaction staged.
///   A nack takes the same messages and returns them; closing returns every
///   unacknowledged message, staged or not. A returned message's redelivery
///   count goes up by one; over `max_redeliveries` it is given up
///   (dead-lettered) instead of returned.
/// - **Redelivery delay.** When redeliveries are delayed, a returned
///   message (not given up) leaves the queue instead, and when its delay
///   ends goes in front of everything of its priority.
/// - **Transactions.** A transactional ack or nack holds what a plain one
///   would take (staged messages are skipped): they stop counting against
///   prefetch at once. Commit acknowledges the staged acks' messages (one
///   operation) and rejects the staged nacks' messages one at a time, each a
///   return of its own, in the order the transaction named them; abort
///   makes them count again. Either way, messages the consumer no longer
///   holds are skipped.
/// - **Link credit.** A grant gives a link credit for that many deliveries
///   from now; with drain, what is left after dispatching is used up.
#[derive(Debug)]
pub(super) struct QueueModel {
    pub waiting: Vec<Entry>,
    pub consumers: Vec<ModelConsumer>,
    cursor: usize,
    /// Group -> owning consumer's key.
    groups: HashMap<u8, usize>,
    max_redeliveries: u32,
    /// Redeliveries are delayed.
    delay: bool,
    /// Returned messages waiting out their redelivery delay.
    pub delayed: Vec<Entry>,
    /// Given up since the last comparison.
    pub dead: Vec<u64>,
    next_key: usize,
    /// Counts for the conservation check.
    published: usize,
    acked: usize,
    dead_total: usize,
}

/// Why the model refused an ack or nack.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NotHeld;

impl QueueModel {
    /// An empty queue giving messages up after `max_redeliveries` returns,
    /// and delaying redeliveries when `delay`.
    pub fn new(max_redeliveries: u32, delay: bool) -> QueueModel {
        QueueModel {
            waiting: Vec::new(),
            consumers: Vec::new(),
            cursor: 0,
            groups: HashMap::new(),
            max_redeliveries,
            delay,
            delayed: Vec::new(),
            dead: Vec::new(),
            next_key: 0,
            published: 0,
            acked: 0,
            dead_total: 0,
        }
    }

    pub fn publish(&mut self, message: ModelMessage) {
        self.published += 1;
        // Behind everything of its priority or higher.
        let at = self
            .waiting
            .iter()
            .position(|e| e.message.priority < message.priority)
            .unwrap_or(self.waiting.len());
        let entry = Entry {
            message,
            redeliveries: 0,
            staged: false,
        };
        self.waiting.insert(at, entry);
        self.dispatch();
    }

    pub fn subscribe(&mut self, how: ModelSubscription) {
        self.consumers.push(ModelConsumer {
            key: self.next_key,
            how,
            link_credit: how.link.then_some(0),
            unacked: Vec::new(),
            inbox: Vec::new(),
        });
        self.next_key += 1;
        self.dispatch();
    }

    pub fn close(&mut self, i: usize) {
        let consumer = self.consumers.remove(i);
        if self.cursor > i {
            self.cursor -= 1;
        }
        self.groups.retain(|_, owner| *owner != consumer.key);
        self.give_back(consumer.unacked);
        self.dispatch();
    }

    pub fn ack(&mut self, i: usize, seq: u64) -> Result<(), NotHeld> {
        let taken = self.take(i, seq)?;
        self.acked += taken.len();
        self.dispatch();
        Ok(())
    }

    pub fn nack(&mut self, i: usize, seq: u64) -> Result<(), NotHeld> {
        let taken = self.take(i, seq)?;
        self.give_back(taken);
        self.dispatch();
        Ok(())
    }

    /// A transactional ack or nack: returns the sequence numbers it holds.
    pub fn stage(&mut self, i: usize, seq: u64) -> Result<Vec<u64>, NotHeld> {
        let consumer = &mut self.consumers[i];
        let at = consumer.position(seq).ok_or(NotHeld)?;
        let first = if consumer.how.cumulative { 0 } else { at };
        let mut staged = Vec::new();
        for e in &mut consumer.unacked[first..=at] {
            if !e.staged {
                e.staged = true;
                staged.push(e.message.seq);
            }
        }
        self.dispatch();
        Ok(staged)
    }

    /// Commits staged acks: consumes those of `seqs` still unacknowledged.
    pub fn commit_acks(&mut self, i: usize, seqs: &[u64]) {
        for &seq in seqs {
            let consumer = &mut self.consumers[i];
            if let Some(at) = consumer.position(seq) {
                consumer.unacked.remove(at);
                self.acked += 1;
            }
        }
        self.dispatch();
    }

    /// Commits staged nacks: each of `seqs` still unacknowledged is rejected
    /// on its own.
    pub fn commit_nacks(&mut self, i: usize, seqs: &[u64]) {
        for &seq in seqs {
            let consumer = &mut self.consumers[i];
            if let Some(at) = consumer.position(seq) {
                let entry = consumer.unacked.remove(at);
                self.give_back(vec![entry]);
                self.dispatch();
            }
        }
    }

    /// Aborts: `seqs` count against prefetch again.
    pub fn abort(&mut self, i: usize, seqs: &[u64]) {
        for e in &mut self.consumers[i].unacked {
            if seqs.contains(&e.message.seq) {
                e.staged = false;
            }
        }
    }

    /// Grants link `i` credit for `credit` deliveries.
    pub fn grant(&mut self, i: usize, credit: u32, drain: bool) {
        self.consumers[i].link_credit = Some(credit);
        self.dispatch();
        if drain {
            self.consumers[i].link_credit = Some(0);
        }
    }

    /// Removes what an ack or nack of `seq` on consumer `i` covers.
    fn take(&mut self, i: usize, seq: u64) -> Result<Vec<Entry>, NotHeld> {
        let consumer = &mut self.consumers[i];
        let at = consumer.position(seq).ok_or(NotHeld)?;
        if !consumer.how.cumulative {
            return Ok(vec![consumer.unacked.remove(at)]);
        }
        let (covered, kept): (Vec<Entry>, Vec<Entry>) =
            consumer.unacked.drain(..=at).partition(|e| !e.staged);
        consumer.unacked.splice(0..0, kept);
        Ok(covered)
    }

    /// Returns `entries` (in delivery order) to the queue as one batch.
    fn give_back(&mut self, entries: Vec<Entry>) {
        // Last first, each in front of its priority: the batch ends up in
        // its delivery order.
        for entry in entries.into_iter().rev() {
            let redeliveries = entry.redeliveries + 1;
            if redeliveries > self.max_redeliveries {
                self.dead.push(entry.message.seq);
                self.dead_total += 1;
                continue;
            }
            let entry = Entry {
                message: entry.message,
                redeliveries,
                staged: false,
            };
            if self.delay {
                self.delayed.push(entry);
            } else {
                self.put_in_front(entry);
            }
        }
    }

    /// Ends the redelivery delay of `seq`.
    pub fn return_delayed(&mut self, seq: u64) {
        if let Some(at) = self.delayed.iter().position(|e| e.message.seq == seq) {
            let entry = self.delayed.remove(at);
            self.put_in_front(entry);
            self.dispatch();
        }
    }

    /// Puts `entry` in front of everything waiting of its priority.
    fn put_in_front(&mut self, entry: Entry) {
        let at = self
            .waiting
            .iter()
            .position(|e| e.message.priority <= entry.message.priority)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, entry);
    }

    fn has_credit(&self, i: usize) -> bool {
        let c = &self.consumers[i];
        let counted = c.unacked.iter().filter(|e| !e.staged).count();
        counted < c.how.prefetch && c.link_credit != Some(0)
    }

    fn eligible(&self, i: usize, message: &ModelMessage) -> bool {
        let consumer = &self.consumers[i];
        let exclusive = self.consumers.iter().find(|c| c.how.exclusive);
        if exclusive.is_some_and(|owner| owner.key != consumer.key) {
            return false;
        }
        if consumer.how.selective && !message.red {
            return false;
        }
        let group_owner = message.group.and_then(|g| self.groups.get(&g));
        group_owner.is_none_or(|&owner| owner == consumer.key)
    }

    fn dispatch(&mut self) {
        loop {
            let n = self.consumers.len();
            let next = (0..n).map(|k| (self.cursor + k) % n).find_map(|i| {
                if !self.has_credit(i) {
                    return None;
                }
                let at = self
                    .waiting
                    .iter()
                    .position(|e| self.eligible(i, &e.message))?;
                Some((i, at))
            });
            let Some((i, at)) = next else { return };
            let entry = self.waiting.remove(at);
            if let Some(g) = entry.message.group {
                if entry.message.closes_group {
                    self.groups.remove(&g);
                } else {
                    self.groups.entry(g).or_insert(self.consumers[i].key);
                }
            }
            let consumer = &mut self.consumers[i];
            if let Some(credit) = &mut consumer.link_credit {
                *credit -= 1;
            }
            consumer.inbox.push(Got {
                seq: entry.message.seq,
                redeliveries: entry.redeliveries,
            });
            consumer.unacked.push(entry);
            self.cursor = (i + 1) % n;
        }
    }

    /// Every message published is acknowledged, given up, waiting (in the
    /// queue or out its redelivery delay) or unacknowledged, exactly once.
    pub fn check_conservation(&self) {
        let unacked: usize = self.consumers.iter().map(|c| c.unacked.len()).sum();
        assert_eq!(
            self.published,
            self.acked + self.dead_total + self.waiting.len() + self.delayed.len() + unacked,
            "the model lost or duplicated a message"
        );
    }
}

impl ModelConsumer {
    fn position(&self, seq: u64) -> Option<usize> {
        self.unacked.iter().position(|e| e.message.seq == seq)
    }

    /// Whether it is a credit-based link.
    pub fn is_link(&self) -> bool {
        self.how.link
    }
}
