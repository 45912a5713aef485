//! The leader of a three-node cluster is cut from both followers (every
//! peer link goes through a proxy the test controls: what the leader sends
//! is blackholed, what is sent to it is cut, and the link between the two
//! others is delayed) while its clients stay connected to it, under persistent load from several producers and
//! consumers and a transaction producer (issue 16):
//!
//! - the majority side elects a new leader that takes the load;
//! - the old leader sends no late success receipt for anything not
//!   committed: its pending receipts fail (ERROR with the receipt-id, or
//!   the connection closes), it stops serving and restarts as a follower;
//! - after the heal it rejoins as a follower, and its data converges: it is
//!   then made leader (the others are killed in turn until it wins; it has
//!   the shortest election timeout) and the final drain reads from it;
//! - the invariants of `ferromq_tests::chaos` hold over the whole run
//!   (every receipted message delivered, no acked message again,
//!   per-producer order, transactions whole, one serving node per term).
//!
//! `FERROMQ_PARTITION_CYCLES` sets the number of cut-and-heal rounds
//! (default 1, which CI runs); each round isolates whichever node leads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_tests::chaos::loaded_cluster;
use ferromq_tests::cluster::{
    cluster_with, knob, make_leader, wait_for_follower, wait_for_leader, wait_for_leader_except,
    BOUND,
};
use ferromq_tests::proxy::Mode;
use std::time::Duration;

/// Node 1 campaigns first (1–1.5 s), the others later (2–3 s): the node
/// the test wants as leader at the end wins its election.
fn timing(id: u64) -> String {
    let (min, max) = if id == 1 {
        ("1s", "1500ms")
    } else {
        ("2s", "3s")
    };
    format!("heartbeat = \"100ms\"\nelection_timeout_min = \"{min}\"\nelection_timeout_max = \"{max}\"\n")
}

fn cycles() -> usize {
    knob("FERROMQ_PARTITION_CYCLES", 1)
}

#[test]
fn a_leader_cut_from_both_followers_sends_no_late_receipt_and_rejoins() {
    let (_held, mut nodes, links, load) = loaded_cluster(|root| {
        let (nodes, links) = cluster_with(root, true, timing);
        (nodes, links.expect("proxied peer links"))
    });
    assert!(
        load.wait_until(BOUND, |l| l.receipted.len() >= 50 && l.acked.len() >= 10),
        "no load before the partition: {}",
        load.ledger().summary()
    );

    let mut partitions = 0;
    let mut first_old = None;
    for round in 0..cycles() {
        let old = wait_for_leader(&nodes, BOUND);
        first_old.get_or_insert(old);
        let id = nodes[old].id;
        let failed_before = load.ledger().failed_receipts;
        // Isolated both ways, by both kinds of failure: what it sends is
        // blackholed (its connections stay open, silent), what is sent to
        // it is cut (closed, refused). The majority's own link is slow but
        // up: it must still commit over it.
        links.around(id, Mode::Cut);
        let others: Vec<u64> = nodes.iter().map(|n| n.id).filter(|&n| n != id).collect();
        for &other in &others {
            links.link(id, other).blackhole();
        }
        links
            .link(others[0], others[1])
            .delay(Duration::from_millis(20));
        links
            .link(others[1], others[0])
            .delay(Duration::from_millis(20));
        partitions += 1;
        let new = wait_for_leader_except(&nodes, old, BOUND);
        let on_new =
            |l: &ferromq_tests::chaos::Ledger| l.receipts_by_node.get(&new).copied().unwrap_or(0);
        let receipts_on_new = on_new(&load.ledger());
        assert!(
            load.wait_until(BOUND, |l| on_new(l) >= receipts_on_new + 30),
            "round {round}: the new leader (node {}) does not take the load: {}",
            nodes[new].id,
            load.ledger().summary()
        );
        // The old leader, its clients still connected, stopped serving:
        // fenced, it closed them and restarted as a follower.
        assert!(
            nodes[old]
                .process
                .as_ref()
                .unwrap()
                .wait_for_log("restarting to rejoin the cluster as a follower"),
            "round {round}: node {id} did not stop serving; log:\n{}",
            nodes[old].log()
        );
        assert_ne!(nodes[old].health(), "ok leader\n");
        let stats = links.stats_around(id);
        assert!(
            stats.closed + stats.refused > 0 && stats.dropped > 0,
            "round {round}: the partition closed, refused or dropped nothing: {stats:?}"
        );
        // Each direction's proxy carries the connections one node dials to
        // the other: the new leader's replication goes through the one
        // from it (the other may carry nothing when the leader was elected
        // without the follower ever dialing it), so either counts.
        let delayed = [
            links.link(others[0], others[1]).stats(),
            links.link(others[1], others[0]).stats(),
        ];
        assert!(
            delayed.iter().map(|s| s.delayed).sum::<u64>() > 0,
            "round {round}: nothing crossed the delayed link: {delayed:?}"
        );
        assert!(
            load.ledger().failed_receipts > failed_before,
            "round {round}: no pending receipt failed at the cut: {}",
            load.ledger().summary()
        );
        links.heal();
        wait_for_follower(&nodes, old, BOUND);
        let total = load.ledger().receipted.len();
        assert!(
            load.wait_until(BOUND, |l| l.receipted.len() >= total + 30),
            "round {round}: no progress after the heal: {}",
            load.ledger().summary()
        );
        eprintln!(
            "round {round}: node {id} cut off and rejoined; {}",
            load.ledger().summary()
        );
    }
    let mut load = load;
    load.stop();
    // The first isolated node's data converged: it leads and serves the
    // drain (kills of other leaders meanwhile, if any, are counted).
    let old = first_old.unwrap();
    let kills = make_leader(&mut nodes, old, 4, BOUND);
    let ledger = load.finish(&nodes);
    let ledger = ledger.lock().unwrap();
    eprintln!(
        "partition: {partitions} partitions, {kills} kills to make node {} lead; {}",
        nodes[old].id,
        ledger.summary()
    );
    assert_eq!(partitions, cycles());
    assert!(partitions > 0);
}
