//! Schema of `[cluster]`: this node's place in a replicated ferromq cluster
//! (issue 16), with its compiled-in defaults. Without a `[cluster]` table
//! the broker is a single node, exactly as before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::units::{empty_as_none, ByteSize, Millis};
use crate::TlsConfig;

/// `[cluster]`: the Raft group this node belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Names the cluster; a peer that presents another id is refused.
    pub cluster_id: String,
    /// This node's id: one of `members[].id`, 1 or more.
    pub node_id: u64,
    /// Where peers connect to this node.
    pub listen: String,
    /// How often the leader sends heartbeats.
    pub heartbeat: Millis,
    /// A follower that hears no heartbeat for `election_timeout_max` (its
    /// lease on the leader) plus `election_timeout_min` plus a random time
    /// up to their difference asks
    /// for a pre-vote, and starts an election with a majority's yes. A leader not acknowledged by a quorum for
    /// `election_timeout_max` minus one heartbeat (at least
    /// `election_timeout_min`) fences itself: it sends no receipts.
    pub election_timeout_min: Millis,
    /// See `election_timeout_min`.
    pub election_timeout_max: Millis,
    /// Largest peer frame (a batch of log entries or a snapshot chunk).
    pub max_frame_size: ByteSize,
    /// Build a snapshot (and purge the log behind it) after this many
    /// entries.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot, so a follower slightly behind
    /// catches up from the log rather than by a whole snapshot.
    pub keep_behind_snapshot: u64,
    /// Group-commit batches proposed and not yet committed, at most.
    pub max_in_flight: u32,
    /// Memory for the page cache of the Raft log's database (sled's cache
    /// of `<data_dir>/raft`); the store's own cache is separate
    /// (`store.memory_limit`).
    pub log_cache: ByteSize,
    /// This node joins a running cluster instead of forming one: it never
    /// proposes the initial membership, it waits until the leader adds it
    /// (`ferromq cluster add`, which gives its addresses to every member).
    pub join: bool,
    /// PEM certificate chain this node presents to its peers, as listener
    /// and as dialer; `""` = `tls.cert`. With either set, peer links use TLS
    /// with mutual authentication.
    #[serde(with = "empty_as_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`; `""` = `tls.key`.
    #[serde(with = "empty_as_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle a peer's certificate must be signed by (both ways);
    /// `""` = `tls.client_ca`.
    #[serde(with = "empty_as_none")]
    pub tls_ca: Option<PathBuf>,
    /// Every member of the initial membership, this node included.
    pub members: Vec<ClusterMember>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            cluster_id: String::new(),
            node_id: 0,
            listen: "127.0.0.1:61630".to_owned(),
            // Survives a loaded 2-core machine: three heartbeats fit in
            // the shortest election timeout (openraft ticks, and so checks
            // its election timer, every 1.5 heartbeats).
            heartbeat: Millis(250),
            // openraft 0.9's voters refuse votes for their leader lease
            // (= election_timeout_max) after they last heard from the
            // leader. The broker's election timer (broker/src/cluster/
            // election.rs) asks for a pre-vote after max + min + rand(0,
            // max - min) of silence and campaigns only with a majority's yes, so
            // the follower with the shorter log never campaigns (openraft's
            // own timer, max + rand(min, max), let it, and then delayed the
            // other follower by 2 x max: BENCHMARKS.md, "Cluster failover
            // time"). A leader fences itself after max - heartbeat = 1 s
            // without a quorum's ack (acks are slow on a loaded machine:
            // openraft gives an AppendEntries one heartbeat before it
            // retries).
            election_timeout_min: Millis(750),
            election_timeout_max: Millis(1250),
            max_frame_size: ByteSize::mib(64),
            snapshot_every: 10_000,
            keep_behind_snapshot: 1_000,
            max_in_flight: 64,
            // The log's working set is the entries not yet replicated and
            // applied (up to max_in_flight batches) and the ones kept
            // behind a snapshot; sled's default (1 GiB) let every node of
            // a deep-queue run grow to 0.8-0.9 GB (BENCHMARKS.md).
            log_cache: ByteSize::mib(64),
            join: false,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            members: Vec::new(),
        }
    }
}

/// `[[cluster.members]]`: one member and its addresses.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterMember {
    /// Its node id, 1 or more, unique.
    pub id: u64,
    /// Its cluster listener, `ip:port`, unique.
    pub cluster: String,
    /// Its STOMP listener as clients reach it (`host:port`, handed out in
    /// "not the leader" redirects); `""` = none.
    pub stomp: String,
    /// Its STOMP+TLS listener as clients reach it; `""` = none (a
    /// follower's STOMP+TLS listener then names no leader).
    pub stomp_tls: String,
    /// Its STOMP-over-WebSocket listener as clients reach it; `""` = none.
    pub websocket: String,
    /// Its STOMP-over-WebSocket+TLS (wss) listener; `""` = none.
    pub websocket_tls: String,
    /// Its native listener as clients reach it; `""` = none.
    pub native: String,
    /// Its native+TLS listener as clients reach it; `""` = none.
    pub native_tls: String,
    /// Its admin HTTP listener; `""` = none.
    pub admin: String,
    /// With TLS on peer links: the name its certificate must carry, as a
    /// DNS or IP subject alternative name or as the subject's common name
    /// (e.g. `"node2.broker.example"`). A peer that says it is this member
    /// is refused unless its certificate names it, and this node dials the
    /// member expecting it. `""` = the host of `cluster` (its IP address or
    /// name), what the dialing side has always checked.
    pub tls_name: String,
}

impl ClusterMember {
    /// The name its certificate must carry on peer links: `tls_name`, else
    /// the host of its cluster address.
    pub fn peer_name(&self) -> &str {
        if self.tls_name.is_empty() {
            address_host(&self.cluster)
        } else {
            &self.tls_name
        }
    }
}

/// The host of a `host:port` address (`[::1]:61630` gives `::1`).
pub fn address_host(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The files of TLS on peer links, each with the key that named it (for
/// error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTlsFiles {
    /// Certificate chain and its key (`cluster.tls_cert` or `tls.cert`).
    pub cert: (PathBuf, &'static str),
    /// Private key (`cluster.tls_key` or `tls.key`).
    pub key: (PathBuf, &'static str),
    /// CA bundle peers are checked against (`cluster.tls_ca` or
    /// `tls.client_ca`); `None` only in a configuration validation refuses.
    pub ca: Option<(PathBuf, &'static str)>,
}

impl ClusterConfig {
    /// This node's entry in `members`, if present (validation ensures it).
    pub fn this_member(&self) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.id == self.node_id)
    }

    /// TLS on peer links: the `cluster.tls_*` files, else `[tls]`'s
    /// certificate, key and client CA; `None` (plain TCP) when neither
    /// names a certificate.
    pub fn peer_tls(&self, tls: &TlsConfig) -> Option<PeerTlsFiles> {
        let pick = |own: &Option<PathBuf>, own_key, shared: &Option<PathBuf>, shared_key| {
            own.as_deref()
                .map(|p: &Path| (p.to_path_buf(), own_key))
                .or_else(|| shared.clone().map(|p| (p, shared_key)))
        };
        let cert = pick(&self.tls_cert, "cluster.tls_cert", &tls.cert, "tls.cert")?;
        let key = pick(&self.tls_key, "cluster.tls_key", &tls.key, "tls.key")?;
        let ca = pick(
            &self.tls_ca,
            "cluster.tls_ca",
            &tls.client_ca,
            "tls.client_ca",
        );
        Some(PeerTlsFiles { cert, key, ca })
    }
}
