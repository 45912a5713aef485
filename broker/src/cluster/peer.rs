//! The listening side of peer traffic (`cluster.listen`, default
//! 127.0.0.1:61630): accepts peers, checks their handshake (our cluster id,
//! our node id, a known member), then serves their Raft RPCs and pre-votes
//! (`pre_vote`) one at a time.
//!
//! Anything wrong closes that one connection and is logged; the cluster is
//! unharmed: a refused TLS handshake (no client certificate, or one the CA
//! did not sign, when peer TLS is on), a refused Raft handshake (another
//! cluster, an unknown node, or, with TLS, a certificate that does not name
//! the node the peer says it is: `peer_tls`), a frame longer than `cluster.max_frame_size`,
//! bytes that do not decode, a handshake that does not arrive in time.
//! Connections are capped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use openraft::RaftMetrics;
use prost::Message;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::frame::{
    self, Body, Failure, Hello, PeerFrame, Refused, Welcome, PROTOCOL_VERSION, REVISION,
};
use super::network::{codec, PeerStream};
use super::node::StartError;
use super::peer_tls::{self, BoxedIo, PeerTls};
use super::pre_vote;
use super::stages::{self, Stage};
use super::types::{Member, NodeId, Raft};

/// Peer connections served at once; more are closed on accept. A cluster
/// of n nodes needs n - 1 (plus a few reconnecting).
const MAX_PEER_CONNECTIONS: usize = 32;

/// A peer that sends nothing for this long is disconnected (a leader sends
/// heartbeats far more often; a follower's connection is reopened on use).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Who may connect, and the limits they get.
pub(crate) struct PeerPolicy {
    pub cluster_id: String,
    pub node_id: NodeId,
    /// The configured members; current membership is consulted too.
    pub members: BTreeSet<NodeId>,
    pub metrics: watch::Receiver<RaftMetrics<NodeId, Member>>,
    pub max_frame_size: usize,
    pub handshake_timeout: Duration,
    /// This node joins a running cluster: until it has a membership, any
    /// node of our cluster id may reach it (the leader adding it).
    pub join: bool,
    /// TLS with mutual authentication, when configured.
    pub tls: Option<Arc<PeerTls>>,
    /// The name each configured member's certificate must carry (TLS).
    pub peer_names: BTreeMap<NodeId, String>,
}

impl PeerPolicy {
    /// Why `hello` is refused, if it is.
    fn refusal(&self, hello: &Hello) -> Option<String> {
        if hello.protocol != PROTOCOL_VERSION {
            return Some(format!(
                "peer protocol {} is not ours ({PROTOCOL_VERSION})",
                hello.protocol
            ));
        }
        if hello.cluster_id != self.cluster_id {
            return Some(format!(
                "cluster id `{}` is not ours (`{}`)",
                hello.cluster_id, self.cluster_id
            ));
        }
        if hello.to != self.node_id {
            return Some(format!(
                "this is node {}, not node {}",
                self.node_id, hello.to
            ));
        }
        let known = {
            let metrics = self.metrics.borrow();
            let membership = metrics.membership_config.membership();
            self.members.contains(&hello.from)
                || membership.get_node(&hello.from).is_some()
                || (self.join && membership.nodes().next().is_none())
        };
        if !known {
            return Some(format!("node {} is not a member", hello.from));
        }
        None
    }

    /// With TLS: why `cert` does not prove that its holder is node `from`,
    /// if it does not. Checked after [`PeerPolicy::refusal`], so `from` is
    /// a member (or the leader adding a joining node).
    fn certificate_refusal(
        &self,
        from: NodeId,
        cert: Option<&CertificateDer<'_>>,
    ) -> Option<String> {
        self.tls.as_ref()?;
        let Some(cert) = cert else {
            return Some("no client certificate".into());
        };
        let addr = {
            let metrics = self.metrics.borrow();
            metrics
                .membership_config
                .membership()
                .get_node(&from)
                .map(|m| m.cluster.clone())
        };
        let name = match addr {
            Some(addr) => peer_tls::expected_name(&self.peer_names, from, &addr),
            None => match self.peer_names.get(&from) {
                Some(name) => name.clone(),
                // A joining node, still without a membership, reached by a
                // node it has no address of (the leader adding it): the
                // CA's signature is all there is to check; the membership
                // it receives names every member from then on.
                None => return None,
            },
        };
        peer_tls::names(cert, &name).err()
    }
}

/// The bound peer listener, before it serves.
pub struct PeerListener {
    listener: TcpListener,
    local: SocketAddr,
}

impl PeerListener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> Result<PeerListener, StartError> {
        let bind_error = |source| StartError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(PeerListener { listener, local })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves peers until `shutdown`.
    pub(crate) fn serve(self, raft: Raft, policy: PeerPolicy, shutdown: CancellationToken) {
        let policy = Arc::new(policy);
        let slots = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = self.listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pause
                        // rather than spin.
                        tracing::warn!(error = %e, "cluster: accepting a peer failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "cluster: too many peer connections; closing this one");
                    continue;
                };
                let (raft, policy, shutdown) = (raft.clone(), policy.clone(), shutdown.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        result = serve_connection(stream, &raft, &policy) => {
                            if let Err(reason) = result {
                                tracing::warn!(%peer, %reason, "cluster: closed a peer connection");
                            }
                        }
                    }
                });
            }
        });
    }
}

async fn read(framed: &mut PeerStream, timeout: Duration) -> Result<Option<Body>, String> {
    let next = tokio::time::timeout(timeout, framed.next())
        .await
        .map_err(|_| format!("nothing received for {}ms", timeout.as_millis()))?;
    match next {
        None => Ok(None),
        Some(Err(e)) => Err(format!("unreadable frame: {e}")),
        Some(Ok(bytes)) => PeerFrame::decode_frame(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

async fn write(framed: &mut PeerStream, body: Body) -> Result<(), String> {
    framed
        .send(bytes::Bytes::from(PeerFrame::new(body).encode_to_vec()))
        .await
        .map_err(|e| format!("writing to the peer: {e}"))
}

/// Handshake, then request/response until the peer closes. `Err` says why
/// the connection was closed on our side.
async fn serve_connection(
    stream: TcpStream,
    raft: &Raft,
    policy: &PeerPolicy,
) -> Result<(), String> {
    stream
        .set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    let (io, cert): (BoxedIo, _) = match &policy.tls {
        None => (Box::new(stream), None),
        Some(tls) => tokio::time::timeout(policy.handshake_timeout, tls.accept(stream))
            .await
            .map_err(|_| "refused: no TLS handshake in time".to_owned())?
            .map_err(|e| format!("refused the TLS handshake: {e}"))?,
    };
    let mut framed = Framed::new(io, codec(policy.max_frame_size));
    let hello = match read(&mut framed, policy.handshake_timeout).await? {
        Some(Body::Hello(hello)) => hello,
        Some(_) => return Err("the first frame is not a handshake".into()),
        None => return Ok(()),
    };
    let refusal = policy
        .refusal(&hello)
        .or_else(|| policy.certificate_refusal(hello.from, cert.as_ref()));
    if let Some(reason) = refusal {
        // Best effort: the dialer learns why; it is refused either way.
        let _ = write(
            &mut framed,
            Body::Refused(Refused {
                reason: reason.clone(),
            }),
        )
        .await;
        return Err(format!("refused node {}: {reason}", hello.from));
    }
    write(
        &mut framed,
        Body::Welcome(Welcome {
            node_id: policy.node_id,
            revision: REVISION,
        }),
    )
    .await?;
    while let Some(request) = read(&mut framed, IDLE_TIMEOUT).await? {
        let response = answer(raft, request).await?;
        write(&mut framed, response).await?;
    }
    Ok(())
}

/// Runs one request against Raft. A request that does not decode is an
/// `Err` (closes the connection); one Raft refuses is a `Failure` answer.
async fn answer(raft: &Raft, request: Body) -> Result<Body, String> {
    let failure = |e: &dyn std::fmt::Display| {
        Body::Failure(Failure {
            reason: e.to_string(),
        })
    };
    Ok(match request {
        Body::AppendRequest(wire) => {
            let request = frame::append_request_from_wire(wire).map_err(|e| e.to_string())?;
            let carries_entries = !request.entries.is_empty();
            let started = std::time::Instant::now();
            let answer = match raft.append_entries(request).await {
                Ok(response) => Body::AppendResponse(frame::append_response_to_wire(&response)),
                Err(e) => failure(&e),
            };
            if carries_entries {
                stages::record(Stage::RpcAppend, started.elapsed());
            }
            answer
        }
        Body::VoteRequest(wire) => {
            let request = frame::vote_request_from_wire(wire).map_err(|e| e.to_string())?;
            match raft.vote(request).await {
                Ok(response) => Body::VoteResponse(frame::vote_response_to_wire(&response)),
                Err(e) => failure(&e),
            }
        }
        Body::SnapshotRequest(wire) => {
            let request = frame::snapshot_request_from_wire(wire).map_err(|e| e.to_string())?;
            match raft.install_snapshot(request).await {
                Ok(response) => Body::SnapshotResponse(frame::snapshot_response_to_wire(&response)),
                Err(e) => failure(&e),
            }
        }
        Body::PreVoteRequest(wire) => {
            let request = frame::pre_vote_request_from_wire(wire);
            match pre_vote::answer(raft, &request).await {
                Ok(response) => Body::PreVoteResponse(frame::pre_vote_response_to_wire(&response)),
                Err(reason) => failure(&reason),
            }
        }
        _ => return Err("a frame that is not a request".into()),
    })
}
