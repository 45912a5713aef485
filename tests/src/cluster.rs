//! A three-node `ferromq` cluster on loopback for the cluster tests: each
//! node's config file, data directory and process ([`Node`]), finding the
//! leader through `/healthz`, and a STOMP connection whose every failure is
//! an `Err` ([`Conn`]), since nodes die and refuse under it on purpose.

use crate::{http_get, Broker};
use bytes::BytesMut;
use ferromq_protocol::stomp::{encode_frame, Command, Decoder, Frame, Limits, Version};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The queue the cluster tests send to.
pub const QUEUE: &str = "/queue/failover";
/// How long an election plus the new leader's restore may take, at most,
/// on a loaded machine (the target is a few seconds).
pub const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// A STOMP 1.2 connection whose every failure is an `Err` (nodes die and
/// refuse under it on purpose).
pub struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    /// Connects; `Err` unless the node answers CONNECTED. The ERROR frame
    /// of a refusal is returned as `Ok(Err(frame))`.
    pub fn open(addr: SocketAddr) -> std::io::Result<Result<Conn, Frame>> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            decoder: Decoder::new(Limits::default()),
            buf: BytesMut::new(),
        };
        c.send(
            &Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "/"),
        )?;
        match c.recv(Duration::from_secs(10))? {
            Some(f) if f.command == Command::Connected => {
                c.decoder.set_version(Version::V1_2);
                Ok(Ok(c))
            }
            Some(f) if f.command == Command::Error => Ok(Err(f)),
            other => Err(std::io::Error::other(format!("no CONNECTED: {other:?}"))),
        }
    }

    pub fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        encode_frame(f, Version::V1_2, &mut b);
        self.stream.write_all(&b)
    }

    /// The next frame, `None` after `wait` without one.
    pub fn recv(&mut self, wait: Duration) -> std::io::Result<Option<Frame>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?
            {
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `frame` with a receipt and waits for it; the deliveries that
    /// arrive meanwhile are returned. `Err` on an ERROR or a close.
    pub fn with_receipt(&mut self, frame: Frame, receipt: &str) -> std::io::Result<Vec<Frame>> {
        self.send(&frame.header("receipt", receipt))?;
        let mut before = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.recv(Duration::from_millis(200))? {
                Some(f)
                    if f.command == Command::Receipt && f.get("receipt-id") == Some(receipt) =>
                {
                    return Ok(before)
                }
                Some(f) if f.command == Command::Error => {
                    return Err(std::io::Error::other(format!("ERROR: {f:?}")))
                }
                Some(f) => before.push(f),
                None => {}
            }
        }
        Err(std::io::Error::other(format!("no receipt {receipt}")))
    }
}

/// `n` distinct free loopback ports (all held until every one is chosen).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// The tests of this file run one at a time: six nodes at once on a
/// two-core machine would time out their own elections.
pub static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One member: its addresses, directory and (while running) process.
pub struct Node {
    /// Its node id.
    pub id: u64,
    /// Its directory (config file, data directory, log).
    pub dir: PathBuf,
    /// Its command line.
    pub args: Vec<String>,
    /// Its cluster (peer) listener.
    pub peer: SocketAddr,
    /// Its STOMP listener.
    pub stomp: SocketAddr,
    /// Its native listener.
    pub native: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// The running process, if any.
    pub process: Option<Broker>,
}

impl Node {
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

pub fn cluster(root: &std::path::Path) -> Vec<Node> {
    cluster_with(root, "failover-test", &|_| String::new())
}

/// [`cluster`] with another cluster id, and `extra(id)` added to each
/// node's `[cluster]` table (TLS keys, for instance).
pub fn cluster_with(
    root: &std::path::Path,
    cluster_id: &str,
    extra: &dyn Fn(u64) -> String,
) -> Vec<Node> {
    let free = free_ports(12);
    let ports: Vec<[u16; 4]> = free.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
    let mut members = String::new();
    for (i, ports) in ports.iter().enumerate() {
        members.push_str(&member_entry(i as u64 + 1, ports));
    }
    ports
        .iter()
        .enumerate()
        .map(|(i, ports)| {
            node(
                root,
                i as u64 + 1,
                *ports,
                cluster_id,
                &extra(i as u64 + 1),
                &members,
            )
        })
        .collect()
}

/// A node that joins the running cluster `cluster_id` (`cluster.join =
/// true`), on fresh ports; its configured members list only itself, so
/// everything else it learns from the leader that adds it.
pub fn joining_node(root: &std::path::Path, id: u64, cluster_id: &str, extra: &str) -> Node {
    let free = free_ports(4);
    let ports = [free[0], free[1], free[2], free[3]];
    let members = member_entry(id, &ports);
    node(
        root,
        id,
        ports,
        cluster_id,
        &format!("join = true\n{extra}"),
        &members,
    )
}

/// A node of cluster `cluster_id` whose members are itself and `others`
/// (their addresses as they are): with another cluster id, a stranger that
/// campaigns among `others` once its election timeouts pass.
pub fn node_with_members(
    root: &std::path::Path,
    id: u64,
    cluster_id: &str,
    others: &[&Node],
) -> Node {
    let free = free_ports(4);
    let ports = [free[0], free[1], free[2], free[3]];
    let mut members = member_entry(id, &ports);
    for other in others {
        let port = |addr: SocketAddr| addr.port();
        members.push_str(&member_entry(
            other.id,
            &[
                port(other.peer),
                port(other.stomp),
                port(other.native),
                port(other.admin),
            ],
        ));
    }
    node(root, id, ports, cluster_id, "", &members)
}

fn member_entry(id: u64, [peer, stomp, native, admin]: &[u16; 4]) -> String {
    format!(
        "[[cluster.members]]\nid = {id}\ncluster = \"127.0.0.1:{peer}\"\nstomp = \"127.0.0.1:{stomp}\"\nnative = \"127.0.0.1:{native}\"\nadmin = \"127.0.0.1:{admin}\"\n"
    )
}

fn node(
    root: &std::path::Path,
    id: u64,
    [peer, stomp, native, admin]: [u16; 4],
    cluster_id: &str,
    extra: &str,
    members: &str,
) -> Node {
    let dir = root.join(format!("node{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "[store]\nsync = \"always\"\n\n[cluster]\ncluster_id = \"{cluster_id}\"\nnode_id = {id}\nlisten = \"127.0.0.1:{peer}\"\nheartbeat = \"100ms\"\nelection_timeout_min = \"1s\"\nelection_timeout_max = \"2s\"\n{extra}\n\n{members}"
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
        peer: format!("127.0.0.1:{peer}").parse().unwrap(),
        stomp: format!("127.0.0.1:{stomp}").parse().unwrap(),
        native: format!("127.0.0.1:{native}").parse().unwrap(),
        admin: format!("127.0.0.1:{admin}").parse().unwrap(),
        process: None,
    }
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
        match Conn::open(node.stomp) {
            Ok(Ok(conn)) => return conn,
            other if Instant::now() > deadline => {
                panic!("node {} does not serve: {:?}", node.id, other.err())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn send(conn: &mut Conn, body: &str, receipt: &str) -> std::io::Result<()> {
    let frame = Frame::new(Command::Send)
        .header("destination", QUEUE)
        .header("persistent", "true")
        .body(body.to_string());
    conn.with_receipt(frame, receipt).map(|_| ())
}

pub fn body_of(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}
