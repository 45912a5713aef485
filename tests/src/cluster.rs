//! A three-node cluster of real `ferromq` processes on loopback (issue 16):
//! [`cluster`] writes each node's configuration and directory, [`Node`]
//! starts, kills and probes one member, [`wait_for_leader`] and
//! [`connect_leader`] find the one that serves.

use crate::conn::Conn;
use crate::{http_get, Broker};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The tests of one test binary that run clusters take this lock, so they
/// run one at a time: six nodes at once on a two-core machine would time
/// out their own elections.
pub static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `n` distinct free loopback ports (all held until every one is chosen).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// One member: its addresses, directory and (while running) process.
pub struct Node {
    /// Its node id (1, 2, 3).
    pub id: u64,
    /// Its directory: `ferromq.toml` and `data/`.
    pub dir: PathBuf,
    /// Its command line.
    pub args: Vec<String>,
    /// Its STOMP listener.
    pub stomp: SocketAddr,
    /// Its native listener.
    pub native: SocketAddr,
    /// Its admin HTTP listener.
    pub admin: SocketAddr,
    /// The running process, if any.
    pub process: Option<Broker>,
}

impl Node {
    /// Starts the process; panics with its log if it does not start.
    pub fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let broker = Broker::try_start_exact(&args, &self.dir).unwrap_or_else(|f| {
            panic!(
                "node {} did not start (exit {:?}); log:\n{}",
                self.id, f.status, f.log
            )
        });
        self.process = Some(broker);
    }

    /// `/healthz`'s body, or "" when the node does not answer.
    pub fn health(&self) -> String {
        if self.process.is_none() {
            return String::new();
        }
        let admin = self.admin;
        std::thread::spawn(move || http_get(admin, "/healthz", None))
            .join()
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

/// Three members under `root` (not started), each with its own ports, a
/// 100 ms heartbeat and a 1–2 s election timeout.
pub fn cluster(root: &Path) -> Vec<Node> {
    let free = free_ports(12);
    let ports: Vec<[u16; 4]> = free.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
    let mut members = String::new();
    for (i, [peer, stomp, native, admin]) in ports.iter().enumerate() {
        members.push_str(&format!(
            "[[cluster.members]]\nid = {}\ncluster = \"127.0.0.1:{peer}\"\nstomp = \"127.0.0.1:{stomp}\"\nnative = \"127.0.0.1:{native}\"\nadmin = \"127.0.0.1:{admin}\"\n",
            i + 1
        ));
    }
    ports
        .iter()
        .enumerate()
        .map(|(i, [peer, stomp, native, admin])| {
            let id = i as u64 + 1;
            let dir = root.join(format!("node{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = format!(
                "[store]\nsync = \"always\"\n\n[cluster]\ncluster_id = \"failover-test\"\nnode_id = {id}\nlisten = \"127.0.0.1:{peer}\"\nheartbeat = \"100ms\"\nelection_timeout_min = \"1s\"\nelection_timeout_max = \"2s\"\n\n{members}"
            );
            let path = dir.join("ferromq.toml");
            std::fs::write(&path, config).unwrap();
            let args = [
                "--config",
                &path.display().to_string(),
                "--data-dir",
                &dir.join("data").display().to_string(),
                "--stomp",
                &format!("127.0.0.1:{stomp}"),
                "--native",
                &format!("127.0.0.1:{native}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--stomp-tls",
                "",
                "--native-tls",
                "",
                "--websocket",
                "",
                "--websocket-tls",
                "",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Node {
                id,
                dir,
                args,
                stomp: format!("127.0.0.1:{stomp}").parse().unwrap(),
                native: format!("127.0.0.1:{native}").parse().unwrap(),
                admin: format!("127.0.0.1:{admin}").parse().unwrap(),
                process: None,
            }
        })
        .collect()
}

/// The index of the node that says `ok leader`, waiting up to `bound`.
pub fn wait_for_leader(nodes: &[Node], bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(i) = nodes.iter().position(|n| n.health() == "ok leader\n") {
            return i;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let health: Vec<String> = nodes.iter().map(Node::health).collect();
    panic!("no leader within {bound:?}; /healthz: {health:?}");
}

/// Connects to the leader, retrying refusals and closes until `bound`.
pub fn connect_leader(node: &Node, bound: Duration) -> Conn {
    let deadline = Instant::now() + bound;
    loop {
        match Conn::open_or_refusal(node.stomp) {
            Ok(Ok(conn)) => return conn,
            other if Instant::now() > deadline => {
                panic!("node {} does not serve: {:?}", node.id, other.err())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
