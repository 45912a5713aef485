//! What `/api/cluster` and `ferromq cluster status` show: a serde snapshot
//! of one node's view of the cluster, built from openraft's metrics.

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
    /// The last index applied here; on the leader every applied entry is
    /// committed, and a commit is applied within moments (openraft 0.9
    /// reports no separate commit index).
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_admin_api_shows_it() {
        let status = ClusterStatus {
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
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["role"], "leader");
        assert_eq!(json["leader"]["addresses"]["stomp"], "127.0.0.1:61623");
        assert_eq!(json["followers"][0]["lag"], 2);
        let back: ClusterStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
