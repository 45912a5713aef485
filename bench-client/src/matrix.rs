//! The scenario suites: the JMS Benchmark's default matrix (155 scenarios, with
//! its skip rules), the older stomp-benchmark's built-in scenarios, and a quick
//! suite for first contact and CI.

use crate::scenario::{AckMode, Mode, Scenario, SlowConsumer};
use std::time::Duration;

/// Limits that shape the jms-benchmark matrix (the original's `--max-clients`
/// and `--max-destinations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixLimits {
    /// Cap on producers + consumers; client counts are powers of ten below it.
    pub max_clients: u32,
    /// Destination counts are powers of ten below it.
    pub max_destinations: u32,
}

impl Default for MatrixLimits {
    fn default() -> Self {
        MatrixLimits {
            max_clients: 200,
            max_destinations: 100,
        }
    }
}

/// Message sizes of the throughput group, in bytes.
pub const MESSAGE_SIZES: [usize; 5] = [10, 100, 1_000, 100_000, 10_000_000];
/// Transaction sizes of the throughput group.
pub const TX_SIZES: [u32; 4] = [0, 1, 10, 100];
/// Producer rates of the latency group, msg/s.
pub const LATENCY_RATES: [u64; 5] = [100, 1_000, 10_000, 100_000, 1_000_000];

/// Powers of ten strictly below `max` (1, 10, 100 for 200).
fn powers_of_ten_below(max: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut v = 1u32;
    while v < max {
        out.push(v);
        match v.checked_mul(10) {
            Some(next) => v = next,
            None => break,
        }
    }
    out
}

/// Why the original skips a throughput combination, or `None` to run it.
pub fn skip_reason(s: &Scenario, limits: MatrixLimits) -> Option<&'static str> {
    let (p, d, c) = (s.producers, s.destination_count, s.consumers);
    if c < d || p < d {
        return Some("fewer clients than destinations");
    }
    if c + p > limits.max_clients {
        return Some("more clients than max-clients");
    }
    // The original's rule: P == C with one destination, or P == C == D.
    let symmetric = p == c && (d == 1 || c == d);
    let mut dimensions = u32::from(s.message_size > 10) + u32::from(s.tx_size > 0);
    if !symmetric {
        dimensions += u32::from(p > 1) + u32::from(d > 1) + u32::from(c > 1);
    }
    if dimensions > 1 {
        return Some("scales in more than one dimension");
    }
    None
}

/// The `throughput` group in the original's loop order, skipped ones removed.
pub fn throughput_group(limits: MatrixLimits) -> Vec<Scenario> {
    let clients = powers_of_ten_below(limits.max_clients);
    let destinations = powers_of_ten_below(limits.max_destinations);
    let mut out = Vec::new();
    for persistent in [false, true] {
        for mode in [Mode::Queue, Mode::Topic] {
            for &producers in &clients {
                for &destination_count in &destinations {
                    for &consumers in &clients {
                        for message_size in MESSAGE_SIZES {
                            for tx_size in TX_SIZES {
                                let s = Scenario {
                                    mode,
                                    persistent,
                                    producers,
                                    destination_count,
                                    consumers,
                                    message_size,
                                    tx_size,
                                    ..Scenario::baseline("throughput")
                                };
                                if skip_reason(&s, limits).is_none() {
                                    out.push(s);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The throughput combinations the skip rules remove, with the reason
/// (the original's `--show-skips`).
pub fn skipped_throughput(limits: MatrixLimits) -> Vec<(Scenario, &'static str)> {
    let clients = powers_of_ten_below(limits.max_clients);
    let destinations = powers_of_ten_below(limits.max_destinations);
    let mut out = Vec::new();
    for &producers in &clients {
        for &destination_count in &destinations {
            for &consumers in &clients {
                for message_size in MESSAGE_SIZES {
                    for tx_size in TX_SIZES {
                        let s = Scenario {
                            producers,
                            destination_count,
                            consumers,
                            message_size,
                            tx_size,
                            ..Scenario::baseline("throughput")
                        };
                        if let Some(why) = skip_reason(&s, limits) {
                            out.push((s, why));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The `slow_consumer` group: 1 producer, 10 consumers, consumer 2 sleeps 500 ms per message.
pub fn slow_consumer_group() -> Vec<Scenario> {
    let mut out = Vec::new();
    for mode in [Mode::Topic, Mode::Queue] {
        for persistent in [true, false] {
            out.push(Scenario {
                mode,
                persistent,
                consumers: 10,
                ack: if persistent {
                    AckMode::Client
                } else {
                    AckMode::Auto
                },
                slow_consumer: Some(SlowConsumer {
                    index: 2,
                    delay: Duration::from_millis(500),
                }),
                ..Scenario::baseline("slow_consumer")
            });
        }
    }
    out
}

/// The `latency` group: fixed producer rates, 1/1/1 queue, non-persistent, 10 B.
pub fn latency_group() -> Vec<Scenario> {
    LATENCY_RATES
        .iter()
        .map(|&rate| Scenario {
            producer_rate: Some(rate),
            ack: AckMode::Auto,
            ..Scenario::baseline("latency")
        })
        .collect()
}

/// The `queue_staging` group: 10 producers load a queue for half of 60
/// samples, then 10 consumers unload it.
pub fn queue_staging_group() -> Vec<Scenario> {
    [true, false]
        .into_iter()
        .map(|persistent| Scenario {
            persistent,
            producers: 10,
            consumers: 10,
            ack: AckMode::Auto,
            staging: true,
            sample_count: Some(60),
            ..Scenario::baseline("queue_staging")
        })
        .collect()
}

/// Group names accepted by `--skip`.
pub const JMS_GROUPS: [&str; 4] = ["throughput", "slow_consumer", "latency", "queue_staging"];

/// The full jms-benchmark suite minus the groups in `skip`.
pub fn jms_benchmark(limits: MatrixLimits, skip: &[String]) -> Vec<Scenario> {
    let skipped = |g: &str| skip.iter().any(|s| s == g);
    let mut out = Vec::new();
    if !skipped("throughput") {
        out.extend(throughput_group(limits));
    }
    if !skipped("slow_consumer") {
        out.extend(slow_consumer_group());
    }
    if !skipped("latency") {
        out.extend(latency_group());
    }
    if !skipped("queue_staging") {
        out.extend(queue_staging_group());
    }
    out
}

/// The stomp-benchmark's built-in scenarios that are plain producer/consumer
/// runs (its request/response scenario needs reply routing and is not included).
/// 20 B stands for its "20b"; 1 KB and 256 KB sizes are binary there.
pub fn stomp_benchmark() -> Vec<Scenario> {
    let sizes = [20usize, 1024, 256 * 1024];
    let mut out = Vec::new();
    // Queue load/unload: one producer fills a queue, then one consumer drains it.
    for persistent in [false, true] {
        out.push(Scenario {
            persistent,
            message_size: 20,
            ack: AckMode::Auto,
            staging: true,
            sample_count: Some(30),
            ..Scenario::baseline("queue_loading")
        });
    }
    // Max producer throughput: a topic nobody listens to.
    for &size in &sizes {
        out.push(Scenario {
            mode: Mode::Topic,
            message_size: size,
            consumers: 0,
            ack: AckMode::Auto,
            ..Scenario::baseline("producer_throughput")
        });
    }
    // Partitioned load: P = D = C = load.
    for persistent in [false, true] {
        for mode in [Mode::Queue, Mode::Topic] {
            for &size in &sizes {
                for load in [1u32, 5, 10] {
                    out.push(Scenario {
                        mode,
                        persistent,
                        message_size: size,
                        producers: load,
                        destination_count: load,
                        consumers: load,
                        ack: AckMode::Auto,
                        ..Scenario::baseline("partitioned")
                    });
                }
            }
        }
    }
    // Fan in / fan out on one destination (1 x 1 is covered above).
    for persistent in [false, true] {
        for mode in [Mode::Queue, Mode::Topic] {
            for producers in [1u32, 5, 10] {
                for consumers in [1u32, 5, 10] {
                    if producers == 1 && consumers == 1 {
                        continue;
                    }
                    out.push(Scenario {
                        mode,
                        persistent,
                        message_size: 20,
                        producers,
                        consumers,
                        ack: AckMode::Auto,
                        ..Scenario::baseline("fan_in_out")
                    });
                }
            }
        }
    }
    out
}

/// A handful of representative scenarios that finish in under two minutes
/// with the quick sampling (1 warm-up + 5 samples, 1 s drain window).
pub fn quick() -> Vec<Scenario> {
    let t = |f: fn(&mut Scenario)| {
        let mut s = Scenario::baseline("throughput");
        f(&mut s);
        s
    };
    vec![
        t(|_| {}),
        t(|s| s.persistent = true),
        t(|s| {
            s.persistent = true;
            s.tx_size = 100;
        }),
        t(|s| {
            (s.producers, s.destination_count, s.consumers) = (10, 10, 10);
            s.message_size = 1000;
        }),
        t(|s| {
            (s.producers, s.destination_count, s.consumers) = (10, 10, 10);
            s.persistent = true;
            s.message_size = 1000;
        }),
        t(|s| {
            s.mode = Mode::Topic;
            s.consumers = 10;
        }),
        t(|s| s.message_size = 100_000),
        Scenario {
            producer_rate: Some(1_000),
            ack: AckMode::Auto,
            ..Scenario::baseline("latency")
        },
        Scenario {
            producer_rate: Some(10_000),
            ack: AckMode::Auto,
            ..Scenario::baseline("latency")
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jms_matrix_has_155_scenarios() {
        let limits = MatrixLimits::default();
        assert_eq!(throughput_group(limits).len(), 144);
        assert_eq!(slow_consumer_group().len(), 4);
        assert_eq!(latency_group().len(), 5);
        assert_eq!(queue_staging_group().len(), 2);
        assert_eq!(jms_benchmark(limits, &[]).len(), 155);
        assert_eq!(
            jms_benchmark(limits, &["throughput".into(), "latency".into()]).len(),
            6
        );
    }

    #[test]
    fn throughput_topologies_match_the_original() {
        let all = throughput_group(MatrixLimits::default());
        let per_combo = |p: bool, m: Mode| {
            all.iter()
                .filter(|s| s.persistent == p && s.mode == m)
                .count()
        };
        for p in [false, true] {
            for m in [Mode::Queue, Mode::Topic] {
                assert_eq!(per_combo(p, m), 36);
            }
        }
        let variants = |p: u32, d: u32, c: u32| {
            all.iter()
                .filter(|s| !s.persistent && s.mode == Mode::Queue)
                .filter(|s| (s.producers, s.destination_count, s.consumers) == (p, d, c))
                .count()
        };
        for sym in [(1, 1, 1), (10, 1, 10), (10, 10, 10), (100, 1, 100)] {
            assert_eq!(variants(sym.0, sym.1, sym.2), 8, "{sym:?}");
        }
        for fan in [(1, 1, 10), (1, 1, 100), (10, 1, 1), (100, 1, 1)] {
            assert_eq!(variants(fan.0, fan.1, fan.2), 1, "{fan:?}");
        }
        // No 10 MB message with a transaction, no sweep in two dimensions.
        assert!(!all.iter().any(|s| s.message_size > 10 && s.tx_size > 0));
    }

    #[test]
    fn skip_rules() {
        let l = MatrixLimits::default();
        let mk = |p, d, c, size, tx| Scenario {
            producers: p,
            destination_count: d,
            consumers: c,
            message_size: size,
            tx_size: tx,
            ..Scenario::baseline("throughput")
        };
        assert_eq!(
            skip_reason(&mk(1, 10, 10, 10, 0), l),
            Some("fewer clients than destinations")
        );
        assert_eq!(
            skip_reason(&mk(100, 1, 200, 10, 0), l),
            Some("more clients than max-clients")
        );
        assert_eq!(
            skip_reason(&mk(10, 1, 100, 10, 0), l),
            Some("scales in more than one dimension")
        );
        assert_eq!(
            skip_reason(&mk(1, 1, 10, 100, 0), l),
            Some("scales in more than one dimension")
        );
        assert_eq!(
            skip_reason(&mk(1, 1, 1, 100, 10), l),
            Some("scales in more than one dimension")
        );
        assert_eq!(skip_reason(&mk(10, 10, 10, 1000, 0), l), None);
        assert_eq!(skip_reason(&mk(100, 1, 100, 10, 100), l), None);
        assert_eq!(skip_reason(&mk(1, 1, 100, 10, 0), l), None);
        // A smaller client cap shrinks the matrix.
        let small = MatrixLimits {
            max_clients: 20,
            max_destinations: 10,
        };
        assert!(throughput_group(small)
            .iter()
            .all(|s| s.producers + s.consumers <= 20 && s.destination_count == 1));
    }

    #[test]
    fn other_suites() {
        let stomp = stomp_benchmark();
        assert_eq!(stomp.len(), 2 + 3 + 36 + 32);
        let names: std::collections::HashSet<String> = stomp.iter().map(Scenario::name).collect();
        assert_eq!(names.len(), stomp.len(), "names are unique");
        let q = quick();
        assert!(q.len() >= 5 && q.len() <= 10);
        assert!(q.iter().any(|s| s.producer_rate.is_some()));
        assert!(q.iter().any(|s| s.persistent));
        assert_eq!(
            slow_consumer_group()[0].slow_consumer.map(|s| s.index),
            Some(2)
        );
        assert!(queue_staging_group()
            .iter()
            .all(|s| s.sample_count == Some(60)));
    }
}
