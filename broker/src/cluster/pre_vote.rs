//! The pre-vote: the question a node asks the other voters before it starts
//! a real election ("would you vote for me at term T+1, with my last log id
//! L?"), how a voter judges it, and the transport trait that carries it
//! ([`PreVoteNetwork`]: the peer protocol, or the tests' in-memory network).
//!
//! Why it exists: openraft 0.9's own election timer lets the follower with
//! the shorter log campaign first after a leader dies; it is refused, and
//! the follower that could win is then delayed by openraft's "seen a greater
//! log" penalty (BENCHMARKS.md, "Cluster failover time": the 6 slow kills).
//! A pre-vote changes no state anywhere (no term, no vote is written), so a
//! node that would lose never disturbs anyone, and only a node a majority
//! would elect calls openraft's election (`election`).
//!
//! A voter answers yes only if it would grant the real vote by openraft's
//! own rules, read from its Raft state: the candidate is a voter of its
//! membership (or it has none yet), it is not the leader itself, its lease on a leader has
//! expired (openraft refuses votes while `now <= vote time + lease`, the
//! lease being `election_timeout_max`), and the candidate's last log id is
//! at least its own. A yes therefore predicts the real vote; it never
//! replaces it (safety stays with openraft's vote).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use openraft::ServerState;

use super::types::{LogId, Member, NodeId, Raft, Vote};

/// "Would you vote for me?"
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreVoteRequest {
    /// The node asking.
    pub candidate: NodeId,
    /// The term it would campaign at (its own term plus one; logged only:
    /// openraft picks the real term).
    pub term: u64,
    /// Its last log id.
    pub last_log_id: Option<LogId>,
}

/// How a voter judged a [`PreVoteRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreVoteAnswer {
    /// It would grant the real vote now.
    Granted,
    /// The candidate is not a voter of its membership (a learner, or a
    /// node that was removed).
    NotVoter,
    /// The candidate's log is behind its own: it would refuse the vote.
    ShorterLog,
    /// It is the leader.
    Leader,
    /// It heard from a live leader within the lease; it would refuse the
    /// vote for `lease_left` more.
    LeaderLive {
        /// Until the lease runs out.
        lease_left: Duration,
    },
}

/// A voter's answer, with what it knows (for the candidate's log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreVoteResponse {
    /// The verdict.
    pub answer: PreVoteAnswer,
    /// The voter's current term.
    pub term: u64,
    /// The voter's last log id.
    pub last_log_id: Option<LogId>,
}

/// One node's Raft state as both sides of a pre-vote need it.
#[derive(Clone, Debug)]
pub(crate) struct NodeView {
    /// This node.
    pub id: NodeId,
    /// The voters of the effective membership, one set per configuration
    /// (two during a joint change: a quorum is a majority of each).
    pub voters: Vec<BTreeSet<NodeId>>,
    /// The other members with their addresses (to dial for pre-votes).
    pub members: Vec<(NodeId, Member)>,
    /// Leader, candidate, follower or learner.
    pub server_state: ServerState,
    /// The current vote (committed: a leader was established in its term).
    pub vote: Vote,
    /// Time since the vote last changed or was confirmed by the leader
    /// (every AppendEntries/heartbeat from the leader confirms it); `None`
    /// when openraft has no time for it.
    pub quiet_for: Option<Duration>,
    /// The last log id.
    pub last_log_id: Option<LogId>,
}

impl NodeView {
    /// Whether `id` is a voter in any configuration of the membership.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.iter().any(|config| config.contains(&id))
    }

    /// Reads the view from openraft: the vote, its time and the
    /// membership in one round trip through its core, the last log id and
    /// this node's id from its metrics (`RaftState`'s log ids are
    /// crate-private in openraft 0.9; the metrics are published after every
    /// step of the core, so they are at most one step older). `Err` when
    /// Raft has stopped.
    pub async fn read(raft: &Raft) -> Result<NodeView, String> {
        let mut view = raft
            .with_raft_state(|state| {
                let effective = state.membership_state.effective();
                let now = tokio::time::Instant::now();
                NodeView {
                    id: 0,
                    voters: effective.membership().get_joint_config().clone(),
                    members: effective
                        .nodes()
                        .map(|(id, member)| (*id, member.clone()))
                        .collect(),
                    server_state: state.server_state,
                    vote: *state.vote_ref(),
                    quiet_for: state
                        .vote_last_modified()
                        .map(|at| now.saturating_duration_since(at)),
                    last_log_id: None,
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        view.id = raft.metrics().borrow().id;
        view.last_log_id = raft.data_metrics().borrow().last_log;
        Ok(view)
    }
}

/// How the voter whose state is `view` judges `request`, with `lease` its
/// openraft leader lease (`election_timeout_max`). Pure: the checks are
/// openraft 0.9's `Engine::handle_vote_req`, in an order that reports the
/// lasting reason (log, membership) before the passing one (lease).
pub(crate) fn judge(view: &NodeView, request: &PreVoteRequest, lease: Duration) -> PreVoteAnswer {
    // A node with no membership yet (a fresh member before the cluster
    // has formed, or one waiting to join) has no voters to check against,
    // and openraft grants it a real vote: the first member's campaign must
    // not be refused by peers that started later.
    if !view.voters.is_empty() && !view.is_voter(request.candidate) {
        return PreVoteAnswer::NotVoter;
    }
    if view.server_state == ServerState::Leader {
        return PreVoteAnswer::Leader;
    }
    if request.last_log_id < view.last_log_id {
        return PreVoteAnswer::ShorterLog;
    }
    if view.vote.committed {
        // openraft refuses while `now <= vote_utime + lease`; a missing
        // time counts as expired there too.
        let quiet = view.quiet_for.unwrap_or(Duration::MAX);
        if quiet <= lease {
            return PreVoteAnswer::LeaderLive {
                lease_left: lease - quiet,
            };
        }
    }
    PreVoteAnswer::Granted
}

/// Answers `request` from `raft`'s current state (the peer listener and the
/// in-memory test network call this).
pub(crate) async fn answer(
    raft: &Raft,
    request: &PreVoteRequest,
) -> Result<PreVoteResponse, String> {
    let view = NodeView::read(raft).await?;
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    Ok(PreVoteResponse {
        answer: judge(&view, request, lease),
        term: view.vote.leader_id.term,
        last_log_id: view.last_log_id,
    })
}

/// Carries a pre-vote to one peer and brings back its answer.
pub(crate) trait PreVoteNetwork: Clone + Send + Sync + 'static {
    /// Asks `target` (reached as `member` says) within `ttl`. `Ok(None)`:
    /// the peer predates the pre-vote (it judges real votes by openraft's
    /// rules alone, as every node did before, so the caller counts it as a
    /// yes); `Err`: no answer (down, refused, timed out).
    fn pre_vote(
        &self,
        target: NodeId,
        member: Member,
        request: PreVoteRequest,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<PreVoteResponse>, String>> + Send;
}

/// Whether `granted` (the candidate included) is a majority of every
/// configuration in `voters`.
pub(crate) fn is_quorum(voters: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !voters.is_empty()
        && voters
            .iter()
            .all(|config| config.intersection(granted).count() * 2 > config.len())
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LeaderId};

    use super::*;

    const LEASE: Duration = Duration::from_millis(1250);

    fn log_id(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    /// Node 2 of {1, 2, 3}, following leader 1 in term 5.
    fn follower(quiet_ms: u64, last: Option<LogId>) -> NodeView {
        NodeView {
            id: 2,
            voters: vec![BTreeSet::from([1, 2, 3])],
            members: Vec::new(),
            server_state: ServerState::Follower,
            vote: Vote {
                leader_id: LeaderId::new(5, 1),
                committed: true,
            },
            quiet_for: Some(Duration::from_millis(quiet_ms)),
            last_log_id: last,
        }
    }

    fn asks(candidate: NodeId, last: Option<LogId>) -> PreVoteRequest {
        PreVoteRequest {
            candidate,
            term: 6,
            last_log_id: last,
        }
    }

    #[test]
    fn a_voter_whose_lease_ran_out_grants_an_equal_or_longer_log() {
        let view = follower(1300, log_id(5, 10));
        assert_eq!(
            judge(&view, &asks(3, log_id(5, 10)), LEASE),
            PreVoteAnswer::Granted
        );
        assert_eq!(
            judge(&view, &asks(3, log_id(5, 11)), LEASE),
            PreVoteAnswer::Granted
        );
        // A later term's entry is a longer log whatever the index.
        assert_eq!(
            judge(&view, &asks(3, log_id(6, 3)), LEASE),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn a_shorter_log_is_refused_even_with_no_leader() {
        let view = follower(5000, log_id(5, 10));
        assert_eq!(
            judge(&view, &asks(3, log_id(5, 9)), LEASE),
            PreVoteAnswer::ShorterLog
        );
        assert_eq!(
            judge(&view, &asks(3, None), LEASE),
            PreVoteAnswer::ShorterLog
        );
    }

    #[test]
    fn a_voter_that_heard_from_its_leader_within_the_lease_refuses_and_says_for_how_long() {
        let view = follower(1000, log_id(5, 10));
        assert_eq!(
            judge(&view, &asks(3, log_id(5, 10)), LEASE),
            PreVoteAnswer::LeaderLive {
                lease_left: Duration::from_millis(250)
            }
        );
        // openraft refuses at exactly the lease too.
        let view = follower(1250, log_id(5, 10));
        assert_eq!(
            judge(&view, &asks(3, log_id(5, 10)), LEASE),
            PreVoteAnswer::LeaderLive {
                lease_left: Duration::ZERO
            }
        );
    }

    #[test]
    fn an_uncommitted_vote_holds_no_lease() {
        // Voted for a candidate that has not won (or campaigning itself).
        let mut view = follower(10, log_id(5, 10));
        view.vote = Vote {
            leader_id: LeaderId::new(6, 3),
            committed: false,
        };
        assert_eq!(
            judge(&view, &asks(1, log_id(5, 10)), LEASE),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn the_leader_and_non_voters_are_refused() {
        let mut view = follower(5000, log_id(5, 10));
        // A removed node, and a learner, are not in the voter set.
        assert_eq!(
            judge(&view, &asks(4, log_id(5, 10)), LEASE),
            PreVoteAnswer::NotVoter
        );
        view.server_state = ServerState::Leader;
        assert_eq!(
            judge(&view, &asks(3, log_id(5, 10)), LEASE),
            PreVoteAnswer::Leader
        );
    }

    #[test]
    fn a_node_with_no_membership_yet_grants_like_openraft() {
        let fresh = NodeView {
            id: 2,
            voters: Vec::new(),
            members: Vec::new(),
            server_state: ServerState::Learner,
            vote: Vote::default(),
            quiet_for: Some(Duration::from_millis(10)),
            last_log_id: None,
        };
        assert_eq!(
            judge(&fresh, &asks(1, log_id(1, 1)), LEASE),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn a_candidate_in_either_half_of_a_joint_membership_is_a_voter() {
        let mut view = follower(5000, log_id(5, 10));
        view.voters = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([2, 3, 4])];
        assert_eq!(
            judge(&view, &asks(4, log_id(5, 10)), LEASE),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn a_quorum_is_a_majority_of_every_configuration() {
        let single = vec![BTreeSet::from([1, 2, 3])];
        assert!(is_quorum(&single, &BTreeSet::from([1, 2])));
        assert!(!is_quorum(&single, &BTreeSet::from([1])));
        // Votes from non-members do not count.
        assert!(!is_quorum(&single, &BTreeSet::from([1, 4, 5])));
        let joint = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([3, 4, 5])];
        assert!(!is_quorum(&joint, &BTreeSet::from([1, 2, 3])));
        assert!(is_quorum(&joint, &BTreeSet::from([1, 3, 4])));
        assert!(!is_quorum(&[], &BTreeSet::from([1])));
        let four = vec![BTreeSet::from([1, 2, 3, 4])];
        assert!(!is_quorum(&four, &BTreeSet::from([1, 2])));
        assert!(is_quorum(&four, &BTreeSet::from([1, 2, 3])));
    }
}
