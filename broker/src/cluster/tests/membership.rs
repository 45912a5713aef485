//! Membership changes over the in-memory network: a joining node is added
//! as a learner (and receives the log), promoted to voter and removed, and
//! every refusal (on a follower, twice, unknown node, the leader itself) is
//! the error it should be.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::harness::{members, payload, propose_committed, serving_leader, settings, wait_for};
use super::mem_network::MemRouter;
use super::toy::Toy;
use crate::cluster::{
    Added, ClusterNode, Member, MembershipError, NodeId, Replicator, Role, CHANGE_TIMEOUT,
};

fn member_4() -> Member {
    Member {
        cluster: "127.0.0.1:1004".into(),
        stomp: "127.0.0.1:2004".into(),
        native: String::new(),
        admin: "127.0.0.1:3004".into(),
        // Travels in the membership entry like the others.
        websocket: "127.0.0.1:4004".into(),
        ..Member::default()
    }
}

fn voter_flags(node: &ClusterNode) -> Vec<(NodeId, bool)> {
    node.status()
        .members
        .iter()
        .map(|m| (m.id, m.voter))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_is_added_promoted_and_removed() {
    let router = MemRouter::default();
    let dir = tempfile::tempdir().unwrap();
    let seed = members(3, |id| format!("memory-{id}"));
    let mut nodes: BTreeMap<NodeId, (ClusterNode, Arc<Toy>)> = BTreeMap::new();
    for id in 1..=3 {
        let toy = Arc::new(Toy::default());
        let node = ClusterNode::start_with(
            settings(id, &seed, dir.path()),
            toy.clone(),
            router.network(id),
        )
        .await
        .unwrap();
        router.register(id, node.raft().clone());
        nodes.insert(id, (node, toy));
    }
    // Node 4 joins: it knows only itself and never forms a cluster.
    let mut joining = settings(4, &BTreeMap::from([(4, member_4())]), dir.path());
    joining.join = true;
    let toy_4 = Arc::new(Toy::default());
    let fourth = ClusterNode::start_with(joining, toy_4.clone(), router.network(4))
        .await
        .unwrap();
    router.register(4, fourth.raft().clone());
    let voters: Vec<ClusterNode> = nodes.values().map(|(n, _)| n.clone()).collect();
    let leader = wait_for("a serving leader", || serving_leader(&voters)).await;
    let committed = propose_committed(&voters, &[payload("before", 0)]).await;
    assert_eq!(committed.len(), 1);
    assert_eq!(fourth.role(), Role::Learner);
    assert!(
        fourth.leader().is_none(),
        "a joining node has no cluster of its own"
    );

    // A follower refuses, naming the leader.
    let follower = voters
        .iter()
        .find(|n| n.node_id() != leader.node_id())
        .unwrap();
    match follower.add_learner(4, member_4(), CHANGE_TIMEOUT).await {
        Err(MembershipError::NotLeader { leader: Some(info) }) => {
            assert_eq!(info.id, leader.node_id());
            assert_eq!(
                info.addresses.admin,
                format!("127.0.0.1:{}", 18000 + info.id)
            );
        }
        other => panic!("expected NotLeader naming the leader, got {other:?}"),
    }

    // Added as a learner: it catches up and receives what is committed.
    let added = leader
        .add_learner(4, member_4(), CHANGE_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(added, Added::CaughtUp);
    assert_eq!(
        voter_flags(&leader),
        [(1, true), (2, true), (3, true), (4, false)]
    );
    assert!(matches!(
        leader.add_learner(4, member_4(), CHANGE_TIMEOUT).await,
        Err(MembershipError::Conflict(_))
    ));
    let committed = propose_committed(&voters, &[payload("learner", 0)]).await;
    wait_for("the learner to apply", || {
        toy_4.payloads().contains(&committed[0]).then_some(())
    })
    .await;
    // It knows the leader and the new member's addresses from the log.
    wait_for("the learner to know the leader", || {
        (fourth.leader().map(|l| l.id) == Some(leader.node_id())).then_some(())
    })
    .await;
    let known = fourth.status();
    let me = known.members.iter().find(|m| m.id == 4).unwrap();
    assert_eq!(me.addresses, member_4());

    // Promoted.
    leader.promote(4).await.unwrap();
    assert_eq!(
        voter_flags(&leader),
        [(1, true), (2, true), (3, true), (4, true)]
    );
    assert!(matches!(
        leader.promote(4).await,
        Err(MembershipError::Conflict(_))
    ));
    wait_for("the new voter to follow", || {
        (fourth.role() == Role::Follower).then_some(())
    })
    .await;

    // Removed; the leader does not remove itself; unknown ids are refused.
    assert!(matches!(
        leader.remove(leader.node_id()).await,
        Err(MembershipError::Conflict(_))
    ));
    leader.remove(4).await.unwrap();
    assert_eq!(voter_flags(&leader), [(1, true), (2, true), (3, true)]);
    assert_eq!(leader.remove(4).await, Err(MembershipError::NotMember(4)));
    assert_eq!(leader.promote(9).await, Err(MembershipError::NotMember(9)));
    // The three go on committing without it.
    router.remove(4);
    fourth.shutdown().await;
    let committed = propose_committed(&voters, &[payload("after", 0)]).await;
    assert_eq!(committed.len(), 1);
    for (node, _) in nodes.values() {
        node.shutdown().await;
    }
}
