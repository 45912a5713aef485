//! Transactions through the real broker: transactional SEND and ACK/NACK,
//! COMMIT, ABORT, errors for unknown and duplicate transactions, and the
//! implicit abort when a connection closes mid-transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{http_get, metric, Broker, Client};
use std::time::Duration;

fn bodies(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8(f.body.to_vec()).unwrap())
        .collect()
}

fn tx_frame(command: Command, tx: &str) -> Frame {
    Frame::new(command).header("transaction", tx)
}

fn tx_send(c: &mut Client, dest: &str, tx: &str, body: &str) {
    c.send_with_receipt(
        Frame::new(Command::Send)
            .header("destination", dest)
            .header("transaction", tx)
            .body(body.to_string()),
        &format!("send-{body}"),
    );
}

#[test]
fn transactional_sends_appear_only_at_commit_in_order() {
    let broker = Broker::start();
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/txsend", "auto");
    let mut p = broker.client();
    p.send_with_receipt(tx_frame(Command::Begin, "t1"), "b");
    for i in 0..3 {
        tx_send(&mut p, "/queue/txsend", "t1", &format!("m{i}"));
    }
    p.send_message("/queue/txsend", "outside", &[]);
    assert_eq!(bodies(&consumer.recv_messages(1)), ["outside"]);
    consumer.expect_silence(Duration::from_millis(200));
    p.send_with_receipt(tx_frame(Command::Commit, "t1"), "c");
    assert_eq!(bodies(&consumer.recv_messages(3)), ["m0", "m1", "m2"]);
}

#[test]
fn abort_discards_transactional_sends() {
    let broker = Broker::start();
    let mut consumer = broker.client();
    consumer.subscribe("s", "/topic/txabort", "auto");
    let mut p = broker.client();
    p.send_with_receipt(tx_frame(Command::Begin, "t"), "b");
    tx_send(&mut p, "/topic/txabort", "t", "never");
    p.send_with_receipt(tx_frame(Command::Abort, "t"), "a");
    consumer.expect_silence(Duration::from_millis(300));
    // The name is free again.
    p.send_with_receipt(tx_frame(Command::Begin, "t"), "b2");
    tx_send(&mut p, "/topic/txabort", "t", "yes");
    p.send_with_receipt(tx_frame(Command::Commit, "t"), "c");
    assert_eq!(bodies(&consumer.recv_messages(1)), ["yes"]);
}

/// `(dequeued_total, unacked)` of `queue`, from the admin `/metrics`.
fn consumed_and_unacked(broker: &Broker, queue: &str) -> (Option<f64>, Option<f64>) {
    let (status, text) = http_get(broker.admin(), "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let series = |name: &str| format!("{name}{{destination=\"{queue}\",kind=\"queue\"}}");
    (
        metric(&text, &series("ferromq_destination_dequeued_total")),
        metric(&text, &series("ferromq_destination_unacked")),
    )
}

#[test]
fn transactional_ack_takes_effect_at_commit() {
    let broker = Broker::start_with(None, &["--admin", "127.0.0.1:0"]);
    let q = "/queue/txack";
    let mut p = broker.client();
    for i in 0..2 {
        p.send_message(q, &format!("m{i}"), &[]);
    }
    let mut c = broker.client();
    c.subscribe("s", q, "client-individual");
    let got = c.recv_messages(2);
    c.send_with_receipt(tx_frame(Command::Begin, "t"), "b");
    for m in &got {
        c.send_with_receipt(
            tx_frame(Command::Ack, "t").header("id", m.get("ack").unwrap()),
            "ack",
        );
    }
    // Receipted, but not committed: both still delivered and unacknowledged.
    assert_eq!(
        consumed_and_unacked(&broker, q),
        (Some(0.0), Some(2.0)),
        "(consumed, unacked) before COMMIT"
    );
    c.send_with_receipt(tx_frame(Command::Commit, "t"), "c");
    assert_eq!(
        consumed_and_unacked(&broker, q),
        (Some(2.0), Some(0.0)),
        "(consumed, unacked) after COMMIT"
    );
    drop(c);
    let mut after = broker.client();
    after.subscribe("s", q, "auto");
    after.expect_silence(Duration::from_millis(300));
}

#[test]
fn aborted_ack_leaves_the_message_unacknowledged() {
    let broker = Broker::start();
    broker.client().send_message("/queue/txabortack", "m0", &[]);
    let mut c = broker.client();
    c.subscribe("s", "/queue/txabortack", "client-individual");
    let m = c.recv();
    c.send_with_receipt(tx_frame(Command::Begin, "t"), "b");
    c.send_with_receipt(
        tx_frame(Command::Ack, "t").header("id", m.get("ack").unwrap()),
        "ack",
    );
    c.send_with_receipt(tx_frame(Command::Abort, "t"), "a");
    // Still unacknowledged: it can be acked again, outside a transaction.
    c.send_with_receipt(
        Frame::new(Command::Ack).header("id", m.get("ack").unwrap()),
        "ack-again",
    );
    drop(c);
    let mut after = broker.client();
    after.subscribe("s", "/queue/txabortack", "auto");
    after.expect_silence(Duration::from_millis(300));
}

#[test]
fn transactional_nack_redelivers_at_commit() {
    let broker = Broker::start();
    broker.client().send_message("/queue/txnack", "m0", &[]);
    let mut c = broker.client();
    c.subscribe("s", "/queue/txnack", "client-individual");
    let m = c.recv();
    c.send_with_receipt(tx_frame(Command::Begin, "t"), "b");
    c.send_with_receipt(
        tx_frame(Command::Nack, "t").header("id", m.get("ack").unwrap()),
        "nack",
    );
    c.expect_silence(Duration::from_millis(200));
    let before = c.send_collect(tx_frame(Command::Commit, "t"), "c");
    let again = if before.is_empty() {
        c.recv()
    } else {
        before[0].clone()
    };
    assert_eq!(&again.body[..], b"m0");
    assert_eq!(again.get("redelivered"), Some("true"));
}

#[test]
fn closing_mid_transaction_aborts_it() {
    let broker = Broker::start();
    broker
        .client()
        .send_message("/queue/txclose", "acked-in-tx", &[]);
    let mut watcher = broker.client();
    watcher.subscribe("w", "/topic/txclose", "auto");
    let mut c = broker.client();
    c.subscribe("s", "/queue/txclose", "client-individual");
    let m = c.recv();
    c.send_with_receipt(tx_frame(Command::Begin, "t"), "b");
    tx_send(&mut c, "/topic/txclose", "t", "never");
    c.send_with_receipt(
        tx_frame(Command::Ack, "t").header("id", m.get("ack").unwrap()),
        "ack",
    );
    drop(c);
    watcher.expect_silence(Duration::from_millis(300));
    let mut after = broker.client();
    after.subscribe("s", "/queue/txclose", "auto");
    let again = after.recv();
    assert_eq!(&again.body[..], b"acked-in-tx");
    assert_eq!(again.get("redelivered"), Some("true"));
}

fn expect_tx_error(c: &mut Client, frame: Frame, needle: &str) {
    c.send(frame.header("receipt", "r"));
    let e = c.expect_error();
    assert_eq!(e.get("receipt-id"), Some("r"), "{e:?}");
    assert!(e.get("message").unwrap().contains(needle), "{e:?}");
}

#[test]
fn unknown_transaction_is_an_error() {
    let broker = Broker::start();
    for frame in [
        tx_frame(Command::Commit, "nope"),
        tx_frame(Command::Abort, "nope"),
        tx_frame(Command::Send, "nope").header("destination", "/queue/x"),
    ] {
        let mut c = broker.client();
        expect_tx_error(&mut c, frame, "nope");
    }
    broker
        .client()
        .send_message("/queue/x", "still serving", &[]);
}

#[test]
fn duplicate_begin_is_an_error() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.send_with_receipt(tx_frame(Command::Begin, "dup"), "b");
    expect_tx_error(&mut c, tx_frame(Command::Begin, "dup"), "dup");
}

#[test]
fn committed_transaction_cannot_be_committed_again() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.send_with_receipt(tx_frame(Command::Begin, "once"), "b");
    c.send_with_receipt(tx_frame(Command::Commit, "once"), "c");
    expect_tx_error(&mut c, tx_frame(Command::Commit, "once"), "once");
}

#[test]
fn begin_without_transaction_header_is_an_error() {
    let broker = Broker::start();
    let mut c = broker.client();
    expect_tx_error(&mut c, Frame::new(Command::Begin), "transaction");
}
