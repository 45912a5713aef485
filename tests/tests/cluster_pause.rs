//! The leader of a three-node cluster is stopped with SIGSTOP past the
//! election timeout, then continued with SIGCONT, under persistent load
//! from several producers and consumers and a transaction producer
//! (issue 16):
//!
//! - the two others elect a new leader that takes the load;
//! - a witness session kept open on the old leader sent SENDs with
//!   receipts before and while it was stopped: after SIGCONT the old leader
//!   answers none of those it could not commit with a RECEIPT (each fails
//!   with an ERROR carrying its receipt-id, or the connection closes), and
//!   any it did receipt is delivered at the end;
//! - the old leader restarts itself as a follower and the load goes on;
//! - the invariants of `ferromq_tests::chaos` hold over the whole run.
//!
//! `FERROMQ_PAUSE_CYCLES` sets the number of pauses (default 1, which CI
//! runs); each one stops whichever node leads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_tests::chaos::{loaded_cluster, Ledger, Witness};
use ferromq_tests::cluster::{
    cluster, knob, wait_for_follower, wait_for_leader, wait_for_leader_except, BOUND,
};

fn cycles() -> usize {
    knob("FERROMQ_PAUSE_CYCLES", 1)
}

#[test]
fn a_leader_stopped_past_the_election_timeout_sends_no_late_receipt() {
    let (_held, nodes, (), load) = loaded_cluster(|root| (cluster(root), ()));
    assert!(
        load.wait_until(BOUND, |l| l.receipted.len() >= 30 && l.acked.len() >= 10),
        "no load before the pause: {}",
        load.ledger().summary()
    );
    let mut pauses = 0;
    let mut late_failed = 0;
    for round in 0..cycles() {
        let old = wait_for_leader(&nodes, BOUND);
        let mut witness = Witness::open(nodes[old].stomp, round).unwrap();
        witness.send(8).unwrap();
        nodes[old].signal("-STOP");
        pauses += 1;
        // Sent while it is stopped: they wait in its socket, and it must
        // not receipt them once it runs again.
        witness.send(8).unwrap();
        let new = wait_for_leader_except(&nodes, old, BOUND);
        let on_new = |l: &Ledger| l.receipts_by_node.get(&new).copied().unwrap_or(0);
        let receipts_on_new = on_new(&load.ledger());
        assert!(
            load.wait_until(BOUND, |l| on_new(l) >= receipts_on_new + 20),
            "round {round}: the new leader (node {}) does not take the load: {}",
            nodes[new].id,
            load.ledger().summary()
        );
        nodes[old].signal("-CONT");
        let answers = witness.answers(BOUND);
        eprintln!("round {round}: the old leader's answers to the witness: {answers:?}");
        assert!(
            answers.receipted.iter().all(|r| {
                let k: u64 = r.rsplit('-').next().unwrap().parse().unwrap();
                k < 8
            }),
            "round {round}: the old leader receipted a SEND it got while deposed: {answers:?}"
        );
        late_failed += answers.failed_by_error + answers.failed_by_close;
        load.ledger()
            .receipted
            .extend(answers.receipted.iter().cloned());
        assert!(
            nodes[old]
                .process
                .as_ref()
                .unwrap()
                .wait_for_log("restarting to rejoin the cluster as a follower"),
            "round {round}: node {} did not stop serving; log:\n{}",
            nodes[old].id,
            nodes[old].log()
        );
        wait_for_follower(&nodes, old, BOUND);
        let total = load.ledger().receipted.len();
        assert!(
            load.wait_until(BOUND, |l| l.receipted.len() >= total + 20),
            "round {round}: no progress after the pause: {}",
            load.ledger().summary()
        );
    }
    let ledger = load.finish(&nodes);
    eprintln!(
        "pause: {pauses} pauses, {late_failed} of the witness's receipts failed; {}",
        ledger.lock().unwrap().summary()
    );
    assert_eq!(pauses, cycles());
    assert!(
        late_failed >= 8 * pauses,
        "the SENDs made while the leader was stopped must fail"
    );
}
