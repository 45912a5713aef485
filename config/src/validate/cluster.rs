//! Rules for `[cluster]`: identity set, this node among the members, ids
//! and peer addresses unique, timing consistent with openraft's needs, and
//! `store.sync = "always"` (a receipt in a cluster promises a majority's
//! disk), and TLS on peer links complete (certificate, key and a CA), with
//! each member's certificate name (`tls_name`) well formed and its own.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::Check;
use crate::units::ByteSize;
use crate::{ClusterConfig, ClusterMember, ConfigError, StoreConfig, StoreSync, TlsConfig};

/// `host:port` as clients dial it (a name is fine: it is handed out, not
/// bound); `""` means "not offered".
fn client_address(check: &Check<'_>, value: &str, key: String) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Ok(());
    }
    let valid = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    check.ensure(
        valid,
        key,
        format!(
            "`{value}` is not an address such as \"broker1.example:61613\" (\"\" = not offered)"
        ),
    )
}

fn cluster_member(
    check: &Check<'_>,
    member: &ClusterMember,
    index: usize,
    ids: &mut HashMap<u64, usize>,
    addrs: &mut HashMap<SocketAddr, usize>,
) -> Result<(), ConfigError> {
    let key = |field: &str| format!("cluster.members[{index}].{field}");
    check.ensure(member.id > 0, key("id"), "must be set (1 or more)")?;
    if let Some(other) = ids.insert(member.id, index) {
        return Err(check.fail(
            key("id"),
            format!(
                "node id {} is already used by cluster.members[{other}]",
                member.id
            ),
        ));
    }
    let addr: SocketAddr = member.cluster.parse().map_err(|_| {
        check.fail(
            key("cluster"),
            format!(
                "`{}` is not a socket address such as \"10.0.0.1:61630\"",
                member.cluster
            ),
        )
    })?;
    if let Some(other) = addrs.insert(addr, index) {
        return Err(check.fail(
            key("cluster"),
            format!("{addr} is already the address of cluster.members[{other}]"),
        ));
    }
    for (field, value) in [
        ("stomp", &member.stomp),
        ("stomp_tls", &member.stomp_tls),
        ("websocket", &member.websocket),
        ("websocket_tls", &member.websocket_tls),
        ("native", &member.native),
        ("native_tls", &member.native_tls),
    ] {
        client_address(check, value, key(field))?;
    }
    client_address(check, &member.admin, key("admin"))?;
    check.ensure(
        member.tls_name.is_empty() || is_certificate_name(&member.tls_name),
        key("tls_name"),
        format!(
            "`{}` is not a DNS name such as \"node2.broker.example\" or an IP address (\"\" = the host of cluster.members[{index}].cluster)",
            member.tls_name
        ),
    )
}

/// A name a certificate can carry for a peer: an IP address, or a DNS
/// name (labels of letters, digits, `-` and `_`, 1-63 characters, not
/// starting or ending with `-`; 253 characters at most).
fn is_certificate_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

pub(super) fn cluster(
    check: &Check<'_>,
    cluster: &ClusterConfig,
    store: &StoreConfig,
    seen: &mut HashMap<SocketAddr, &'static str>,
) -> Result<(), ConfigError> {
    check.ensure(
        !cluster.cluster_id.trim().is_empty(),
        "cluster.cluster_id",
        "must be set: every member of one cluster uses the same id",
    )?;
    check.ensure(
        cluster.cluster_id.len() <= 128 && !cluster.cluster_id.chars().any(char::is_control),
        "cluster.cluster_id",
        "must be at most 128 characters, without control characters",
    )?;
    check.ensure(
        cluster.node_id > 0,
        "cluster.node_id",
        "must be set (1 or more): this node's id among cluster.members",
    )?;
    check.ensure(
        !cluster.listen.is_empty(),
        "cluster.listen",
        "must be set: peers connect to this node there",
    )?;
    check.listen(Some(&cluster.listen), "cluster.listen", seen)?;
    check.positive_duration(cluster.heartbeat, "cluster.heartbeat")?;
    check.ensure(
        cluster.heartbeat.get().saturating_mul(2) <= cluster.election_timeout_min.get(),
        "cluster.heartbeat",
        format!(
            "must be at most half of cluster.election_timeout_min ({}), or followers start elections between heartbeats",
            cluster.election_timeout_min
        ),
    )?;
    check.ensure(
        cluster.election_timeout_max > cluster.election_timeout_min,
        "cluster.election_timeout_max",
        format!(
            "must be longer than cluster.election_timeout_min ({}): the spread keeps candidates from colliding",
            cluster.election_timeout_min
        ),
    )?;
    check.min_size(
        cluster.max_frame_size,
        ByteSize::mib(1),
        "cluster.max_frame_size",
    )?;
    check.positive(cluster.snapshot_every, "cluster.snapshot_every")?;
    check.min_size(cluster.log_cache, ByteSize::mib(1), "cluster.log_cache")?;
    check.ensure(
        (1..=4096).contains(&cluster.max_in_flight),
        "cluster.max_in_flight",
        "must be between 1 and 4096",
    )?;
    check.ensure(
        !cluster.members.is_empty(),
        "cluster.members",
        "must list every member of the cluster, this node included",
    )?;
    let mut ids = HashMap::new();
    let mut addrs = HashMap::new();
    for (index, member) in cluster.members.iter().enumerate() {
        cluster_member(check, member, index, &mut ids, &mut addrs)?;
    }
    if !ids.contains_key(&cluster.node_id) {
        let mut known: Vec<u64> = ids.keys().copied().collect();
        known.sort_unstable();
        return Err(check.fail(
            "cluster.node_id",
            format!(
                "node {} is not among cluster.members (ids {known:?})",
                cluster.node_id
            ),
        ));
    }
    check.ensure(
        store.sync == StoreSync::Always,
        "store.sync",
        "must be \"always\" with [cluster]: a receipt in a cluster means the message is on disk on a majority of nodes; \"batch\" and \"never\" acknowledge before the fsync, so a crash of that majority could lose receipted messages",
    )
}

/// Peer TLS needs a certificate and its key from the same place, and a CA
/// to check peers against: mutual authentication or none.
pub(super) fn peer_tls(
    check: &Check<'_>,
    cluster: &ClusterConfig,
    tls: &TlsConfig,
) -> Result<(), ConfigError> {
    match (&cluster.tls_cert, &cluster.tls_key) {
        (Some(_), None) => {
            return Err(check.fail(
                "cluster.tls_key",
                "must be set when cluster.tls_cert is set (the certificate's private key)",
            ))
        }
        (None, Some(_)) => {
            return Err(check.fail(
                "cluster.tls_cert",
                "must be set when cluster.tls_key is set (the key's certificate chain)",
            ))
        }
        _ => {}
    }
    let named = cluster
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.tls_name.is_empty());
    let mut names: HashMap<String, usize> = HashMap::new();
    for (index, member) in named {
        let key = format!("cluster.members[{index}].tls_name");
        check.ensure(
            cluster.peer_tls(tls).is_some(),
            key.clone(),
            "is only used with TLS on peer links: set cluster.tls_cert and cluster.tls_key (or tls.cert and tls.key) and a CA",
        )?;
        // DNS names compare without case.
        if let Some(other) = names.insert(member.tls_name.to_ascii_lowercase(), index) {
            return Err(check.fail(
                key,
                format!(
                    "`{}` is also the tls_name of cluster.members[{other}]: a certificate must name one node",
                    member.tls_name
                ),
            ));
        }
    }
    match cluster.peer_tls(tls) {
        None => check.ensure(
            cluster.tls_ca.is_none(),
            "cluster.tls_ca",
            "is only used with a certificate for peer links: set cluster.tls_cert and cluster.tls_key (or tls.cert and tls.key)",
        ),
        Some(files) => check.ensure(
            files.ca.is_some(),
            "cluster.tls_ca",
            format!(
                "must be set: peer links use TLS because {} is set, and peers authenticate each other with certificates signed by this CA (tls.client_ca is used when cluster.tls_ca is not set)",
                files.cert.1
            ),
        ),
    }
}
