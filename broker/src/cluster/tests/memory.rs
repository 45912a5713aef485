//! Three Raft nodes over the in-memory network: leader crash, an isolated
//! leader (cut, and blackholed with proposals racing the partition), a
//! rejoining follower, a wiped follower, a leader crash after the follower
//! with the shorter log timed out first (the longer log wins in one round).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::harness::{
    in_order, members, payload, propose_all, propose_committed, serving_leader, settings, wait_for,
    DEADLINE,
};
use super::mem_network::{Link, MemRouter};
use super::toy::Toy;
use crate::cluster::{
    ClusterNode, ClusterSettings, Member, NodeId, ReplicateError, Replicator, Role,
};

const IDS: [NodeId; 3] = [1, 2, 3];

struct MemCluster {
    router: MemRouter,
    dir: tempfile::TempDir,
    members: BTreeMap<NodeId, Member>,
    nodes: BTreeMap<NodeId, (ClusterNode, Arc<Toy>)>,
    tune: fn(&mut ClusterSettings),
}

impl MemCluster {
    async fn start(tune: fn(&mut ClusterSettings)) -> MemCluster {
        Self::start_only(&IDS, tune).await
    }

    /// Boots only `ids` of the three members.
    async fn start_only(ids: &[NodeId], tune: fn(&mut ClusterSettings)) -> MemCluster {
        let mut cluster = MemCluster {
            router: MemRouter::default(),
            dir: tempfile::tempdir().unwrap(),
            members: members(3, |id| format!("memory-{id}")),
            nodes: BTreeMap::new(),
            tune,
        };
        for &id in ids {
            cluster.boot(id, Arc::new(Toy::default())).await;
        }
        cluster
    }

    async fn boot(&mut self, id: NodeId, toy: Arc<Toy>) {
        let mut settings = settings(id, &self.members, self.dir.path());
        (self.tune)(&mut settings);
        let node = ClusterNode::start_with(settings, toy.clone(), self.router.network(id))
            .await
            .unwrap();
        self.router.register(id, node.raft().clone());
        self.nodes.insert(id, (node, toy));
    }

    /// Stops a node as a crash would look to its peers.
    async fn crash(&mut self, id: NodeId) -> Arc<Toy> {
        self.router.remove(id);
        let (node, toy) = self.nodes.remove(&id).unwrap();
        node.shutdown().await;
        toy
    }

    fn live(&self) -> Vec<ClusterNode> {
        self.nodes.values().map(|(node, _)| node.clone()).collect()
    }

    fn toy(&self, id: NodeId) -> Arc<Toy> {
        self.nodes[&id].1.clone()
    }

    async fn leader(&self) -> ClusterNode {
        let live = self.live();
        wait_for("a serving leader", || serving_leader(&live)).await
    }

    async fn stop(self) {
        for (node, _) in self.nodes.values() {
            node.shutdown().await;
        }
    }
}

fn no_tuning(_: &mut ClusterSettings) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_elects_a_new_leader_and_loses_nothing_committed() {
    let mut cluster = MemCluster::start(no_tuning).await;
    let old = cluster.leader().await;
    let first: Vec<_> = (0..20).map(|i| payload("before", i)).collect();
    let results = propose_all(&old, &first).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // In flight together, yet in call order in the log.
    let indexes: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");

    let old_id = old.node_id();
    cluster.crash(old_id).await;
    let new = cluster.leader().await;
    assert_ne!(new.node_id(), old_id);
    let second: Vec<_> = (0..10).map(|i| payload("after", i)).collect();
    let committed = propose_committed(&cluster.live(), &second).await;
    assert_eq!(
        committed.len(),
        10,
        "a stable two-node majority commits everything"
    );

    let everything: Vec<_> = first.iter().chain(&committed).cloned().collect();
    for id in IDS.into_iter().filter(|&id| id != old_id) {
        let toy = cluster.toy(id);
        wait_for("both survivors to apply everything", || {
            in_order(&toy.payloads(), &everything).then_some(())
        })
        .await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_commits_nothing_and_is_fenced() {
    let cluster = MemCluster::start(no_tuning).await;
    let old = cluster.leader().await;
    let old_id = old.node_id();
    let before = propose_committed(std::slice::from_ref(&old), &[payload("before", 0)]).await;
    assert_eq!(before.len(), 1);

    cluster.router.set_around(old_id, &IDS, Link::Cut);
    let lost = Bytes::from_static(b"never-committed");
    let proposal = old.propose(lost.clone());
    let outcome = tokio::time::timeout(DEADLINE, proposal)
        .await
        .expect("an isolated leader's proposal must resolve (fenced), not hang");
    assert!(
        matches!(
            outcome,
            Err(ReplicateError::Fenced
                | ReplicateError::NotLeader { .. }
                | ReplicateError::Abandoned)
        ),
        "an isolated leader must not confirm a commit: {outcome:?}"
    );
    assert!(old.is_fenced(), "the isolated leader reports itself fenced");
    assert!(old.status().fenced);

    // The majority side elects a leader of its own and keeps committing.
    let majority: Vec<_> = cluster
        .live()
        .into_iter()
        .filter(|node| node.node_id() != old_id)
        .collect();
    let new = wait_for("a leader on the majority side", || {
        serving_leader(&majority)
    })
    .await;
    assert!(new.status().term > old.status().term || old.role() != Role::Leader);
    let after = propose_committed(&majority, &[payload("after", 0), payload("after", 1)]).await;
    assert_eq!(after.len(), 2);

    // Healed, the old leader follows and its uncommitted entry is gone.
    cluster.router.heal();
    let everything: Vec<_> = before.iter().chain(&after).cloned().collect();
    let toy = cluster.toy(old_id);
    wait_for("the old leader to catch up", || {
        in_order(&toy.payloads(), &everything).then_some(())
    })
    .await;
    assert_ne!(old.role(), Role::Leader);
    for id in IDS {
        let payloads = cluster.toy(id).payloads();
        assert!(
            !payloads.iter().any(|p| p.as_slice() == lost.as_ref()),
            "node {id} applied the isolated leader's entry"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_leader_confirms_only_what_the_majority_has() {
    let cluster = MemCluster::start(no_tuning).await;
    let old = cluster.leader().await;
    let old_id = old.node_id();
    // Proposals in flight when its links go silent (blackholed, not cut:
    // its RPCs wait out their timeouts): some may have reached a majority
    // first, none of the others may be confirmed.
    let first: Vec<_> = (0..10).map(|i| payload("racing", i)).collect();
    let racing: Vec<_> = first
        .iter()
        .map(|p| old.propose(Bytes::copy_from_slice(p)))
        .collect();
    cluster.router.set_around(old_id, &IDS, Link::Blackhole);
    let late: Vec<_> = (0..10).map(|i| payload("late", i)).collect();
    let late_proposals: Vec<_> = late
        .iter()
        .map(|p| old.propose(Bytes::copy_from_slice(p)))
        .collect();
    let racing = tokio::time::timeout(DEADLINE, futures_util::future::join_all(racing))
        .await
        .expect("proposals of a blackholed leader resolve");
    let late_results =
        tokio::time::timeout(DEADLINE, futures_util::future::join_all(late_proposals))
            .await
            .expect("proposals of a blackholed leader resolve");
    assert!(
        late_results.iter().all(Result::is_err),
        "a leader cut off before a proposal must not confirm it: {late_results:?}"
    );
    assert!(old.is_fenced() || old.role() != Role::Leader);

    let majority: Vec<_> = cluster
        .live()
        .into_iter()
        .filter(|node| node.node_id() != old_id)
        .collect();
    let after = propose_committed(&majority, &[payload("after", 0)]).await;
    assert_eq!(after.len(), 1, "the majority side commits");
    // Every confirmation the old leader gave is in the majority's log.
    let confirmed: Vec<_> = first
        .iter()
        .zip(&racing)
        .filter(|(_, result)| result.is_ok())
        .map(|(p, _)| p.clone())
        .collect();
    for id in IDS.into_iter().filter(|&id| id != old_id) {
        let toy = cluster.toy(id);
        wait_for("the majority to have every confirmed entry", || {
            in_order(&toy.payloads(), &confirmed).then_some(())
        })
        .await;
        assert!(
            !toy.payloads().iter().any(|p| late.contains(p)),
            "node {id} applied an entry proposed after the blackhole"
        );
    }
    eprintln!(
        "{} of {} racing proposals confirmed before the blackhole",
        confirmed.len(),
        first.len()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoining_follower_catches_up() {
    let mut cluster = MemCluster::start(no_tuning).await;
    let leader = cluster.leader().await;
    let follower = IDS.into_iter().find(|&id| id != leader.node_id()).unwrap();
    // Its links blackholed both ways (one way only would let its election
    // attempts through and depose the leader meanwhile): it falls behind.
    cluster.router.set_around(follower, &IDS, Link::Blackhole);
    // The others' link is slow but up: commits still need it.
    let others: Vec<_> = IDS.into_iter().filter(|&id| id != follower).collect();
    cluster
        .router
        .set(others[0], others[1], Link::Delay(Duration::from_millis(20)));
    let payloads: Vec<_> = (0..30).map(|i| payload("while-away", i)).collect();
    let committed = propose_committed(&cluster.live(), &payloads).await;
    assert_eq!(committed.len(), 30);
    assert!(
        cluster.toy(follower).payloads().len() < 30,
        "the cut follower should not have everything yet"
    );

    cluster.router.heal();
    let toy = cluster.toy(follower);
    wait_for("the follower to catch up", || {
        in_order(&toy.payloads(), &committed).then_some(())
    })
    .await;

    // And a follower restarted from its own log (its store lost nothing)
    // rejoins as well.
    let toy = cluster.crash(follower).await;
    let more = propose_committed(&cluster.live(), &[payload("later", 0)]).await;
    cluster.boot(follower, toy.clone()).await;
    let everything: Vec<_> = committed.iter().chain(&more).cloned().collect();
    wait_for("the restarted follower to catch up", || {
        (in_order(&toy.payloads(), &everything) && toy.payloads().len() == everything.len())
            .then_some(())
    })
    .await;
    cluster.stop().await;
}

fn snapshot_often(settings: &mut ClusterSettings) {
    settings.snapshot_every = 5;
    settings.keep_behind_snapshot = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_is_restored_by_snapshot() {
    let mut cluster = MemCluster::start(snapshot_often).await;
    let leader = cluster.leader().await;
    let follower = IDS.into_iter().find(|&id| id != leader.node_id()).unwrap();
    let payloads: Vec<_> = (0..40).map(|i| payload("snap", i)).collect();
    let committed = propose_committed(&cluster.live(), &payloads).await;
    assert_eq!(committed.len(), 40);
    wait_for("the leader to snapshot and purge", || {
        let status = leader.status();
        (status.snapshot_index.is_some() && status.purged_index.is_some()).then_some(())
    })
    .await;

    cluster.crash(follower).await;
    std::fs::remove_dir_all(cluster.dir.path().join(format!("node-{follower}"))).unwrap();
    let fresh = Arc::new(Toy::default());
    cluster.boot(follower, fresh.clone()).await;
    wait_for("the wiped follower to be restored", || {
        (fresh.payloads() == committed).then_some(())
    })
    .await;
    assert!(
        fresh.installs() > 0,
        "the follower was restored by a snapshot install"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_store_lost_its_state_rebuilds_it_from_its_own_disk() {
    let mut cluster = MemCluster::start(snapshot_often).await;
    let leader = cluster.leader().await;
    let follower = IDS.into_iter().find(|&id| id != leader.node_id()).unwrap();
    let payloads: Vec<_> = (0..23).map(|i| payload("own-disk", i)).collect();
    let committed = propose_committed(&cluster.live(), &payloads).await;
    assert_eq!(committed.len(), 23);
    let toy = cluster.toy(follower);
    let node = cluster.nodes[&follower].0.clone();
    wait_for("the follower to apply everything and snapshot", || {
        (toy.payloads() == committed && node.status().snapshot_index.is_some()).then_some(())
    })
    .await;

    // Restarted alone (cut from both peers) with a store that kept nothing:
    // the persisted snapshot restores it and the log past the snapshot is
    // applied again, without any help from the leader.
    cluster.crash(follower).await;
    cluster.router.set_around(follower, &IDS, Link::Cut);
    let fresh = Arc::new(Toy::default());
    cluster.boot(follower, fresh.clone()).await;
    assert_eq!(
        fresh.installs(),
        1,
        "restored from its own snapshot on open"
    );
    wait_for("the log past the snapshot to be applied again", || {
        (fresh.payloads() == committed).then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_member_group_commits_and_keeps_its_lease() {
    let router = MemRouter::default();
    let dir = tempfile::tempdir().unwrap();
    let members = members(1, |id| format!("memory-{id}"));
    let toy = Arc::new(Toy::default());
    let node = ClusterNode::start_with(
        settings(1, &members, dir.path()),
        toy.clone(),
        router.network(1),
    )
    .await
    .unwrap();
    router.register(1, node.raft().clone());
    wait_for("the single member to lead", || {
        serving_leader(std::slice::from_ref(&node))
    })
    .await;
    let first = propose_all(&node, &[payload("solo", 0)]).await;
    assert!(first[0].is_ok(), "{first:?}");
    // Well past the election timeout with no peers at all: a quorum of one
    // still acknowledges, so the lease holds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!node.is_fenced(), "{:?}", node.status());
    let second = propose_all(&node, &[payload("solo", 1)]).await;
    assert!(second[0].is_ok(), "{second:?}");
    assert_eq!(toy.payloads(), vec![payload("solo", 0), payload("solo", 1)]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cluster_forms_even_if_its_first_member_is_down() {
    // Node 1 would form the cluster at once; without it, 2 and 3 do so after
    // their wait, and later node 1 joins what they formed.
    let mut cluster = MemCluster::start_only(&[2, 3], no_tuning).await;
    let leader = cluster.leader().await;
    assert_ne!(leader.node_id(), 1);
    let committed = propose_committed(&cluster.live(), &[payload("late", 0)]).await;
    assert_eq!(committed.len(), 1);
    cluster.boot(1, Arc::new(Toy::default())).await;
    let toy = cluster.toy(1);
    wait_for("the late first member to catch up", || {
        (toy.payloads() == committed).then_some(())
    })
    .await;
    assert_eq!(cluster.nodes[&1].0.status().members.len(), 3);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longer_log_wins_the_first_round_when_the_shorter_log_times_out_first() {
    let mut cluster = MemCluster::start(no_tuning).await;
    let old = cluster.leader().await;
    let old_id = old.node_id();
    let term = old.status().term;
    let mut followers = IDS.into_iter().filter(|&id| id != old_id);
    let (short, long) = (followers.next().unwrap(), followers.next().unwrap());
    // `short` stops hearing from the leader: its log falls behind, and its
    // election timer runs out long before `long`'s.
    cluster.router.set(old_id, short, Link::Cut);
    cluster.router.set(short, old_id, Link::Cut);
    let payloads: Vec<_> = (0..5).map(|i| payload("long-only", i)).collect();
    let committed = propose_committed(std::slice::from_ref(&old), &payloads).await;
    assert_eq!(committed.len(), 5, "the leader and `long` commit");
    let short_node = cluster.nodes[&short].0.clone();
    let long_node = cluster.nodes[&long].0.clone();
    // It asked while the leader lived and was refused (`long` still hears
    // from the leader): it did not campaign, so no term was spent.
    wait_for("the shorter log's pre-vote to be refused", || {
        (short_node.status().pre_votes_refused > 0).then_some(())
    })
    .await;
    assert_eq!(short_node.status().campaigns, 0);
    assert_eq!(short_node.status().term, term);
    assert!(short_node.status().last_log_index < long_node.status().last_log_index);

    cluster.crash(old_id).await;
    let live = cluster.live();
    let new = wait_for("a new leader", || serving_leader(&live)).await;
    assert_eq!(new.node_id(), long, "the longer log is elected");
    // One round: one term past the old leader's, one campaign in all.
    assert_eq!(new.status().term, term + 1, "{:?}", new.status());
    assert_eq!(long_node.status().campaigns, 1, "{:?}", long_node.status());
    assert_eq!(
        short_node.status().campaigns,
        0,
        "{:?}",
        short_node.status()
    );
    let after = propose_committed(&live, &[payload("after", 0)]).await;
    assert_eq!(after.len(), 1);
    let everything: Vec<_> = committed.iter().chain(&after).cloned().collect();
    let toy = cluster.toy(short);
    wait_for("the shorter log to catch up from the new leader", || {
        in_order(&toy.payloads(), &everything).then_some(())
    })
    .await;
    cluster.stop().await;
}
