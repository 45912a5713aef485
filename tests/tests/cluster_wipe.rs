//! A follower of a three-node cluster loses its data directory (killed with
//! SIGKILL, directory removed, restarted empty) under persistent load from
//! several producers and consumers and a transaction producer (issue 16):
//!
//! - the log is purged behind frequent snapshots while it is down, so it
//!   catches up by a snapshot install (its log says so);
//! - it rejoins as a follower while the load goes on;
//! - it can then lead without loss: it is made leader (the others are
//!   killed in turn until it wins; it has the shortest election timeout)
//!   and the final drain reads from it;
//! - the invariants of `ferromq_tests::chaos` hold over the whole run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_tests::chaos::Load;
use ferromq_tests::cluster::{
    cluster_with, make_leader, one_cluster_at_a_time, start_all, wait_for_follower,
    wait_for_leader, BOUND,
};
/// The node that is wiped campaigns first.
const WIPED: u64 = 2;

/// Snapshots every 20 entries, 5 kept behind: the log the wiped node
/// missed is purged by the time it comes back. Node [`WIPED`] campaigns
/// first (1–1.5 s), the others later (2–3 s).
fn keys(id: u64) -> String {
    let (min, max) = if id == WIPED {
        ("1s", "1500ms")
    } else {
        ("2s", "3s")
    };
    format!(
        "heartbeat = \"100ms\"\nelection_timeout_min = \"{min}\"\nelection_timeout_max = \"{max}\"\nsnapshot_every = 20\nkeep_behind_snapshot = 5\n"
    )
}

#[test]
fn a_wiped_follower_catches_up_by_snapshot_and_then_leads_without_loss() {
    let _one = one_cluster_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, _) = cluster_with(root.path(), false, keys);
    start_all(&mut nodes);
    let wiped = (WIPED - 1) as usize;
    // Node 1 forms the cluster and leads first; if the wiped one leads
    // anyway, another node is made leader first.
    if wait_for_leader(&nodes, BOUND) == wiped {
        make_leader(&mut nodes, 0, 4, BOUND);
    }
    let load = Load::start(&nodes, 3, 2);
    assert!(
        load.wait_until(BOUND, |l| l.receipted.len() >= 30 && l.acked.len() >= 10),
        "no load before the wipe: {}",
        load.ledger().summary()
    );
    nodes[wiped].kill9();
    nodes[wiped].wipe();
    let total = load.ledger().receipted.len();
    assert!(
        load.wait_until(BOUND, |l| l.receipted.len() >= total + 60),
        "no progress while node {WIPED} is down: {}",
        load.ledger().summary()
    );
    nodes[wiped].start();
    assert!(
        nodes[wiped].wait_for_log("cluster: installed a snapshot from the leader", BOUND),
        "node {WIPED} was not restored by a snapshot; log:\n{}",
        nodes[wiped].log()
    );
    wait_for_follower(&nodes, wiped, BOUND);
    let total = load.ledger().receipted.len();
    assert!(
        load.wait_until(BOUND, |l| l.receipted.len() >= total + 20),
        "no progress after node {WIPED} rejoined: {}",
        load.ledger().summary()
    );
    let mut load = load;
    load.stop();
    let kills = make_leader(&mut nodes, wiped, 4, BOUND);
    let ledger = load.finish(&nodes);
    let installs = nodes[wiped]
        .log()
        .matches("installed a snapshot from the leader")
        .count();
    eprintln!(
        "wipe: node {WIPED} restored by {installs} snapshot installs, led after {kills} kills; {}",
        ledger.lock().unwrap().summary()
    );
    assert!(installs > 0);
}
