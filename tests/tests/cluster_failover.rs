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

use ferromq_protocol::native::{self, ErrorCondition, Open, Preamble};
use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::cluster::{
    cluster, connect_leader, knob, one_cluster_at_a_time, start_all, wait_for_leader, BOUND,
};
use ferromq_tests::conn::{body_of, Conn};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const QUEUE: &str = "/queue/failover";
/// Messages sent per cycle, and acked per cycle.
const SENDS: usize = 20;
const ACKS: usize = 5;

fn send(conn: &mut Conn, body: &str, receipt: &str) -> std::io::Result<()> {
    let frame = Frame::new(Command::Send)
        .header("destination", QUEUE)
        .header("persistent", "true")
        .body(body.to_string());
    conn.with_receipt(frame, receipt).map(|_| ())
}

#[test]
fn the_cluster_fails_over_without_losing_receipted_messages() {
    let cycles = knob("FERROMQ_FAILOVER_CYCLES", 2);
    let _one = one_cluster_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster(root.path());
    start_all(&mut nodes);
    let mut leader = wait_for_leader(&nodes, BOUND);

    // A follower refuses and names the leader (once it has heard of it).
    let follower = (leader + 1) % nodes.len();
    let leader_stomp = nodes[leader].stomp.to_string();
    let deadline = Instant::now() + BOUND;
    let refusal = loop {
        match Conn::open_or_refusal(nodes[follower].stomp) {
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
        let mut producer = connect_leader(&nodes[leader], BOUND);
        for i in 0..SENDS {
            let body = format!("c{cycle}-m{i}");
            send(&mut producer, &body, &format!("r-{body}")).expect("send to the leader");
            receipted.insert(body);
        }
        // Consume a few and ack them with receipts.
        let mut consumer = connect_leader(&nodes[leader], BOUND);
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
        leader = wait_for_leader(&nodes, BOUND);
        assert_ne!(leader, killed);
        let mut probe = connect_leader(&nodes[leader], BOUND);
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
        assert!(failover < BOUND, "failover took {failover:?}");
        failovers.push(failover);
        drop(probe);
        // The killed node comes back as a follower.
        nodes[killed].start();
    }

    // Drain: every receipted message not acked comes back at least once;
    // none whose ack was receipted does.
    let mut consumer = connect_leader(&nodes[leader], BOUND);
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
    let _one = one_cluster_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster(root.path());
    start_all(&mut nodes);
    let old = wait_for_leader(&nodes, BOUND);
    let mut producer = connect_leader(&nodes[old], BOUND);
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
    let deadline = Instant::now() + BOUND;
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
    let mut probe = connect_leader(&nodes[new], BOUND);
    send(&mut probe, "after", "r-after").unwrap();
    signal("-CONT");
    // The old leader's clients are closed, and it comes back as a follower.
    let deadline = Instant::now() + BOUND;
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
    let mut consumer = connect_leader(&nodes[new], BOUND);
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
