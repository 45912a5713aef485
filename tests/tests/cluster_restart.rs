//! All three nodes of a cluster are killed with SIGKILL at once, under
//! persistent load from several producers and consumers and a transaction
//! producer, and restarted (issue 16):
//!
//! - the restarted cluster elects a leader and the clients carry on;
//! - nothing receipted is lost, and the other invariants of
//!   `ferromq_tests::chaos` hold over the whole run.
//!
//! `FERROMQ_RESTART_CYCLES` sets the number of whole-cluster kills
//! (default 1, which CI runs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_tests::chaos::loaded_cluster;
use ferromq_tests::cluster::{cluster, knob, wait_for_leader, BOUND};

fn cycles() -> usize {
    knob("FERROMQ_RESTART_CYCLES", 1)
}

#[test]
fn all_three_killed_and_restarted_lose_nothing_receipted() {
    let (_held, mut nodes, (), load) = loaded_cluster(|root| (cluster(root), ()));
    let mut kills = 0;
    let mut acked_before_kills = 0;
    for round in 0..cycles() {
        let (receipted, acked) = {
            let l = load.ledger();
            (l.receipted.len(), l.acked.len())
        };
        assert!(
            load.wait_until(BOUND, |l| l.receipted.len() >= receipted + 40
                && l.acked.len() >= acked + 10),
            "round {round}: no load before the kill: {}",
            load.ledger().summary()
        );
        for node in nodes.iter_mut() {
            node.kill9();
            kills += 1;
        }
        acked_before_kills = load.ledger().acked.len();
        for node in nodes.iter_mut() {
            node.start();
        }
        wait_for_leader(&nodes, BOUND);
        let total = load.ledger().receipted.len();
        assert!(
            load.wait_until(BOUND, |l| l.receipted.len() >= total + 20),
            "round {round}: no progress after the restart: {}",
            load.ledger().summary()
        );
        eprintln!(
            "round {round}: all three killed and restarted; {}",
            load.ledger().summary()
        );
    }
    let ledger = load.finish(&nodes);
    let ledger = ledger.lock().unwrap();
    eprintln!("restart: {kills} kills; {}", ledger.summary());
    assert_eq!(kills, 3 * cycles());
    assert!(acked_before_kills > 0, "no ACK was receipted before a kill");
}
