//! Membership changes on a running cluster, on the leader: add a node as a
//! learner (it receives the log but does not vote), promote a learner to a
//! voter, remove a node. The admin API (`/api/cluster/members`) and
//! `ferromq cluster add|remove` call these.
//!
//! A member's addresses (its cluster address, where peers dial it, and the
//! client addresses handed out in "not the leader" redirects) travel inside
//! the membership entry of the Raft log, so every node, including ones that
//! start later, knows them without editing its `[cluster]` members; the
//! configured members only seed the first membership.
//!
//! Each change is one membership entry (a promotion or removal of a voter:
//! openraft's joint configuration, two entries) committed by a quorum
//! before the call returns; a change that cannot commit in
//! [`CHANGE_TIMEOUT`] is reported as failed (the cluster may still apply it
//! later: `/api/cluster` tells).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::node::ClusterNode;
use super::status::LeaderInfo;
use super::types::{Member, NodeId};
use super::{Replicator, Role};

/// Longest a membership change may take to commit. A change commits in
/// one or two round trips when a quorum is up; `POST
/// /api/cluster/members` may make two changes and wait for a catch-up, all
/// within the admin endpoint's 30 s request limit.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a membership change was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Changes are made on the leader only.
    #[error("{}", not_leader_text(.leader))]
    NotLeader {
        /// The leader, if one is known (boxed: its addresses make it large,
        /// and every `Result` of a membership change carries this error).
        leader: Option<Box<LeaderInfo>>,
    },
    /// The request is malformed (names the field).
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with the current membership.
    #[error("{0}")]
    Conflict(String),
    /// No member has this id.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// Raft refused or did not commit the change in time.
    #[error("{0}")]
    Failed(String),
}

fn not_leader_text(leader: &Option<Box<LeaderInfo>>) -> String {
    match leader.as_deref() {
        Some(leader) if !leader.addresses.admin.is_empty() => format!(
            "not the leader: node {} leads; send membership changes to its admin endpoint {}",
            leader.id, leader.addresses.admin
        ),
        Some(leader) => format!(
            "not the leader: node {} leads (its admin address is not configured)",
            leader.id
        ),
        None => "not the leader, and no leader is elected now: retry in a few seconds".into(),
    }
}

/// `host:port` as clients dial it, or `""` (not offered).
fn client_address(field: &str, value: &str) -> Result<(), MembershipError> {
    if value.is_empty() {
        return Ok(());
    }
    let valid = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if valid {
        Ok(())
    } else {
        Err(MembershipError::Invalid(format!(
            "`{field}`: `{value}` is not an address such as \"broker4.example:61613\" (\"\" = not offered)"
        )))
    }
}

/// Checks a new member against the current ones (`nodes`): a fresh id of 1
/// or more, a cluster address that is `ip:port` and no other member's.
pub(crate) fn check_new_member(
    id: NodeId,
    member: &Member,
    nodes: &BTreeMap<NodeId, Member>,
) -> Result<(), MembershipError> {
    if id == 0 {
        return Err(MembershipError::Invalid(
            "`id`: must be 1 or more".to_owned(),
        ));
    }
    let addr: SocketAddr = member.cluster.parse().map_err(|_| {
        MembershipError::Invalid(format!(
            "`cluster`: `{}` is not a socket address such as \"10.0.0.4:61630\"",
            member.cluster
        ))
    })?;
    client_address("stomp", &member.stomp)?;
    client_address("stomp_tls", &member.stomp_tls)?;
    client_address("websocket", &member.websocket)?;
    client_address("websocket_tls", &member.websocket_tls)?;
    client_address("native", &member.native)?;
    client_address("native_tls", &member.native_tls)?;
    client_address("admin", &member.admin)?;
    if nodes.contains_key(&id) {
        return Err(MembershipError::Conflict(format!(
            "node {id} is already a member (remove it first to change its addresses)"
        )));
    }
    if let Some((other, _)) = nodes
        .iter()
        .find(|(_, m)| m.cluster.parse::<SocketAddr>().ok() == Some(addr))
    {
        return Err(MembershipError::Conflict(format!(
            "{addr} is already the cluster address of node {other}"
        )));
    }
    Ok(())
}

/// openraft's answer to a change, as ours.
fn change_error(
    error: RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    node: &ClusterNode,
) -> MembershipError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MembershipError::NotLeader {
            leader: node.leader().map(Box::new),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
            ChangeMembershipError::InProgress(_) => MembershipError::Conflict(
                "another membership change is in progress; retry when it has committed".into(),
            ),
            ChangeMembershipError::EmptyMembership(_) => {
                MembershipError::Conflict("the change would leave no voter".into())
            }
            ChangeMembershipError::LearnerNotFound(e) => MembershipError::NotMember(e.node_id),
        },
        RaftError::Fatal(e) => MembershipError::Failed(format!("Raft has stopped: {e}")),
    }
}

/// What a successful `add_learner` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The learner has every entry the leader had when it was added.
    CaughtUp,
    /// It is still receiving the log (or a snapshot); it can be promoted
    /// once `/api/cluster` shows its lag near zero.
    CatchingUp,
}

impl ClusterNode {
    /// The current membership's nodes and voters; `NotLeader` unless this
    /// node leads.
    fn leading_membership(
        &self,
    ) -> Result<(BTreeMap<NodeId, Member>, BTreeSet<NodeId>), MembershipError> {
        if self.role() != Role::Leader {
            return Err(MembershipError::NotLeader {
                leader: self.leader().map(Box::new),
            });
        }
        let metrics = self.raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let nodes = membership.nodes().map(|(id, m)| (*id, m.clone())).collect();
        Ok((nodes, membership.voter_ids().collect()))
    }

    /// Adds node `id` at `member`'s addresses as a learner, then waits up
    /// to `wait` for it to catch up.
    pub async fn add_learner(
        &self,
        id: NodeId,
        member: Member,
        wait: Duration,
    ) -> Result<Added, MembershipError> {
        let (nodes, _) = self.leading_membership()?;
        check_new_member(id, &member, &nodes)?;
        let added = tokio::time::timeout(
            CHANGE_TIMEOUT,
            self.raft().add_learner(id, member.clone(), false),
        )
        .await
        .map_err(|_| timed_out("adding the learner"))?
        .map_err(|e| change_error(e, self))?;
        tracing::info!(node = id, cluster = %member.cluster, index = added.log_id.index, "cluster: added a learner");
        // Caught up: it has every entry up to the one that added it.
        let target = added.log_id.index;
        let caught_up = self
            .raft()
            .wait(Some(wait))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .and_then(|matched| matched.as_ref())
                        .is_some_and(|matched| matched.index >= target)
                },
                "the learner catches up",
            )
            .await
            .is_ok();
        Ok(if caught_up {
            Added::CaughtUp
        } else {
            Added::CatchingUp
        })
    }

    /// Makes learner `id` a voter.
    pub async fn promote(&self, id: NodeId) -> Result<(), MembershipError> {
        let (nodes, voters) = self.leading_membership()?;
        if !nodes.contains_key(&id) {
            return Err(MembershipError::NotMember(id));
        }
        if voters.contains(&id) {
            return Err(MembershipError::Conflict(format!(
                "node {id} is already a voter"
            )));
        }
        self.change(
            ChangeMembers::AddVoterIds(BTreeSet::from([id])),
            "promoting",
        )
        .await?;
        tracing::info!(node = id, "cluster: promoted a learner to voter");
        Ok(())
    }

    /// Removes node `id` (voter or learner) from the cluster. The leader
    /// does not remove itself: stop it, and remove it through the new one.
    pub async fn remove(&self, id: NodeId) -> Result<(), MembershipError> {
        let (nodes, voters) = self.leading_membership()?;
        if !nodes.contains_key(&id) {
            return Err(MembershipError::NotMember(id));
        }
        if id == self.node_id() {
            return Err(MembershipError::Conflict(format!(
                "node {id} is the leader answering this call: stop it so another is elected, then remove it through the new leader"
            )));
        }
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        // `retain = false`: a removed voter leaves the node list too, so
        // the leader stops replicating to it.
        self.change(change, "removing").await?;
        tracing::info!(node = id, "cluster: removed a node");
        Ok(())
    }

    async fn change(
        &self,
        change: ChangeMembers<NodeId, Member>,
        what: &str,
    ) -> Result<(), MembershipError> {
        tokio::time::timeout(CHANGE_TIMEOUT, self.raft().change_membership(change, false))
            .await
            .map_err(|_| timed_out(what))?
            .map_err(|e| change_error(e, self))?;
        Ok(())
    }
}

fn timed_out(what: &str) -> MembershipError {
    MembershipError::Failed(format!(
        "{what} did not commit within {} s (is a quorum up?); GET /api/cluster shows whether it took effect",
        CHANGE_TIMEOUT.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(cluster: &str) -> Member {
        Member {
            cluster: cluster.into(),
            ..Member::default()
        }
    }

    #[test]
    fn a_new_member_needs_a_fresh_id_and_address() {
        let nodes: BTreeMap<NodeId, Member> = [(1, member("127.0.0.1:61630"))].into();
        assert_eq!(
            check_new_member(2, &member("127.0.0.1:61631"), &nodes),
            Ok(())
        );
        let refused = |id, m: Member| check_new_member(id, &m, &nodes).unwrap_err().to_string();
        assert!(refused(0, member("127.0.0.1:61631")).contains("`id`"));
        assert!(refused(1, member("127.0.0.1:61631")).contains("node 1 is already a member"));
        assert!(
            refused(2, member("127.0.0.1:61630")).contains("already the cluster address of node 1")
        );
        assert!(refused(2, member("localhost")).contains("`cluster`"));
        let mut bad_client = member("127.0.0.1:61631");
        bad_client.stomp = "no-port".into();
        assert!(refused(2, bad_client).contains("`stomp`"));
    }

    #[test]
    fn not_the_leader_names_the_leader_and_its_admin_address() {
        let leader = |admin: &str| LeaderInfo {
            id: 3,
            addresses: Member {
                admin: admin.into(),
                ..member("127.0.0.1:61632")
            },
        };
        let text = MembershipError::NotLeader {
            leader: Some(Box::new(leader("127.0.0.1:8163"))),
        }
        .to_string();
        assert!(text.contains("node 3 leads"), "{text}");
        assert!(text.contains("127.0.0.1:8163"), "{text}");
        let text = MembershipError::NotLeader {
            leader: Some(Box::new(leader(""))),
        }
        .to_string();
        assert!(text.contains("node 3 leads"), "{text}");
        let none = MembershipError::NotLeader { leader: None }.to_string();
        assert!(none.contains("no leader"), "{none}");
    }
}
