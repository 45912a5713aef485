//! `[cluster]`: absent means a single node; a full table parses to exactly
//! its values; every inconsistency is refused naming the file and the key;
//! an even member count is a warning, not an error.

use std::path::Path;

use ferromq_config::{
    ByteSize, ClusterConfig, ClusterMember, Config, ConfigError, Millis, EXAMPLE_CONFIG,
};

const FIXTURE: &str = include_str!("fixtures/cluster.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("node.toml"))
}

fn rejects(text: &str, key: &str, needle: &str) {
    match parse(text) {
        Ok(config) => panic!("should be refused (key {key}), got {:?}", config.cluster),
        Err(error) => {
            assert_eq!(error.key, key, "{error}");
            assert_eq!(error.file, Path::new("node.toml"));
            assert!(
                error.to_string().starts_with(&format!("node.toml:{key}: ")),
                "{error}"
            );
            assert!(error.reason.contains(needle), "`{needle}` not in: {error}");
        }
    }
}

/// A valid three-member `[cluster]` for node 1 with `extra` keys added to
/// the table and `members` replacing the member list when given.
fn cluster_toml(extra: &str, members: Option<&str>) -> String {
    let default_members = r#"
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
    format!(
        "[cluster]\ncluster_id = \"c\"\nnode_id = 1\n{extra}\n{}",
        members.unwrap_or(default_members)
    )
}

#[test]
fn no_cluster_table_is_a_single_node() {
    assert_eq!(parse("").unwrap().cluster, None);
    assert_eq!(parse(EXAMPLE_CONFIG).unwrap().cluster, None);
    assert!(parse("")
        .unwrap()
        .warnings(Path::new("node.toml"))
        .is_empty());
}

#[test]
fn the_fixture_parses_to_exactly_its_values() {
    let config = parse(FIXTURE).unwrap();
    let member = |id, cluster: &str, stomp: &str, native: &str, admin: &str| ClusterMember {
        id,
        cluster: cluster.into(),
        stomp: stomp.into(),
        native: native.into(),
        admin: admin.into(),
        ..ClusterMember::default()
    };
    let expected = ClusterConfig {
        cluster_id: "orders-prod".into(),
        node_id: 2,
        listen: "127.0.0.1:61631".into(),
        heartbeat: Millis(200),
        election_timeout_min: Millis(1500),
        election_timeout_max: Millis::secs(3),
        max_frame_size: ByteSize::mib(32),
        snapshot_every: 5000,
        keep_behind_snapshot: 500,
        max_in_flight: 16,
        log_cache: ByteSize::mib(16),
        join: true,
        tls_cert: Some("certs/node2.crt".into()),
        tls_key: Some("certs/node2.key".into()),
        tls_ca: Some("certs/cluster-ca.crt".into()),
        members: vec![
            member(
                1,
                "127.0.0.1:61630",
                "127.0.0.1:61613",
                "127.0.0.1:61620",
                "127.0.0.1:8161",
            ),
            member(
                2,
                "127.0.0.1:61631",
                "127.0.0.1:61623",
                "127.0.0.1:61622",
                "127.0.0.1:8162",
            ),
            member(3, "127.0.0.1:61632", "broker3.example:61613", "", ""),
        ],
    };
    let cluster = config.cluster.clone().unwrap();
    assert_eq!(cluster, expected);
    assert_eq!(cluster.this_member().map(|m| m.id), Some(2));
    assert!(config.warnings(Path::new("node.toml")).is_empty());
    // And it survives `--print-default-config`-style rendering.
    let printed = config.to_toml();
    assert_eq!(parse(&printed).unwrap(), config, "printed:\n{printed}");
}

#[test]
fn defaults_fill_the_keys_left_out() {
    let config = parse(&cluster_toml("", None)).unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.listen, "127.0.0.1:61630");
    assert_eq!(cluster.heartbeat, Millis(250));
    assert_eq!(cluster.election_timeout_min, Millis(750));
    assert_eq!(cluster.election_timeout_max, Millis(1250));
    assert!(!cluster.join);
    assert_eq!(cluster.log_cache, ByteSize::mib(64));
    assert_eq!(cluster.peer_tls(&config.tls), None);
}

#[test]
fn the_example_cluster_block_is_valid_when_uncommented() {
    // The commented [cluster] example in ferromq.toml, uncommented.
    let start = EXAMPLE_CONFIG.find("#   [cluster]").unwrap();
    let block: String = EXAMPLE_CONFIG[start..]
        .lines()
        .filter_map(|line| line.strip_prefix("#   "))
        .collect::<Vec<_>>()
        .join("\n");
    // Node 1's own listeners are the defaults, so its cluster.listen
    // (61630) clashes with nothing.
    let config = parse(&block).unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.members.len(), 3);
    assert_eq!(
        (cluster.cluster_id.as_str(), cluster.node_id),
        ("orders-prod", 1)
    );
    assert_eq!(
        cluster.this_member().map(|m| m.admin.as_str()),
        Some("127.0.0.1:8161")
    );
}

#[test]
fn identity_must_be_set() {
    rejects(
        "[cluster]\nnode_id = 1\n[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\n",
        "cluster.cluster_id",
        "must be set",
    );
    rejects(
        "[cluster]\ncluster_id = \"c\"\n[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\n",
        "cluster.node_id",
        "must be set",
    );
    rejects(
        &cluster_toml("", Some("")),
        "cluster.members",
        "must list every member",
    );
}

#[test]
fn this_node_must_be_a_member() {
    rejects(
        &cluster_toml("", None).replace("node_id = 1", "node_id = 7"),
        "cluster.node_id",
        "node 7 is not among cluster.members (ids [1, 2, 3])",
    );
}

#[test]
fn member_ids_and_addresses_are_unique_and_well_formed() {
    let duplicate_id = "[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\n[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61631\"\n";
    rejects(
        &cluster_toml("", Some(duplicate_id)),
        "cluster.members[1].id",
        "node id 1 is already used by cluster.members[0]",
    );
    let duplicate_addr = "[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\n[[cluster.members]]\nid = 2\ncluster = \"127.0.0.1:61630\"\n";
    rejects(
        &cluster_toml("", Some(duplicate_addr)),
        "cluster.members[1].cluster",
        "already the address of cluster.members[0]",
    );
    let zero_id = "[[cluster.members]]\nid = 0\ncluster = \"127.0.0.1:61630\"\n";
    rejects(
        &cluster_toml("", Some(zero_id)),
        "cluster.members[0].id",
        "must be set",
    );
    let bad_addr = "[[cluster.members]]\nid = 1\ncluster = \"localhost\"\n";
    rejects(
        &cluster_toml("", Some(bad_addr)),
        "cluster.members[0].cluster",
        "not a socket address",
    );
    let bad_client = "[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\nstomp = \"host-without-port\"\n";
    rejects(
        &cluster_toml("", Some(bad_client)),
        "cluster.members[0].stomp",
        "not an address",
    );
}

#[test]
fn timing_is_consistent() {
    rejects(
        &cluster_toml("heartbeat = \"600ms\"", None),
        "cluster.heartbeat",
        "at most half of cluster.election_timeout_min",
    );
    rejects(
        &cluster_toml(
            "election_timeout_min = \"2s\"\nelection_timeout_max = \"2s\"",
            None,
        ),
        "cluster.election_timeout_max",
        "must be longer than cluster.election_timeout_min",
    );
    rejects(
        &cluster_toml("heartbeat = 0", None),
        "cluster.heartbeat",
        "longer than 0ms",
    );
    rejects(
        &cluster_toml("max_in_flight = 0", None),
        "cluster.max_in_flight",
        "between 1 and 4096",
    );
    rejects(
        &cluster_toml("max_frame_size = \"1KiB\"", None),
        "cluster.max_frame_size",
        "at least",
    );
    rejects(
        &cluster_toml("log_cache = \"64KiB\"", None),
        "cluster.log_cache",
        "at least 1048576 bytes",
    );
}

#[test]
fn the_cluster_listener_is_a_socket_address_no_other_listener_uses() {
    rejects(
        &cluster_toml("listen = \"nowhere\"", None),
        "cluster.listen",
        "not a socket address",
    );
    rejects(
        &cluster_toml("listen = \"127.0.0.1:61613\"", None),
        "cluster.listen",
        "already used by stomp.listen",
    );
}

#[test]
fn a_cluster_requires_store_sync_always() {
    for sync in ["batch", "never"] {
        let text = format!("[store]\nsync = \"{sync}\"\n{}", cluster_toml("", None));
        rejects(&text, "store.sync", "on disk on a majority of nodes");
    }
    // Without a cluster the same settings are fine.
    parse("[store]\nsync = \"batch\"\n").unwrap();
}

#[test]
fn an_even_member_count_is_a_warning_not_an_error() {
    let two = "[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\n[[cluster.members]]\nid = 2\ncluster = \"127.0.0.1:61631\"\n";
    let config = parse(&cluster_toml("", Some(two))).unwrap();
    let warnings = config.warnings(Path::new("node.toml"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, "cluster.members");
    assert!(warnings[0].reason.contains("odd number"), "{}", warnings[0]);
    assert!(parse(&cluster_toml("", None))
        .unwrap()
        .warnings(Path::new("node.toml"))
        .is_empty());
}

#[test]
fn unknown_cluster_keys_are_refused() {
    rejects(
        &cluster_toml("electon_timeout = \"1s\"", None),
        "cluster.electon_timeout",
        "unknown key",
    );
}

#[test]
fn peer_tls_takes_the_cluster_files_else_the_tls_table() {
    let config = parse(FIXTURE).unwrap();
    let cluster = config.cluster.clone().unwrap();
    let files = cluster.peer_tls(&config.tls).unwrap();
    assert_eq!(files.cert, ("certs/node2.crt".into(), "cluster.tls_cert"));
    assert_eq!(files.key, ("certs/node2.key".into(), "cluster.tls_key"));
    assert_eq!(
        files.ca,
        Some(("certs/cluster-ca.crt".into(), "cluster.tls_ca"))
    );
    let shared = format!(
        "[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.crt\"\n{}",
        cluster_toml("", None)
    );
    let config = parse(&shared).unwrap();
    let files = config
        .cluster
        .as_ref()
        .unwrap()
        .peer_tls(&config.tls)
        .unwrap();
    assert_eq!(files.cert, ("s.crt".into(), "tls.cert"));
    assert_eq!(files.key, ("s.key".into(), "tls.key"));
    assert_eq!(files.ca, Some(("ca.crt".into(), "tls.client_ca")));
}

#[test]
fn peer_tls_is_mutual_or_refused() {
    rejects(
        &cluster_toml("tls_cert = \"n.crt\"", None),
        "cluster.tls_key",
        "must be set when cluster.tls_cert is set",
    );
    rejects(
        &cluster_toml("tls_key = \"n.key\"", None),
        "cluster.tls_cert",
        "must be set when cluster.tls_key is set",
    );
    rejects(
        &cluster_toml("tls_cert = \"n.crt\"\ntls_key = \"n.key\"", None),
        "cluster.tls_ca",
        "peer links use TLS because cluster.tls_cert is set",
    );
    // [tls] without a client CA: peers could not be authenticated.
    rejects(
        &format!(
            "[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\n{}",
            cluster_toml("", None)
        ),
        "cluster.tls_ca",
        "because tls.cert is set",
    );
    rejects(
        &cluster_toml("tls_ca = \"ca.crt\"", None),
        "cluster.tls_ca",
        "only used with a certificate",
    );
    // A CA of its own next to [tls]'s certificate is enough.
    let text = format!(
        "[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\n{}",
        cluster_toml("tls_ca = \"ca.crt\"", None)
    );
    let config = parse(&text).unwrap();
    let files = config
        .cluster
        .as_ref()
        .unwrap()
        .peer_tls(&config.tls)
        .unwrap();
    assert_eq!(files.ca, Some(("ca.crt".into(), "cluster.tls_ca")));
}

#[test]
fn members_may_name_an_address_per_client_listener() {
    let members = r#"
[[cluster.members]]
id = 1
cluster = "127.0.0.1:61630"
stomp = "broker1.example:61613"
stomp_tls = "broker1.example:61614"
websocket = "broker1.example:15674"
websocket_tls = "broker1.example:15673"
native = "broker1.example:61620"
native_tls = "broker1.example:61621"
"#;
    let config = parse(&cluster_toml("", Some(members))).unwrap();
    let cluster = config.cluster.unwrap();
    let member = cluster.this_member().unwrap();
    assert_eq!(member.stomp_tls, "broker1.example:61614");
    assert_eq!(member.websocket, "broker1.example:15674");
    assert_eq!(member.websocket_tls, "broker1.example:15673");
    assert_eq!(member.native_tls, "broker1.example:61621");
    // Not given: not offered.
    let plain = parse(&cluster_toml("", None)).unwrap().cluster.unwrap();
    assert_eq!(plain.members[0].websocket, "");
    assert_eq!(plain.members[0].native_tls, "");

    for key in ["stomp_tls", "websocket", "websocket_tls", "native_tls"] {
        let bad = format!(
            "[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\n{key} = \"no-port\"\n"
        );
        rejects(
            &cluster_toml("", Some(&bad)),
            &format!("cluster.members[0].{key}"),
            "not an address",
        );
    }
}

#[test]
fn members_may_name_the_identity_their_peer_certificate_carries() {
    let tls = "tls_cert = \"n.crt\"\ntls_key = \"n.key\"\ntls_ca = \"ca.crt\"";
    let named = r#"
[[cluster.members]]
id = 1
cluster = "127.0.0.1:61630"
tls_name = "node1.broker.example"
[[cluster.members]]
id = 2
cluster = "10.0.0.2:61630"
[[cluster.members]]
id = 3
cluster = "127.0.0.1:61632"
tls_name = "10.0.0.3"
"#;
    let cluster = parse(&cluster_toml(tls, Some(named)))
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(cluster.members[0].tls_name, "node1.broker.example");
    assert_eq!(cluster.members[0].peer_name(), "node1.broker.example");
    // Not given: the host of its cluster address.
    assert_eq!(cluster.members[1].tls_name, "");
    assert_eq!(cluster.members[1].peer_name(), "10.0.0.2");
    assert_eq!(cluster.members[2].peer_name(), "10.0.0.3");

    // Without TLS on peer links there is no certificate to name.
    rejects(
        &cluster_toml("", Some(named)),
        "cluster.members[0].tls_name",
        "only used with TLS on peer links",
    );
    // Not a name a certificate can carry.
    for bad in ["node 1", "-node1.example", "node1..example", "nödé"] {
        let member = format!(
            "[[cluster.members]]\nid = 1\ncluster = \"127.0.0.1:61630\"\ntls_name = \"{bad}\"\n"
        );
        rejects(
            &cluster_toml(tls, Some(&member)),
            "cluster.members[0].tls_name",
            "is not a DNS name",
        );
    }
    // One name for two nodes would let either claim the other's id.
    let twice = r#"
[[cluster.members]]
id = 1
cluster = "127.0.0.1:61630"
tls_name = "node.broker.example"
[[cluster.members]]
id = 2
cluster = "127.0.0.1:61631"
tls_name = "NODE.broker.example"
"#;
    rejects(
        &cluster_toml(tls, Some(twice)),
        "cluster.members[1].tls_name",
        "also the tls_name of cluster.members[0]",
    );
}
