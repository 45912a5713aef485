//! The openraft type configuration: what a log entry carries ([`Batch`]),
//! what a member is ([`Member`]), and the aliases the rest of this module
//! uses. Nothing here is visible outside `cluster/` except [`Member`], which
//! is ours.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node id: unique within one cluster, set in `cluster.node_id`.
pub type NodeId = u64;

/// A position in the replicated log.
pub type LogIndex = u64;

/// One member of the cluster: where its peers reach it and where its
/// clients do (handed out in "not the leader" redirects). Replicated inside
/// membership entries, so every node knows every member's addresses.
///
/// Every client address is `#[serde(default)]`: membership entries written
/// before a field existed still decode (as "not offered").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The cluster (peer) listener, `host:port`.
    pub cluster: String,
    /// The STOMP client listener, `host:port`; empty when not offered.
    #[serde(default)]
    pub stomp: String,
    /// The STOMP+TLS client listener; empty when not offered.
    #[serde(default)]
    pub stomp_tls: String,
    /// The STOMP-over-WebSocket listener; empty when not offered.
    #[serde(default)]
    pub websocket: String,
    /// The STOMP-over-WebSocket+TLS listener; empty when not offered.
    #[serde(default)]
    pub websocket_tls: String,
    /// The native client listener, `host:port`; empty when not offered.
    #[serde(default)]
    pub native: String,
    /// The native+TLS client listener; empty when not offered.
    #[serde(default)]
    pub native_tls: String,
    /// The admin HTTP listener, `host:port`; empty when not offered.
    #[serde(default)]
    pub admin: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster={}", self.cluster)
    }
}

/// The opaque payload of one normal entry: one group-commit batch as the
/// store encoded it. `Bytes` so a batch is shared, not copied, between the
/// log store, the replication streams and the state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Batch(pub Bytes);

// openraft's `serde` feature asks every type to be serde-capable. Entries
// travel and rest in our own prost encoding (`codec`), so this is only the
// contract, written as a byte string rather than a list of numbers.
impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<u8>::deserialize(deserializer).map(|bytes| Batch(Bytes::from(bytes)))
    }
}

openraft::declare_raft_types!(
    /// The broker's Raft types: one group for the whole broker.
    pub(crate) TypeConfig:
        D = Batch,
        R = (),
        NodeId = NodeId,
        Node = Member,
        SnapshotData = tokio::fs::File,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub(crate) type Membership = openraft::Membership<NodeId, Member>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
/// A snapshot's data: a file (`snapshot_files`), read and written in chunks.
pub(crate) type SnapshotData = tokio::fs::File;
