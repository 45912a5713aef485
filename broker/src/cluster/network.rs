//! The dialing side of peer traffic: openraft's `RaftNetworkFactory` and
//! `RaftNetwork` over TCP (TLS with mutual authentication when configured,
//! see `peer_tls`), one connection per target, opened on demand,
//! handshaken, and dropped (to be reopened by the next call) after any
//! error or timeout. The same dialing carries pre-votes
//! ([`PreVoteNetwork`]), one fresh connection per question: they are asked
//! only while no leader is live, and a connection kept between elections
//! would mostly be found dead.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::frame::{
    self, Body, Hello, PeerFrame, WirePreVoteRequest, PRE_VOTE_REVISION, PROTOCOL_VERSION,
};
use super::peer_tls::{BoxedIo, PeerTls};
use super::pre_vote::{PreVoteNetwork, PreVoteRequest, PreVoteResponse};
use super::settings::ClusterSettings;
use super::stages::{self, Event};
use super::types::{Member, NodeId, TypeConfig};

/// How long opening a connection (TCP plus handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn codec(max_frame_size: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame_size)
        .new_codec()
}

/// A framed peer connection, plain or TLS.
pub(crate) type PeerStream = Framed<BoxedIo, LengthDelimitedCodec>;

/// Makes one [`PeerClient`] per target.
#[derive(Clone)]
pub(crate) struct TcpNetwork {
    cluster_id: String,
    node_id: NodeId,
    max_frame_size: usize,
    tls: Option<Arc<PeerTls>>,
    /// The peer addresses of this node's own `[cluster]` members.
    configured: std::collections::BTreeMap<NodeId, String>,
    /// The names their certificates must carry (TLS only).
    peer_names: std::collections::BTreeMap<NodeId, String>,
}

impl TcpNetwork {
    /// Dials over TLS when `tls` is given.
    pub(crate) fn new(settings: &ClusterSettings, tls: Option<Arc<PeerTls>>) -> TcpNetwork {
        TcpNetwork {
            cluster_id: settings.cluster_id.clone(),
            node_id: settings.node_id,
            max_frame_size: settings.max_frame_size,
            tls,
            configured: settings
                .members
                .iter()
                .map(|(id, member)| (*id, member.cluster.clone()))
                .collect(),
            peer_names: settings.peer_names.clone(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        self.client(target, node)
    }
}

impl PreVoteNetwork for TcpNetwork {
    async fn pre_vote(
        &self,
        target: NodeId,
        member: Member,
        request: PreVoteRequest,
        ttl: Duration,
    ) -> Result<Option<PreVoteResponse>, String> {
        let client = self.client(target, &member);
        let wire = frame::pre_vote_request_to_wire(&request);
        match tokio::time::timeout(ttl, client.pre_vote(wire)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "no answer from node {target} in {}ms",
                ttl.as_millis()
            )),
        }
    }
}

impl TcpNetwork {
    fn client(&self, target: NodeId, node: &Member) -> PeerClient {
        // This node's configuration wins over the Raft membership for the
        // members it lists: the membership holds the addresses of the
        // configuration of whichever node formed the cluster, and how one
        // node reaches another may differ per node (a proxy, NAT, a
        // per-host name). Members added later are only in the membership.
        let addr = self
            .configured
            .get(&target)
            .unwrap_or(&node.cluster)
            .clone();
        // Who must answer there: the listener's certificate must name the
        // member we mean to reach (see `peer_tls`).
        let tls_name = super::peer_tls::expected_name(&self.peer_names, target, &addr);
        PeerClient {
            target,
            addr,
            tls_name,
            hello: Hello {
                protocol: PROTOCOL_VERSION,
                cluster_id: self.cluster_id.clone(),
                from: self.node_id,
                to: target,
            },
            max_frame_size: self.max_frame_size,
            tls: self.tls.clone(),
            connection: None,
        }
    }
}

/// Why a call failed, before it is phrased as openraft's error.
enum CallError {
    /// Could not connect or was refused: the target is down or not ours.
    Unreachable(std::io::Error),
    /// The connection broke or the peer answered nonsense.
    Network(std::io::Error),
    /// No answer in time.
    Timeout(Duration),
    /// The request does not fit in one frame.
    TooLarge,
}

/// A connection to one peer, used by one openraft replication task.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    /// The name the target's certificate must carry (TLS only).
    tls_name: String,
    hello: Hello,
    max_frame_size: usize,
    tls: Option<Arc<PeerTls>>,
    connection: Option<PeerStream>,
}

impl PeerClient {
    /// Opens and handshakes a connection; returns it with the listener's
    /// revision (`frame::REVISION`).
    async fn connect(&self) -> Result<(PeerStream, u32), CallError> {
        let stream = TcpStream::connect(&self.addr).await.map_err(|e| {
            CallError::Unreachable(std::io::Error::new(
                e.kind(),
                format!("connecting to node {} at {}: {e}", self.target, self.addr),
            ))
        })?;
        // Raft messages are small and latency-bound.
        stream.set_nodelay(true).map_err(CallError::Unreachable)?;
        let io: BoxedIo = match &self.tls {
            None => Box::new(stream),
            Some(tls) => tls.connect(&self.tls_name, stream).await.map_err(|e| {
                CallError::Unreachable(std::io::Error::new(
                    e.kind(),
                    format!(
                        "TLS handshake with node {} at {} (its certificate must name `{}`): {e}",
                        self.target, self.addr, self.tls_name
                    ),
                ))
            })?,
        };
        let mut framed = Framed::new(io, codec(self.max_frame_size));
        let hello = PeerFrame::new(Body::Hello(self.hello.clone())).encode_to_vec();
        framed
            .send(bytes::Bytes::from(hello))
            .await
            .map_err(CallError::Unreachable)?;
        match read_body(&mut framed)
            .await
            .map_err(CallError::Unreachable)?
        {
            Body::Welcome(welcome) if welcome.node_id == self.target => {
                Ok((framed, welcome.revision))
            }
            Body::Refused(refused) => Err(CallError::Unreachable(std::io::Error::other(format!(
                "node {} at {} refused us: {}",
                self.target, self.addr, refused.reason
            )))),
            _ => Err(CallError::Unreachable(std::io::Error::other(format!(
                "node {} at {} answered the handshake with something else",
                self.target, self.addr
            )))),
        }
    }

    async fn connect_in_time(&self) -> Result<PeerStream, CallError> {
        let (framed, _revision) = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| {
                CallError::Unreachable(std::io::Error::other(format!(
                    "connecting to node {} at {} timed out",
                    self.target, self.addr
                )))
            })??;
        Ok(framed)
    }

    /// Asks for a pre-vote on a connection of its own; `None` when the
    /// listener's revision predates the pre-vote (it is not asked).
    async fn pre_vote(
        &self,
        request: WirePreVoteRequest,
    ) -> std::io::Result<Option<PreVoteResponse>> {
        let error = |e: CallError| match e {
            CallError::Unreachable(e) | CallError::Network(e) => e,
            CallError::Timeout(_) | CallError::TooLarge => {
                std::io::Error::other("the pre-vote did not fit or time out")
            }
        };
        let (mut framed, revision) = self.connect().await.map_err(error)?;
        if revision < PRE_VOTE_REVISION {
            return Ok(None);
        }
        framed
            .send(bytes::Bytes::from(
                PeerFrame::new(Body::PreVoteRequest(request)).encode_to_vec(),
            ))
            .await?;
        match read_body(&mut framed).await? {
            Body::PreVoteResponse(wire) => frame::pre_vote_response_from_wire(wire)
                .map(Some)
                .map_err(std::io::Error::other),
            other => Err(error(unexpected("pre-vote", &other))),
        }
    }

    /// Sends `request` and reads the response, within `ttl` in all.
    async fn call(&mut self, request: Body, ttl: Duration) -> Result<Body, CallError> {
        let bytes = PeerFrame::new(request).encode_to_vec();
        if bytes.len() > self.max_frame_size {
            return Err(CallError::TooLarge);
        }
        let result = tokio::time::timeout(ttl, async {
            let mut framed = match self.connection.take() {
                Some(framed) => framed,
                None => self.connect_in_time().await?,
            };
            framed
                .send(bytes::Bytes::from(bytes))
                .await
                .map_err(CallError::Network)?;
            let body = read_body(&mut framed).await.map_err(CallError::Network)?;
            // Kept only after a complete exchange, so a half-read response
            // never confuses the next call.
            self.connection = Some(framed);
            Ok(body)
        })
        .await;
        match result {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(ttl)),
        }
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        error: CallError,
        action: RPCTypes,
        entries: usize,
    ) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
        match error {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.hello.from,
                target: self.target,
                timeout,
            }),
            CallError::TooLarge => RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(
                (entries as u64 / 2).max(1),
            )),
        }
    }
}

/// Reads one frame and decodes it; end of stream and garbage are errors.
async fn read_body(framed: &mut PeerStream) -> std::io::Result<Body> {
    let bytes = framed.next().await.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        )
    })??;
    PeerFrame::decode_frame(&bytes).map_err(std::io::Error::other)
}

fn unexpected(what: &str, body: &Body) -> CallError {
    let reason = match body {
        Body::Failure(failure) => format!("the peer could not serve {what}: {}", failure.reason),
        _ => format!("the peer answered {what} with another message"),
    };
    CallError::Network(std::io::Error::other(reason))
}

fn malformed(e: super::codec::CodecError) -> CallError {
    CallError::Network(std::io::Error::other(e))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let entries = rpc.entries.len();
        // The indexes carried, for the commit's stages (`stages`); a
        // heartbeat carries none.
        let carried = rpc
            .entries
            .first()
            .zip(rpc.entries.last())
            .map(|(first, last)| (first.log_id.index, last.log_id.index));
        if let Some((first, last)) = carried {
            stages::note(first, last, Event::Sent, std::time::Instant::now());
        }
        let action = RPCTypes::AppendEntries;
        let result = async {
            let wire = frame::append_request_to_wire(&rpc).map_err(malformed)?;
            match self
                .call(Body::AppendRequest(wire), option.hard_ttl())
                .await?
            {
                Body::AppendResponse(wire) => {
                    frame::append_response_from_wire(wire).map_err(malformed)
                }
                other => Err(unexpected("append-entries", &other)),
            }
        }
        .await;
        if let (Some((first, last)), Ok(AppendEntriesResponse::Success)) = (carried, &result) {
            stages::note(first, last, Event::Acked, std::time::Instant::now());
        }
        result.map_err(|e| self.rpc_error(e, action, entries))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let result = async {
            let wire = frame::snapshot_request_to_wire(&rpc).map_err(malformed)?;
            match self
                .call(Body::SnapshotRequest(wire), option.hard_ttl())
                .await?
            {
                Body::SnapshotResponse(wire) => {
                    frame::snapshot_response_from_wire(wire).map_err(malformed)
                }
                other => Err(unexpected("install-snapshot", &other)),
            }
        }
        .await;
        result.map_err(|e| self.rpc_error(e, RPCTypes::InstallSnapshot, 1))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let result = async {
            let wire = frame::vote_request_to_wire(&rpc);
            match self
                .call(Body::VoteRequest(wire), option.hard_ttl())
                .await?
            {
                Body::VoteResponse(wire) => frame::vote_response_from_wire(wire).map_err(malformed),
                other => Err(unexpected("vote", &other)),
            }
        }
        .await;
        result.map_err(|e| self.rpc_error(e, RPCTypes::Vote, 1))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;
    use openraft::{CommittedLeaderId, EntryPayload, LeaderId, LogId};

    use super::*;
    use crate::cluster::types::{Batch, Entry};

    fn settings(max_frame_size: usize) -> ClusterSettings {
        ClusterSettings {
            cluster_id: "c".into(),
            node_id: 1,
            members: BTreeMap::new(),
            dir: "unused".into(),
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            max_frame_size,
            snapshot_every: 100,
            keep_behind_snapshot: 10,
            max_in_flight: 8,
            join: false,
            log_cache: 16 << 20,
            tls: None,
            peer_names: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn a_request_larger_than_a_frame_asks_openraft_for_fewer_entries() {
        let mut network = TcpNetwork::new(&settings(4096), None);
        // Nothing listens there: the size check comes before any connect.
        let member = Member {
            cluster: "127.0.0.1:9".into(),
            ..Member::default()
        };
        let mut client = network.new_client(2, &member).await;
        let entries: Vec<Entry> = (1..=10)
            .map(|index| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(Batch(Bytes::from(vec![7u8; 1000]))),
            })
            .collect();
        let request = AppendEntriesRequest {
            vote: openraft::Vote {
                leader_id: LeaderId::new(1, 1),
                committed: true,
            },
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let error = client
            .append_entries(request, RPCOption::new(Duration::from_secs(1)))
            .await
            .unwrap_err();
        match error {
            RPCError::PayloadTooLarge(too_large) => assert_eq!(too_large.entries_hint(), 5),
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_reported_unreachable() {
        let mut network = TcpNetwork::new(&settings(1 << 20), None);
        // A port nothing listens on: bind one, then close it.
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let member = Member {
            cluster: addr.to_string(),
            ..Member::default()
        };
        let mut client = network.new_client(2, &member).await;
        let request = VoteRequest {
            vote: openraft::Vote {
                leader_id: LeaderId::new(1, 1),
                committed: false,
            },
            last_log_id: None,
        };
        let error = client
            .vote(request, RPCOption::new(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(error, RPCError::Unreachable(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_peer_is_dialled_where_this_nodes_configuration_says() {
        let mut settings = settings(1 << 20);
        let listed = |cluster: &str| Member {
            cluster: cluster.into(),
            ..Member::default()
        };
        settings.members.insert(2, listed("127.0.0.1:7002"));
        let mut network = TcpNetwork::new(&settings, None);
        // The membership (from the node that formed the cluster) says
        // otherwise: this node's own configuration wins.
        let client = network.new_client(2, &listed("127.0.0.1:9002")).await;
        assert_eq!(client.addr, "127.0.0.1:7002");
        // A member this configuration does not list: the membership's.
        let client = network.new_client(4, &listed("127.0.0.1:9004")).await;
        assert_eq!(client.addr, "127.0.0.1:9004");
    }
}
