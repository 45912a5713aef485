//! Replication of the broker's durable log across a cluster of ferromq
//! nodes (issue 16): one Raft group for the whole broker.
//!
//! This module owns consensus (openraft 0.9.25, pinned), the Raft log on
//! sled under `<data_dir>/raft/`, the state-machine adapter over the store,
//! snapshots, the peer listener and its wire format (over TLS with mutual
//! authentication when configured: `peer_tls`), membership changes
//! (`membership`), the status `/api/cluster` shows (`status`), and leader
//! fencing.
//! The rest of the broker sees two traits of ours and nothing of openraft:
//! [`Replicator`] (what the store's writer calls to get a batch committed)
//! and [`ApplyLog`] (what the store implements to receive committed
//! batches). A move to openraft 0.10 stays inside this directory.
//!
//! One Raft entry is one group-commit batch, opaque bytes the store encoded.
//! openraft 0.9 awaits each local append's flush before it replicates, so
//! proposing per message would serialize every fsync; several batches may
//! be in flight at once.
//!
//! How it is wired into the data path (`[cluster]` set; without it none of
//! this runs):
//! - The store implements [`ApplyLog`] on every node
//!   (`store::replicated::ReplicatedState`): `apply` decodes one
//!   batch and applies it (idempotent per index), `snapshot` writes the
//!   live records to a file in frames, `install_snapshot` replaces them, `last_applied` is the
//!   index the store will still have after a restart.
//! - The store's log writer (`store::log_writer::replicated`), on the leader,
//!   calls [`Replicator::propose`]
//!   with each encoded group-commit batch instead of flushing locally, keeps
//!   several proposals in flight, and sends receipts for a batch only when
//!   its proposal resolves `Ok`. Any error fails those receipts.
//!   `NotLeader`/`Overloaded` mean "not in the log"; the others "unknown".
//! - Clients are served only while [`Replicator::role`] is leader and
//!   [`Replicator::is_fenced`] is false (`crate::leadership`); a follower
//!   redirects to [`Replicator::leader`]. On becoming leader the router is
//!   rebuilt from the store, which `apply` has kept current.

mod codec;
mod election;
mod frame;
mod log_store;
mod membership;
mod network;
mod node;
mod peer;
mod peer_tls;
mod pre_vote;
mod settings;
mod snapshot_files;
pub mod stages;
mod state_machine;
mod status;
mod types;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

pub use log_store::OpenLogError;
pub use membership::{Added, MembershipError, CHANGE_TIMEOUT};
pub use node::{ClusterNode, StartError};
pub use peer::PeerListener;
pub use settings::ClusterSettings;
pub use status::{ClusterStatus, FollowerStatus, LeaderInfo, MemberStatus, Role};
pub use types::{LogIndex, Member, NodeId};

/// The state-machine side, implemented by the store: every node applies
/// every committed batch, in log order.
///
/// Called from the cluster's state-machine task only, one call at a time.
pub trait ApplyLog: Send + Sync + 'static {
    /// Applies the committed batch at `index`. Must ignore an `index` at or
    /// below [`ApplyLog::last_applied`] (entries are re-applied after a
    /// restart from the last index the store reports, so apply must be
    /// idempotent per index). An error stops this node's Raft (the log and
    /// the store would disagree otherwise).
    fn apply(&self, index: LogIndex, payload: &[u8]) -> Result<(), ApplyError>;

    /// Writes the whole state as of [`ApplyLog::last_applied`] to `out`,
    /// to ship to a follower that is too far behind (or wiped) and to keep
    /// as the base the log is purged behind. `out` is a file: write it in
    /// bounded pieces, never the whole image from memory. Called on a
    /// blocking thread, never on the runtime's workers.
    fn snapshot(&self, out: &mut dyn std::io::Write) -> Result<(), ApplyError>;

    /// Replaces the whole state with the image `data` (written by
    /// [`ApplyLog::snapshot`] on some node), read in bounded pieces;
    /// afterwards [`ApplyLog::last_applied`] is `index`. Called on a
    /// blocking thread.
    fn install_snapshot(
        &self,
        index: LogIndex,
        data: &mut dyn std::io::Read,
    ) -> Result<(), ApplyError>;

    /// The highest index applied that the store will still have after a
    /// restart (it need not be flushed on every apply: the cluster
    /// re-applies from here), or `None` for an empty store.
    fn last_applied(&self) -> Option<LogIndex>;
}

/// The store could not apply, snapshot or restore.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ApplyError {
    reason: String,
}

impl ApplyError {
    /// An error saying `reason` (with the context of what failed).
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Why a proposal did not (or may not have) become committed.
///
/// Only [`ReplicateError::NotLeader`] and [`ReplicateError::Overloaded`]
/// mean "certainly not in the log"; every other error means "outcome
/// unknown": the batch may still commit later, and a receipt must not be
/// sent for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicateError {
    /// This node is not the leader; `leader` is the current one if known
    /// (none during an election).
    #[error("not the leader")]
    NotLeader {
        /// The leader to redirect clients to.
        leader: Option<LeaderInfo>,
    },
    /// This node is the leader but has not heard from a quorum within the
    /// election timeout: it may be partitioned, and another leader may
    /// already exist.
    #[error("the leader lost contact with a quorum (fenced)")]
    Fenced,
    /// Too many proposals in flight (`ClusterSettings::max_in_flight`).
    #[error("too many batches in flight")]
    Overloaded,
    /// Leadership changed or the node stopped before the batch committed.
    #[error("leadership changed before the batch committed")]
    Abandoned,
    /// Raft on this node has stopped (a storage error or shutdown).
    #[error("the cluster node has stopped: {0}")]
    Stopped(String),
}

/// A proposal in flight; resolves once its batch is committed on a quorum
/// and applied on this node.
pub struct Proposal(Pin<Box<dyn Future<Output = Result<LogIndex, ReplicateError>> + Send>>);

impl Proposal {
    pub(crate) fn ready(result: Result<LogIndex, ReplicateError>) -> Proposal {
        Proposal(Box::pin(std::future::ready(result)))
    }

    /// A proposal that resolves when `future` does (tests' replicators).
    #[cfg(test)]
    pub(crate) fn pending(
        future: impl Future<Output = Result<LogIndex, ReplicateError>> + Send + 'static,
    ) -> Proposal {
        Proposal(Box::pin(future))
    }
}

impl Future for Proposal {
    type Output = Result<LogIndex, ReplicateError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// The writer's side of replication.
pub trait Replicator: Send + Sync + 'static {
    /// Proposes `batch` as one log entry. Entries take the order of the
    /// calls (the position is fixed before this returns), so a writer may
    /// call it again before the previous proposal resolves. The future
    /// resolves with the entry's index once the entry is on disk on a
    /// majority (the leader included) and applied on this node.
    fn propose(&self, batch: Bytes) -> Proposal;

    /// This node's role now.
    fn role(&self) -> Role;

    /// The current leader (id and client addresses), if known.
    fn leader(&self) -> Option<LeaderInfo>;

    /// True unless this node is the leader and has heard from a quorum
    /// within the election timeout: a fenced node must send no receipts.
    fn is_fenced(&self) -> bool;

    /// Term, indexes, members and followers' lag, for `/api/cluster`.
    fn status(&self) -> ClusterStatus;
}
