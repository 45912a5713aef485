//! What a client that waits for its receipts reads, through the real broker:
//! a frame's RECEIPT comes before any MESSAGE the frame caused (NACK, an ACK
//! that frees prefetch credit, transactional ACK/NACK with COMMIT and ABORT,
//! UNSUBSCRIBE of one of two subscriptions), and every frame on the wire
//! ends with NUL and LF, so frames written back to back (a MESSAGE, then a
//! RECEIPT) stay two frames for clients that read exactly two bytes after a
//! `content-length` body (PHP's `stomp` extension).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use ferromq_protocol::stomp::{Command, Decoder, Frame, Limits, Version};
use ferromq_tests::{Broker, Client, WAIT};
use std::time::{Duration, Instant};

/// Rounds per ordering test: the wrong order needs no race to show (the
/// router queues the caused MESSAGE while the frame is handled), but a few
/// rounds cover the writer taking its batch at different moments.
const ROUNDS: usize = 4;

fn subscribe(c: &mut Client, id: &str, destination: &str, prefetch: Option<usize>) {
    let mut f = Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
        .header("ack", "client-individual")
        .header("receipt", &format!("sub-{id}"));
    if let Some(p) = prefetch {
        f = f.header("activemq.prefetchSize", &p.to_string());
    }
    c.send(f);
    let r = c.recv();
    assert_eq!(r.command, Command::Receipt, "{r:?}");
}

/// Sends a message and waits for its receipt. A persistent message's
/// redelivery reaches the connection later (after the store records the
/// delivery), a non-persistent one's at once, while the frame that caused
/// it is still being handled: the tests use both.
fn send(c: &mut Client, destination: &str, body: &str, persistent: bool) {
    let persistent = if persistent { "true" } else { "false" };
    c.send_message(destination, body, &[("persistent", persistent)]);
}

/// Sends `frame` with `receipt` and asserts the very next frame is that
/// RECEIPT (nothing the frame caused may come first).
fn receipt_comes_first(c: &mut Client, frame: Frame, receipt: &str) {
    c.send(frame.header("receipt", receipt));
    let first = c.recv();
    assert_eq!(
        (first.command, first.get("receipt-id")),
        (Command::Receipt, Some(receipt)),
        "the RECEIPT must come before anything the frame caused: {first:?}"
    );
}

fn message(c: &mut Client) -> Frame {
    let m = c.recv();
    assert_eq!(m.command, Command::Message, "{m:?}");
    m
}

fn ack_id(m: &Frame) -> String {
    m.get("ack")
        .expect("client-individual MESSAGE has ack")
        .to_string()
}

#[test]
fn a_nack_receipt_comes_before_the_redelivery() {
    let broker = Broker::start();
    for persistent in [false, true] {
        let queue = format!("/queue/order.nack.{persistent}");
        let mut c = broker.client();
        subscribe(&mut c, "s", &queue, None);
        send(&mut broker.client(), &queue, "m0", persistent);
        let mut m = message(&mut c);
        for round in 0..ROUNDS {
            let nack = Frame::new(Command::Nack).header("id", &ack_id(&m));
            receipt_comes_first(&mut c, nack, &format!("nack-{round}"));
            // The one consumer gets the same message back.
            m = message(&mut c);
            assert_eq!(&m.body[..], b"m0", "{queue} round {round}");
            assert_eq!(m.get("redelivered"), Some("true"), "{queue} round {round}");
        }
    }
}

#[test]
fn an_ack_receipt_comes_before_the_message_its_credit_lets_through() {
    let broker = Broker::start();
    for persistent in [false, true] {
        let queue = format!("/queue/order.ack.{persistent}");
        let mut p = broker.client();
        for i in 0..=ROUNDS {
            send(&mut p, &queue, &format!("m{i}"), persistent);
        }
        let mut c = broker.client();
        subscribe(&mut c, "s", &queue, Some(1));
        let mut m = message(&mut c);
        assert_eq!(&m.body[..], b"m0");
        // Prefetch 1: nothing more until the ACK (whose RECEIPT, for a
        // persistent message, waits for the store); the next message
        // follows the RECEIPT.
        c.expect_silence(Duration::from_millis(100));
        for i in 1..=ROUNDS {
            let ack = Frame::new(Command::Ack).header("id", &ack_id(&m));
            receipt_comes_first(&mut c, ack, &format!("ack-{i}"));
            m = message(&mut c);
            assert_eq!(m.body, format!("m{i}").as_bytes(), "{queue}: {m:?}");
        }
    }
}

#[test]
fn transactional_ack_and_abort_receipts_come_first() {
    let broker = Broker::start();
    let mut p = broker.client();
    for i in 0..3 {
        send(&mut p, "/queue/order.txack", &format!("m{i}"), false);
    }
    let mut c = broker.client();
    subscribe(&mut c, "s", "/queue/order.txack", Some(1));
    let m0 = message(&mut c);
    assert_eq!(&m0.body[..], b"m0");
    receipt_comes_first(
        &mut c,
        Frame::new(Command::Begin).header("transaction", "t"),
        "begin",
    );
    // An ACK in a transaction frees the credit at once: m1 follows the
    // ACK's RECEIPT.
    let ack = Frame::new(Command::Ack)
        .header("id", &ack_id(&m0))
        .header("transaction", "t");
    receipt_comes_first(&mut c, ack, "tx-ack");
    let m1 = message(&mut c);
    assert_eq!(&m1.body[..], b"m1");
    // ABORT of the transaction that acked: its RECEIPT is the next frame;
    // m0 is unacknowledged again, so nothing more fits the prefetch.
    receipt_comes_first(
        &mut c,
        Frame::new(Command::Abort).header("transaction", "t"),
        "abort",
    );
    c.expect_silence(Duration::from_millis(200));
    // Acking both frees the credit for m2, after the second RECEIPT.
    receipt_comes_first(
        &mut c,
        Frame::new(Command::Ack).header("id", &ack_id(&m0)),
        "ack-m0",
    );
    c.expect_silence(Duration::from_millis(100));
    receipt_comes_first(
        &mut c,
        Frame::new(Command::Ack).header("id", &ack_id(&m1)),
        "ack-m1",
    );
    assert_eq!(&message(&mut c).body[..], b"m2");
}

#[test]
fn a_commit_receipt_comes_before_the_redelivery_of_its_nack() {
    let broker = Broker::start();
    send(&mut broker.client(), "/queue/order.txnack", "m0", false);
    let mut c = broker.client();
    subscribe(&mut c, "s", "/queue/order.txnack", Some(1));
    let m0 = message(&mut c);
    receipt_comes_first(
        &mut c,
        Frame::new(Command::Begin).header("transaction", "t"),
        "begin",
    );
    let nack = Frame::new(Command::Nack)
        .header("id", &ack_id(&m0))
        .header("transaction", "t");
    receipt_comes_first(&mut c, nack, "tx-nack");
    // Held until COMMIT, which requeues m0 for the one consumer.
    c.expect_silence(Duration::from_millis(200));
    receipt_comes_first(
        &mut c,
        Frame::new(Command::Commit).header("transaction", "t"),
        "commit",
    );
    let again = message(&mut c);
    assert_eq!(&again.body[..], b"m0");
    assert_eq!(again.get("redelivered"), Some("true"));
}

#[test]
fn an_unsubscribe_receipt_comes_before_the_messages_handed_to_another_subscription() {
    let broker = Broker::start();
    let mut c = broker.client();
    subscribe(&mut c, "a", "/queue/order.unsub", Some(1));
    send(&mut broker.client(), "/queue/order.unsub", "m0", false);
    let m = message(&mut c);
    assert_eq!(m.get("subscription"), Some("a"));
    subscribe(&mut c, "b", "/queue/order.unsub", Some(1));
    // Unacknowledged m0 goes back to the queue and on to "b", after the
    // RECEIPT of the UNSUBSCRIBE that freed it.
    receipt_comes_first(
        &mut c,
        Frame::new(Command::Unsubscribe).header("id", "a"),
        "unsub-a",
    );
    let again = message(&mut c);
    assert_eq!(again.get("subscription"), Some("b"), "{again:?}");
    assert_eq!(&again.body[..], b"m0");
    assert_eq!(again.get("redelivered"), Some("true"));
}

/// Reads raw bytes until `done` holds for everything read so far, failing
/// after [`WAIT`].
fn read_raw_until(c: &mut Client, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut raw = Vec::new();
    while !done(&raw) {
        assert!(
            Instant::now() < deadline,
            "not read in time; got {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&c.read_raw_for(Duration::from_millis(50)));
    }
    raw
}

fn decode_all(raw: &[u8]) -> Vec<Frame> {
    let mut d = Decoder::new(Limits::default());
    d.set_version(Version::V1_2);
    let mut buf = BytesMut::from(raw);
    let mut frames = Vec::new();
    while let Some(f) = d.decode(&mut buf).expect("well-formed frames") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    frames
}

/// Every NUL in `raw` (whose bodies hold none) is followed by LF.
fn assert_each_frame_ends_with_nul_lf(raw: &[u8]) {
    let ends: Vec<usize> = (0..raw.len()).filter(|&i| raw[i] == 0).collect();
    assert!(!ends.is_empty(), "no frame in {raw:?}");
    for i in ends {
        assert_eq!(
            raw.get(i + 1),
            Some(&b'\n'),
            "NUL at {i} not followed by LF in {:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn raw_frames_end_with_nul_lf_and_a_pipelined_message_and_receipt_are_two_frames() {
    let broker = Broker::start();
    let mut c = broker.raw();
    c.send_raw(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    let connected = read_raw_until(&mut c, |r| r.ends_with(b"\0\n"));
    assert!(connected.starts_with(b"CONNECTED\n"), "{connected:?}");
    assert_each_frame_ends_with_nul_lf(&connected);

    c.send_raw(b"SUBSCRIBE\nid:s\ndestination:/queue/order.raw\nack:auto\nreceipt:sub\n\n\0");
    let receipt = read_raw_until(&mut c, |r| r.ends_with(b"\0\n"));
    assert_eq!(receipt, b"RECEIPT\nreceipt-id:sub\n\n\0\n");

    // One write: a SEND the subscription receives, then a BEGIN with a
    // receipt. The MESSAGE is queued before the BEGIN is read, so the
    // broker writes the MESSAGE and then the RECEIPT, back to back.
    c.send_raw(
        b"SEND\ndestination:/queue/order.raw\ncontent-length:5\n\nhello\0\
          BEGIN\ntransaction:t\nreceipt:begin\n\n\0",
    );
    let tail = b"RECEIPT\nreceipt-id:begin\n\n\0\n";
    let raw = read_raw_until(&mut c, |r| r.ends_with(tail));
    assert!(
        raw.starts_with(b"MESSAGE\n"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_each_frame_ends_with_nul_lf(&raw);
    // After the body's content-length bytes: exactly NUL, LF, then the next
    // frame (what PHP's extension reads).
    let body_end = raw
        .windows(5)
        .position(|w| w == b"hello")
        .expect("body in the MESSAGE")
        + 5;
    assert_eq!(&raw[body_end..body_end + 3], b"\0\nR");
    let frames = decode_all(&raw);
    let commands: Vec<Command> = frames.iter().map(|f| f.command).collect();
    assert_eq!(commands, [Command::Message, Command::Receipt]);
    assert_eq!(&frames[0].body[..], b"hello");
    assert_eq!(frames[1].get("receipt-id"), Some("begin"));
}

#[test]
fn error_frames_end_with_nul_lf() {
    // A protocol error on an open connection.
    let broker = Broker::start_with(Some("[limits]\nmax_connections = 1\n"), &[]);
    let mut c = broker.raw();
    c.send_raw(b"SEND\ndestination:/queue/x\n\nbefore connect\0");
    let raw = read_raw_until(&mut c, |r| r.ends_with(b"\0\n"));
    assert!(
        raw.starts_with(b"ERROR\n"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_each_frame_ends_with_nul_lf(&raw);
    drop(c);

    // The refusal of a connection over the limit, written before any
    // session exists.
    let deadline = Instant::now() + WAIT;
    let _held = loop {
        let mut held = broker.raw();
        held.send_raw(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
        let reply = read_raw_until(&mut held, |r| r.ends_with(b"\0\n"));
        if reply.starts_with(b"CONNECTED\n") {
            break held;
        }
        // The first connection may not be counted out yet.
        assert!(Instant::now() < deadline, "{reply:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut refused = broker.raw();
    let raw = read_raw_until(&mut refused, |r| r.ends_with(b"\0\n"));
    assert!(
        raw.starts_with(b"ERROR\n"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        String::from_utf8_lossy(&raw).contains("limits.max_connections"),
        "{raw:?}"
    );
    assert_each_frame_ends_with_nul_lf(&raw);
}
