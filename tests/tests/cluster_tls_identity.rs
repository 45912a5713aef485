//! With TLS on peer links, a certificate proves which node its holder is:
//! each member names the identity its certificate must carry
//! (`[[cluster.members]] tls_name`). A node whose certificate is valid
//! (signed by the cluster's CA) but names another member is refused by
//! its peers, and logged; given its own certificate, the same node joins
//! and catches up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::cluster::{
    cluster_listing, connect_leader, one_cluster_at_a_time, wait_for_leader, Node, TIMING,
};
use ferromq_tests::http_get;
use ferromq_tests::pki::Pki;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Elections and catching up on a loaded machine.
const BOUND: Duration = Duration::from_secs(60);

fn tls_name(id: u64) -> String {
    format!("node{id}.ferromq.test")
}

fn api_cluster(node: &Node) -> Value {
    let (status, body) = http_get(node.admin, "/api/cluster", None);
    assert_eq!(status, 200, "GET /api/cluster on node {}: {body}", node.id);
    serde_json::from_str(&body).unwrap()
}

/// Polls `probe` every 100 ms until it gives a value, failing after `bound`.
fn wait_until<T>(what: &str, bound: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "no {what} within {bound:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `[cluster]` TLS lines giving a node this certificate and key.
fn tls_keys(pki: &Pki, (cert, key): &(PathBuf, PathBuf)) -> String {
    format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
        cert.display(),
        key.display(),
        pki.path("ca.crt").display()
    )
}

/// Replaces `from` with `to` in the node's configuration file.
fn swap_in_config(node: &Node, from: &Path, to: &Path) {
    let path = node.dir.join("ferromq.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = from.display().to_string();
    assert!(text.contains(&from), "{text}");
    std::fs::write(&path, text.replace(&from, &to.display().to_string())).unwrap();
}

#[test]
fn a_peer_certificate_for_another_node_is_refused_and_the_right_one_joins() {
    let _one = one_cluster_at_a_time();
    let pki = Pki::new();
    let certs: Vec<(PathBuf, PathBuf)> = (1..=3).map(|id| pki.issue(&tls_name(id))).collect();
    let root = tempfile::tempdir().unwrap();
    // Node 3 starts with node 2's certificate: signed by the cluster's CA,
    // so the TLS handshake alone would let it in.
    let mut nodes = cluster_listing(
        root.path(),
        "tls-identity",
        false,
        |id| {
            let own = if id == 3 { 1 } else { id as usize - 1 };
            format!("{TIMING}{}", tls_keys(&pki, &certs[own]))
        },
        |id| format!("tls_name = \"{}\"\n", tls_name(id)),
    )
    .0;
    for node in nodes.iter_mut() {
        node.start();
    }
    let leader = wait_for_leader(&nodes[..2], BOUND);
    let leader_id = nodes[leader].id;

    // A persistent message committed by nodes 1 and 2.
    let mut producer = connect_leader(&nodes[leader], BOUND);
    let send = Frame::new(Command::Send)
        .header("destination", "/queue/tls-identity")
        .header("persistent", "true")
        .body("while node 3 is refused");
    producer.with_receipt(send, "r-1").unwrap();

    // Nodes 1 and 2 refuse node 3 for its certificate, and say why.
    let refusal = format!(
        "refused node 3: its certificate does not name `{}`",
        tls_name(3)
    );
    wait_until("refusal of node 3's certificate", BOUND, || {
        nodes[..2]
            .iter()
            .any(|n| n.log().contains(&refusal))
            .then_some(())
    });
    // And node 3 got nothing: no leader, nothing applied.
    let doc = api_cluster(&nodes[2]);
    assert!(doc["leader"].is_null(), "{doc}");
    assert!(
        doc["applied_index"].is_null() || doc["applied_index"] == 0,
        "{doc}"
    );
    let committed = api_cluster(&nodes[leader])["applied_index"]
        .as_u64()
        .unwrap();
    assert!(committed > 0);

    // With its own certificate, node 3 joins and catches up.
    nodes[2].kill9();
    swap_in_config(&nodes[2], &certs[1].0, &certs[2].0);
    swap_in_config(&nodes[2], &certs[1].1, &certs[2].1);
    nodes[2].start();
    wait_until("node 3 following the leader, caught up", BOUND, || {
        let doc = api_cluster(&nodes[2]);
        let follows = doc["leader"]["id"].as_u64() == Some(leader_id);
        let applied = doc["applied_index"].as_u64().unwrap_or(0);
        (follows && applied >= committed).then_some(())
    });
}
