//! Three real `ferromq` processes form a cluster on loopback (issue 16):
//!
//! - a follower answers CONNECT with ERROR `not the leader` and a `leader`
//!   header naming the leader's STOMP address, and a native Open with Close
//!   `not-leader` naming its native address;
//! - persistent SENDs with receipts go to the leader, and a consumer acks
//!   some of them with receipts;
//! - the leader is killed with SIGKILL; a new leader is elected and serves
//!   within a generous bound (the failover time, kill to the first receipt
//!   from the new leader, is measured and printed); the killed node is
//!   restarted and rejoins as a follower;
//! - at the end every receipted message not acked is delivered by the
//!   leader, and no message whose ACK was receipted is delivered again.
//!
//! - a leader paused (SIGSTOP) past the election timeout is deposed; after
//!   SIGCONT it closes its clients and restarts itself as a follower.
//!
//! `FERROMQ_FAILOVER_CYCLES` sets the number of kills (default 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use bytes::BytesMut;
use ferromq_protocol::native::{self, ErrorCondition, Open, Preamble};
use ferromq_protocol::stomp::{encode_frame, Command, Decoder, Frame, Limits, Version};
use ferromq_tests::{http_get, Broker};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const QUEUE: &str = "/queue/failover";
/// Messages sent per cycle, and acked per cycle.
const SENDS: usize = 20;
const ACKS: usize = 5;
/// How long an election plus the new leader's restore may take, at most,
/// on a loaded machine (the target is a few seconds).
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// A STOMP 1.2 connection whose every failure is an `Err` (nodes die and
/// refuse under it on purpose).
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    /// Connects; `Err` unless the node answers CONNECTED. The ERROR frame
    /// of a refusal is returned as `Ok(Err(frame))`.
    fn open(addr: SocketAddr) -> std::io::Result<Result<Conn, Frame>> {
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

    fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        encode_frame(f, Version::V1_2, &mut b);
        self.stream.write_all(&b)
    }

    /// The next frame, `None` after `wait` without one.
    fn recv(&mut self, wait: Duration) -> std::io::Result<Option<Frame>> {
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
    fn with_receipt(&mut self, frame: Frame, receipt: &str) -> std::io::Result<Vec<Frame>> {
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
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// The tests of this file run one at a time: six nodes at once on a
/// two-core machine would time out their own elections.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One member: its addresses, directory and (while running) process.
struct Node {
    id: u64,
    dir: PathBuf,
    args: Vec<String>,
    stomp: SocketAddr,
    native: SocketAddr,
    admin: SocketAddr,
    process: Option<Broker>,
}

impl Node {
    fn start(&mut self) {
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
    fn health(&self) -> String {
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

fn cluster(root: &std::path::Path) -> Vec<Node> {
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
fn wait_for_leader(nodes: &[Node], bound: Duration) -> usize {
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
fn connect_leader(node: &Node, bound: Duration) -> Conn {
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

fn send(conn: &mut Conn, body: &str, receipt: &str) -> std::io::Result<()> {
    let frame = Frame::new(Command::Send)
        .header("destination", QUEUE)
        .header("persistent", "true")
        .body(body.to_string());
    conn.with_receipt(frame, receipt).map(|_| ())
}

fn body_of(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

#[test]
fn the_cluster_fails_over_without_losing_receipted_messages() {
    let cycles: usize = std::env::var("FERROMQ_FAILOVER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster(root.path());
    for node in nodes.iter_mut() {
        node.start();
    }
    let mut leader = wait_for_leader(&nodes, FAILOVER_BOUND);

    // A follower refuses and names the leader (once it has heard of it).
    let follower = (leader + 1) % nodes.len();
    let leader_stomp = nodes[leader].stomp.to_string();
    let deadline = Instant::now() + FAILOVER_BOUND;
    let refusal = loop {
        match Conn::open(nodes[follower].stomp) {
            Ok(Err(error)) if error.get("leader").is_some() => break error,
            other if Instant::now() > deadline => panic!("no redirect: {:?}", other.err()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(refusal.get("message"), Some("not the leader"));
    assert_eq!(refusal.get("leader"), Some(leader_stomp.as_str()));
    assert_eq!(nodes[follower].health(), "ok follower\n");
    let mut raw = native_common::Raw::connect(nodes[follower].native);
    raw.send_bytes(&Preamble::CURRENT.to_bytes());
    assert_eq!(raw.read_exact(8), Preamble::CURRENT.to_bytes());
    raw.send(native::Frame::new(0, Open::default()));
    let close = raw.expect_close();
    assert_eq!(close.condition(), ErrorCondition::NotLeader);
    assert_eq!(
        close.description,
        format!("not the leader; leader={}", nodes[leader].native)
    );

    let mut receipted = HashSet::new();
    let mut acked = HashSet::new();
    let mut failovers = Vec::new();
    for cycle in 0..cycles {
        let mut producer = connect_leader(&nodes[leader], FAILOVER_BOUND);
        for i in 0..SENDS {
            let body = format!("c{cycle}-m{i}");
            send(&mut producer, &body, &format!("r-{body}")).expect("send to the leader");
            receipted.insert(body);
        }
        // Consume a few and ack them with receipts.
        let mut consumer = connect_leader(&nodes[leader], FAILOVER_BOUND);
        let subscribe = Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", QUEUE)
            .header("ack", "client-individual");
        let mut deliveries = consumer.with_receipt(subscribe, "sub").unwrap();
        while deliveries.len() < ACKS {
            match consumer.recv(Duration::from_secs(10)).unwrap() {
                Some(f) if f.command == Command::Message => deliveries.push(f),
                other => panic!("expected a MESSAGE, got {other:?}"),
            }
        }
        for (n, m) in deliveries.into_iter().take(ACKS).enumerate() {
            let id = m.get("ack").expect("ack header").to_string();
            let ack = Frame::new(Command::Ack).header("id", &id);
            // Deliveries arriving meanwhile stay unacked (owed later).
            consumer
                .with_receipt(ack, &format!("a-{cycle}-{n}"))
                .expect("ack receipt");
            acked.insert(body_of(&m));
        }

        // Kill the leader; the two others elect a new one that serves.
        let killed = leader;
        nodes[killed].process.as_mut().unwrap().kill9();
        let killed_at = Instant::now();
        nodes[killed].process = None;
        drop((producer, consumer));
        leader = wait_for_leader(&nodes, FAILOVER_BOUND);
        assert_ne!(leader, killed);
        let mut probe = connect_leader(&nodes[leader], FAILOVER_BOUND);
        let body = format!("c{cycle}-probe");
        send(&mut probe, &body, "probe").expect("the new leader takes a persistent SEND");
        let failover = killed_at.elapsed();
        receipted.insert(body);
        println!(
            "cycle {cycle}: node {} killed, node {} leads; failover (kill to first receipt) {} ms",
            nodes[killed].id,
            nodes[leader].id,
            failover.as_millis()
        );
        assert!(failover < FAILOVER_BOUND, "failover took {failover:?}");
        failovers.push(failover);
        drop(probe);
        // The killed node comes back as a follower.
        nodes[killed].start();
    }

    // Drain: every receipted message not acked comes back at least once;
    // none whose ack was receipted does.
    let mut consumer = connect_leader(&nodes[leader], FAILOVER_BOUND);
    let subscribe = Frame::new(Command::Subscribe)
        .header("id", "drain")
        .header("destination", QUEUE)
        .header("ack", "auto");
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for f in consumer.with_receipt(subscribe, "drain").unwrap() {
        *delivered.entry(body_of(&f)).or_default() += 1;
    }
    while let Some(f) = consumer.recv(Duration::from_secs(3)).unwrap() {
        if f.command == Command::Message {
            *delivered.entry(body_of(&f)).or_default() += 1;
        }
    }
    let owed: Vec<&String> = receipted.difference(&acked).collect();
    assert!(!owed.is_empty() && !acked.is_empty());
    for body in &owed {
        assert!(
            delivered.contains_key(*body),
            "receipted message {body} was lost; delivered {delivered:?}"
        );
    }
    for body in &acked {
        assert!(
            !delivered.contains_key(body),
            "message {body} was delivered again after its ACK was receipted"
        );
    }
    let mut millis: Vec<u128> = failovers.iter().map(Duration::as_millis).collect();
    millis.sort_unstable();
    println!(
        "failovers: {} kills, {} receipted, {} acked, {} delivered at the end; failover ms {millis:?} (median {}, max {})",
        failovers.len(),
        receipted.len(),
        acked.len(),
        delivered.len(),
        millis[millis.len() / 2],
        millis[millis.len() - 1]
    );
    assert_eq!(failovers.len(), cycles);
}

/// SIGSTOP of the leader past the election timeout, then SIGCONT: the
/// others elect a new leader that serves; the old one finds it was deposed,
/// stops serving and restarts itself (same pid) as a follower.
#[test]
fn a_paused_leader_is_deposed_and_rejoins_as_a_follower() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster(root.path());
    for node in nodes.iter_mut() {
        node.start();
    }
    let old = wait_for_leader(&nodes, FAILOVER_BOUND);
    let mut producer = connect_leader(&nodes[old], FAILOVER_BOUND);
    for i in 0..5 {
        send(&mut producer, &format!("before-{i}"), &format!("r{i}")).unwrap();
    }
    let pid = nodes[old]
        .process
        .as_ref()
        .unwrap()
        .pid()
        .unwrap()
        .to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    let others: Vec<usize> = (0..nodes.len()).filter(|i| *i != old).collect();
    let deadline = Instant::now() + FAILOVER_BOUND;
    let new = loop {
        if let Some(i) = others
            .iter()
            .copied()
            .find(|i| nodes[*i].health() == "ok leader\n")
        {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader while the old one is stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut probe = connect_leader(&nodes[new], FAILOVER_BOUND);
    send(&mut probe, "after", "r-after").unwrap();
    signal("-CONT");
    // The old leader's clients are closed, and it comes back as a follower.
    let deadline = Instant::now() + FAILOVER_BOUND;
    while nodes[old].health() != "ok follower\n" {
        assert!(
            Instant::now() < deadline,
            "the old leader did not rejoin as a follower; log:\n{}",
            nodes[old].process.as_ref().unwrap().log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = nodes[old].process.as_ref().unwrap().log();
    assert!(
        log.contains("restarting to rejoin the cluster as a follower"),
        "{log}"
    );
    assert!(send(&mut producer, "late", "r-late").is_err());
    // Everything receipted is on the new leader.
    let mut consumer = connect_leader(&nodes[new], FAILOVER_BOUND);
    let subscribe = Frame::new(Command::Subscribe)
        .header("id", "s")
        .header("destination", QUEUE)
        .header("ack", "auto");
    let mut bodies: HashSet<String> = consumer
        .with_receipt(subscribe, "s")
        .unwrap()
        .iter()
        .map(body_of)
        .collect();
    while let Some(f) = consumer.recv(Duration::from_secs(3)).unwrap() {
        bodies.insert(body_of(&f));
    }
    for body in (0..5)
        .map(|i| format!("before-{i}"))
        .chain(["after".into()])
    {
        assert!(bodies.contains(&body), "{body} lost; got {bodies:?}");
    }
}
