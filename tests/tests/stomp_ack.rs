//! Acknowledgement through the real broker: `auto`, `client` (cumulative),
//! `client-individual`, NACK, redelivery of unacknowledged messages when a
//! connection closes (in their original order), and ACK/NACK errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::time::Duration;

fn bodies(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8(f.body.to_vec()).unwrap())
        .collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

fn fill(broker: &Broker, dest: &str, n: usize) {
    let mut p = broker.client();
    for i in 0..n {
        p.send_message(dest, &format!("m{i}"), &[]);
    }
}

fn ack(c: &mut Client, m: &Frame) {
    c.send(Frame::new(Command::Ack).header("id", m.get("ack").unwrap()));
}

#[test]
fn auto_ack_messages_are_not_redelivered() {
    let broker = Broker::start();
    fill(&broker, "/queue/auto", 5);
    let mut a = broker.client();
    a.subscribe("s", "/queue/auto", "auto");
    let got = a.recv_messages(5);
    assert!(got.iter().all(|m| m.get("ack").is_none()), "{got:?}");
    drop(a);
    let mut b = broker.client();
    b.subscribe("s", "/queue/auto", "auto");
    b.expect_silence(Duration::from_millis(300));
}

#[test]
fn client_ack_is_cumulative() {
    let broker = Broker::start();
    fill(&broker, "/queue/cumulative", 5);
    let mut a = broker.client();
    a.subscribe("s", "/queue/cumulative", "client");
    let got = a.recv_messages(5);
    // ACK of m2 acknowledges m0, m1 and m2.
    a.send_with_receipt(
        Frame::new(Command::Ack).header("id", got[2].get("ack").unwrap()),
        "ack",
    );
    drop(a);
    let mut b = broker.client();
    b.subscribe("s", "/queue/cumulative", "auto");
    let again = b.recv_messages(2);
    assert_eq!(bodies(&again), ["m3", "m4"]);
    assert!(again.iter().all(|m| m.get("redelivered") == Some("true")));
    b.expect_silence(Duration::from_millis(200));
}

#[test]
fn client_individual_ack_acknowledges_only_that_message() {
    let broker = Broker::start();
    fill(&broker, "/queue/individual", 5);
    let mut a = broker.client();
    a.subscribe("s", "/queue/individual", "client-individual");
    let got = a.recv_messages(5);
    ack(&mut a, &got[1]);
    ack(&mut a, &got[3]);
    a.send_with_receipt(Frame::new(Command::Disconnect), "bye");
    let mut b = broker.client();
    b.subscribe("s", "/queue/individual", "auto");
    assert_eq!(bodies(&b.recv_messages(3)), ["m0", "m2", "m4"]);
    b.expect_silence(Duration::from_millis(200));
}

#[test]
fn nack_redelivers_with_redelivered_true() {
    let broker = Broker::start();
    fill(&broker, "/queue/nack", 1);
    let mut c = broker.client();
    c.subscribe("s", "/queue/nack", "client-individual");
    let m = c.recv();
    assert_eq!(m.get("redelivered"), None);
    c.send(Frame::new(Command::Nack).header("id", m.get("ack").unwrap()));
    let again = c.recv();
    assert_eq!(again.command, Command::Message);
    assert_eq!(again.get("message-id"), m.get("message-id"));
    assert_eq!(again.get("redelivered"), Some("true"));
    assert_eq!(&again.body[..], b"m0");
    ack(&mut c, &again);
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn client_nack_is_cumulative_and_keeps_order() {
    let broker = Broker::start();
    fill(&broker, "/queue/cnack", 4);
    let mut c = broker.client();
    c.subscribe("s", "/queue/cnack", "client");
    let got = c.recv_messages(4);
    c.send(Frame::new(Command::Nack).header("id", got[2].get("ack").unwrap()));
    let again = c.recv_messages(3);
    assert_eq!(bodies(&again), ["m0", "m1", "m2"]);
    assert!(again.iter().all(|m| m.get("redelivered") == Some("true")));
}

#[test]
fn unacked_messages_are_redelivered_in_order_when_the_connection_closes() {
    let broker = Broker::start();
    fill(&broker, "/queue/close", 20);
    let mut a = broker.client();
    a.subscribe("s", "/queue/close", "client-individual");
    let got = a.recv_messages(20);
    // Acknowledge every third message; the others must come back in order.
    for m in got.iter().step_by(3) {
        ack(&mut a, m);
    }
    a.send_with_receipt(
        Frame::new(Command::Begin).header("transaction", "x"),
        "sync",
    );
    drop(a); // abrupt close, no DISCONNECT
    let mut b = broker.client();
    b.subscribe("s", "/queue/close", "client-individual");
    let expected: Vec<String> = (0..20)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("m{i}"))
        .collect();
    let again = b.recv_messages(expected.len());
    assert_eq!(bodies(&again), expected);
    assert!(again.iter().all(|m| m.get("redelivered") == Some("true")));
}

#[test]
fn returned_messages_go_before_newer_ones() {
    let broker = Broker::start();
    fill(&broker, "/queue/front", 3);
    let mut a = broker.client();
    a.subscribe("s", "/queue/front", "client");
    a.recv_messages(3);
    let mut p = broker.client();
    p.send_message("/queue/front", "m3", &[]);
    drop(a);
    let mut b = broker.client();
    b.subscribe("s", "/queue/front", "auto");
    assert_eq!(bodies(&b.recv_messages(4)), names(0..4));
}

#[test]
fn stomp_1_1_acks_by_message_id_and_subscription() {
    let broker = Broker::start();
    fill(&broker, "/queue/v11", 2);
    let mut c = broker.raw();
    c.handshake(
        Command::Connect,
        &[("accept-version", "1.1"), ("host", "/")],
    );
    c.send_with_receipt(
        Frame::new(Command::Subscribe)
            .header("id", "sub-1")
            .header("destination", "/queue/v11")
            .header("ack", "client-individual"),
        "s",
    );
    let got = c.recv_messages(2);
    assert!(got[0].get("ack").is_none(), "1.1 MESSAGE has no ack header");
    c.send_with_receipt(
        Frame::new(Command::Ack)
            .header("message-id", got[0].get("message-id").unwrap())
            .header("subscription", "sub-1"),
        "a",
    );
    c.send(
        Frame::new(Command::Nack)
            .header("message-id", got[1].get("message-id").unwrap())
            .header("subscription", "sub-1"),
    );
    let again = c.recv();
    assert_eq!(&again.body[..], b"m1");
    assert_eq!(again.get("redelivered"), Some("true"));
}

#[test]
fn stomp_1_0_acks_by_message_id_alone() {
    let broker = Broker::start();
    fill(&broker, "/queue/v10", 2);
    let mut c = broker.raw();
    c.handshake(Command::Connect, &[]);
    c.send_with_receipt(
        Frame::new(Command::Subscribe)
            .header("destination", "/queue/v10")
            .header("ack", "client"),
        "s",
    );
    let got = c.recv_messages(2);
    assert_eq!(got[0].get("subscription"), Some("/queue/v10"));
    c.send_with_receipt(
        Frame::new(Command::Ack).header("message-id", got[1].get("message-id").unwrap()),
        "a",
    );
    drop(c);
    let mut b = broker.client();
    b.subscribe("s", "/queue/v10", "auto");
    b.expect_silence(Duration::from_millis(300));
}

fn expect_ack_error(c: &mut Client, frame: Frame) -> Frame {
    c.send(frame.header("receipt", "bad-ack"));
    let e = c.expect_error();
    assert_eq!(e.get("receipt-id"), Some("bad-ack"), "{e:?}");
    e
}

#[test]
fn ack_of_an_unknown_id_is_an_error() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.subscribe("s", "/queue/unknown", "client-individual");
    let e = expect_ack_error(&mut c, Frame::new(Command::Ack).header("id", "no-such-id"));
    assert!(e.get("message").unwrap().contains("no-such-id"), "{e:?}");
    let mut c = broker.client();
    c.subscribe("s", "/queue/unknown", "client-individual");
    expect_ack_error(&mut c, Frame::new(Command::Nack).header("id", "9999-9999"));
    broker
        .client()
        .send_message("/queue/unknown", "still serving", &[]);
}

#[test]
fn acking_the_same_message_twice_is_an_error() {
    let broker = Broker::start();
    fill(&broker, "/queue/twice", 1);
    let mut c = broker.client();
    c.subscribe("s", "/queue/twice", "client-individual");
    let m = c.recv();
    let id = m.get("ack").unwrap();
    c.send_with_receipt(Frame::new(Command::Ack).header("id", id), "first");
    expect_ack_error(&mut c, Frame::new(Command::Ack).header("id", id));
}

#[test]
fn ack_on_an_auto_subscription_is_an_error() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.subscribe("s", "/queue/autoack", "auto");
    broker.client().send_message("/queue/autoack", "x", &[]);
    let m = c.recv();
    let id = m.get("message-id").unwrap().to_string();
    expect_ack_error(
        &mut c,
        Frame::new(Command::Ack)
            .header("message-id", &id)
            .header("subscription", "s"),
    );
}

#[test]
fn ack_without_id_is_an_error() {
    let broker = Broker::start();
    let mut c = broker.client();
    let e = expect_ack_error(&mut c, Frame::new(Command::Ack));
    assert!(e.get("message").unwrap().contains("id"), "{e:?}");
}

/// Auto-acknowledged messages count as consumed once written: a consumer
/// that read some and left, followed by a graceful restart, never sees them
/// again (the close waits for the writer to settle what it wrote), while
/// the messages it never got are all still there.
#[test]
fn auto_acked_messages_written_before_a_close_stay_consumed_across_restart() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    for i in 0..10 {
        let n = i.to_string();
        p.send_message(
            "/queue/auto-g",
            &format!("g{i}"),
            &[("persistent", "true"), ("n", &n)],
        );
    }
    let mut c = broker.client();
    // The selector keeps g8 and g9 from this consumer: they are certainly
    // not consumed. It reads g0-g4 and leaves with g5-g7 possibly written
    // to its socket (consumed) but unread.
    let mut first: Vec<Frame> = c.send_collect(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/auto-g")
            .header("ack", "auto")
            .header("selector", "n < 8"),
        "sub-s",
    );
    while first.len() < 5 {
        first.push(c.recv_command(Command::Message));
    }
    let seen: Vec<String> = first
        .iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect();
    assert_eq!(seen[..5], ["g0", "g1", "g2", "g3", "g4"]);
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(broker.terminate().success());
    let broker = broker.restart();
    let mut c = broker.client();
    let mut back: Vec<String> = c
        .send_collect(
            Frame::new(Command::Subscribe)
                .header("id", "s")
                .header("destination", "/queue/auto-g")
                .header("ack", "auto"),
            "sub-s",
        )
        .iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect();
    while let Some(f) = c.recv_within(std::time::Duration::from_millis(500)) {
        back.push(String::from_utf8_lossy(&f.body).into_owned());
    }
    for body in &back {
        assert!(
            !seen.contains(body),
            "{body} was consumed before the restart but came back (back: {back:?})"
        );
    }
    for never_given in ["g8", "g9"] {
        assert!(
            back.iter().any(|b| b == never_given),
            "{never_given} was never consumed but is gone after the restart (back: {back:?})"
        );
    }
    let unknown: Vec<_> = back
        .iter()
        .filter(|b| !["g5", "g6", "g7", "g8", "g9"].contains(&b.as_str()))
        .collect();
    assert!(unknown.is_empty(), "unexpected after the restart: {back:?}");
    let mut unique = back.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), back.len(), "delivered twice: {back:?}");
}
