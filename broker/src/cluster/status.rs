//! What `/api/cluster`, the `ferromq_raft_*` metrics and `ferromq cluster
//! status` show: a serde snapshot of one node's view of the cluster, built
//! from openraft's metrics ([`ClusterStatus::from_metrics`]), and the
//! counters of role changes and elections the node keeps ([`RoleCounters`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use super::types::{LogIndex, Member, NodeId};

/// A node's role in the Raft group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Serves clients and replicates.
    Leader,
    /// Replicates from the leader; redirects clients.
    Follower,
    /// Campaigning in an election.
    Candidate,
    /// Receives the log but does not vote (being added).
    Learner,
    /// Raft has stopped on this node.
    Stopped,
}

/// The leader, as clients are redirected to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Its node id.
    pub id: NodeId,
    /// Its addresses (empty strings where unknown).
    pub addresses: Member,
}

/// One member of the current membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its node id.
    pub id: NodeId,
    /// Whether it votes (false for a learner).
    pub voter: bool,
    /// Its addresses.
    pub addresses: Member,
}

/// How far one follower is behind this leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerStatus {
    /// Its node id.
    pub id: NodeId,
    /// The last index known to be on its disk.
    pub matched_index: Option<LogIndex>,
    /// Entries the leader has that it does not.
    pub lag: u64,
}

/// One node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The cluster's id (`cluster.cluster_id`).
    pub cluster_id: String,
    /// This node.
    pub node_id: NodeId,
    /// Its role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<LeaderInfo>,
    /// The last index in this node's log.
    pub last_log_index: Option<LogIndex>,
    /// The last index this node knows to be committed (on a majority's
    /// disk). Filled in by `ClusterNode::report` from Raft's own state
    /// (openraft 0.9 publishes no commit index in its metrics); `None` in
    /// `Replicator::status`, or while nothing is committed.
    pub commit_index: Option<LogIndex>,
    /// The last index applied here (at or below the commit index).
    pub applied_index: Option<LogIndex>,
    /// The last index covered by this node's snapshot.
    pub snapshot_index: Option<LogIndex>,
    /// The log is purged up to here (inclusive).
    pub purged_index: Option<LogIndex>,
    /// On the leader: time since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// Whether this node must not send receipts (see `Replicator::is_fenced`).
    pub fenced: bool,
    /// The current membership.
    pub members: Vec<MemberStatus>,
    /// On the leader: each other member's replication progress.
    pub followers: Vec<FollowerStatus>,
    /// Role changes this node has seen since it started.
    pub role_changes: u64,
    /// Terms this node has seen begin since it started: each new term is
    /// one election (won, lost or split).
    pub elections: u64,
    /// Elections this node started since it started (each after a
    /// quorum's pre-vote, see `election`).
    #[serde(default)]
    pub campaigns: u64,
    /// Rounds of pre-votes this node asked for and did not get a quorum
    /// of (a shorter log, a live leader, unreachable peers).
    #[serde(default)]
    pub pre_votes_refused: u64,
}

/// Counts role changes and new terms, as the node's watcher sees them, and
/// this node's own campaigns and refused pre-votes, as its election timer
/// counts them.
#[derive(Debug, Default)]
pub(crate) struct RoleCounters {
    role_changes: AtomicU64,
    elections: AtomicU64,
    campaigns: AtomicU64,
    pre_votes_refused: AtomicU64,
}

impl RoleCounters {
    pub(crate) fn role_changed(&self) {
        self.role_changes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn terms_began(&self, terms: u64) {
        self.elections.fetch_add(terms, Ordering::Relaxed);
    }

    pub(crate) fn campaigned(&self) {
        self.campaigns.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn pre_vote_refused(&self) {
        self.pre_votes_refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// The role openraft's server state stands for.
pub(crate) fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Stopped,
    }
}

impl ClusterStatus {
    /// The status openraft's `metrics` describe. `leader` is the leader's
    /// addresses as the node resolves them; `commit_index` is left `None`
    /// (openraft 0.9 publishes no commit index in its metrics: the node
    /// asks Raft's state for it when a report is wanted).
    pub(crate) fn from_metrics(
        cluster_id: &str,
        metrics: &RaftMetrics<NodeId, Member>,
        leader: Option<LeaderInfo>,
        fenced: bool,
        counters: &RoleCounters,
    ) -> ClusterStatus {
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, addresses)| MemberStatus {
                id: *id,
                voter: voters.contains(id),
                addresses: addresses.clone(),
            })
            .collect();
        let followers = metrics
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != metrics.id)
            .map(|(id, matched)| {
                let matched_index = matched.as_ref().map(|log_id| log_id.index);
                FollowerStatus {
                    id: *id,
                    matched_index,
                    lag: lag(matched_index, metrics.last_log_index),
                }
            })
            .collect();
        ClusterStatus {
            cluster_id: cluster_id.to_owned(),
            node_id: metrics.id,
            role: role_of(metrics.state),
            term: metrics.current_term,
            leader,
            last_log_index: metrics.last_log_index,
            commit_index: None,
            applied_index: metrics.last_applied.as_ref().map(|id| id.index),
            snapshot_index: metrics.snapshot.as_ref().map(|id| id.index),
            purged_index: metrics.purged.as_ref().map(|id| id.index),
            millis_since_quorum_ack: metrics.millis_since_quorum_ack,
            fenced,
            members,
            followers,
            role_changes: counters.role_changes.load(Ordering::Relaxed),
            elections: counters.elections.load(Ordering::Relaxed),
            campaigns: counters.campaigns.load(Ordering::Relaxed),
            pre_votes_refused: counters.pre_votes_refused.load(Ordering::Relaxed),
        }
    }
}

/// Entries a follower that has `matched` lacks of a log ending at `last`.
/// With nothing matched it lacks every entry (indexes start at 0).
fn lag(matched: Option<LogIndex>, last: Option<LogIndex>) -> u64 {
    match (matched, last) {
        (Some(matched), Some(last)) => last.saturating_sub(matched),
        (None, Some(last)) => last + 1,
        (_, None) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_admin_api_shows_it() {
        let status = ClusterStatus {
            cluster_id: "c".into(),
            node_id: 2,
            role: Role::Leader,
            term: 7,
            leader: Some(LeaderInfo {
                id: 2,
                addresses: Member {
                    cluster: "127.0.0.1:61631".into(),
                    stomp: "127.0.0.1:61623".into(),
                    ..Member::default()
                },
            }),
            last_log_index: Some(41),
            commit_index: Some(41),
            applied_index: Some(41),
            snapshot_index: None,
            purged_index: None,
            millis_since_quorum_ack: Some(12),
            fenced: false,
            members: Vec::new(),
            followers: vec![FollowerStatus {
                id: 3,
                matched_index: Some(39),
                lag: 2,
            }],
            role_changes: 3,
            elections: 2,
            campaigns: 1,
            pre_votes_refused: 4,
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["role"], "leader");
        assert_eq!(json["leader"]["addresses"]["stomp"], "127.0.0.1:61623");
        assert_eq!(json["followers"][0]["lag"], 2);
        assert_eq!(json["commit_index"], 41);
        let back: ClusterStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn lag_counts_the_entries_a_follower_lacks() {
        assert_eq!(lag(Some(39), Some(41)), 2);
        assert_eq!(lag(Some(41), Some(41)), 0);
        // Nothing matched yet: entries 0..=41 are all missing.
        assert_eq!(lag(None, Some(41)), 42);
        assert_eq!(lag(None, None), 0);
        // A follower reported ahead of a stale leader view is not negative.
        assert_eq!(lag(Some(50), Some(41)), 0);
    }

    #[test]
    fn metrics_become_members_with_voters_and_learners() {
        use std::collections::{BTreeMap, BTreeSet};

        use crate::cluster::types::{Membership, StoredMembership};

        let nodes: BTreeMap<NodeId, Member> = (1..=4)
            .map(|id| {
                (
                    id,
                    Member {
                        cluster: format!("127.0.0.1:{}", 61630 + id),
                        ..Member::default()
                    },
                )
            })
            .collect();
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
        let mut metrics = RaftMetrics::new_initial(1);
        metrics.state = ServerState::Leader;
        metrics.current_term = 4;
        metrics.last_log_index = Some(10);
        metrics.membership_config = std::sync::Arc::new(StoredMembership::new(None, membership));
        let counters = RoleCounters::default();
        counters.role_changed();
        counters.terms_began(2);
        let status = ClusterStatus::from_metrics("c", &metrics, None, false, &counters);
        let voters: Vec<(NodeId, bool)> = status.members.iter().map(|m| (m.id, m.voter)).collect();
        assert_eq!(voters, [(1, true), (2, true), (3, true), (4, false)]);
        assert_eq!(status.role, Role::Leader);
        assert_eq!((status.role_changes, status.elections), (1, 2));
        assert_eq!(status.members[3].addresses.cluster, "127.0.0.1:61634");
    }
}
