//! When this node campaigns: our election timer, which replaces openraft's
//! (`Config::enable_elect` is off, see `settings`).
//!
//! A voter that has not heard from a live leader for the voters' lease
//! (`election_timeout_max`: what openraft's voters require before they
//! grant a vote) plus `election_timeout_min` (a loaded machine's stalls)
//! plus a random stagger in `[0, max - min)` first asks the other voters
//! for a pre-vote (`pre_vote`). Only with a quorum of yes
//! (itself included) does it call `raft.trigger().elect()`, which runs
//! openraft's real vote (term, vote and log checks unchanged, so safety
//! stays openraft's). A node whose log is shorter is refused by the
//! longer-log follower and never disturbs it; the longer-log follower's
//! pre-vote is granted and it wins the first real round. A node that lost
//! or split a real round (its vote is then uncommitted) tries again after
//! `election_timeout_min` plus a new stagger; a refused pre-vote is asked
//! again after a heartbeat (sooner when the only refusal was a lease about
//! to run out). Learners and removed nodes never campaign: they are not
//! voters of their own membership, and the other voters refuse them.
//!
//! The leader's fence (`ClusterSettings::fence_after`) stays safe: a new
//! leader still needs openraft's real votes, and a voter grants one only
//! `election_timeout_max` after it last heard from the old leader, which
//! is after the old leader has fenced itself (`max - heartbeat`).
//! Campaigning sooner from here could only be refused, never elected.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pre_vote::{self, NodeView, PreVoteAnswer, PreVoteNetwork, PreVoteRequest};
use super::settings::ClusterSettings;
use super::status::RoleCounters;
use super::types::{NodeId, Raft};

/// The timer's durations, from the settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// openraft's voters refuse votes this long after they last heard
    /// from a leader (`election_timeout_max`).
    pub lease: Duration,
    /// A round that did not elect anyone is retried after this
    /// (`election_timeout_min`), plus a stagger.
    pub retry: Duration,
    /// The random stagger is drawn from `[0, stagger)` (`max - min`), so
    /// two followers rarely ask at the same moment.
    pub stagger: Duration,
    /// A refused pre-vote is asked again after this (a heartbeat).
    pub ask_again: Duration,
    /// How often the timer looks at Raft's state.
    pub poll: Duration,
}

impl Timing {
    pub fn new(settings: &ClusterSettings) -> Timing {
        Timing {
            lease: settings.election_timeout_max,
            retry: settings.election_timeout_min,
            stagger: settings
                .election_timeout_max
                .saturating_sub(settings.election_timeout_min),
            ask_again: settings.heartbeat,
            // A fraction of a heartbeat: the first campaign starts within
            // this of the stagger running out.
            poll: (settings.heartbeat / 10)
                .clamp(Duration::from_millis(5), Duration::from_millis(50)),
        }
    }

    fn draw_stagger(&self) -> Duration {
        if self.stagger.is_zero() {
            return Duration::ZERO;
        }
        rand::thread_rng().gen_range(Duration::ZERO..self.stagger)
    }
}

/// What the timer does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing: a live leader, not a voter, or not yet time.
    Wait,
    /// Ask the other voters for a pre-vote.
    AskPeers,
    /// The only voter: campaign without asking.
    ElectAlone,
}

/// The timer's decision for a node whose Raft state is `view`. `stagger`
/// is this round's random wait; `since_ask` the time since this node last
/// asked (or campaigned alone); `ask_again_after` how long that attempt
/// asked to wait before the next. Pure, for the unit tests.
pub(crate) fn next_step(
    view: &NodeView,
    timing: &Timing,
    stagger: Duration,
    since_ask: Option<Duration>,
    ask_again_after: Duration,
) -> Step {
    if view.server_state == ServerState::Leader || !view.is_voter(view.id) {
        return Step::Wait;
    }
    if since_ask.is_some_and(|since| since < ask_again_after) {
        return Step::Wait;
    }
    // A committed vote means a leader was established in this term: wait
    // out the voters' lease on it, and `retry` more, so that a leader a
    // loaded machine stalls for less than `lease + retry` is not replaced
    // (openraft's own timer waited `lease + rand(min, max)`; with only
    // the lease, stalls of 1.4 s on a 2-core machine at load 12-16 elected
    // a new leader with no kill). An uncommitted vote is an election that
    // has not (yet) elected anyone: give it `retry`.
    let base = if view.vote.committed {
        timing.lease.saturating_add(timing.retry)
    } else {
        timing.retry
    };
    let quiet = view.quiet_for.unwrap_or(Duration::MAX);
    if quiet < base.saturating_add(stagger) {
        return Step::Wait;
    }
    let alone = view
        .voters
        .iter()
        .all(|config| config.len() == 1 && config.contains(&view.id));
    if alone {
        Step::ElectAlone
    } else {
        Step::AskPeers
    }
}

/// What a round of pre-votes came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Canvass {
    /// The voters that said yes, this node included.
    pub granted: BTreeSet<NodeId>,
    /// The refusals, by voter.
    pub refused: Vec<(NodeId, PreVoteAnswer)>,
    /// The voters that did not answer (down, unreachable, timed out).
    pub silent: Vec<(NodeId, String)>,
}

impl Canvass {
    /// When to ask again after a round without a quorum: a heartbeat, or
    /// just after the earliest lease that refused runs out if that is
    /// sooner (the other follower heard the dead leader's last heartbeat a
    /// little later than this node).
    pub fn ask_again_after(&self, timing: &Timing) -> Duration {
        self.refused
            .iter()
            .filter_map(|(_, answer)| match answer {
                PreVoteAnswer::LeaderLive { lease_left } => {
                    Some(*lease_left + Duration::from_millis(10))
                }
                _ => None,
            })
            .fold(timing.ask_again, Duration::min)
    }
}

/// Asks every other voter of `view` at once; returns as soon as a quorum
/// has said yes, or when all have answered or timed out (`ttl`).
async fn canvass<N: PreVoteNetwork>(network: &N, view: &NodeView, ttl: Duration) -> Canvass {
    let request = PreVoteRequest {
        candidate: view.id,
        term: view.vote.leader_id.term + 1,
        last_log_id: view.last_log_id,
    };
    let mut outcome = Canvass {
        granted: BTreeSet::from([view.id]),
        refused: Vec::new(),
        silent: Vec::new(),
    };
    let mut asking: FuturesUnordered<_> = view
        .members
        .iter()
        .filter(|(id, _)| *id != view.id && view.is_voter(*id))
        .map(|(id, member)| {
            let (id, member, request) = (*id, member.clone(), request.clone());
            async move { (id, network.pre_vote(id, member, request, ttl).await) }
        })
        .collect();
    while let Some((id, answer)) = asking.next().await {
        match answer {
            // A peer from before the pre-vote: see `PreVoteNetwork`.
            Ok(None) => {
                outcome.granted.insert(id);
            }
            Ok(Some(response)) if response.answer == PreVoteAnswer::Granted => {
                outcome.granted.insert(id);
            }
            Ok(Some(response)) => outcome.refused.push((id, response.answer)),
            Err(reason) => outcome.silent.push((id, reason)),
        }
        if pre_vote::is_quorum(&view.voters, &outcome.granted) {
            break;
        }
    }
    outcome
}

/// Runs the timer until `shutdown` or until Raft stops.
pub(crate) fn spawn<N: PreVoteNetwork>(
    raft: Raft,
    network: N,
    settings: &ClusterSettings,
    counters: Arc<RoleCounters>,
    shutdown: CancellationToken,
) {
    let timing = Timing::new(settings);
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = run(raft, network, timing, counters) => {}
        }
    });
}

async fn run<N: PreVoteNetwork>(
    raft: Raft,
    network: N,
    timing: Timing,
    counters: Arc<RoleCounters>,
) {
    let mut stagger = timing.draw_stagger();
    let mut asked_at: Option<Instant> = None;
    let mut ask_again_after = Duration::ZERO;
    // Refused rounds in a row: the first is logged at info, the rest at
    // debug (an isolated node asks every heartbeat until it is healed).
    let mut refused_rounds = 0u64;
    loop {
        tokio::time::sleep(timing.poll).await;
        let view = match NodeView::read(&raft).await {
            Ok(view) => view,
            // Raft has stopped: there is nothing left to elect.
            Err(_) => return,
        };
        let since_ask = asked_at.map(|at| at.elapsed());
        match next_step(&view, &timing, stagger, since_ask, ask_again_after) {
            Step::Wait => {
                if view.server_state == ServerState::Leader {
                    refused_rounds = 0;
                }
            }
            Step::ElectAlone => {
                asked_at = Some(Instant::now());
                ask_again_after = timing.retry;
                counters.campaigned();
                if raft.trigger().elect().await.is_err() {
                    return;
                }
            }
            Step::AskPeers => {
                asked_at = Some(Instant::now());
                stagger = timing.draw_stagger();
                // Bounded by the lease: a pre-vote answered later than a
                // round would take is no longer worth acting on.
                let outcome = canvass(&network, &view, timing.lease).await;
                if pre_vote::is_quorum(&view.voters, &outcome.granted) {
                    tracing::info!(
                        node = view.id,
                        term = view.vote.leader_id.term + 1,
                        granted = ?outcome.granted,
                        quiet_ms = view.quiet_for.map(|q| q.as_millis() as u64),
                        "cluster: pre-vote won; campaigning"
                    );
                    refused_rounds = 0;
                    ask_again_after = timing.retry;
                    counters.campaigned();
                    if raft.trigger().elect().await.is_err() {
                        return;
                    }
                } else {
                    ask_again_after = outcome.ask_again_after(&timing);
                    refused_rounds += 1;
                    counters.pre_vote_refused();
                    if refused_rounds == 1 {
                        tracing::info!(
                            node = view.id,
                            refused = ?outcome.refused,
                            silent = ?outcome.silent,
                            "cluster: pre-vote refused; not campaigning"
                        );
                    } else {
                        tracing::debug!(
                            node = view.id,
                            refused = ?outcome.refused,
                            silent = ?outcome.silent,
                            "cluster: pre-vote refused again"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::LeaderId;

    use super::*;
    use crate::cluster::types::Vote;

    fn timing() -> Timing {
        Timing {
            lease: Duration::from_millis(1250),
            retry: Duration::from_millis(750),
            stagger: Duration::from_millis(500),
            ask_again: Duration::from_millis(250),
            poll: Duration::from_millis(25),
        }
    }

    /// Node 2 of {1, 2, 3}: follows leader 1 (committed) or not.
    fn view(state: ServerState, committed: bool, quiet_ms: u64) -> NodeView {
        NodeView {
            id: 2,
            voters: vec![BTreeSet::from([1, 2, 3])],
            members: Vec::new(),
            server_state: state,
            vote: Vote {
                leader_id: LeaderId::new(5, if committed { 1 } else { 2 }),
                committed,
            },
            quiet_for: Some(Duration::from_millis(quiet_ms)),
            last_log_id: None,
        }
    }

    const STAGGER: Duration = Duration::from_millis(100);

    #[test]
    fn a_follower_asks_only_after_the_lease_the_retry_and_its_stagger() {
        let t = timing();
        let step = |quiet| {
            next_step(
                &view(ServerState::Follower, true, quiet),
                &t,
                STAGGER,
                None,
                Duration::ZERO,
            )
        };
        assert_eq!(step(250), Step::Wait);
        assert_eq!(step(1250), Step::Wait);
        assert_eq!(step(2099), Step::Wait);
        assert_eq!(step(2100), Step::AskPeers);
    }

    #[test]
    fn after_an_election_that_elected_nobody_it_waits_the_shorter_retry() {
        let t = timing();
        let step = |quiet| {
            next_step(
                &view(ServerState::Candidate, false, quiet),
                &t,
                STAGGER,
                None,
                Duration::ZERO,
            )
        };
        assert_eq!(step(849), Step::Wait);
        assert_eq!(step(850), Step::AskPeers);
    }

    #[test]
    fn a_refused_round_is_asked_again_only_after_it_said() {
        let t = timing();
        let v = view(ServerState::Follower, true, 5000);
        let wait = Duration::from_millis(250);
        assert_eq!(
            next_step(&v, &t, STAGGER, Some(Duration::from_millis(100)), wait),
            Step::Wait
        );
        assert_eq!(
            next_step(&v, &t, STAGGER, Some(Duration::from_millis(250)), wait),
            Step::AskPeers
        );
    }

    #[test]
    fn leaders_learners_and_removed_nodes_never_campaign() {
        let t = timing();
        let leader = view(ServerState::Leader, true, 5000);
        assert_eq!(
            next_step(&leader, &t, STAGGER, None, Duration::ZERO),
            Step::Wait
        );
        let mut learner = view(ServerState::Learner, true, 5000);
        learner.voters = vec![BTreeSet::from([1, 3, 4])];
        assert_eq!(
            next_step(&learner, &t, STAGGER, None, Duration::ZERO),
            Step::Wait
        );
        let mut fresh = view(ServerState::Learner, false, 5000);
        fresh.voters = Vec::new();
        assert_eq!(
            next_step(&fresh, &t, STAGGER, None, Duration::ZERO),
            Step::Wait
        );
    }

    #[test]
    fn a_single_voter_campaigns_without_asking() {
        let t = timing();
        let mut alone = view(ServerState::Follower, false, 5000);
        alone.voters = vec![BTreeSet::from([2])];
        assert_eq!(
            next_step(&alone, &t, STAGGER, None, Duration::ZERO),
            Step::ElectAlone
        );
    }

    #[test]
    fn a_lease_about_to_run_out_is_asked_again_just_after_it() {
        let t = timing();
        let mut outcome = Canvass {
            granted: BTreeSet::from([2]),
            refused: vec![(3, PreVoteAnswer::ShorterLog)],
            silent: vec![(1, "down".into())],
        };
        assert_eq!(outcome.ask_again_after(&t), Duration::from_millis(250));
        outcome.refused.push((
            1,
            PreVoteAnswer::LeaderLive {
                lease_left: Duration::from_millis(30),
            },
        ));
        assert_eq!(outcome.ask_again_after(&t), Duration::from_millis(40));
    }

    #[test]
    fn the_stagger_stays_below_max_minus_min() {
        let t = timing();
        for _ in 0..200 {
            assert!(t.draw_stagger() < t.stagger);
        }
        let none = Timing {
            stagger: Duration::ZERO,
            ..t
        };
        assert_eq!(none.draw_stagger(), Duration::ZERO);
    }
}
