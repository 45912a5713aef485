//! A follower's refusal names the leader's address for the listener the
//! client came in on (issue 16, item 4): its WebSocket listener hands out
//! the leader's `websocket` address, its STOMP TCP listener the leader's
//! `stomp` one, each from the `[[cluster.members]]` entries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::cluster::{
    cluster_listing, free_ports, one_cluster_at_a_time, start_all, wait_for_leader, BOUND, TIMING,
};
use ferromq_tests::conn::Conn;
use ferromq_tests::ws::ws_connect;
use std::time::{Duration, Instant};

#[test]
fn a_follower_names_the_leaders_address_for_each_listener() {
    let _one = one_cluster_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let websocket = free_ports(3);
    let ws = |id: u64| format!("127.0.0.1:{}", websocket[id as usize - 1]);
    let (mut nodes, _) = cluster_listing(
        root.path(),
        "redirect-test",
        false,
        |_| TIMING.to_string(),
        |id| format!("websocket = \"{}\"\n", ws(id)),
    );
    for node in nodes.iter_mut() {
        node.set_arg("--websocket", &ws(node.id));
    }
    start_all(&mut nodes);
    let leader = wait_for_leader(&nodes, BOUND);
    let follower = (leader + 1) % nodes.len();

    // STOMP over TCP: the leader's `stomp` address (once the follower has
    // heard of the leader).
    let deadline = Instant::now() + BOUND;
    let refusal = loop {
        match Conn::open_or_refusal(nodes[follower].stomp) {
            Ok(Err(error)) if error.get("leader").is_some() => break error,
            other if Instant::now() > deadline => panic!("no redirect: {:?}", other.err()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(refusal.get("message"), Some("not the leader"));
    assert_eq!(
        refusal.get("leader"),
        Some(nodes[leader].stomp.to_string().as_str())
    );

    // STOMP over WebSocket: the leader's `websocket` address, not its
    // STOMP port (a browser cannot speak raw STOMP).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let follower_ws = ws(nodes[follower].id).parse().unwrap();
    let error: Frame = runtime.block_on(async {
        let mut client = ws_connect(follower_ws, &["v12.stomp"]).await.unwrap();
        client
            .send(
                Frame::new(Command::Connect)
                    .header("accept-version", "1.2")
                    .header("host", "/"),
            )
            .await;
        client.expect_error().await
    });
    assert_eq!(error.get("message"), Some("not the leader"), "{error:?}");
    assert_eq!(
        error.get("leader"),
        Some(ws(nodes[leader].id).as_str()),
        "{error:?}"
    );
    assert_ne!(error.get("leader"), refusal.get("leader"));
}
