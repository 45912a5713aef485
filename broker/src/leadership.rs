//! [`Leadership`]: whether this node serves clients now, and, in cluster
//! mode, the task that decides it ([`Leadership::follow`]).
//!
//! A single node (no `[cluster]`) always serves: the sessions' check is
//! one atomic load per CONNECT/Open. In a cluster only the leader serves:
//! a follower's STOMP session answers CONNECT with ERROR `not the leader`
//! (with a `leader` header) and a native one answers Open with Close
//! `not-leader`, both naming the leader's client address for the listener
//! the client came in on ([`address_for`]: the WebSocket port to a
//! WebSocket client), or none when the leader has no such listener.
//!
//! Becoming leader: once every entry of earlier terms is applied here, the
//! router is restored from the store exactly as after a restart, with its
//! sequence counter moved above anything a deposed leader could have
//! handed out (see [`seq_floor`]), and only then does the node serve.
//! Losing leadership (or the lease: fenced), or a proposed batch that did
//! not commit (the router may be ahead of the log): the node stops serving, closes
//! its client connections (their pending receipts fail: the writer answers
//! no batch that did not commit) and asks the daemon to restart itself, so
//! its router, which may be ahead of the log, is rebuilt from the store as
//! a follower's.

use crate::cluster::{ClusterNode, Member, Replicator, Role};
use crate::router::Router;
use crate::server::ListenerKind;
use crate::store::replicated::ReplicatedState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// How often the leadership task looks at the node's role.
const TICK: Duration = Duration::from_millis(50);

/// The leader's client address for clients of a `listener`: the member's
/// address of the same kind (a WebSocket client is sent to a WebSocket
/// port, never a raw STOMP one), `None` when the leader offers none.
pub fn address_for(leader: &Member, listener: ListenerKind) -> Option<&str> {
    let address = match listener {
        ListenerKind::Stomp => &leader.stomp,
        ListenerKind::StompTls => &leader.stomp_tls,
        ListenerKind::WebSocket => &leader.websocket,
        ListenerKind::WebSocketTls => &leader.websocket_tls,
        ListenerKind::Native => &leader.native,
        ListenerKind::NativeTls => &leader.native_tls,
    };
    Some(address.as_str()).filter(|a| !a.is_empty())
}

/// Whether this node serves clients.
pub struct Leadership {
    serving: AtomicBool,
    node: Option<ClusterNode>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("serving", &self.serving.load(Ordering::Relaxed))
            .field("clustered", &self.node.is_some())
            .finish()
    }
}

impl Leadership {
    /// A single node: always serves.
    pub fn single() -> Arc<Leadership> {
        Arc::new(Leadership {
            serving: AtomicBool::new(true),
            node: None,
        })
    }

    /// A cluster member: serves only while [`Leadership::follow`] says so.
    pub fn clustered(node: ClusterNode) -> Arc<Leadership> {
        Arc::new(Leadership {
            serving: AtomicBool::new(false),
            node: Some(node),
        })
    }

    /// The cluster node, in cluster mode (for `/api/cluster`).
    pub fn node(&self) -> Option<&ClusterNode> {
        self.node.as_ref()
    }

    /// `None` when this node serves clients; otherwise the leader's address
    /// for clients of `listener`, if one is known (none during an election,
    /// or when the leader offers no listener of that kind).
    pub fn refusal(&self, listener: ListenerKind) -> Option<NotLeader> {
        if self.serving.load(Ordering::Acquire) {
            return None;
        }
        let leader = self
            .node
            .as_ref()
            .and_then(|node| node.leader())
            .filter(|leader| Some(leader.id) != self.node.as_ref().map(ClusterNode::node_id))
            .and_then(|leader| address_for(&leader.addresses, listener).map(str::to_owned));
        Some(NotLeader { leader })
    }

    /// The role for `/healthz`: `leader` (serving), else the cluster role.
    pub fn role(&self) -> &'static str {
        match &self.node {
            None => "single",
            Some(_) if self.serving.load(Ordering::Acquire) => "leader",
            Some(node) => match node.role() {
                Role::Leader => "leader-starting",
                Role::Follower => "follower",
                Role::Candidate => "candidate",
                Role::Learner => "learner",
                Role::Stopped => "stopped",
            },
        }
    }

    /// Cluster mode: starts serving when this node becomes leader, stops
    /// when it is not any more. `clients` is cancelled to close the client
    /// connections, `restart` to ask the daemon to restart (after a
    /// leadership lost, or a restore that failed). Ends with either, or
    /// with `shutdown`.
    pub async fn follow(
        self: Arc<Self>,
        state: Arc<ReplicatedState>,
        router: Arc<Router>,
        clients: CancellationToken,
        restart: CancellationToken,
    ) {
        let Some(node) = self.node.clone() else {
            return;
        };
        loop {
            tokio::select! {
                _ = clients.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let serving = self.serving.load(Ordering::Acquire);
            let leads = node.role() == Role::Leader && !node.is_fenced() && !state.diverged();
            if serving && !leads {
                self.serving.store(false, Ordering::Release);
                info!(
                    role = ?node.role(),
                    fenced = node.is_fenced(),
                    uncommitted_batch = state.diverged(),
                    "cluster: no longer the leader: closing client connections and restarting as a follower"
                );
                clients.cancel();
                restart.cancel();
                return;
            }
            if serving || !leads {
                continue;
            }
            // A new leader has every committed entry in its log, and
            // commits its term's first (blank) entry before it applies it:
            // once everything in its log is applied, it knows all that a
            // previous leader committed.
            let status = node.status();
            if status.applied_index < status.last_log_index {
                continue;
            }
            let mut recovered = match state.recovered() {
                Ok(r) => r,
                Err(e) => {
                    error!(error = %e, "cluster: cannot read the store to serve as leader; restarting");
                    restart.cancel();
                    return;
                }
            };
            recovered.next_seq = recovered.next_seq.max(seq_floor(status.term));
            // Lane counts, no message: the queues read their messages back
            // with the cursor (`store::replicated`), so the restore takes
            // the same time whatever the backlog.
            let messages: u64 = recovered.backlog.iter().map(|lane| lane.messages).sum();
            let (lanes, next_seq) = (recovered.backlog.len(), recovered.next_seq);
            if let Err(e) = router.restore(recovered) {
                error!(error = %e, "cluster: cannot restore the router as leader; restarting");
                restart.cancel();
                return;
            }
            self.serving.store(true, Ordering::Release);
            info!(
                term = status.term,
                messages,
                lanes,
                next_seq,
                "cluster: leader: restored the router from the store; serving clients"
            );
        }
    }
}

/// The lowest sequence number a leader of `term` hands out: the term in
/// the high bits. A deposed leader of an earlier term may have used seqs
/// in batches that never committed (so no store knows them); every one of
/// them is below this floor as long as one term uses fewer than 2^40 seqs.
pub fn seq_floor(term: u64) -> u64 {
    term.min(u64::MAX >> 40) << 40
}

/// Why a client is refused on a follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLeader {
    /// The leader's address for the client's protocol, if known.
    pub leader: Option<String>,
}

impl NotLeader {
    /// The description a native Close carries (NATIVE.md, `not-leader`).
    pub fn description(&self) -> String {
        match &self.leader {
            Some(address) => format!("not the leader; leader={address}"),
            None => "not the leader; no leader elected yet".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_always_serves() {
        let single = Leadership::single();
        assert_eq!(single.refusal(ListenerKind::WebSocket), None);
        assert_eq!(single.role(), "single");
    }

    #[test]
    fn later_terms_start_above_every_seq_of_earlier_ones() {
        assert!(seq_floor(2) > seq_floor(1) + (1 << 39));
        assert_eq!(seq_floor(0), 0);
        // No overflow, whatever the term.
        assert!(seq_floor(u64::MAX) > 0);
    }

    #[test]
    fn each_listener_gets_the_leaders_address_of_its_own_kind() {
        let leader = Member {
            cluster: "10.0.0.1:61630".into(),
            stomp: "b1:61613".into(),
            stomp_tls: "b1:61614".into(),
            websocket: "b1:15674".into(),
            websocket_tls: "b1:15673".into(),
            native: "b1:61620".into(),
            native_tls: "b1:61621".into(),
            admin: "b1:8161".into(),
        };
        let expected = [
            (ListenerKind::Stomp, "b1:61613"),
            (ListenerKind::StompTls, "b1:61614"),
            (ListenerKind::WebSocket, "b1:15674"),
            (ListenerKind::WebSocketTls, "b1:15673"),
            (ListenerKind::Native, "b1:61620"),
            (ListenerKind::NativeTls, "b1:61621"),
        ];
        for (listener, address) in expected {
            assert_eq!(
                address_for(&leader, listener),
                Some(address),
                "{listener:?}"
            );
        }
    }

    #[test]
    fn a_listener_kind_the_leader_does_not_offer_gets_no_address() {
        // Only plain STOMP and native: no other kind falls back to them.
        let leader = Member {
            cluster: "10.0.0.1:61630".into(),
            stomp: "b1:61613".into(),
            native: "b1:61620".into(),
            ..Member::default()
        };
        for listener in [
            ListenerKind::StompTls,
            ListenerKind::WebSocket,
            ListenerKind::WebSocketTls,
            ListenerKind::NativeTls,
        ] {
            assert_eq!(address_for(&leader, listener), None, "{listener:?}");
        }
        assert_eq!(address_for(&leader, ListenerKind::Stomp), Some("b1:61613"));
    }

    #[test]
    fn the_refusal_names_the_leader_or_says_there_is_none() {
        let to = NotLeader {
            leader: Some("127.0.0.1:61613".into()),
        };
        assert_eq!(to.description(), "not the leader; leader=127.0.0.1:61613");
        let none = NotLeader { leader: None };
        assert_eq!(none.description(), "not the leader; no leader elected yet");
    }
}
