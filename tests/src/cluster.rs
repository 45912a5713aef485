//! A three-node cluster of real `ferromq` processes on loopback (issue 16):
//! [`cluster`] writes each node's configuration and directory, [`Node`]
//! starts, kills and probes one member, [`wait_for_leader`] and
//! [`connect_leader`] find the one that serves.
//!
//! [`cluster_with`] can put every peer link through a [`Proxy`] per
//! direction ([`PeerLinks`]): node i's configuration lists member j at the
//! address of proxy(i→j), which forwards to j's cluster listener, so the
//! test can cut, blackhole, delay and heal each direction of each link.

use crate::conn::Conn;
use crate::proxy::{Mode, Proxy, Stats};
use crate::{http_get, Broker};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The tests of one test binary that run clusters take this lock, so they
/// run one at a time: six nodes at once on a two-core machine would time
/// out their own elections.
pub static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long an election plus the new leader's restore may take, at most,
/// on a loaded machine (the target is a few seconds).
pub const BOUND: Duration = Duration::from_secs(30);

/// Takes [`ONE_CLUSTER_AT_A_TIME`]; a test that failed holding it does not
/// fail the others.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A count from the environment variable `name` (a soak knob), else
/// `default`.
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts every node.
pub fn start_all(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        node.start();
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

/// One member: its addresses, directory and (while running) process.
pub struct Node {
    /// Its node id (1, 2, 3).
    pub id: u64,
    /// Its directory: `ferromq.toml` and `data/`.
    pub dir: PathBuf,
    /// Its command line.
    pub args: Vec<String>,
    /// Its cluster (peer) listener.
    pub peer: SocketAddr,
    /// Its STOMP listener.
    pub stomp: SocketAddr,
    /// Its native listener.
    pub native: SocketAddr,
    /// Its admin HTTP listener.
    pub admin: SocketAddr,
    /// The running process, if any.
    pub process: Option<Broker>,
    /// What its earlier processes logged (kept across kills and restarts).
    pub past_log: String,
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

    /// SIGKILL; its log so far is kept in [`Node::past_log`].
    pub fn kill9(&mut self) {
        if let Some(mut broker) = self.process.take() {
            broker.kill9();
            self.past_log.push_str(&broker.log());
        }
    }

    /// Everything every process of this node logged.
    pub fn log(&self) -> String {
        let mut log = self.past_log.clone();
        if let Some(broker) = &self.process {
            log.push_str(&broker.log());
        }
        log
    }

    /// Waits (up to `bound`) until [`Node::log`] contains `needle`.
    pub fn wait_for_log(&self, needle: &str, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to the running process.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .process
            .as_ref()
            .and_then(Broker::pid)
            .unwrap_or_else(|| panic!("node {} is not running", self.id))
            .to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Sets the value of command-line option `flag` (e.g. `--websocket`,
    /// which every node starts with as `""`: off); before [`Node::start`].
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_owned(),
            _ => self.args.extend([flag.to_owned(), value.to_owned()]),
        }
    }

    /// Adds `lines` to table `[table]` of its configuration file (before
    /// [`Node::start`]): into the table when the file has it (`store`),
    /// else as a new table at the end (`destinations`).
    pub fn configure(&self, table: &str, lines: &str) {
        let path = self.dir.join("ferromq.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let header = format!("[{table}]\n");
        let text = match text.find(&header) {
            Some(at) => {
                let after = at + header.len();
                format!("{}{lines}\n{}", &text[..after], &text[after..])
            }
            None => format!("{text}\n{header}{lines}\n"),
        };
        std::fs::write(&path, text).unwrap();
    }

    /// Removes its data directory (stop it first).
    pub fn wipe(&self) {
        assert!(self.process.is_none(), "stop node {} first", self.id);
        std::fs::remove_dir_all(self.dir.join("data")).unwrap();
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

/// The `[cluster]` timing of [`cluster`]'s nodes: 100 ms heartbeats, a
/// 1–2 s election timeout.
pub const TIMING: &str =
    "heartbeat = \"100ms\"\nelection_timeout_min = \"1s\"\nelection_timeout_max = \"2s\"\n";

/// Three members under `root` (not started), each with its own ports and
/// [`TIMING`], linked directly.
pub fn cluster(root: &Path) -> Vec<Node> {
    cluster_with(root, false, |_| TIMING.to_string()).0
}

/// Three members under `root` (not started). `cluster_keys(id)` gives the
/// lines node `id` has in its `[cluster]` table besides its identity and
/// members (at least the timing, e.g. [`TIMING`]). With `proxied`, every
/// peer link goes through a proxy per direction (see the module doc).
pub fn cluster_with(
    root: &Path,
    proxied: bool,
    cluster_keys: impl Fn(u64) -> String,
) -> (Vec<Node>, Option<PeerLinks>) {
    cluster_named(root, "failover-test", proxied, cluster_keys)
}

/// [`cluster_with`] with cluster id `cluster_id`.
pub fn cluster_named(
    root: &Path,
    cluster_id: &str,
    proxied: bool,
    cluster_keys: impl Fn(u64) -> String,
) -> (Vec<Node>, Option<PeerLinks>) {
    cluster_listing(root, cluster_id, proxied, cluster_keys, |_| String::new())
}

/// [`cluster_named`] where every node lists member `id` with the lines
/// `member_keys(id)` added to its `[[cluster.members]]` entry (e.g. its
/// `websocket` address; start that listener with [`Node::set_arg`]).
pub fn cluster_listing(
    root: &Path,
    cluster_id: &str,
    proxied: bool,
    cluster_keys: impl Fn(u64) -> String,
    member_keys: impl Fn(u64) -> String,
) -> (Vec<Node>, Option<PeerLinks>) {
    let free = free_ports(12);
    let ports: Vec<[u16; 4]> = free.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
    let ids: Vec<u64> = (1..=ports.len() as u64).collect();
    let peer = |id: u64| -> SocketAddr {
        format!("127.0.0.1:{}", ports[id as usize - 1][0])
            .parse()
            .unwrap()
    };
    let links = proxied.then(|| PeerLinks {
        proxies: ids
            .iter()
            .flat_map(|&from| ids.iter().map(move |&to| (from, to)))
            .filter(|(from, to)| from != to)
            .map(|(from, to)| (from, to, Proxy::start(peer(to)).expect("a proxy")))
            .collect(),
    });
    // How node `from` reaches node `to`'s cluster listener.
    let route = |from: u64, to: u64| -> SocketAddr {
        match &links {
            Some(links) if from != to => links.link(from, to).addr(),
            _ => peer(to),
        }
    };
    let ports_of_all = &ports;
    let nodes = ports
        .iter()
        .enumerate()
        .map(|(i, ports)| {
            let id = i as u64 + 1;
            let mut members = String::new();
            for (j, [_, stomp, native, admin]) in ports_of_all.iter().enumerate() {
                let member = j as u64 + 1;
                members.push_str(&format!(
                    "[[cluster.members]]\nid = {member}\ncluster = \"{}\"\nstomp = \"127.0.0.1:{stomp}\"\nnative = \"127.0.0.1:{native}\"\nadmin = \"127.0.0.1:{admin}\"\n{}",
                    route(id, member),
                    member_keys(member)
                ));
            }
            node(root, id, *ports, cluster_id, &cluster_keys(id), &members)
        })
        .collect();
    (nodes, links)
}

/// The proxies of a cluster's peer links, one per direction.
pub struct PeerLinks {
    proxies: Vec<(u64, u64, Proxy)>,
}

impl PeerLinks {
    /// The proxy node `from` dials to reach node `to`.
    pub fn link(&self, from: u64, to: u64) -> &Proxy {
        self.proxies
            .iter()
            .find(|(f, t, _)| (*f, *t) == (from, to))
            .map(|(_, _, proxy)| proxy)
            .unwrap_or_else(|| panic!("no link {from}->{to}"))
    }

    /// Sets every link from and to node `id` to `mode`: [`Mode::Cut`]
    /// isolates it.
    pub fn around(&self, id: u64, mode: Mode) {
        for (from, to, proxy) in &self.proxies {
            if *from == id || *to == id {
                proxy.set(mode);
            }
        }
    }

    /// Every link back to [`Mode::Pass`].
    pub fn heal(&self) {
        for (_, _, proxy) in &self.proxies {
            proxy.heal();
        }
    }

    /// The counters of every link from and to node `id`, added up.
    pub fn stats_around(&self, id: u64) -> Stats {
        let mut sum = Stats::default();
        for (from, to, proxy) in &self.proxies {
            if *from == id || *to == id {
                let s = proxy.stats();
                sum.accepted += s.accepted;
                sum.refused += s.refused;
                sum.closed += s.closed;
                sum.forwarded += s.forwarded;
                sum.delayed += s.delayed;
                sum.dropped += s.dropped;
            }
        }
        sum
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

/// The index of a node other than `except` that says `ok leader`, waiting
/// up to `bound` (the node `except` may still think it leads).
pub fn wait_for_leader_except(nodes: &[Node], except: usize, bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(i) =
            (0..nodes.len()).find(|&i| i != except && nodes[i].health() == "ok leader\n")
        {
            return i;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let health: Vec<String> = nodes.iter().map(Node::health).collect();
    panic!("no leader but node index {except} within {bound:?}; /healthz: {health:?}");
}

/// Waits until the node at `index` says `ok follower`, up to `bound`.
pub fn wait_for_follower(nodes: &[Node], index: usize, bound: Duration) {
    let deadline = Instant::now() + bound;
    while nodes[index].health() != "ok follower\n" {
        assert!(
            Instant::now() < deadline,
            "node {} is not a follower within {bound:?}; log:\n{}",
            nodes[index].id,
            nodes[index].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes the node at `target` the leader: kills whichever other node leads
/// (SIGKILL), waits for the next election, restarts the killed node, and
/// again, at most `attempts` times; returns the kills. Give the target
/// the shortest election timeout so that it wins the elections.
pub fn make_leader(nodes: &mut [Node], target: usize, attempts: usize, bound: Duration) -> usize {
    for kills in 0..=attempts {
        let leader = wait_for_leader(nodes, bound);
        if leader == target {
            return kills;
        }
        assert!(
            kills < attempts,
            "node {} did not become leader in {attempts} elections",
            nodes[target].id
        );
        nodes[leader].kill9();
        wait_for_leader_except(nodes, leader, bound);
        nodes[leader].start();
    }
    unreachable!("the loop returns or fails")
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

/// A node that joins the running cluster `cluster_id` (`cluster.join =
/// true`), on fresh ports, with [`TIMING`] and `extra` in its `[cluster]`
/// table; its configured members list only itself, so everything else it
/// learns from the leader that adds it.
pub fn joining_node(root: &Path, id: u64, cluster_id: &str, extra: &str) -> Node {
    let ports = four_ports();
    let members = member_entry(id, &ports);
    node(
        root,
        id,
        ports,
        cluster_id,
        &format!("{TIMING}join = true\n{extra}"),
        &members,
    )
}

/// A node of cluster `cluster_id` whose members are itself and `others`
/// (their addresses as they are): with another cluster id, a stranger that
/// campaigns among `others` once its election timeouts pass.
pub fn node_with_members(root: &Path, id: u64, cluster_id: &str, others: &[&Node]) -> Node {
    let ports = four_ports();
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
    node(root, id, ports, cluster_id, TIMING, &members)
}

/// Peer, STOMP, native and admin ports for one node.
fn four_ports() -> [u16; 4] {
    let free = free_ports(4);
    [free[0], free[1], free[2], free[3]]
}

/// A `[[cluster.members]]` entry with every address on loopback.
fn member_entry(id: u64, [peer, stomp, native, admin]: &[u16; 4]) -> String {
    format!(
        "[[cluster.members]]\nid = {id}\ncluster = \"127.0.0.1:{peer}\"\nstomp = \"127.0.0.1:{stomp}\"\nnative = \"127.0.0.1:{native}\"\nadmin = \"127.0.0.1:{admin}\"\n"
    )
}

/// One node's directory, config file and command line (not started).
fn node(
    root: &Path,
    id: u64,
    [peer, stomp, native, admin]: [u16; 4],
    cluster_id: &str,
    cluster_keys: &str,
    members: &str,
) -> Node {
    let dir = root.join(format!("node{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "[store]\nsync = \"always\"\n\n[cluster]\ncluster_id = \"{cluster_id}\"\nnode_id = {id}\nlisten = \"127.0.0.1:{peer}\"\n{cluster_keys}\n{members}"
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
        past_log: String::new(),
    }
}
