//! Three Raft nodes over the real TCP peer network on loopback: commits and
//! failover, and a peer port that refuses strangers and garbage without
//! harm to the cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::harness::{
    in_order, members, payload, propose_all, propose_committed, serving_leader, settings, wait_for,
};
use super::toy::Toy;
use crate::cluster::codec::WireVote;
use crate::cluster::frame::{Body, Hello, PeerFrame, WireVoteRequest, PROTOCOL_VERSION};
use crate::cluster::network::codec;
use crate::cluster::{ClusterNode, NodeId, PeerListener, Replicator, Role};

struct TcpCluster {
    dir: tempfile::TempDir,
    members: BTreeMap<NodeId, crate::cluster::Member>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    nodes: BTreeMap<NodeId, (ClusterNode, Arc<Toy>)>,
}

impl TcpCluster {
    async fn start() -> TcpCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=3 {
            let listener = PeerListener::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            listeners.insert(id, listener);
        }
        let addrs: BTreeMap<NodeId, SocketAddr> = listeners
            .iter()
            .map(|(id, listener)| (*id, listener.local_addr()))
            .collect();
        let members = members(3, |id| addrs[&id].to_string());
        let mut nodes = BTreeMap::new();
        for (id, listener) in listeners {
            let toy = Arc::new(Toy::default());
            let node =
                ClusterNode::start(settings(id, &members, dir.path()), toy.clone(), listener)
                    .await
                    .unwrap();
            nodes.insert(id, (node, toy));
        }
        TcpCluster {
            dir,
            members,
            addrs,
            nodes,
        }
    }

    fn live(&self) -> Vec<ClusterNode> {
        self.nodes.values().map(|(node, _)| node.clone()).collect()
    }

    async fn leader(&self) -> ClusterNode {
        let live = self.live();
        wait_for("a serving leader", || serving_leader(&live)).await
    }

    async fn stop(self) {
        for (node, _) in self.nodes.values() {
            node.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_commit_and_fail_over_over_tcp() {
    let mut cluster = TcpCluster::start().await;
    let old = cluster.leader().await;
    let first: Vec<_> = (0..20).map(|i| payload("tcp", i)).collect();
    let results = propose_all(&old, &first).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let status = old.status();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.members.len(), 3);
    assert_eq!(status.followers.len(), 2, "{status:?}");
    assert_eq!(status.leader.as_ref().map(|l| l.id), Some(old.node_id()));
    assert!(
        status
            .leader
            .unwrap()
            .addresses
            .stomp
            .starts_with("127.0.0.1:"),
        "the leader's client address is known for redirects"
    );

    // The leader stops: its listener closes, its peers time out.
    let old_id = old.node_id();
    let (node, old_toy) = cluster.nodes.remove(&old_id).unwrap();
    node.shutdown().await;
    let new = cluster.leader().await;
    assert_ne!(new.node_id(), old_id);
    let second: Vec<_> = (0..5).map(|i| payload("tcp-after", i)).collect();
    let committed = propose_committed(&cluster.live(), &second).await;
    assert_eq!(committed.len(), 5);
    let everything: Vec<_> = first.iter().chain(&committed).cloned().collect();
    for (_, toy) in cluster.nodes.values() {
        wait_for("the survivors to apply everything", || {
            in_order(&toy.payloads(), &everything).then_some(())
        })
        .await;
    }
    // A follower redirects: it names the new leader.
    let follower = cluster
        .live()
        .into_iter()
        .find(|node| node.node_id() != new.node_id())
        .unwrap();
    let refused = follower
        .propose(bytes::Bytes::from_static(b"to-a-follower"))
        .await;
    match refused {
        Err(crate::cluster::ReplicateError::NotLeader {
            leader: Some(leader),
        }) => {
            assert_eq!(leader.id, new.node_id())
        }
        other => panic!("a follower must refuse with the leader's address: {other:?}"),
    }

    // The old leader comes back on its address: the others reconnect to it
    // and it catches up as a follower.
    let addr = cluster.addrs[&old_id];
    let listener = wait_for_bind(addr).await;
    let restarted = ClusterNode::start(
        settings(old_id, &cluster.members, cluster.dir.path()),
        old_toy.clone(),
        listener,
    )
    .await
    .unwrap();
    cluster.nodes.insert(old_id, (restarted, old_toy.clone()));
    wait_for("the restarted node to catch up", || {
        in_order(&old_toy.payloads(), &everything).then_some(())
    })
    .await;
    cluster.stop().await;
}

/// Binds `addr` again once the stopped node's listener has let go of it.
async fn wait_for_bind(addr: SocketAddr) -> PeerListener {
    let start = std::time::Instant::now();
    loop {
        match PeerListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(20),
                "cannot rebind {addr}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hello(cluster_id: &str, from: NodeId, to: NodeId) -> Body {
    Body::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        cluster_id: cluster_id.into(),
        from,
        to,
    })
}

/// Sends `first` as the opening frame; returns the answer, if any, and
/// whether the listener closed the connection afterwards.
async fn open_with(addr: SocketAddr, first: Body) -> (Option<Body>, bool) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut framed = Framed::new(stream, codec(1 << 20));
    framed
        .send(bytes::Bytes::from(PeerFrame::new(first).encode_to_vec()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), framed.next())
        .await
        .expect("the listener answers or closes in time");
    let answer = match answer {
        Some(Ok(bytes)) => Some(PeerFrame::decode_frame(&bytes).unwrap()),
        _ => None,
    };
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(20), framed.next()).await,
        Ok(None | Some(Err(_)))
    );
    (answer, closed)
}

/// Writes raw bytes; returns whether the listener closed the connection.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    read.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_refuses_strangers_and_survives_garbage() {
    let cluster = TcpCluster::start().await;
    cluster.leader().await;
    let addr = cluster.addrs[&2];

    let refusals = [
        (hello("another-cluster", 1, 2), "cluster id"),
        (hello("test-cluster", 99, 2), "not a member"),
        (hello("test-cluster", 1, 3), "this is node 2"),
    ];
    for (first, reason) in refusals {
        let (answer, closed) = open_with(addr, first).await;
        match answer {
            Some(Body::Refused(refused)) => {
                assert!(refused.reason.contains(reason), "{}", refused.reason)
            }
            other => panic!("expected a refusal about {reason}, got {other:?}"),
        }
        assert!(closed, "a refused peer is disconnected");
    }

    // A request before the handshake: closed without an answer.
    let vote = WireVote {
        term: 99,
        node_id: 1,
        committed: false,
    };
    let (answer, closed) = open_with(
        addr,
        Body::VoteRequest(WireVoteRequest {
            vote: Some(vote),
            last_log_id: None,
        }),
    )
    .await;
    assert!(answer.is_none() && closed, "{answer:?}");

    // Bytes that are not a frame, and a frame longer than allowed.
    assert!(closed_after(addr, &[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]).await);
    assert!(closed_after(addr, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).await);
    // A valid handshake followed by garbage.
    let mut handshake = Vec::new();
    let hello_bytes = PeerFrame::new(hello("test-cluster", 1, 2)).encode_to_vec();
    handshake.extend_from_slice(&(hello_bytes.len() as u32).to_be_bytes());
    handshake.extend_from_slice(&hello_bytes);
    handshake.extend_from_slice(&[0, 0, 0, 3, 0xde, 0xad, 0xbe]);
    assert!(closed_after(addr, &handshake).await);

    // The cluster never noticed: it still commits on all three nodes.
    let committed = propose_committed(&cluster.live(), &[payload("unharmed", 0)]).await;
    assert_eq!(committed.len(), 1);
    for (_, toy) in cluster.nodes.values() {
        wait_for("every node to apply", || {
            in_order(&toy.payloads(), &committed).then_some(())
        })
        .await;
    }
    cluster.stop().await;
}
