//! The byte encoding of log entries, log ids and votes, shared by the log
//! store (what rests on disk) and the peer network (what travels): one
//! encoding, so an entry received from the leader is written as it came.
//!
//! Hand-derived prost messages (no build.rs, as in `protocol/src/native`).
//! Membership configurations and snapshot metadata are rare and nested, so
//! they ride as JSON inside a bytes field rather than as a mirrored schema.

use bytes::Bytes;
use openraft::{CommittedLeaderId, EntryPayload, LeaderId};
use prost::Message;

use super::types::{Batch, Entry, LogId, Membership, SnapshotMeta, StoredMembership, Vote};

/// Bytes that do not decode into what they should be.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not a valid prost message of the expected type.
    #[error("malformed {what}: {source}")]
    Prost {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's reason.
        source: prost::DecodeError,
    },
    /// A required field is absent or an enum value is unknown.
    #[error("malformed {what}: {reason}")]
    Invalid {
        /// What was being decoded.
        what: &'static str,
        /// Which field is wrong.
        reason: &'static str,
    },
    /// The JSON part (membership, snapshot metadata) does not parse.
    #[error("malformed {what}: {source}")]
    Json {
        /// What was being decoded or encoded.
        what: &'static str,
        /// The parser's reason.
        source: serde_json::Error,
    },
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireLogId {
    #[prost(uint64, tag = "1")]
    pub term: u64,
    #[prost(uint64, tag = "2")]
    pub leader: u64,
    #[prost(uint64, tag = "3")]
    pub index: u64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireVote {
    #[prost(uint64, tag = "1")]
    pub term: u64,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
    #[prost(bool, tag = "3")]
    pub committed: bool,
}

/// What an entry carries.
const KIND_BLANK: u32 = 0;
const KIND_NORMAL: u32 = 1;
const KIND_MEMBERSHIP: u32 = 2;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireEntry {
    #[prost(message, optional, tag = "1")]
    pub log_id: Option<WireLogId>,
    #[prost(uint32, tag = "2")]
    pub kind: u32,
    /// The batch (normal) or the membership as JSON (membership).
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
}

pub(crate) fn log_id_to_wire(log_id: &LogId) -> WireLogId {
    WireLogId {
        term: log_id.leader_id.term,
        leader: log_id.leader_id.node_id,
        index: log_id.index,
    }
}

pub(crate) fn log_id_from_wire(wire: &WireLogId) -> LogId {
    LogId::new(CommittedLeaderId::new(wire.term, wire.leader), wire.index)
}

pub(crate) fn opt_log_id_to_wire(log_id: Option<&LogId>) -> Option<WireLogId> {
    log_id.map(log_id_to_wire)
}

pub(crate) fn opt_log_id_from_wire(wire: Option<&WireLogId>) -> Option<LogId> {
    wire.map(log_id_from_wire)
}

pub(crate) fn vote_to_wire(vote: &Vote) -> WireVote {
    WireVote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

pub(crate) fn vote_from_wire(wire: &WireVote) -> Vote {
    Vote {
        leader_id: LeaderId::new(wire.term, wire.node_id),
        committed: wire.committed,
    }
}

pub(crate) fn required<T>(
    value: Option<T>,
    what: &'static str,
    field: &'static str,
) -> Result<T, CodecError> {
    value.ok_or(CodecError::Invalid {
        what,
        reason: field,
    })
}

pub(crate) fn entry_to_wire(entry: &Entry) -> Result<WireEntry, CodecError> {
    let (kind, payload) = match &entry.payload {
        EntryPayload::Blank => (KIND_BLANK, Bytes::new()),
        EntryPayload::Normal(batch) => (KIND_NORMAL, batch.0.clone()),
        EntryPayload::Membership(membership) => (
            KIND_MEMBERSHIP,
            Bytes::from(to_json(membership, "membership entry")?),
        ),
    };
    Ok(WireEntry {
        log_id: Some(log_id_to_wire(&entry.log_id)),
        kind,
        payload,
    })
}

pub(crate) fn entry_from_wire(wire: WireEntry) -> Result<Entry, CodecError> {
    let log_id = log_id_from_wire(&required(wire.log_id, "log entry", "log_id missing")?);
    let payload = match wire.kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(Batch(wire.payload)),
        KIND_MEMBERSHIP => {
            EntryPayload::Membership(from_json::<Membership>(&wire.payload, "membership entry")?)
        }
        _ => {
            return Err(CodecError::Invalid {
                what: "log entry",
                reason: "unknown kind",
            })
        }
    };
    Ok(Entry { log_id, payload })
}

/// The on-disk form of an entry.
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    Ok(entry_to_wire(entry)?.encode_to_vec())
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    let wire = WireEntry::decode(bytes).map_err(|source| CodecError::Prost {
        what: "log entry",
        source,
    })?;
    entry_from_wire(wire)
}

pub(crate) fn encode_log_id(log_id: &LogId) -> Vec<u8> {
    log_id_to_wire(log_id).encode_to_vec()
}

pub(crate) fn decode_log_id(bytes: &[u8]) -> Result<LogId, CodecError> {
    WireLogId::decode(bytes)
        .map(|wire| log_id_from_wire(&wire))
        .map_err(|source| CodecError::Prost {
            what: "log id",
            source,
        })
}

pub(crate) fn encode_vote(vote: &Vote) -> Vec<u8> {
    vote_to_wire(vote).encode_to_vec()
}

pub(crate) fn decode_vote(bytes: &[u8]) -> Result<Vote, CodecError> {
    WireVote::decode(bytes)
        .map(|wire| vote_from_wire(&wire))
        .map_err(|source| CodecError::Prost {
            what: "vote",
            source,
        })
}

pub(crate) fn encode_snapshot_meta(meta: &SnapshotMeta) -> Result<Vec<u8>, CodecError> {
    to_json(meta, "snapshot metadata")
}

pub(crate) fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, CodecError> {
    from_json(bytes, "snapshot metadata")
}

pub(crate) fn encode_membership(membership: &StoredMembership) -> Result<Vec<u8>, CodecError> {
    to_json(membership, "stored membership")
}

pub(crate) fn decode_membership(bytes: &[u8]) -> Result<StoredMembership, CodecError> {
    from_json(bytes, "stored membership")
}

fn to_json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(|source| CodecError::Json { what, source })
}

fn from_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|source| CodecError::Json { what, source })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::cluster::types::Member;

    fn log_id(term: u64, leader: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    #[test]
    fn a_member_written_before_the_per_listener_addresses_still_decodes() {
        let old =
            br#"{"cluster":"127.0.0.1:61630","stomp":"127.0.0.1:61613","native":"","admin":""}"#;
        let member: Member = from_json(old, "member").unwrap();
        assert_eq!(member.stomp, "127.0.0.1:61613");
        assert_eq!(member.websocket, "");
        assert_eq!(member.native_tls, "");
    }

    #[test]
    fn every_entry_kind_round_trips() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            1,
            Member {
                cluster: "127.0.0.1:61630".into(),
                stomp: "127.0.0.1:61613".into(),
                ..Member::default()
            },
        );
        let membership = Membership::new(vec![BTreeSet::from([1])], nodes);
        let entries = [
            Entry {
                log_id: log_id(1, 1, 0),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2, 3, 7),
                payload: EntryPayload::Normal(Batch(Bytes::from_static(b"batch"))),
            },
            Entry {
                log_id: log_id(2, 3, 8),
                payload: EntryPayload::Membership(membership),
            },
        ];
        for entry in entries {
            let bytes = encode_entry(&entry).unwrap();
            assert_eq!(decode_entry(&bytes).unwrap(), entry);
        }
    }

    #[test]
    fn votes_and_log_ids_round_trip() {
        let vote = Vote {
            leader_id: LeaderId::new(9, 2),
            committed: true,
        };
        assert_eq!(decode_vote(&encode_vote(&vote)).unwrap(), vote);
        let id = log_id(4, 2, 100);
        assert_eq!(decode_log_id(&encode_log_id(&id)).unwrap(), id);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_entry(&[0xff, 0xff, 0xff]).is_err());
        let unknown_kind = WireEntry {
            log_id: Some(log_id_to_wire(&log_id(1, 1, 1))),
            kind: 99,
            payload: Bytes::new(),
        }
        .encode_to_vec();
        assert!(decode_entry(&unknown_kind).is_err());
        let no_id = WireEntry {
            log_id: None,
            kind: KIND_BLANK,
            payload: Bytes::new(),
        }
        .encode_to_vec();
        assert!(decode_entry(&no_id).is_err());
    }
}
