//! What every cluster test needs: settings tuned for a loaded machine,
//! polling with a deadline, finding the leader, proposing in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cluster::{
    ClusterNode, ClusterSettings, LogIndex, Member, NodeId, ReplicateError, Replicator, Role,
};

/// Every wait in these tests gives up (and fails) after this long.
pub(super) const DEADLINE: Duration = Duration::from_secs(45);

pub(super) fn settings(
    id: NodeId,
    members: &BTreeMap<NodeId, Member>,
    dir: &Path,
) -> ClusterSettings {
    ClusterSettings {
        cluster_id: "test-cluster".into(),
        node_id: id,
        members: members.clone(),
        dir: dir.join(format!("node-{id}")),
        heartbeat: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(800),
        election_timeout_max: Duration::from_millis(1600),
        max_frame_size: 16 << 20,
        snapshot_every: 1000,
        keep_behind_snapshot: 100,
        max_in_flight: 64,
        join: false,
        log_cache: 16 << 20,
        tls: None,
        peer_names: BTreeMap::new(),
    }
}

/// Members 1..=n; `cluster_addr(id)` gives each one's peer address.
pub(super) fn members(
    n: NodeId,
    cluster_addr: impl Fn(NodeId) -> String,
) -> BTreeMap<NodeId, Member> {
    (1..=n)
        .map(|id| {
            (
                id,
                Member {
                    cluster: cluster_addr(id),
                    stomp: format!("127.0.0.1:{}", 16000 + id),
                    native: format!("127.0.0.1:{}", 17000 + id),
                    admin: format!("127.0.0.1:{}", 18000 + id),
                    ..Member::default()
                },
            )
        })
        .collect()
}

/// Polls `probe` every 20 ms until it answers, panicking with `what` after
/// [`DEADLINE`].
pub(super) async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The node that is leader, holds its lease, and is acknowledged as leader
/// by a majority of `nodes` (itself included): a leader that a concurrent
/// campaign is about to depose does not count.
pub(super) fn serving_leader<'a>(
    nodes: impl IntoIterator<Item = &'a ClusterNode>,
) -> Option<ClusterNode> {
    let nodes: Vec<&ClusterNode> = nodes.into_iter().collect();
    let leader = nodes
        .iter()
        .find(|node| node.role() == Role::Leader && !node.is_fenced())?;
    let id = leader.node_id();
    let agreeing = nodes
        .iter()
        .filter(|node| node.leader().is_some_and(|info| info.id == id))
        .count();
    (agreeing * 2 > nodes.len()).then(|| (*leader).clone())
}

pub(super) fn payload(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}-{i}").into_bytes()
}

/// Proposes every payload before awaiting any (several in flight), then
/// awaits them all.
pub(super) async fn propose_all(
    node: &ClusterNode,
    payloads: &[Vec<u8>],
) -> Vec<Result<LogIndex, ReplicateError>> {
    let proposals: Vec<_> = payloads
        .iter()
        .map(|p| node.propose(Bytes::copy_from_slice(p)))
        .collect();
    futures_util::future::join_all(proposals).await
}

/// Proposes payloads on whichever node serves as leader, retrying a batch
/// whose proposal was refused before the log had it (`NotLeader`,
/// `Overloaded`); returns the payloads confirmed committed, in order.
pub(super) async fn propose_committed(nodes: &[ClusterNode], payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut committed = Vec::new();
    for p in payloads {
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < DEADLINE,
                "no leader committed {p:?} in time"
            );
            let Some(leader) = serving_leader(nodes) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match leader.propose(Bytes::copy_from_slice(p)).await {
                Ok(_) => {
                    committed.push(p.clone());
                    break;
                }
                // Certainly not in the log: safe to try again.
                Err(ReplicateError::NotLeader { .. } | ReplicateError::Overloaded) => {}
                // Outcome unknown: may commit later, must not be counted.
                Err(e) => {
                    eprintln!("outcome unknown for {p:?}: {e}");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    committed
}

/// Whether `needles` appear in `haystack` in the same order (others may be
/// between them).
pub(super) fn in_order(haystack: &[Vec<u8>], needles: &[Vec<u8>]) -> bool {
    let mut rest = haystack.iter();
    needles.iter().all(|needle| rest.any(|item| item == needle))
}
