//! The property test: random sequences of publish, subscribe, ack, nack,
//! transactional ack/nack with commit or abort, link credit grants, close
//! and the end of redelivery delays, run against the router and
//! [`QueueModel`] side by side. After every step it compares what each
//! consumer received (with redelivery counts), what waits (in delivery
//! order), what each consumer holds unacknowledged, what waits out a
//! redelivery delay and what was given up. A failure prints the shrunk
//! sequence of operations.

use super::harness::{Bench, Msg, Opts, Sub};
use super::queue_model::{ModelMessage, ModelSubscription, NotHeld, QueueModel};
use crate::router::RouterError;
use proptest::prelude::*;

const Q: &str = "/queue/model";

/// Returns after which a message is given up (the router's
/// `max_redeliveries`): small, so random runs reach it.
const MAX_REDELIVERIES: u32 = 2;

/// One step of a run. Consumers are named by position among those open
/// (modulo their number; nothing happens when there are none), messages by
/// position among the consumer's unacknowledged ones, where a position past
/// the end names a message it does not hold.
#[derive(Debug, Clone)]
enum Op {
    Publish {
        priority: u8,
        group: Option<u8>,
        closes_group: bool,
        red: bool,
        persistent: bool,
    },
    Subscribe {
        prefetch: usize,
        cumulative: bool,
        exclusive: bool,
        selective: bool,
        link: bool,
    },
    Ack {
        consumer: usize,
        pick: usize,
    },
    Nack {
        consumer: usize,
        pick: usize,
    },
    /// A transactional ACK (`nack`: NACK) on the consumer's open transaction.
    Stage {
        consumer: usize,
        pick: usize,
        nack: bool,
    },
    /// Ends the consumer's transaction.
    Finish {
        consumer: usize,
        commit: bool,
    },
    /// Link credit (a no-op on a consumer that is not a link).
    Grant {
        consumer: usize,
        credit: u32,
        drain: bool,
    },
    Close {
        consumer: usize,
    },
    /// The redelivery delay of a returned message ends (by position among
    /// those waiting it out; nothing when there are none).
    DelayEnds {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let publish = (
        prop_oneof![Just(0u8), Just(4), Just(9)],
        prop_oneof![3 => Just(None), 1 => (0u8..2).prop_map(Some)],
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(priority, group, closes_group, red, persistent)| Op::Publish {
                priority,
                group,
                closes_group,
                red,
                persistent,
            },
        );
    let subscribe = (
        1usize..4,
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(prefetch, cumulative, exclusive, selective, link)| Op::Subscribe {
                prefetch,
                cumulative,
                exclusive,
                selective,
                link,
            },
        );
    let consumer = any::<usize>();
    prop_oneof![
        6 => publish,
        2 => subscribe,
        4 => (consumer, 0usize..4)
            .prop_map(|(consumer, pick)| Op::Ack { consumer, pick }),
        3 => (consumer, 0usize..4)
            .prop_map(|(consumer, pick)| Op::Nack { consumer, pick }),
        2 => (consumer, 0usize..4, any::<bool>())
            .prop_map(|(consumer, pick, nack)| Op::Stage { consumer, pick, nack }),
        1 => (consumer, any::<bool>())
            .prop_map(|(consumer, commit)| Op::Finish { consumer, commit }),
        2 => (consumer, 0u32..4, prop::bool::weighted(0.2))
            .prop_map(|(consumer, credit, drain)| Op::Grant { consumer, credit, drain }),
        1 => consumer.prop_map(|consumer| Op::Close { consumer }),
        2 => any::<usize>().prop_map(|pick| Op::DelayEnds { pick }),
    ]
}

/// A consumer's open transaction: what its ACKs and NACKs staged, in order.
#[derive(Debug, Default)]
struct Transaction {
    ops: Vec<(bool, Vec<u64>)>,
}

/// The router and the model side by side.
struct Run {
    bench: Bench,
    /// The router's consumers, in the model's order, with their transactions.
    subs: Vec<(Sub, Transaction)>,
    model: QueueModel,
}

impl Run {
    /// `delay`: redeliveries wait out a delay, which the run ends with
    /// [`Op::DelayEnds`].
    fn new(delay: bool) -> Run {
        let delay_ms = if delay { 1000 } else { 0 };
        Run {
            bench: Bench::with_redelivery(MAX_REDELIVERIES, delay_ms),
            subs: Vec::new(),
            model: QueueModel::new(MAX_REDELIVERIES, delay),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Publish {
                priority,
                group,
                closes_group,
                red,
                persistent,
            } => {
                let color = if red { "red" } else { "blue" };
                let mut msg = Msg::new()
                    .priority(priority)
                    .persistent(persistent)
                    .property("color", color);
                if let Some(g) = group {
                    let name = format!("g{g}");
                    msg = if closes_group {
                        msg.closing_group(&name)
                    } else {
                        msg.group(&name)
                    };
                }
                let seq = self.bench.publish(Q, msg);
                self.model.publish(ModelMessage {
                    seq,
                    priority,
                    group,
                    closes_group: closes_group && group.is_some(),
                    red,
                });
            }
            Op::Subscribe {
                prefetch,
                cumulative,
                exclusive,
                selective,
                link,
            } => {
                let mut opts = if cumulative {
                    Opts::client(prefetch)
                } else {
                    Opts::individual(prefetch)
                };
                if exclusive {
                    opts = opts.exclusive();
                }
                if selective {
                    opts = opts.selector("color = 'red'");
                }
                if link {
                    opts = opts.link();
                }
                let sub = self.bench.subscribe(Q, opts);
                self.subs.push((sub, Transaction::default()));
                self.model.subscribe(ModelSubscription {
                    prefetch,
                    cumulative,
                    exclusive,
                    selective,
                    link,
                });
            }
            Op::Ack { consumer, pick } | Op::Nack { consumer, pick } => {
                let Some(i) = self.consumer(consumer) else {
                    return Ok(());
                };
                let seq = self.pick(i, pick);
                let sub = &self.subs[i].0;
                let (real, model) = if matches!(op, Op::Ack { .. }) {
                    (self.bench.ack(sub, seq), self.model.ack(i, seq))
                } else {
                    (self.bench.nack(sub, seq), self.model.nack(i, seq))
                };
                same_outcome(&real, &model)?;
            }
            Op::Stage {
                consumer,
                pick,
                nack,
            } => {
                let Some(i) = self.consumer(consumer) else {
                    return Ok(());
                };
                let seq = self.pick(i, pick);
                let real = self.bench.stage(&self.subs[i].0, seq);
                let model = self.model.stage(i, seq);
                same_outcome(&real, &model)?;
                if let (Ok(real), Ok(model)) = (real, model) {
                    prop_assert_eq!(&real, &model, "staged by a transactional ack of {}", seq);
                    self.subs[i].1.ops.push((nack, real));
                }
            }
            Op::Finish { consumer, commit } => {
                let Some(i) = self.consumer(consumer) else {
                    return Ok(());
                };
                let (sub, tx) = &mut self.subs[i];
                for (nack, seqs) in std::mem::take(&mut tx.ops) {
                    match (commit, nack) {
                        (true, false) => {
                            self.bench.commit_acks(sub, &seqs);
                            self.model.commit_acks(i, &seqs);
                        }
                        (true, true) => {
                            self.bench.commit_nacks(sub, &seqs);
                            self.model.commit_nacks(i, &seqs);
                        }
                        (false, _) => {
                            self.bench.abort(sub, &seqs);
                            self.model.abort(i, &seqs);
                        }
                    }
                }
            }
            Op::Grant {
                consumer,
                credit,
                drain,
            } => {
                let Some(i) = self.consumer(consumer) else {
                    return Ok(());
                };
                if self.model.consumers[i].is_link() {
                    self.bench.grant(&self.subs[i].0, credit, drain);
                    self.model.grant(i, credit, drain);
                }
            }
            Op::DelayEnds { pick } => {
                let delayed = &self.model.delayed;
                if delayed.is_empty() {
                    return Ok(());
                }
                let seq = delayed[pick % delayed.len()].message.seq;
                self.bench.return_delayed(seq);
                self.model.return_delayed(seq);
            }
            Op::Close { consumer } => {
                let Some(i) = self.consumer(consumer) else {
                    return Ok(());
                };
                let (sub, _) = self.subs.remove(i);
                self.bench.close(&sub);
                // What it received before closing is compared first.
                let model = std::mem::take(&mut self.model.consumers[i].inbox);
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
    /// ones, or (past the end) one it does not hold: another consumer's, a
    /// waiting one, or one never published.
    fn pick(&self, i: usize, pick: usize) -> u64 {
        let unacked = &self.model.consumers[i].unacked;
        if let Some(e) = unacked.get(pick) {
            return e.message.seq;
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
        foreign.map_or(u64::MAX, |e| e.message.seq)
    }

    fn compare(&mut self) -> Result<(), TestCaseError> {
        for (i, (sub, _)) in self.subs.iter().enumerate() {
            let expected = std::mem::take(&mut self.model.consumers[i].inbox);
            prop_assert_eq!(sub.take(), expected, "deliveries to consumer {}", i);
            for e in &self.model.consumers[i].unacked {
                prop_assert!(
                    self.bench.router.has_unacked(&sub.handle, e.message.seq),
                    "consumer {} should hold {} unacknowledged",
                    i,
                    e.message.seq
                );
            }
        }
        let waiting: Vec<u64> = self.model.waiting.iter().map(|e| e.message.seq).collect();
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
        let mut real_delayed = self.bench.delayed();
        let mut model_delayed: Vec<(u64, u32)> = self
            .model
            .delayed
            .iter()
            .map(|e| (e.message.seq, e.redeliveries))
            .collect();
        real_delayed.sort_unstable();
        model_delayed.sort_unstable();
        prop_assert_eq!(
            real_delayed,
            model_delayed,
            "waiting out a redelivery delay"
        );
        self.model.check_conservation();
        Ok(())
    }
}

/// The router and the model both accepted, or both refused.
fn same_outcome<T: std::fmt::Debug, U: std::fmt::Debug>(
    real: &Result<T, RouterError>,
    model: &Result<U, NotHeld>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        real.is_ok(),
        model.is_ok(),
        "router said {:?}, model said {:?}",
        real,
        model
    );
    Ok(())
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
    fn the_router_runs_a_queue_as_the_model_does(
        delay in prop::bool::weighted(0.25),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut run = Run::new(delay);
        for op in &ops {
            run.apply(op)?;
        }
    }
}
