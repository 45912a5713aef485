//! The leader of a three-node cluster is killed with SIGKILL again and
//! again under persistent load from several producers and consumers and a
//! transaction producer (issue 16):
//!
//! - each time the two others elect a leader that takes the load, and the
//!   killed node is restarted and rejoins;
//! - the failover time, from the kill to the first receipt the new leader
//!   sends a load client, is measured (within a generous bound) and
//!   printed, with the median and maximum at the end;
//! - nothing receipted is lost, and the other invariants of
//!   `ferromq_tests::chaos` hold over the whole run.
//!
//! `FERROMQ_KILL_CYCLES` sets the number of kills (default 3, which CI
//! runs; a soak: `FERROMQ_KILL_CYCLES=20 cargo test -p ferromq-tests
//! --test cluster_kill -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_tests::chaos::{loaded_cluster, Ledger};
use ferromq_tests::cluster::{
    cluster, knob, wait_for_follower, wait_for_leader, wait_for_leader_except, BOUND,
};
use std::time::{Duration, Instant};

fn cycles() -> usize {
    knob("FERROMQ_KILL_CYCLES", 3).max(1)
}

#[test]
fn the_leader_killed_under_load_loses_nothing_receipted() {
    let (_held, mut nodes, (), load) = loaded_cluster(|root| (cluster(root), ()));
    let mut failovers = Vec::new();
    for round in 0..cycles() {
        let total = load.ledger().receipted.len();
        assert!(
            load.wait_until(BOUND, |l| l.receipted.len() >= total + 20),
            "round {round}: no load before the kill: {}",
            load.ledger().summary()
        );
        let old = wait_for_leader(&nodes, BOUND);
        nodes[old].kill9();
        let killed_at = Instant::now();
        let new = wait_for_leader_except(&nodes, old, BOUND);
        let on_new = |l: &Ledger| l.receipts_by_node.get(&new).copied().unwrap_or(0);
        let before = on_new(&load.ledger());
        assert!(
            load.wait_until(BOUND, |l| on_new(l) > before),
            "round {round}: the new leader (node {}) sent no receipt: {}",
            nodes[new].id,
            load.ledger().summary()
        );
        let failover = killed_at.elapsed();
        eprintln!(
            "round {round}: node {} killed, node {} leads; failover (kill to first receipt) {} ms",
            nodes[old].id,
            nodes[new].id,
            failover.as_millis()
        );
        failovers.push(failover);
        nodes[old].start();
        wait_for_follower(&nodes, old, BOUND);
    }
    let ledger = load.finish(&nodes);
    let mut millis: Vec<u128> = failovers.iter().map(Duration::as_millis).collect();
    millis.sort_unstable();
    eprintln!(
        "kills: {} kills; failover ms {millis:?} (median {}, max {}); {}",
        failovers.len(),
        millis[millis.len() / 2],
        millis[millis.len() - 1],
        ledger.lock().unwrap().summary()
    );
    assert_eq!(failovers.len(), cycles());
}
