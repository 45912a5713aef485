//! Persistent messages across restarts of the real binary: what comes back
//! after `kill -9` or a graceful stop, in which order, with which flags, and
//! what must not come back (non-persistent messages, acknowledged messages,
//! uncommitted transactions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::time::Duration;

/// Sends a SEND (persistent unless told otherwise) and waits for its receipt.
fn send(c: &mut Client, dest: &str, body: &str, persistent: bool, receipt: &str) {
    let mut f = Frame::new(Command::Send)
        .header("destination", dest)
        .header("receipt", receipt)
        .body(body.to_string());
    if persistent {
        f = f.header("persistent", "true");
    }
    c.send(f);
    let r = c.recv();
    assert_eq!(r.command, Command::Receipt, "{r:?}");
    assert_eq!(r.get("receipt-id"), Some(receipt));
}

/// Receives `n` MESSAGE frames.
fn receive(c: &mut Client, n: usize) -> Vec<Frame> {
    (0..n).map(|_| c.recv_command(Command::Message)).collect()
}

fn bodies(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect()
}

/// ACKs a 1.2 delivery and waits for the receipt. The ACK frees credit, so
/// MESSAGEs may arrive before the receipt (which waits for the disk): they
/// are returned.
fn ack(c: &mut Client, m: &Frame, receipt: &str) -> Vec<Frame> {
    c.send(
        Frame::new(Command::Ack)
            .header("id", m.get("ack").expect("ack header"))
            .header("receipt", receipt),
    );
    let mut messages = Vec::new();
    loop {
        let f = c.recv();
        match f.command {
            Command::Receipt => {
                assert_eq!(f.get("receipt-id"), Some(receipt));
                return messages;
            }
            Command::Message => messages.push(f),
            _ => panic!("unexpected {f:?}"),
        }
    }
}

#[test]
fn persistent_messages_survive_kill9_in_order_and_non_persistent_do_not() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    for i in 0..20 {
        send(
            &mut p,
            "/queue/keep",
            &format!("p{i}"),
            true,
            &format!("r{i}"),
        );
        send(
            &mut p,
            "/queue/keep",
            &format!("n{i}"),
            false,
            &format!("q{i}"),
        );
    }
    // Persistent messages to a topic (no durable subscriber) are not kept.
    send(&mut p, "/topic/gone", "t", true, "t");
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/keep", "client-individual");
    let got = receive(&mut c, 20);
    let want: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    assert_eq!(bodies(&got), want);
    for m in &got {
        assert_eq!(m.get("redelivered"), None, "never delivered before: {m:?}");
        assert_eq!(m.get("persistent"), Some("true"));
    }
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn delivered_messages_come_back_redelivered_and_acked_ones_never() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    for i in 0..4 {
        send(
            &mut p,
            "/queue/red",
            &format!("m{i}"),
            true,
            &format!("r{i}"),
        );
    }
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/red")
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "2"),
    );
    let first = receive(&mut c, 2);
    assert_eq!(bodies(&first), ["m0", "m1"]);
    // m1 is acknowledged (durably: the receipt waits for the disk); m0 is
    // delivered but not acknowledged; m2 and m3 were never delivered.
    let mut next = ack(&mut c, &first[1], "a1");
    if next.is_empty() {
        next = receive(&mut c, 1);
    }
    assert_eq!(bodies(&next), ["m2"]);
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/red", "client-individual");
    let got = receive(&mut c, 3);
    assert_eq!(bodies(&got), ["m0", "m2", "m3"]);
    assert_eq!(got[0].get("redelivered"), Some("true"), "{:?}", got[0]);
    assert_eq!(got[1].get("redelivered"), Some("true"), "{:?}", got[1]);
    assert_eq!(got[2].get("redelivered"), None, "{:?}", got[2]);
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn uncommitted_transaction_is_gone_after_restart_and_committed_one_stays() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    p.send(Frame::new(Command::Begin).header("transaction", "done"));
    p.send(Frame::new(Command::Begin).header("transaction", "open"));
    for i in 0..3 {
        p.send(
            Frame::new(Command::Send)
                .header("destination", "/queue/tx")
                .header("persistent", "true")
                .header("transaction", "open")
                .body(format!("open{i}")),
        );
        p.send(
            Frame::new(Command::Send)
                .header("destination", "/queue/tx")
                .header("persistent", "true")
                .header("transaction", "done")
                .body(format!("done{i}")),
        );
    }
    p.send(
        Frame::new(Command::Commit)
            .header("transaction", "done")
            .header("receipt", "c"),
    );
    let r = p.recv_command(Command::Receipt);
    assert_eq!(r.get("receipt-id"), Some("c"));
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/tx", "auto");
    let got = receive(&mut c, 3);
    assert_eq!(bodies(&got), ["done0", "done1", "done2"]);
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn graceful_stop_keeps_unacked_messages_and_drops_acked_ones() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    for i in 0..10 {
        send(&mut p, "/queue/g", &format!("g{i}"), true, &format!("r{i}"));
    }
    let mut c = broker.client();
    c.subscribe("s", "/queue/g", "client-individual");
    // All ten are delivered (default prefetch); the first five are acked.
    let got = receive(&mut c, 10);
    for (i, m) in got.iter().take(5).enumerate() {
        ack(&mut c, m, &format!("a{i}"));
    }
    drop(c);
    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/g", "client-individual");
    let rest = receive(&mut c, 5);
    assert_eq!(bodies(&rest), ["g5", "g6", "g7", "g8", "g9"]);
    for m in &rest {
        assert_eq!(m.get("redelivered"), Some("true"), "{m:?}");
    }
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn acked_messages_do_not_come_back_after_kill9() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    for i in 0..50 {
        send(
            &mut p,
            "/queue/a",
            &format!("{i:03}"),
            true,
            &format!("r{i}"),
        );
    }
    let mut c = broker.client();
    c.subscribe("s", "/queue/a", "client-individual");
    for (i, m) in receive(&mut c, 30).iter().enumerate() {
        ack(&mut c, m, &format!("a{i}"));
    }
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/a", "client-individual");
    let got = receive(&mut c, 20);
    let want: Vec<String> = (30..50).map(|i| format!("{i:03}")).collect();
    assert_eq!(bodies(&got), want);
    c.expect_silence(Duration::from_millis(300));
}
