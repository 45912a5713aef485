//! Operating a cluster of three real `ferromq` processes (issue 16):
//!
//! - `/api/cluster` on every node agrees on the leader and the term, the
//!   `ferromq_raft_*` metrics are there, `ferromq cluster status` prints
//!   the cluster (and `--json` its document), and a membership change sent
//!   to a follower fails naming the leader;
//! - bad input on the cluster port (undecodable bytes, an oversized length
//!   prefix, a handshake naming another cluster id, a running node of
//!   another cluster) is refused and logged, and the cluster keeps taking
//!   persistent SENDs with receipts;
//! - a fourth node joins as a learner, is promoted to voter and removed,
//!   and a persistent message sent after each step is delivered; a fifth
//!   is added as a voter in one call (`add --voter`) and removed;
//! - with peer TLS the cluster forms and serves, and a peer with a
//!   certificate from another CA, without a certificate, or without TLS is
//!   refused and logged;
//! - a standalone broker answers `/api/cluster` with `role: standalone`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::cluster::{
    cluster_named, connect_leader, joining_node, node_with_members, one_cluster_at_a_time,
    wait_for_leader, Node, BOUND as FAILOVER_BOUND, TIMING,
};
use ferromq_tests::pki::Pki;
use ferromq_tests::{ferromq_bin, http_get, metric, Broker};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `GET /api/cluster` of `node`, parsed.
fn api_cluster(node: &Node) -> Value {
    let (status, body) = http_get(node.admin, "/api/cluster", None);
    assert_eq!(status, 200, "GET /api/cluster on node {}: {body}", node.id);
    serde_json::from_str(&body).unwrap()
}

/// Runs `ferromq cluster --url <node's admin> ARGS...`.
fn cli(node: &Node, args: &[&str]) -> Output {
    let url = format!("http://{}", node.admin);
    std::process::Command::new(ferromq_bin())
        .args(["cluster", "--url", &url])
        .args(args)
        .env_remove("FERROMQ_ADMIN_URL")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `probe` until it returns `Some`, for at most `bound`.
fn wait_until<T>(what: &str, bound: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `body` persistently with a receipt to the leader's `queue`, then
/// consumes from that queue on the leader until `body` arrives.
fn deliver(nodes: &[Node], queue: &str, body: &str) {
    let leader = wait_for_leader(nodes, FAILOVER_BOUND);
    let mut producer = connect_leader(&nodes[leader], FAILOVER_BOUND);
    let send = Frame::new(Command::Send)
        .header("destination", queue)
        .header("persistent", "true")
        .body(body.to_string());
    producer
        .with_receipt(send, &format!("r-{body}"))
        .unwrap_or_else(|e| {
            panic!(
                "persistent SEND of {body} to node {}: {e}",
                nodes[leader].id
            )
        });
    let mut consumer = connect_leader(&nodes[leader], FAILOVER_BOUND);
    let subscribe = Frame::new(Command::Subscribe)
        .header("id", "s")
        .header("destination", queue)
        .header("ack", "auto");
    let mut seen: Vec<String> = consumer
        .with_receipt(subscribe, "sub")
        .unwrap()
        .iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|b| b == body) {
        assert!(
            Instant::now() < deadline,
            "{body} not delivered; got {seen:?}"
        );
        if let Some(f) = consumer.recv(Duration::from_millis(500)).unwrap() {
            if f.command == Command::Message {
                seen.push(String::from_utf8_lossy(&f.body).into_owned());
            }
        }
    }
}

/// A peer handshake frame (the prost encoding of `cluster::frame`'s
/// `PeerFrame { hello }`, written out by hand), length-prefixed.
fn hello_frame(cluster_id: &str, from: u8, to: u8) -> Vec<u8> {
    assert!(from < 128 && to < 128 && cluster_id.len() < 100);
    let mut hello = vec![0x08, 0x01, 0x12, cluster_id.len() as u8];
    hello.extend(cluster_id.bytes());
    hello.extend([0x18, from, 0x20, to]);
    let mut frame = vec![0x0A, hello.len() as u8];
    frame.extend(hello);
    let mut out = (frame.len() as u32).to_be_bytes().to_vec();
    out.extend(frame);
    out
}

/// Writes `bytes` to `addr` and reads whatever comes back until the peer
/// closes (or 10 s pass).
fn poke(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The node may close before reading everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// How often `needle` is in `node`'s log.
fn log_count(node: &Node, needle: &str) -> usize {
    node.process.as_ref().unwrap().log().matches(needle).count()
}

/// Waits until `needle` is in `node`'s log more than `before` times.
fn wait_for_more(node: &Node, needle: &str, before: usize) {
    wait_until(
        &format!("another `{needle}` in node {}'s log", node.id),
        Duration::from_secs(10),
        || (log_count(node, needle) > before).then_some(()),
    );
}

const CLOSED: &str = "cluster: closed a peer connection";

#[test]
fn every_node_agrees_on_the_leader_and_the_peer_port_shrugs_off_bad_input() {
    let _one = one_cluster_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_named(root.path(), "ops-test", false, |_| TIMING.to_string()).0;
    for node in nodes.iter_mut() {
        node.start();
    }
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    deliver(&nodes, "/queue/ops-first", "first");
    let leader_id = nodes[leader].id;

    // Every node names the same leader in the same term, and knows an
    // entry is committed.
    let docs = wait_until("every node to agree on the leader", FAILOVER_BOUND, || {
        let docs: Vec<Value> = nodes.iter().map(api_cluster).collect();
        let term = &docs[leader]["term"];
        docs.iter()
            .all(|d| {
                d["leader"]["id"] == leader_id
                    && &d["term"] == term
                    && d["commit_index"].as_u64().is_some()
            })
            .then_some(docs)
    });
    let term = docs[leader]["term"].as_u64().unwrap();
    assert!(term >= 1);
    for (i, doc) in docs.iter().enumerate() {
        assert_eq!(doc["cluster_id"], "ops-test");
        assert_eq!(doc["node_id"], nodes[i].id);
        let role = if i == leader { "leader" } else { "follower" };
        assert_eq!(doc["role"], role, "{doc}");
        assert_eq!(doc["serving"], i == leader, "{doc}");
        assert_eq!(
            doc["leader"]["addresses"]["stomp"],
            nodes[leader].stomp.to_string()
        );
        let members = doc["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{doc}");
        assert!(members.iter().all(|m| m["voter"] == true), "{doc}");
        assert!(doc["applied_index"].as_u64() <= doc["commit_index"].as_u64());
    }
    let followers = docs[leader]["followers"].as_array().unwrap();
    let mut ids: Vec<u64> = followers
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    let mut others: Vec<u64> = nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader_id)
        .collect();
    others.sort_unstable();
    assert_eq!(ids, others);
    assert!(followers.iter().all(|f| f["lag"].as_u64().is_some()));

    // The same numbers as Prometheus series.
    for (i, node) in nodes.iter().enumerate() {
        let (status, text) = http_get(node.admin, "/metrics", None);
        assert_eq!(status, 200);
        assert_eq!(
            metric(&text, "ferromq_raft_leader_id"),
            Some(leader_id as f64),
            "{text}"
        );
        assert!(metric(&text, "ferromq_raft_term").is_some_and(|t| t >= term as f64));
        let on = if i == leader { 1.0 } else { 0.0 };
        assert_eq!(
            metric(&text, "ferromq_raft_role{role=\"leader\"}"),
            Some(on)
        );
        assert_eq!(
            metric(&text, "ferromq_raft_members{kind=\"voter\"}"),
            Some(3.0)
        );
        assert!(
            metric(&text, "ferromq_raft_commit_index").is_some(),
            "{text}"
        );
        assert!(
            metric(&text, "ferromq_raft_applied_index").is_some(),
            "{text}"
        );
        assert!(
            metric(&text, "ferromq_raft_elections_total").is_some(),
            "{text}"
        );
        assert!(
            metric(&text, "ferromq_raft_role_changes_total").is_some(),
            "{text}"
        );
        if i == leader {
            for id in &others {
                let series = format!("ferromq_raft_follower_lag{{node=\"{id}\"}}");
                assert!(
                    metric(&text, &series).is_some(),
                    "{series} missing:\n{text}"
                );
            }
        }
    }
    // One log line per role change, with the term and the leader.
    let log = nodes[leader].process.as_ref().unwrap().log();
    assert!(
        log.lines().any(|l| l.contains("cluster: role changed")
            && l.contains("role=Leader")
            && l.contains("term=")),
        "{log}"
    );

    // `ferromq cluster status`, as text and as JSON.
    let out = cli(&nodes[leader], &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("cluster   ops-test"), "{text}");
    assert!(
        text.contains(&format!("node      {leader_id}  role leader")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "leader    {leader_id}  stomp {}",
            nodes[leader].stomp
        )),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("voter")).count(),
        3,
        "{text}"
    );
    let out = cli(&nodes[(leader + 1) % 3], &["--json", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["role"], "follower");
    assert_eq!(json["leader"]["id"], leader_id);

    // A membership change on a follower fails, naming the leader.
    let follower = (leader + 1) % 3;
    let out = cli(
        &nodes[follower],
        &["remove", &nodes[(leader + 2) % 3].id.to_string()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let error = stderr(&out);
    assert!(
        error.contains(&format!("node {leader_id} leads")),
        "{error}"
    );
    assert!(error.contains(&nodes[leader].admin.to_string()), "{error}");
    // Bad usage is exit code 2.
    let out = cli(&nodes[leader], &["add", "not-a-number"]);
    assert_eq!(out.status.code(), Some(2));

    // Bad input on the cluster port of a follower and of the leader.
    for target in [follower, leader] {
        let node = &nodes[target];
        let before = log_count(node, CLOSED);
        // A frame whose bytes are no peer message.
        let answer = poke(node.peer, &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        assert!(answer.is_empty(), "{answer:?}");
        wait_for_more(node, CLOSED, before);
        // A length prefix far beyond cluster.max_frame_size.
        let before = log_count(node, "frame size too big");
        let answer = poke(node.peer, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(answer.is_empty(), "{answer:?}");
        wait_for_more(node, "frame size too big", before);
        // A node of another cluster: refused with the reason, and logged.
        let needle = "cluster id `intruder` is not ours";
        let before = log_count(node, needle);
        let answer = poke(node.peer, &hello_frame("intruder", 2, node.id as u8));
        assert!(
            String::from_utf8_lossy(&answer).contains(needle),
            "{answer:?}"
        );
        wait_for_more(node, needle, before);
    }
    // A whole node of another cluster that lists one of ours as a member:
    // once its election timeouts pass it campaigns, and is refused.
    let target = &nodes[follower];
    let needle = "cluster id `intruder-node` is not ours";
    let before = log_count(target, needle);
    let mut stranger = node_with_members(root.path(), 9, "intruder-node", &[target]);
    stranger.start();
    wait_until(
        "the stranger's vote request to be refused",
        FAILOVER_BOUND,
        || (log_count(target, needle) > before).then_some(()),
    );
    // The stranger logs the refusal when it reads the answer, which may
    // come after the target's own log line.
    assert!(
        stranger.wait_for_log("refused us", FAILOVER_BOUND),
        "{}",
        stranger.log()
    );
    stranger.process = None;
    // Unharmed: persistent SENDs with receipts still go through.
    deliver(&nodes, "/queue/ops-after", "after-bad-input");
    let docs: Vec<Value> = nodes.iter().map(api_cluster).collect();
    assert!(
        docs.iter()
            .all(|d| d["members"].as_array().unwrap().len() == 3),
        "{docs:?}"
    );
}

#[test]
fn a_fourth_node_is_added_as_learner_promoted_and_removed() {
    let _one = one_cluster_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_named(root.path(), "ops-members", false, |_| TIMING.to_string()).0;
    for node in nodes.iter_mut() {
        node.start();
    }
    wait_for_leader(&nodes, FAILOVER_BOUND);
    deliver(&nodes, "/queue/ops-members", "before");
    let mut fourth = joining_node(root.path(), 4, "ops-members", "");
    fourth.start();
    // It waits to be added: no cluster of its own.
    let doc = api_cluster(&fourth);
    assert_eq!(doc["role"], "learner", "{doc}");
    assert!(doc["leader"].is_null(), "{doc}");

    // Add it as a learner, with its addresses.
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    let (peer, stomp, native, admin) = (
        fourth.peer.to_string(),
        fourth.stomp.to_string(),
        fourth.native.to_string(),
        fourth.admin.to_string(),
    );
    let out = cli(
        &nodes[leader],
        &[
            "add",
            "4",
            "--cluster",
            &peer,
            "--stomp",
            &stomp,
            "--native",
            &native,
            "--admin",
            &admin,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("node 4: added as a learner"),
        "{}",
        stdout(&out)
    );
    let member_4 = |doc: &Value| {
        doc["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == 4)
            .cloned()
    };
    let doc = api_cluster(&nodes[leader]);
    let m = member_4(&doc).unwrap();
    assert_eq!(m["voter"], false);
    assert_eq!(m["addresses"]["stomp"], stomp);
    // The learner learns the membership and the leader from the log.
    let leader_id = nodes[leader].id;
    wait_until("the learner to know the leader", FAILOVER_BOUND, || {
        let doc = api_cluster(&fourth);
        (doc["leader"]["id"] == leader_id && doc["members"].as_array().unwrap().len() == 4)
            .then_some(())
    });
    deliver(&nodes, "/queue/ops-members", "after-add");
    // Adding it twice is refused.
    let out = cli(&nodes[leader], &["add", "4", "--cluster", &peer]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already a member"),
        "{}",
        stderr(&out)
    );

    // Promote it.
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    let out = cli(&nodes[leader], &["promote", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = api_cluster(&nodes[leader]);
    assert_eq!(member_4(&doc).unwrap()["voter"], true, "{doc}");
    wait_until("the new voter to follow", FAILOVER_BOUND, || {
        (api_cluster(&fourth)["role"] == "follower").then_some(())
    });
    deliver(&nodes, "/queue/ops-members", "after-promote");
    let (_, text) = http_get(nodes[leader].admin, "/metrics", None);
    assert_eq!(
        metric(&text, "ferromq_raft_members{kind=\"voter\"}"),
        Some(4.0)
    );

    // Remove it.
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    let out = cli(&nodes[leader], &["--json", "remove", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["removed"], 4);
    let doc = api_cluster(&nodes[leader]);
    assert!(member_4(&doc).is_none(), "{doc}");
    assert_eq!(doc["members"].as_array().unwrap().len(), 3);
    fourth.process = None;
    deliver(&nodes, "/queue/ops-members", "after-remove");
    // Removing an unknown node is refused.
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    let out = cli(&nodes[leader], &["remove", "4"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("node 4 is not a member"),
        "{}",
        stderr(&out)
    );

    // `add --voter` adds and promotes in one call once the node caught up.
    let mut fifth = joining_node(root.path(), 5, "ops-members", "");
    fifth.start();
    let peer = fifth.peer.to_string();
    let out = cli(&nodes[leader], &["add", "5", "--cluster", &peer, "--voter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("added and promoted to voter"),
        "{}",
        stdout(&out)
    );
    let doc = api_cluster(&nodes[leader]);
    let m = doc["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 5)
        .cloned();
    assert_eq!(m.unwrap()["voter"], true, "{doc}");
    deliver(&nodes, "/queue/ops-members", "after-voter-add");
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    let out = cli(&nodes[leader], &["remove", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fifth.process = None;
    deliver(&nodes, "/queue/ops-members", "after-second-remove");
}

/// A blocking TLS client to a peer port that sends a valid handshake
/// frame; `Ok` with the node's first answer (nothing when it closed), or
/// the TLS error.
fn tls_hello(
    addr: SocketAddr,
    trust: &Path,
    identity: Option<(&Path, &Path)>,
    hello: &[u8],
) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let certs = |path: &Path| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(&std::fs::read(path).unwrap())
            .map(|c| c.unwrap())
            .collect()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(trust) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_slice(&std::fs::read(key).unwrap()).unwrap();
            builder.with_client_auth_cert(certs(cert), key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(hello).map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    // One read: a refused peer gets an alert or a close, an accepted one
    // its Welcome (the connection then stays open for requests).
    let mut answer = vec![0u8; 1024];
    match tls.read(&mut answer) {
        Ok(n) => {
            answer.truncate(n);
            Ok(answer)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn a_tls_cluster_forms_serves_and_refuses_peers_without_a_good_certificate() {
    let _one = one_cluster_at_a_time();
    let pki = Pki::new();
    let stranger = Pki::new();
    let root = tempfile::tempdir().unwrap();
    let extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
        pki.path("server.crt").display(),
        pki.path("server.key").display(),
        pki.path("ca.crt").display()
    );
    let mut nodes = cluster_named(root.path(), "ops-tls", false, |_| {
        format!("{TIMING}{extra}")
    })
    .0;
    for node in nodes.iter_mut() {
        node.start();
    }
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    deliver(&nodes, "/queue/ops-tls", "over-tls");
    let follower = (leader + 1) % 3;
    let node = &nodes[follower];
    let hello = hello_frame("ops-tls", nodes[leader].id as u8, node.id as u8);
    let refused = "refused the TLS handshake";

    // A certificate signed by another CA.
    let before = log_count(node, refused);
    let answer = tls_hello(
        node.peer,
        &pki.path("ca.crt"),
        Some((&stranger.path("server.crt"), &stranger.path("server.key"))),
        &hello,
    );
    assert!(answer.as_ref().map_or(true, Vec::is_empty), "{answer:?}");
    wait_for_more(node, refused, before);
    // No client certificate.
    let before = log_count(node, refused);
    let answer = tls_hello(node.peer, &pki.path("ca.crt"), None, &hello);
    assert!(answer.as_ref().map_or(true, Vec::is_empty), "{answer:?}");
    wait_for_more(node, refused, before);
    // No TLS at all: at most a TLS alert record (content type 21) comes
    // back, never a peer frame.
    let before = log_count(node, refused);
    let answer = poke(node.peer, &hello);
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    wait_for_more(node, refused, before);
    // The right certificate gets through TLS and to the Raft handshake
    // (a member's id and our cluster: welcomed), so the refusals above
    // were the certificate's doing.
    let answer = tls_hello(
        node.peer,
        &pki.path("ca.crt"),
        Some((&pki.path("server.crt"), &pki.path("server.key"))),
        &hello,
    )
    .unwrap();
    assert!(!answer.is_empty(), "no Welcome");

    deliver(&nodes, "/queue/ops-tls", "after-refusals");
}

#[test]
fn a_standalone_broker_says_so_on_api_cluster() {
    let broker = Broker::start_with(None, &["--admin", "127.0.0.1:0"]);
    let (status, body) = http_get(broker.admin(), "/api/cluster", None);
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["role"], "standalone");
    assert!(doc["members"].as_array().unwrap().is_empty());
    let (_, metrics) = http_get(broker.admin(), "/metrics", None);
    assert!(!metrics.contains("ferromq_raft_"), "{metrics}");
    let out = std::process::Command::new(ferromq_bin())
        .args([
            "cluster",
            "--url",
            &format!("http://{}", broker.admin()),
            "status",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("standalone"), "{}", stdout(&out));
    let out = std::process::Command::new(ferromq_bin())
        .args([
            "cluster",
            "--url",
            &format!("http://{}", broker.admin()),
            "remove",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("standalone"), "{}", stderr(&out));
}
