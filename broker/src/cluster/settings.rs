//! [`ClusterSettings`]: what a node needs to run, resolved from `[cluster]`
//! and `[broker]` of the configuration, and its translation into openraft's
//! `Config`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ferromq_config::{Config, PeerTlsFiles};
use openraft::SnapshotPolicy;

use super::node::StartError;
use super::types::{Member, NodeId};

/// Everything a node needs to run, resolved from `[cluster]`.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// Peers refuse connections that name another cluster.
    pub cluster_id: String,
    /// This node.
    pub node_id: NodeId,
    /// Every member of the initial membership (this node included).
    pub members: BTreeMap<NodeId, Member>,
    /// The cluster's own database directory (`<data_dir>/raft`).
    pub dir: PathBuf,
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears nothing for `election_timeout_max` plus this
    /// plus a random time in `[0, max - min)` asks for pre-votes; an election that
    /// elected nobody is tried again after `election_timeout_min` plus such
    /// a time (`election`).
    pub election_timeout_min: Duration,
    /// See `election_timeout_min`.
    pub election_timeout_max: Duration,
    /// Largest peer frame either way.
    pub max_frame_size: usize,
    /// A snapshot is built after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so a follower slightly
    /// behind catches up from the log instead of a whole snapshot.
    pub keep_behind_snapshot: u64,
    /// Proposals in flight at most (`propose` answers `Overloaded` beyond).
    pub max_in_flight: usize,
    /// This node joins a running cluster: it never forms one.
    pub join: bool,
    /// The page cache of the cluster's sled database (the Raft log), bytes.
    pub log_cache: u64,
    /// TLS with mutual authentication on peer links, when configured.
    pub tls: Option<PeerTlsFiles>,
    /// With peer TLS, the name each configured member's certificate must
    /// carry (its `tls_name`, else the host of its cluster address). A
    /// member known only from the Raft membership is held to the host of
    /// its cluster address there (`peer_tls::expected_name`).
    pub peer_names: BTreeMap<NodeId, String>,
}

impl ClusterSettings {
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, StartError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: self.cluster_id.clone(),
            // openraft 0.9 uses election_timeout_max as a voter's lease on
            // its leader (no vote granted within it). Its own election
            // timer is off: it campaigns after max + rand(min, max), checked
            // every 1.5 heartbeats, lets the follower with the shorter log
            // campaign first and be refused, and then delays the other by
            // 2 x max. `election` campaigns after max + min + rand(0, max -
            // min), and only with a quorum's pre-vote.
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            enable_elect: false,
            // A snapshot chunk or a log batch must cross a loaded machine
            // in time: allow as long as an election takes.
            install_snapshot_timeout: millis(self.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))
    }

    /// How long a leader may go without a quorum's acknowledgement before
    /// it fences itself (stops serving, fails pending receipts).
    ///
    /// Safety: openraft 0.9 has every follower refuse votes for
    /// `election_timeout_max` after it last heard from the leader (its
    /// lease), and a follower heard the last acknowledged request at or
    /// after the time the leader counts from (the request's send time). So
    /// no other leader exists before `election_timeout_max` has passed
    /// since then. Our election timer (`election`) does not change this: it
    /// only decides when to ask openraft to campaign, and the campaign still
    /// needs those votes. One heartbeat less leaves room for noticing it (the
    /// lease watcher ticks every half heartbeat, the leadership task every
    /// 50 ms). The longer this is, the longer an overloaded machine may
    /// delay acknowledgements before a healthy leader fences itself, which
    /// is why it is not `election_timeout_min`.
    pub fn fence_after(&self) -> Duration {
        self.election_timeout_max
            .saturating_sub(self.heartbeat)
            .max(self.election_timeout_min)
    }

    pub(crate) fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }
}

impl ClusterSettings {
    /// The settings for this node, or `None` without a `[cluster]` table
    /// (a single node). The configuration has been validated.
    pub fn from_config(config: &Config) -> Option<ClusterSettings> {
        let cluster = config.cluster.as_ref()?;
        let members = cluster
            .members
            .iter()
            .map(|m| {
                (
                    m.id,
                    Member {
                        cluster: m.cluster.clone(),
                        stomp: m.stomp.clone(),
                        stomp_tls: m.stomp_tls.clone(),
                        websocket: m.websocket.clone(),
                        websocket_tls: m.websocket_tls.clone(),
                        native: m.native.clone(),
                        native_tls: m.native_tls.clone(),
                        admin: m.admin.clone(),
                    },
                )
            })
            .collect();
        Some(ClusterSettings {
            cluster_id: cluster.cluster_id.clone(),
            node_id: cluster.node_id,
            members,
            dir: config.broker.data_dir.join("raft"),
            heartbeat: cluster.heartbeat.as_duration(),
            election_timeout_min: cluster.election_timeout_min.as_duration(),
            election_timeout_max: cluster.election_timeout_max.as_duration(),
            max_frame_size: cluster.max_frame_size.as_usize(),
            snapshot_every: cluster.snapshot_every,
            keep_behind_snapshot: cluster.keep_behind_snapshot,
            max_in_flight: cluster.max_in_flight as usize,
            join: cluster.join,
            log_cache: cluster.log_cache.get(),
            tls: cluster.peer_tls(&config.tls),
            peer_names: cluster
                .members
                .iter()
                .map(|m| (m.id, m.peer_name().to_owned()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn no_cluster_table_means_no_settings() {
        assert!(ClusterSettings::from_config(&Config::default()).is_none());
    }

    #[test]
    fn a_cluster_table_becomes_settings_openraft_accepts() {
        let text = r#"
[broker]
data_dir = "/var/lib/ferromq"
[cluster]
cluster_id = "c"
node_id = 2
[[cluster.members]]
id = 1
cluster = "127.0.0.1:61630"
stomp = "127.0.0.1:61613"
[[cluster.members]]
id = 2
cluster = "127.0.0.1:61631"
[[cluster.members]]
id = 3
cluster = "127.0.0.1:61632"
"#;
        let config = Config::from_toml_str(text, Path::new("t.toml")).unwrap();
        let settings = ClusterSettings::from_config(&config).unwrap();
        assert_eq!(settings.node_id, 2);
        assert_eq!(settings.dir, Path::new("/var/lib/ferromq/raft"));
        assert_eq!(settings.members.len(), 3);
        assert_eq!(settings.members[&1].stomp, "127.0.0.1:61613");
        assert_eq!(settings.peer_names[&3], "127.0.0.1");
        assert_eq!(settings.heartbeat, Duration::from_millis(250));
        assert_eq!(settings.log_cache, 64 << 20);
        let raft = settings.raft_config().unwrap();
        assert_eq!(raft.heartbeat_interval, 250);
        assert_eq!(
            (raft.election_timeout_min, raft.election_timeout_max),
            (750, 1250)
        );
        // Fenced a heartbeat before a follower's lease runs out.
        assert_eq!(settings.fence_after(), Duration::from_millis(1000));
    }
}
