//! A running cluster node: opens the Raft log and state machine, starts
//! openraft, our election timer (`election`) and the peer listener, forms
//! the cluster on first start, and implements [`Replicator`] (proposals,
//! role, leader, fencing, status).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::network::RaftNetworkFactory;
use openraft::RaftMetrics;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::election;
use super::log_store::{self, LogStore, OpenLogError};
use super::network::TcpNetwork;
use super::peer::PeerListener;
use super::peer_tls::PeerTls;
use super::pre_vote::PreVoteNetwork;
use super::settings::ClusterSettings;
use super::state_machine::StateMachine;
use super::status::{role_of, ClusterStatus, LeaderInfo, Role, RoleCounters};
use super::types::{Batch, LogIndex, Member, NodeId, Raft, TypeConfig};
use super::{ApplyLog, Proposal, ReplicateError, Replicator};

/// The node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings are inconsistent (config validation should have caught it).
    #[error("invalid cluster settings: {0}")]
    Config(String),
    /// The data directory could not be created.
    #[error("cannot create the cluster directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster database could not be opened.
    #[error(transparent)]
    Open(#[from] OpenLogError),
    /// The log or state machine could not be read.
    #[error("cannot read the cluster state in {path}: {reason}")]
    Storage {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// The peer listener could not bind.
    #[error("cannot listen for cluster peers on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// openraft refused to start or to form the cluster.
    #[error("cannot start Raft: {0}")]
    Raft(String),
    /// The peer TLS files are unusable (names the key and the file).
    #[error("peer TLS: {0}")]
    Tls(String),
}

/// One proposal on its way to openraft.
struct Submit {
    batch: Bytes,
    reply: oneshot::Sender<Result<LogIndex, ReplicateError>>,
}

/// Where the leader's lease stands, refreshed by the watcher task.
#[derive(Clone, Copy, Debug, Default)]
struct Lease {
    /// When a quorum last acknowledged this leader (or when it became
    /// leader, before the first acknowledgement); `None` unless leader.
    acked_at: Option<Instant>,
    /// The watcher's verdict at its last tick, for waiting proposals.
    fenced: bool,
}

/// A running cluster node. Cheap to clone.
#[derive(Clone)]
pub struct ClusterNode {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    settings: ClusterSettings,
    submit: mpsc::Sender<Submit>,
    in_flight: Arc<Semaphore>,
    lease: watch::Receiver<Lease>,
    shutdown: CancellationToken,
    counters: Arc<RoleCounters>,
}

impl ClusterNode {
    /// Starts a node whose peers reach it on `listener` (bound beforehand,
    /// so tests can use ephemeral ports) over TCP.
    pub async fn start(
        settings: ClusterSettings,
        apply: Arc<dyn ApplyLog>,
        listener: PeerListener,
    ) -> Result<ClusterNode, StartError> {
        let tls = match &settings.tls {
            Some(files) => Some(Arc::new(PeerTls::load(files)?)),
            None => None,
        };
        let network = TcpNetwork::new(&settings, tls.clone());
        let node = Self::start_with(settings, apply, network).await?;
        listener.serve(
            node.inner.raft.clone(),
            node.peer_policy(tls),
            node.inner.shutdown.clone(),
        );
        Ok(node)
    }

    /// Starts a node over any openraft network that also carries
    /// pre-votes (the TCP one, or the in-memory one of the tests).
    pub(crate) async fn start_with<N>(
        settings: ClusterSettings,
        apply: Arc<dyn ApplyLog>,
        network: N,
    ) -> Result<ClusterNode, StartError>
    where
        N: RaftNetworkFactory<TypeConfig> + PreVoteNetwork,
    {
        let config = Arc::new(settings.raft_config()?);
        let path = settings.dir.display().to_string();
        std::fs::create_dir_all(&settings.dir).map_err(|source| StartError::Dir {
            path: path.clone(),
            source,
        })?;
        // Opening sled (and restoring the store from a snapshot) blocks:
        // keep it off the runtime's worker threads.
        let dir = settings.dir.clone();
        let log_cache = settings.log_cache;
        let (log, machine) = tokio::task::spawn_blocking(move || {
            let db = log_store::open_db_with_cache(&dir, log_cache)?;
            let storage = |reason: String| StartError::Storage {
                path: dir.display().to_string(),
                reason,
            };
            let log = LogStore::open(&db).map_err(|e| storage(e.to_string()))?;
            let machine =
                StateMachine::open(&db, &log, apply, &dir).map_err(|e| storage(e.to_string()))?;
            Ok::<_, StartError>((log, machine))
        })
        .await
        .map_err(|e| StartError::Storage {
            path,
            reason: format!("the opening task failed: {e}"),
        })??;
        let raft = Raft::new(settings.node_id, config, network.clone(), log, machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let shutdown = CancellationToken::new();
        let counters = Arc::new(RoleCounters::default());
        // openraft's own election timer is off (`raft_config`): ours asks
        // for pre-votes before it lets openraft campaign.
        election::spawn(
            raft.clone(),
            network,
            &settings,
            counters.clone(),
            shutdown.clone(),
        );
        form_cluster(&raft, &settings, &shutdown).await?;

        let (submit, submissions) = mpsc::channel(settings.max_in_flight.max(1));
        let in_flight = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
        let (lease_tx, lease) = watch::channel(Lease::default());
        tokio::spawn(run_submissions(raft.clone(), submissions));
        tokio::spawn(watch_lease(
            raft.clone(),
            settings.clone(),
            lease_tx,
            counters.clone(),
            shutdown.clone(),
        ));
        Ok(ClusterNode {
            inner: Arc::new(Inner {
                raft,
                settings,
                submit,
                in_flight,
                lease,
                shutdown,
                counters,
            }),
        })
    }

    /// Stops Raft, the peer listener and the watcher.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "cluster: Raft did not shut down cleanly");
        }
    }

    /// The openraft handle (membership changes, the in-memory test network).
    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// [`Replicator::status`] with the commit index, which only Raft's
    /// own state knows (openraft 0.9 does not publish it in its metrics):
    /// for `/api/cluster` and `/metrics`. Left `None` if Raft does not
    /// answer within a second (stopped, or very busy).
    pub async fn report(&self) -> ClusterStatus {
        let mut status = self.status();
        let committed = self
            .inner
            .raft
            .with_raft_state(|state| state.committed.map(|log_id| log_id.index));
        if let Ok(Ok(committed)) = tokio::time::timeout(Duration::from_secs(1), committed).await {
            status.commit_index = committed;
        }
        status
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.settings.node_id
    }

    fn peer_policy(&self, tls: Option<Arc<PeerTls>>) -> super::peer::PeerPolicy {
        super::peer::PeerPolicy {
            cluster_id: self.inner.settings.cluster_id.clone(),
            node_id: self.inner.settings.node_id,
            members: self.inner.settings.members.keys().copied().collect(),
            metrics: self.inner.raft.metrics(),
            max_frame_size: self.inner.settings.max_frame_size,
            handshake_timeout: self
                .inner
                .settings
                .election_timeout_max
                .max(Duration::from_secs(5)),
            join: self.inner.settings.join,
            tls,
            peer_names: self.inner.settings.peer_names.clone(),
        }
    }

    fn leader_info(&self, metrics: &RaftMetrics<NodeId, Member>) -> Option<LeaderInfo> {
        let id = metrics.current_leader?;
        let addresses = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .or_else(|| self.inner.settings.member(id))
            .cloned()
            .unwrap_or_default();
        Some(LeaderInfo { id, addresses })
    }

    fn lease_expired(&self, lease: &Lease, now: Instant) -> bool {
        match lease.acked_at {
            Some(at) => now.saturating_duration_since(at) > self.inner.settings.fence_after(),
            None => true,
        }
    }
}

/// First start of a fresh cluster: the member with the lowest id proposes
/// the initial membership at once; every other member does the same only if
/// it has heard nothing after two election timeouts (that member may be
/// down). Initializing on several nodes is safe in openraft (a node that
/// already has a log or a vote refuses), but all of them campaigning at the
/// same moment costs a round of elections, hence the stagger.
async fn form_cluster(
    raft: &Raft,
    settings: &ClusterSettings,
    shutdown: &CancellationToken,
) -> Result<(), StartError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    if settings.join {
        tracing::info!(
            node = settings.node_id,
            "cluster: joining: waiting for the leader to add this node (ferromq cluster add)"
        );
        return Ok(());
    }
    let first = settings.members.keys().next() == Some(&settings.node_id);
    if first {
        return initialize(raft, settings).await.map_err(StartError::Raft);
    }
    let (raft, settings, shutdown) = (raft.clone(), settings.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.election_timeout_max * 2) => {}
        }
        if matches!(raft.is_initialized().await, Ok(false)) {
            if let Err(reason) = initialize(&raft, &settings).await {
                tracing::error!(%reason, "cluster: cannot form the cluster");
            }
        }
    });
    Ok(())
}

async fn initialize(raft: &Raft, settings: &ClusterSettings) -> Result<(), String> {
    match raft.initialize(settings.members.clone()).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Hands proposals to openraft in arrival order (so log order is call
/// order), then waits for each commit on its own task so several are in
/// flight. Ends when every `ClusterNode` handle is gone.
async fn run_submissions(raft: Raft, mut submissions: mpsc::Receiver<Submit>) {
    while let Some(Submit { batch, reply }) = submissions.recv().await {
        match raft.client_write_ff(Batch(batch)).await {
            Ok(committed) => {
                tokio::spawn(async move {
                    let result = match committed.await {
                        Ok(Ok(response)) => Ok(response.log_id.index),
                        // Sent at submission by a non-leader, or later for
                        // an entry truncated by a new leader: either way it
                        // is not (and never was) committed.
                        Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                            Err(ReplicateError::NotLeader {
                                leader: forward.leader_id.map(|id| LeaderInfo {
                                    id,
                                    addresses: forward.leader_node.unwrap_or_default(),
                                }),
                            })
                        }
                        Ok(Err(e)) => Err(ReplicateError::Stopped(e.to_string())),
                        // openraft dropped the responder: leadership changed
                        // or Raft stopped before the entry committed.
                        Err(_) => Err(ReplicateError::Abandoned),
                    };
                    // The proposer may have given up (fenced); nothing to do.
                    let _ = reply.send(result);
                });
            }
            Err(fatal) => {
                let _ = reply.send(Err(ReplicateError::Stopped(fatal.to_string())));
            }
        }
    }
}

/// Follows openraft's metrics: keeps the leader's lease (when a quorum last
/// acknowledged it) and logs one line per role change. Ticks at half the
/// heartbeat so a lease expiring without any metrics change is noticed.
async fn watch_lease(
    raft: Raft,
    settings: ClusterSettings,
    lease_tx: watch::Sender<Lease>,
    counters: Arc<RoleCounters>,
    shutdown: CancellationToken,
) {
    let mut metrics = raft.metrics();
    let tick = (settings.heartbeat / 2).max(Duration::from_millis(10));
    let mut role = None;
    let mut last_term = None;
    loop {
        let changed = tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                true
            }
            _ = tokio::time::sleep(tick) => false,
        };
        let now = Instant::now();
        let (state, term, leader, millis) = {
            let m = metrics.borrow_and_update();
            (
                m.state,
                m.current_term,
                m.current_leader,
                m.millis_since_quorum_ack,
            )
        };
        let new_role = role_of(state);
        // Each term begins with one election; several may pass between
        // two looks (a split vote, a slow tick).
        if let Some(last) = last_term {
            counters.terms_began(term.saturating_sub(last));
        }
        last_term = Some(term);
        if role != Some(new_role) {
            let leader = leader.map_or_else(|| "none".to_owned(), |id| id.to_string());
            tracing::info!(node = settings.node_id, role = ?new_role, term, %leader, "cluster: role changed");
            if role.is_some() {
                counters.role_changed();
            }
            role = Some(new_role);
        }
        lease_tx.send_modify(|lease| {
            if new_role != Role::Leader {
                lease.acked_at = None;
            } else {
                // `millis` was measured when the metrics were published,
                // which is at or before now: `now - millis` is at or after
                // the real acknowledgement, so only trust it on a change.
                let became_leader = *lease.acked_at.get_or_insert(now);
                if changed {
                    if let Some(millis) = millis {
                        let acked = now
                            .checked_sub(Duration::from_millis(millis))
                            .unwrap_or(now);
                        lease.acked_at = Some(became_leader.max(acked));
                    }
                }
            }
            lease.fenced = match lease.acked_at {
                Some(at) => now.saturating_duration_since(at) > settings.fence_after(),
                None => true,
            };
        });
    }
}

impl Replicator for ClusterNode {
    fn propose(&self, batch: Bytes) -> Proposal {
        if self.role() != Role::Leader {
            return Proposal::ready(Err(ReplicateError::NotLeader {
                leader: self.leader(),
            }));
        }
        if self.is_fenced() {
            return Proposal::ready(Err(ReplicateError::Fenced));
        }
        let Ok(permit) = self.inner.in_flight.clone().try_acquire_owned() else {
            return Proposal::ready(Err(ReplicateError::Overloaded));
        };
        let (reply, committed) = oneshot::channel();
        // Never full: the channel holds as many as there are permits.
        if self.inner.submit.try_send(Submit { batch, reply }).is_err() {
            return Proposal::ready(Err(ReplicateError::Stopped(
                "the proposal queue is closed".into(),
            )));
        }
        let mut lease = self.inner.lease.clone();
        Proposal(Box::pin(async move {
            let _permit = permit;
            tokio::select! {
                biased;
                result = committed => result.unwrap_or(Err(ReplicateError::Abandoned)),
                // A leader that loses its quorum must not report success
                // later for what it could not confirm in time.
                _ = lease.wait_for(|lease| lease.fenced) => Err(ReplicateError::Fenced),
            }
        }))
    }

    fn role(&self) -> Role {
        role_of(self.inner.raft.metrics().borrow().state)
    }

    fn leader(&self) -> Option<LeaderInfo> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        self.leader_info(&metrics)
    }

    fn is_fenced(&self) -> bool {
        let lease = *self.inner.lease.borrow();
        self.lease_expired(&lease, Instant::now())
    }

    fn status(&self) -> ClusterStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        ClusterStatus::from_metrics(
            &self.inner.settings.cluster_id,
            &metrics,
            self.leader_info(&metrics),
            self.is_fenced(),
            &self.inner.counters,
        )
    }
}
