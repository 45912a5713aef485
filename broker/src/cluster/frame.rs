//! The peer wire format: a handshake and Raft's three RPCs as prost
//! messages, one per length-prefixed frame (4-byte big-endian length, as
//! tokio-util's `LengthDelimitedCodec` writes it), and their conversions to
//! and from openraft's types.
//!
//! A connection starts with the dialer's `Hello` (protocol version, cluster
//! id, its node id, the node id it means to reach); the listener answers
//! `Welcome` or `Refused` and closes. Then the dialer sends one request at a
//! time and reads its response.
//!
//! Versions: `PROTOCOL_VERSION` in `Hello` changes only with an
//! incompatible change (a node refuses any other). Additions that old nodes
//! can live without raise `REVISION`, which `Welcome` carries (an old node
//! sends none: 0): a dialer sends a newer request only to a listener whose
//! revision has it. Revision 1 added the pre-vote (`PreVoteRequest`,
//! `PreVoteResponse`, see `pre_vote`).

use std::time::Duration;

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
use super::pre_vote::{PreVoteAnswer, PreVoteRequest, PreVoteResponse};
use super::types::{NodeId, TypeConfig};

/// Bumped on any incompatible change of this file.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// Compatible additions this node understands (see the module doc).
pub(crate) const REVISION: u32 = 1;

/// The first revision that answers `PreVoteRequest`.
pub(crate) const PRE_VOTE_REVISION: u32 = 1;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PeerFrame {
    #[prost(oneof = "Body", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
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
    /// Revision 1: "would you vote for me?"
    #[prost(message, tag = "11")]
    PreVoteRequest(WirePreVoteRequest),
    /// Revision 1: the answer.
    #[prost(message, tag = "12")]
    PreVoteResponse(WirePreVoteResponse),
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
    /// The listener's `REVISION` (0 from a node older than revisions).
    #[prost(uint32, tag = "2")]
    pub revision: u32,
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
pub(crate) struct WirePreVoteRequest {
    #[prost(uint64, tag = "1")]
    pub candidate: NodeId,
    #[prost(uint64, tag = "2")]
    pub term: u64,
    #[prost(message, optional, tag = "3")]
    pub last_log_id: Option<WireLogId>,
}

const PRE_VOTE_GRANTED: u32 = 0;
const PRE_VOTE_NOT_VOTER: u32 = 1;
const PRE_VOTE_SHORTER_LOG: u32 = 2;
const PRE_VOTE_LEADER: u32 = 3;
const PRE_VOTE_LEADER_LIVE: u32 = 4;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WirePreVoteResponse {
    #[prost(uint32, tag = "1")]
    pub answer: u32,
    /// With `PRE_VOTE_LEADER_LIVE`: how long the lease has left.
    #[prost(uint64, tag = "2")]
    pub lease_left_ms: u64,
    #[prost(uint64, tag = "3")]
    pub term: u64,
    #[prost(message, optional, tag = "4")]
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

pub(crate) fn pre_vote_request_to_wire(request: &PreVoteRequest) -> WirePreVoteRequest {
    WirePreVoteRequest {
        candidate: request.candidate,
        term: request.term,
        last_log_id: opt_log_id_to_wire(request.last_log_id.as_ref()),
    }
}

pub(crate) fn pre_vote_request_from_wire(wire: WirePreVoteRequest) -> PreVoteRequest {
    PreVoteRequest {
        candidate: wire.candidate,
        term: wire.term,
        last_log_id: opt_log_id_from_wire(wire.last_log_id.as_ref()),
    }
}

pub(crate) fn pre_vote_response_to_wire(response: &PreVoteResponse) -> WirePreVoteResponse {
    let (answer, lease_left) = match response.answer {
        PreVoteAnswer::Granted => (PRE_VOTE_GRANTED, Duration::ZERO),
        PreVoteAnswer::NotVoter => (PRE_VOTE_NOT_VOTER, Duration::ZERO),
        PreVoteAnswer::ShorterLog => (PRE_VOTE_SHORTER_LOG, Duration::ZERO),
        PreVoteAnswer::Leader => (PRE_VOTE_LEADER, Duration::ZERO),
        PreVoteAnswer::LeaderLive { lease_left } => (PRE_VOTE_LEADER_LIVE, lease_left),
    };
    WirePreVoteResponse {
        answer,
        lease_left_ms: u64::try_from(lease_left.as_millis()).unwrap_or(u64::MAX),
        term: response.term,
        last_log_id: opt_log_id_to_wire(response.last_log_id.as_ref()),
    }
}

pub(crate) fn pre_vote_response_from_wire(
    wire: WirePreVoteResponse,
) -> Result<PreVoteResponse, CodecError> {
    let answer = match wire.answer {
        PRE_VOTE_GRANTED => PreVoteAnswer::Granted,
        PRE_VOTE_NOT_VOTER => PreVoteAnswer::NotVoter,
        PRE_VOTE_SHORTER_LOG => PreVoteAnswer::ShorterLog,
        PRE_VOTE_LEADER => PreVoteAnswer::Leader,
        PRE_VOTE_LEADER_LIVE => PreVoteAnswer::LeaderLive {
            lease_left: Duration::from_millis(wire.lease_left_ms),
        },
        _ => {
            return Err(CodecError::Invalid {
                what: "pre-vote response",
                reason: "unknown answer",
            })
        }
    };
    Ok(PreVoteResponse {
        answer,
        term: wire.term,
        last_log_id: opt_log_id_from_wire(wire.last_log_id.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;
    use crate::cluster::types::LogId;

    #[test]
    fn pre_votes_cross_the_wire_unchanged() {
        let request = PreVoteRequest {
            candidate: 3,
            term: 7,
            last_log_id: Some(LogId::new(CommittedLeaderId::new(6, 1), 42)),
        };
        let bytes = PeerFrame::new(Body::PreVoteRequest(pre_vote_request_to_wire(&request)))
            .encode_to_vec();
        match PeerFrame::decode_frame(&bytes).unwrap() {
            Body::PreVoteRequest(wire) => {
                assert_eq!(pre_vote_request_from_wire(wire), request)
            }
            other => panic!("decoded as {other:?}"),
        }
        for answer in [
            PreVoteAnswer::Granted,
            PreVoteAnswer::NotVoter,
            PreVoteAnswer::ShorterLog,
            PreVoteAnswer::Leader,
            PreVoteAnswer::LeaderLive {
                lease_left: Duration::from_millis(120),
            },
        ] {
            let response = PreVoteResponse {
                answer,
                term: 6,
                last_log_id: None,
            };
            let wire = pre_vote_response_to_wire(&response);
            assert_eq!(pre_vote_response_from_wire(wire).unwrap(), response);
        }
    }

    #[test]
    fn an_unknown_pre_vote_answer_is_an_error_not_a_grant() {
        let wire = WirePreVoteResponse {
            answer: 99,
            lease_left_ms: 0,
            term: 1,
            last_log_id: None,
        };
        assert!(pre_vote_response_from_wire(wire).is_err());
    }

    #[test]
    fn a_welcome_from_a_node_older_than_revisions_reads_as_revision_0() {
        // What such a node sends: the node id alone.
        #[derive(Clone, PartialEq, Message)]
        struct OldWelcome {
            #[prost(uint64, tag = "1")]
            node_id: NodeId,
        }
        let bytes = OldWelcome { node_id: 2 }.encode_to_vec();
        let welcome = Welcome::decode(bytes.as_slice()).unwrap();
        assert_eq!((welcome.node_id, welcome.revision), (2, 0));
    }
}
