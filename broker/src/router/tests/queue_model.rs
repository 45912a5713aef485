//! A reference model of one queue, and a property test that runs random
//! publish / subscribe / ack / nack / close sequences against both the model
//! and the router, comparing after every step what each consumer received,
//! what waits (in delivery order), what is unacknowledged and what was given
//! up.

use super::harness::{Bench, Got, Msg, Opts, Sub};
use proptest::prelude::*;
use std::collections::HashMap;

const Q: &str = "/queue/model";

/// Returns after which a message is given up (the router's
/// `max_redeliveries`): small, so random runs reach it.
const MAX_REDELIVERIES: u32 = 2;

/// A message as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message {
    seq: u64,
    priority: u8,
    group: Option<u8>,
    /// The last message of its group (`JMSXGroupSeq: -1`).
    closes_group: bool,
}

/// A message in the queue or delivered, with how often it was delivered before.
#[derive(Debug, Clone, Copy)]
struct Entry {
    message: Message,
    redeliveries: u32,
}

#[derive(Debug)]
struct Consumer {
    /// Identity for group ownership.
    key: usize,
    prefetch: usize,
    /// `client` mode: ACK and NACK cover everything delivered up to the
    /// message named.
    cumulative: bool,
    exclusive: bool,
    /// Delivered and not acknowledged, in delivery order.
    unacked: Vec<Entry>,
    /// Deliveries not yet compared with the router's.
    inbox: Vec<Got>,
}

/// One queue, as the router is meant to run it. The rules:
///
/// - **Order.** Waiting messages form one list in delivery order: higher
///   priority first; within a priority, messages returned to the queue
///   (NACKed, or unacknowledged by a consumer that closed) come before the
///   ones never delivered, and a batch returned together keeps its delivery
///   order in front of everything of its priority that waited before it.
///   New messages go behind everything of their priority.
/// - **Credit.** A consumer may have `prefetch` unacknowledged messages.
/// - **Who may have a message.** While an exclusive consumer exists, only
///   the first one subscribed (the owner) receives. A grouped message may
///   go only to its group's owner, if the group has one. A group gets an
///   owner when one of its messages is delivered, and loses it when its
///   closing message is delivered or the owner closes.
/// - **Dispatch.** After every operation: starting at the round-robin
///   cursor, find the first consumer with credit for which some waiting
///   message is eligible; give it the first such message in delivery order;
///   move the cursor just past it (modulo the number of consumers); repeat
///   until no consumer with credit may have any waiting message. (So the
///   dispatch invariant holds between operations by construction.)
/// - **Cursor.** Consumers are kept in subscription order. When one closes,
///   the cursor stays on the consumer it pointed at (or its successor, if it
///   pointed at the one closing).
/// - **Ack / nack.** Naming a message the consumer does not hold
///   unacknowledged is an error and changes nothing. An ack consumes the
///   message (cumulative: and every message delivered before it). A nack
///   returns the same messages to the queue; closing returns all of the
///   consumer's unacknowledged messages. A returned message's redelivery
///   count goes up by one; over [`MAX_REDELIVERIES`] it is given up
///   (dead-lettered) instead of returned.
#[derive(Debug, Default)]
struct QueueModel {
    waiting: Vec<Entry>,
    consumers: Vec<Consumer>,
    cursor: usize,
    /// Group -> owning consumer's key.
    groups: HashMap<u8, usize>,
    /// Given up since the last comparison.
    dead: Vec<u64>,
    next_key: usize,
    /// Every message published, and how many were acknowledged.
    published: usize,
    acked: usize,
    dead_total: usize,
}

/// Why the model refused an ack or nack.
#[derive(Debug, PartialEq, Eq)]
struct NotHeld;

impl QueueModel {
    fn publish(&mut self, message: Message) {
        self.published += 1;
        // Behind everything of its priority or higher.
        let at = self
            .waiting
            .iter()
            .position(|c| c.message.priority < message.priority)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(
            at,
            Entry {
                message,
                redeliveries: 0,
            },
        );
        self.dispatch();
    }

    fn subscribe(&mut self, prefetch: usize, cumulative: bool, exclusive: bool) {
        self.consumers.push(Consumer {
            key: self.next_key,
            prefetch,
            cumulative,
            exclusive,
            unacked: Vec::new(),
            inbox: Vec::new(),
        });
        self.next_key += 1;
        self.dispatch();
    }

    fn close(&mut self, i: usize) {
        let consumer = self.consumers.remove(i);
        if self.cursor > i {
            self.cursor -= 1;
        }
        self.groups.retain(|_, owner| *owner != consumer.key);
        self.give_back(consumer.unacked);
        self.dispatch();
    }

    fn ack(&mut self, i: usize, seq: u64) -> Result<(), NotHeld> {
        let taken = self.take(i, seq)?;
        self.acked += taken.len();
        self.dispatch();
        Ok(())
    }

    fn nack(&mut self, i: usize, seq: u64) -> Result<(), NotHeld> {
        let taken = self.take(i, seq)?;
        self.give_back(taken);
        self.dispatch();
        Ok(())
    }

    /// Removes what an ack or nack of `seq` on consumer `i` covers.
    fn take(&mut self, i: usize, seq: u64) -> Result<Vec<Entry>, NotHeld> {
        let consumer = &mut self.consumers[i];
        let at = consumer
            .unacked
            .iter()
            .position(|c| c.message.seq == seq)
            .ok_or(NotHeld)?;
        Ok(if consumer.cumulative {
            consumer.unacked.drain(..=at).collect()
        } else {
            vec![consumer.unacked.remove(at)]
        })
    }

    /// Returns `copies` (in delivery order) to the queue.
    fn give_back(&mut self, copies: Vec<Entry>) {
        // Last first, each in front of its priority: the batch ends up in
        // its delivery order.
        for copy in copies.into_iter().rev() {
            let redeliveries = copy.redeliveries + 1;
            if redeliveries > MAX_REDELIVERIES {
                self.dead.push(copy.message.seq);
                self.dead_total += 1;
                continue;
            }
            let at = self
                .waiting
                .iter()
                .position(|c| c.message.priority <= copy.message.priority)
                .unwrap_or(self.waiting.len());
            self.waiting.insert(
                at,
                Entry {
                    message: copy.message,
                    redeliveries,
                },
            );
        }
    }

    fn has_credit(&self, i: usize) -> bool {
        let c = &self.consumers[i];
        c.unacked.len() < c.prefetch
    }

    fn eligible(&self, i: usize, message: &Message) -> bool {
        let key = self.consumers[i].key;
        let owner = self.consumers.iter().find(|c| c.exclusive);
        if owner.is_some_and(|o| o.key != key) {
            return false;
        }
        let group_owner = message.group.and_then(|g| self.groups.get(&g));
        group_owner.is_none_or(|&o| o == key)
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
                    .position(|c| self.eligible(i, &c.message))?;
                Some((i, at))
            });
            let Some((i, at)) = next else { return };
            let copy = self.waiting.remove(at);
            if let Some(g) = copy.message.group {
                if copy.message.closes_group {
                    self.groups.remove(&g);
                } else {
                    self.groups.entry(g).or_insert(self.consumers[i].key);
                }
            }
            let consumer = &mut self.consumers[i];
            consumer.inbox.push(Got {
                seq: copy.message.seq,
                redeliveries: copy.redeliveries,
            });
            consumer.unacked.push(copy);
            self.cursor = (i + 1) % n;
        }
    }

    /// Every message published is acknowledged, given up, waiting or
    /// unacknowledged, exactly once.
    fn check_conservation(&self) {
        let unacked: usize = self.consumers.iter().map(|c| c.unacked.len()).sum();
        assert_eq!(
            self.published,
            self.acked + self.dead_total + self.waiting.len() + unacked,
            "the model lost or duplicated a message"
        );
    }
}

/// One step of a run. Consumers are named by position among those open
/// (modulo their number; nothing happens when there are none), messages by
/// position among the consumer's unacknowledged ones, where one past the end
/// names a message it does not hold.
#[derive(Debug, Clone)]
enum Op {
    Publish {
        priority: u8,
        group: Option<u8>,
        closes_group: bool,
        persistent: bool,
    },
    Subscribe {
        prefetch: usize,
        cumulative: bool,
        exclusive: bool,
    },
    Ack {
        consumer: usize,
        pick: usize,
    },
    Nack {
        consumer: usize,
        pick: usize,
    },
    Close {
        consumer: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let publish = (
        prop_oneof![Just(0u8), Just(4), Just(9)],
        prop_oneof![3 => Just(None), 1 => (0u8..2).prop_map(Some)],
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(|(priority, group, closes_group, persistent)| Op::Publish {
            priority,
            group,
            closes_group,
            persistent,
        });
    let subscribe = (1usize..4, any::<bool>(), prop::bool::weighted(0.15)).prop_map(
        |(prefetch, cumulative, exclusive)| Op::Subscribe {
            prefetch,
            cumulative,
            exclusive,
        },
    );
    prop_oneof![
        6 => publish,
        2 => subscribe,
        4 => (any::<usize>(), 0usize..4).prop_map(|(consumer, pick)| Op::Ack { consumer, pick }),
        3 => (any::<usize>(), 0usize..4).prop_map(|(consumer, pick)| Op::Nack { consumer, pick }),
        1 => any::<usize>().prop_map(|consumer| Op::Close { consumer }),
    ]
}

/// The router and the model side by side.
struct Run {
    bench: Bench,
    subs: Vec<Sub>,
    model: QueueModel,
}

impl Run {
    fn new() -> Run {
        Run {
            bench: Bench::with_max_redeliveries(MAX_REDELIVERIES),
            subs: Vec::new(),
            model: QueueModel::default(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Publish {
                priority,
                group,
                closes_group,
                persistent,
            } => {
                let mut msg = Msg::new().priority(priority).persistent(persistent);
                if let Some(g) = group {
                    let name = format!("g{g}");
                    msg = if closes_group {
                        msg.closing_group(&name)
                    } else {
                        msg.group(&name)
                    };
                }
                let seq = self.bench.publish(Q, msg);
                self.model.publish(Message {
                    seq,
                    priority,
                    group,
                    closes_group: closes_group && group.is_some(),
                });
            }
            Op::Subscribe {
                prefetch,
                cumulative,
                exclusive,
            } => {
                let mut opts = if cumulative {
                    Opts::client(prefetch)
                } else {
                    Opts::individual(prefetch)
                };
                if exclusive {
                    opts = opts.exclusive();
                }
                self.subs.push(self.bench.subscribe(Q, opts));
                self.model.subscribe(prefetch, cumulative, exclusive);
            }
            Op::Ack { consumer, pick } | Op::Nack { consumer, pick } => {
                let Some(i) = self.consumer(consumer) else {
                    return Ok(());
                };
                let seq = self.pick(i, pick);
                let (real, model) = if matches!(op, Op::Ack { .. }) {
                    (self.bench.ack(&self.subs[i], seq), self.model.ack(i, seq))
                } else {
                    (self.bench.nack(&self.subs[i], seq), self.model.nack(i, seq))
                };
                prop_assert_eq!(
                    real.is_ok(),
                    model.is_ok(),
                    "router said {:?}, model said {:?}",
                    real,
                    model
                );
            }
            Op::Close { consumer } => {
                let Some(i) = self.consumer(consumer) else {
                    return Ok(());
                };
                let sub = self.subs.remove(i);
                self.bench.close(&sub);
                // What it received before closing is compared first.
                let model = self.model.consumers[i].inbox.clone();
                prop_assert_eq!(sub.take(), model, "deliveries to the closed consumer");
                self.model.close(i);
            }
        }
        self.compare()
    }

    fn consumer(&self, n: usize) -> Option<usize> {
        (!self.subs.is_empty()).then(|| n % self.subs.len())
    }

    /// The message `pick` names for consumer `i`: one of its unacknowledged
    /// ones, or (one past the end) one it does not hold: another
    /// consumer's, a waiting one, or one never published.
    fn pick(&self, i: usize, pick: usize) -> u64 {
        let unacked = &self.model.consumers[i].unacked;
        if let Some(c) = unacked.get(pick) {
            return c.message.seq;
        }
        let foreign = self
            .model
            .consumers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, c)| c.unacked.iter())
            .chain(self.model.waiting.iter())
            .next();
        foreign.map_or(u64::MAX, |c| c.message.seq)
    }

    fn compare(&mut self) -> Result<(), TestCaseError> {
        for (i, sub) in self.subs.iter().enumerate() {
            let expected = std::mem::take(&mut self.model.consumers[i].inbox);
            prop_assert_eq!(sub.take(), expected, "deliveries to consumer {}", i);
            for c in &self.model.consumers[i].unacked {
                prop_assert!(
                    self.bench.router.has_unacked(&sub.handle, c.message.seq),
                    "consumer {} should hold {} unacknowledged",
                    i,
                    c.message.seq
                );
            }
        }
        let waiting: Vec<u64> = self.model.waiting.iter().map(|c| c.message.seq).collect();
        prop_assert_eq!(self.bench.waiting(Q), waiting, "waiting, in delivery order");
        let snapshot = self.bench.snapshot(Q);
        let unacked: usize = self.model.consumers.iter().map(|c| c.unacked.len()).sum();
        prop_assert_eq!(snapshot.unacked, unacked, "unacknowledged count");
        prop_assert_eq!(snapshot.consumers, self.model.consumers.len());
        let mut real_dead = self.bench.dead();
        let mut model_dead = std::mem::take(&mut self.model.dead);
        real_dead.sort_unstable();
        model_dead.sort_unstable();
        prop_assert_eq!(real_dead, model_dead, "given up");
        self.model.check_conservation();
        Ok(())
    }
}

proptest! {
    // Cases: proptest's default (256), or PROPTEST_CASES.
    #![proptest_config(ProptestConfig {
        // A failure prints its shrunk sequence; no regression file is
        // written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_router_runs_a_queue_as_the_model_does(ops in prop::collection::vec(op(), 1..60)) {
        let mut run = Run::new();
        for op in &ops {
            run.apply(op)?;
        }
    }
}
