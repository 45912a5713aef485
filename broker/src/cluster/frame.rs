//! The peer wire format: a handshake and Raft's three RPCs as prost
//! messages, one per length-prefixed frame (4-byte big-endian length, as
//! tokio-util's `LengthDelimitedCodec` writes it), and their conversions to
//! and from openraft's types.
//!
//! A connection starts with the dialer's `Hello` (protocol version, cluster
//! id, its node id, the node id it means to reach); the listener answers
//! `Welcome` or `Refused` and closes. Then the dialer sends one request at a
//! time and reads its response.

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::{Message, Oneof};

use super::codec::{
    self, log_id_to_wire, opt_log_id_from_wire, opt_log_id_to_wire, required, vote_from_wire,
    vote_to_wire, CodecError, WireEntry, WireLogId, WireVote,
};
use super::types::{NodeId, TypeConfig};

/// Bumped on any incompatible change of this file.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PeerFrame {
    #[prost(oneof = "Body", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub body: Option<Body>,
}

#[derive(Clone, PartialEq, Oneof)]
pub(crate) enum Body {
    #[prost(message, tag = "1")]
    Hello(Hello),
    #[prost(message, tag = "2")]
    Welcome(Welcome),
    #[prost(message, tag = "3")]
    Refused(Refused),
    #[prost(message, tag = "4")]
    AppendRequest(WireAppendRequest),
    #[prost(message, tag = "5")]
    AppendResponse(WireAppendResponse),
    #[prost(message, tag = "6")]
    VoteRequest(WireVoteRequest),
    #[prost(message, tag = "7")]
    VoteResponse(WireVoteResponse),
    #[prost(message, tag = "8")]
    SnapshotRequest(WireSnapshotRequest),
    #[prost(message, tag = "9")]
    SnapshotResponse(WireSnapshotResponse),
    /// The listener could not serve the request (its Raft refused it).
    #[prost(message, tag = "10")]
    Failure(Failure),
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Hello {
    #[prost(uint32, tag = "1")]
    pub protocol: u32,
    #[prost(string, tag = "2")]
    pub cluster_id: String,
    #[prost(uint64, tag = "3")]
    pub from: NodeId,
    #[prost(uint64, tag = "4")]
    pub to: NodeId,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Welcome {
    #[prost(uint64, tag = "1")]
    pub node_id: NodeId,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Refused {
    #[prost(string, tag = "1")]
    pub reason: String,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Failure {
    #[prost(string, tag = "1")]
    pub reason: String,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireAppendRequest {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<WireVote>,
    #[prost(message, optional, tag = "2")]
    pub prev_log_id: Option<WireLogId>,
    #[prost(message, repeated, tag = "3")]
    pub entries: Vec<WireEntry>,
    #[prost(message, optional, tag = "4")]
    pub leader_commit: Option<WireLogId>,
}

const APPEND_SUCCESS: u32 = 0;
const APPEND_PARTIAL: u32 = 1;
const APPEND_CONFLICT: u32 = 2;
const APPEND_HIGHER_VOTE: u32 = 3;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireAppendResponse {
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    #[prost(message, optional, tag = "2")]
    pub matching: Option<WireLogId>,
    #[prost(message, optional, tag = "3")]
    pub vote: Option<WireVote>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireVoteRequest {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<WireVote>,
    #[prost(message, optional, tag = "2")]
    pub last_log_id: Option<WireLogId>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireVoteResponse {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<WireVote>,
    #[prost(bool, tag = "2")]
    pub granted: bool,
    #[prost(message, optional, tag = "3")]
    pub last_log_id: Option<WireLogId>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireSnapshotRequest {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<WireVote>,
    /// Snapshot metadata as JSON (see `codec`).
    #[prost(bytes = "bytes", tag = "2")]
    pub meta: Bytes,
    #[prost(uint64, tag = "3")]
    pub offset: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
    #[prost(bool, tag = "5")]
    pub done: bool,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireSnapshotResponse {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<WireVote>,
}

impl PeerFrame {
    pub(crate) fn new(body: Body) -> PeerFrame {
        PeerFrame { body: Some(body) }
    }

    pub(crate) fn decode_frame(bytes: &[u8]) -> Result<Body, CodecError> {
        let frame = PeerFrame::decode(bytes).map_err(|source| CodecError::Prost {
            what: "peer frame",
            source,
        })?;
        required(frame.body, "peer frame", "empty body")
    }
}

fn vote_field(
    vote: Option<WireVote>,
    what: &'static str,
) -> Result<openraft::Vote<NodeId>, CodecError> {
    Ok(vote_from_wire(&required(vote, what, "vote missing")?))
}

pub(crate) fn append_request_to_wire(
    request: &AppendEntriesRequest<TypeConfig>,
) -> Result<WireAppendRequest, CodecError> {
    Ok(WireAppendRequest {
        vote: Some(vote_to_wire(&request.vote)),
        prev_log_id: opt_log_id_to_wire(request.prev_log_id.as_ref()),
        entries: request
            .entries
            .iter()
            .map(codec::entry_to_wire)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_to_wire(request.leader_commit.as_ref()),
    })
}

pub(crate) fn append_request_from_wire(
    wire: WireAppendRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    Ok(AppendEntriesRequest {
        vote: vote_field(wire.vote, "append request")?,
        prev_log_id: opt_log_id_from_wire(wire.prev_log_id.as_ref()),
        entries: wire
            .entries
            .into_iter()
            .map(codec::entry_from_wire)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from_wire(wire.leader_commit.as_ref()),
    })
}

pub(crate) fn append_response_to_wire(
    response: &AppendEntriesResponse<NodeId>,
) -> WireAppendResponse {
    let (kind, matching, vote) = match response {
        AppendEntriesResponse::Success => (APPEND_SUCCESS, None, None),
        AppendEntriesResponse::PartialSuccess(matching) => {
            (APPEND_PARTIAL, matching.as_ref().map(log_id_to_wire), None)
        }
        AppendEntriesResponse::Conflict => (APPEND_CONFLICT, None, None),
        AppendEntriesResponse::HigherVote(vote) => {
            (APPEND_HIGHER_VOTE, None, Some(vote_to_wire(vote)))
        }
    };
    WireAppendResponse {
        kind,
        matching,
        vote,
    }
}

pub(crate) fn append_response_from_wire(
    wire: WireAppendResponse,
) -> Result<AppendEntriesResponse<NodeId>, CodecError> {
    Ok(match wire.kind {
        APPEND_SUCCESS => AppendEntriesResponse::Success,
        APPEND_PARTIAL => {
            AppendEntriesResponse::PartialSuccess(opt_log_id_from_wire(wire.matching.as_ref()))
        }
        APPEND_CONFLICT => AppendEntriesResponse::Conflict,
        APPEND_HIGHER_VOTE => {
            AppendEntriesResponse::HigherVote(vote_field(wire.vote, "append response")?)
        }
        _ => {
            return Err(CodecError::Invalid {
                what: "append response",
                reason: "unknown kind",
            })
        }
    })
}

pub(crate) fn vote_request_to_wire(request: &VoteRequest<NodeId>) -> WireVoteRequest {
    WireVoteRequest {
        vote: Some(vote_to_wire(&request.vote)),
        last_log_id: opt_log_id_to_wire(request.last_log_id.as_ref()),
    }
}

pub(crate) fn vote_request_from_wire(
    wire: WireVoteRequest,
) -> Result<VoteRequest<NodeId>, CodecError> {
    Ok(VoteRequest {
        vote: vote_field(wire.vote, "vote request")?,
        last_log_id: opt_log_id_from_wire(wire.last_log_id.as_ref()),
    })
}

pub(crate) fn vote_response_to_wire(response: &VoteResponse<NodeId>) -> WireVoteResponse {
    WireVoteResponse {
        vote: Some(vote_to_wire(&response.vote)),
        granted: response.vote_granted,
        last_log_id: opt_log_id_to_wire(response.last_log_id.as_ref()),
    }
}

pub(crate) fn vote_response_from_wire(
    wire: WireVoteResponse,
) -> Result<VoteResponse<NodeId>, CodecError> {
    Ok(VoteResponse {
        vote: vote_field(wire.vote, "vote response")?,
        vote_granted: wire.granted,
        last_log_id: opt_log_id_from_wire(wire.last_log_id.as_ref()),
    })
}

pub(crate) fn snapshot_request_to_wire(
    request: &InstallSnapshotRequest<TypeConfig>,
) -> Result<WireSnapshotRequest, CodecError> {
    Ok(WireSnapshotRequest {
        vote: Some(vote_to_wire(&request.vote)),
        meta: Bytes::from(codec::encode_snapshot_meta(&request.meta)?),
        offset: request.offset,
        data: Bytes::copy_from_slice(&request.data),
        done: request.done,
    })
}

pub(crate) fn snapshot_request_from_wire(
    wire: WireSnapshotRequest,
) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    Ok(InstallSnapshotRequest {
        vote: vote_field(wire.vote, "snapshot request")?,
        meta: codec::decode_snapshot_meta(&wire.meta)?,
        offset: wire.offset,
        data: wire.data.to_vec(),
        done: wire.done,
    })
}

pub(crate) fn snapshot_response_to_wire(
    response: &InstallSnapshotResponse<NodeId>,
) -> WireSnapshotResponse {
    WireSnapshotResponse {
        vote: Some(vote_to_wire(&response.vote)),
    }
}

pub(crate) fn snapshot_response_from_wire(
    wire: WireSnapshotResponse,
) -> Result<InstallSnapshotResponse<NodeId>, CodecError> {
    Ok(InstallSnapshotResponse {
        vote: vote_field(wire.vote, "snapshot response")?,
    })
}
