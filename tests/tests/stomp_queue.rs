//! Queue semantics through the real broker: competing consumers get each
//! message exactly once, FIFO per producer, round robin over consumers,
//! messages wait for a consumer, and prefetch bounds unacknowledged
//! deliveries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

fn body(f: &Frame) -> String {
    String::from_utf8(f.body.to_vec()).unwrap()
}

/// Reads from every consumer until nothing arrives for a while.
fn drain(consumers: &mut [Client]) -> Vec<Vec<String>> {
    let mut got = vec![Vec::new(); consumers.len()];
    loop {
        let mut any = false;
        for (i, c) in consumers.iter_mut().enumerate() {
            while let Some(f) = c.recv_within(Duration::from_millis(100)) {
                assert_eq!(f.command, Command::Message, "{f:?}");
                got[i].push(body(&f));
                any = true;
            }
        }
        if !any {
            return got;
        }
    }
}

#[test]
fn competing_consumers_get_each_message_exactly_once() {
    let broker = Broker::start();
    let mut consumers: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = broker.client();
            c.subscribe(&format!("c{i}"), "/queue/compete", "auto");
            c
        })
        .collect();
    let mut producer = broker.client();
    for i in 0..300 {
        producer.send_message("/queue/compete", &format!("m{i}"), &[]);
    }
    let got = drain(&mut consumers);
    let all: Vec<&String> = got.iter().flatten().collect();
    assert_eq!(all.len(), 300, "duplicates or losses: {got:?}");
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(unique.len(), 300);
    for (i, g) in got.iter().enumerate() {
        assert!(!g.is_empty(), "consumer {i} got nothing");
    }
}

#[test]
fn round_robin_spreads_messages_evenly() {
    let broker = Broker::start();
    let mut consumers: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = broker.client();
            c.subscribe(&format!("c{i}"), "/queue/rr", "client-individual");
            c
        })
        .collect();
    let mut producer = broker.client();
    for i in 0..30 {
        producer.send_message("/queue/rr", &format!("m{i}"), &[]);
    }
    let got = drain(&mut consumers);
    for g in &got {
        assert_eq!(g.len(), 10, "uneven: {got:?}");
    }
    // Strict rotation: consecutive messages go to different consumers.
    let owner: HashMap<&String, usize> = got
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.iter().map(move |m| (m, i)))
        .collect();
    for i in 1..30 {
        let a = owner[&format!("m{}", i - 1)];
        let b = owner[&format!("m{i}")];
        assert_ne!(a, b, "m{} and m{i} went to the same consumer", i - 1);
    }
}

#[test]
fn fifo_per_producer_with_interleaved_producers() {
    let broker = Broker::start();
    let mut producers: Vec<Client> = (0..3).map(|_| broker.client()).collect();
    for i in 0..50 {
        for (p, c) in producers.iter_mut().enumerate() {
            c.send_message("/queue/fifo", &format!("p{p}-{i}"), &[]);
        }
    }
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/fifo", "auto");
    let got = drain(std::slice::from_mut(&mut consumer)).remove(0);
    assert_eq!(got.len(), 150);
    for p in 0..3 {
        let seq: Vec<u32> = got
            .iter()
            .filter_map(|m| m.strip_prefix(&format!("p{p}-")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(seq, (0..50).collect::<Vec<_>>(), "producer {p}");
    }
}

#[test]
fn messages_wait_for_a_consumer() {
    let broker = Broker::start();
    let mut producer = broker.client();
    for i in 0..5 {
        producer.send_message("/queue/later", &format!("m{i}"), &[]);
    }
    drop(producer);
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/later", "auto");
    let got: Vec<String> = consumer.recv_messages(5).iter().map(body).collect();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
}

#[test]
fn prefetch_one_delivers_one_unacked_message_at_a_time() {
    let broker = Broker::start();
    let mut producer = broker.client();
    for i in 0..3 {
        producer.send_message("/queue/prefetch", &format!("m{i}"), &[]);
    }
    let mut c = broker.client();
    c.send_with_receipt(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/prefetch")
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "1"),
        "sub",
    );
    for i in 0..3 {
        let m = c.recv();
        assert_eq!(body(&m), format!("m{i}"));
        c.expect_silence(Duration::from_millis(300));
        c.send(Frame::new(Command::Ack).header("id", m.get("ack").unwrap()));
    }
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn prefetch_one_lets_a_second_consumer_take_the_rest() {
    let broker = Broker::start();
    let mut slow = broker.client();
    slow.send_with_receipt(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/pf2")
            .header("ack", "client")
            .header("activemq.prefetchSize", "1"),
        "sub",
    );
    let mut producer = broker.client();
    for i in 0..10 {
        producer.send_message("/queue/pf2", &format!("m{i}"), &[]);
    }
    let first = slow.recv();
    assert_eq!(body(&first), "m0");
    let mut fast = broker.client();
    fast.subscribe("f", "/queue/pf2", "auto");
    let rest: Vec<String> = fast.recv_messages(9).iter().map(body).collect();
    assert_eq!(rest, (1..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    slow.expect_silence(Duration::from_millis(200));
}

#[test]
fn unsubscribe_returns_unacked_messages_to_the_queue() {
    let broker = Broker::start();
    let mut producer = broker.client();
    for i in 0..3 {
        producer.send_message("/queue/unsub", &format!("m{i}"), &[]);
    }
    let mut a = broker.client();
    a.subscribe("s", "/queue/unsub", "client-individual");
    assert_eq!(a.recv_messages(3).len(), 3);
    a.send_with_receipt(Frame::new(Command::Unsubscribe).header("id", "s"), "u");
    producer.send_message("/queue/unsub", "m3", &[]);
    a.expect_silence(Duration::from_millis(200));
    let mut b = broker.client();
    b.subscribe("s", "/queue/unsub", "auto");
    let got = b.recv_messages(4);
    let bodies: Vec<String> = got.iter().map(body).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3"]);
    assert_eq!(got[0].get("redelivered"), Some("true"));
    assert_eq!(got[3].get("redelivered"), None);
}
