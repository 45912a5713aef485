//! STOMP wire behaviour through the real broker: CONNECT/STOMP and version
//! negotiation, line endings, heart-beat EOLs between frames, header escaping,
//! bodies with and without content-length, repeated headers, receipts, and
//! the destination name rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame, Version};
use ferromq_tests::{Broker, Client};
use std::time::Duration;

fn connect_with(broker: &Broker, headers: &[(&str, &str)]) -> (Client, Frame) {
    let mut c = broker.raw();
    let reply = c.handshake(Command::Connect, headers);
    (c, reply)
}

#[test]
fn connect_negotiates_the_highest_common_version() {
    let broker = Broker::start();
    for (accept, expected) in [
        (Some("1.0,1.1,1.2"), "1.2"),
        (Some("1.1"), "1.1"),
        (Some("1.0,1.1"), "1.1"),
        (Some("1.0"), "1.0"),
        (Some("1.2,9.9"), "1.2"),
        (None, "1.0"),
    ] {
        let mut headers = vec![("host", "/")];
        if let Some(a) = accept {
            headers.push(("accept-version", a));
        }
        let (_c, reply) = connect_with(&broker, &headers);
        assert_eq!(reply.command, Command::Connected, "{accept:?}: {reply:?}");
        // STOMP 1.0 CONNECTED has no version header; 1.1+ must carry it.
        assert_eq!(
            reply.get("version").unwrap_or("1.0"),
            expected,
            "{accept:?}"
        );
        assert!(reply.get("session").is_some(), "{reply:?}");
        assert!(reply.get("server").unwrap().starts_with("ferromq/"));
    }
}

#[test]
fn stomp_command_connects_like_connect() {
    let broker = Broker::start();
    let mut c = broker.raw();
    let reply = c.handshake(
        Command::Stomp,
        &[("accept-version", "1.2"), ("host", "localhost")],
    );
    assert_eq!(reply.command, Command::Connected);
    assert_eq!(reply.get("version"), Some("1.2"));
    c.send_message("/queue/stomp-cmd", "ok", &[]);
}

#[test]
fn unsupported_version_gets_error_then_close() {
    let broker = Broker::start();
    let mut c = broker.raw();
    c.send(
        Frame::new(Command::Connect)
            .header("accept-version", "2.0,3.1")
            .header("host", "/"),
    );
    let e = c.expect_error();
    let message = e.get("message").unwrap();
    assert!(message.contains("1.0") && message.contains("1.2"), "{e:?}");
    // The spec's ERROR for a failed negotiation lists our versions.
    assert_eq!(e.get("version"), Some("1.0,1.1,1.2"), "{e:?}");
    broker.client().send_message("/queue/after", "fine", &[]);
}

#[test]
fn connected_answers_request_id() {
    let broker = Broker::start();
    let (_c, reply) = connect_with(
        &broker,
        &[
            ("accept-version", "1.2"),
            ("host", "/"),
            ("request-id", "r7"),
        ],
    );
    assert_eq!(reply.get("response-id"), Some("r7"));
}

#[test]
fn crlf_line_endings_work_in_every_frame() {
    let broker = Broker::start();
    let mut c = broker.raw();
    c.send_raw(b"CONNECT\r\naccept-version:1.2\r\nhost:/\r\n\r\n\0");
    let reply = c.recv();
    assert_eq!(reply.command, Command::Connected);
    c.set_version(Version::V1_2);
    c.send_raw(
        b"SUBSCRIBE\r\nid:0\r\ndestination:/queue/crlf\r\nreceipt:s\r\n\r\n\0\
          SEND\r\ndestination:/queue/crlf\r\nk:v\r\n\r\nline one\r\nline two\0",
    );
    assert_eq!(c.recv().command, Command::Receipt);
    let m = c.recv();
    assert_eq!(m.command, Command::Message);
    assert_eq!(m.get("k"), Some("v"));
    assert_eq!(&m.body[..], b"line one\r\nline two");
}

#[test]
fn heartbeat_eols_between_frames_are_ignored() {
    let broker = Broker::start();
    let mut c = broker.raw();
    c.send_raw(b"\n\r\n\nCONNECT\naccept-version:1.2\nhost:/\n\n\0\n\n\r\n");
    assert_eq!(c.recv().command, Command::Connected);
    c.set_version(Version::V1_2);
    c.send_raw(b"\n\n\nSUBSCRIBE\nid:a\ndestination:/queue/eol\nreceipt:s\n\n\0\r\n\n");
    assert_eq!(c.recv().command, Command::Receipt);
    c.send_raw(b"\nSEND\ndestination:/queue/eol\n\nx\0\n\n\n\n");
    let m = c.recv();
    assert_eq!(&m.body[..], b"x");
}

#[test]
fn escaped_headers_round_trip_through_the_broker() {
    let broker = Broker::start();
    let mut c12 = broker.client();
    c12.subscribe("s", "/topic/esc", "auto");
    let (mut c11, reply) = connect_with(&broker, &[("accept-version", "1.1"), ("host", "/")]);
    assert_eq!(reply.get("version"), Some("1.1"));
    c11.send_with_receipt(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/topic/esc"),
        "sub",
    );
    let tricky = "a:b\nc\\d:";
    let mut producer = broker.client();
    // Raw 1.2 escapes on the wire: `\c` `\n` `\\` `\r`.
    producer.send_raw(
        b"SEND\ndestination:/topic/esc\nweird\\cname:a\\cb\\nc\\\\d\\c\nwith-cr:x\\ry\nreceipt:r\n\nbody\0",
    );
    assert_eq!(producer.recv().command, Command::Receipt);
    let m = c12.recv();
    assert_eq!(m.get("weird:name"), Some(tricky), "{m:?}");
    assert_eq!(m.get("with-cr"), Some("x\ry"), "{m:?}");
    // A 1.1 subscriber gets the same values through 1.1 escaping (which
    // has no `\r`: the CR travels raw).
    let m = c11.recv();
    assert_eq!(m.get("weird:name"), Some(tricky), "{m:?}");
}

#[test]
fn connect_headers_are_not_unescaped() {
    let broker = Broker::start();
    let mut c = broker.raw();
    // `\q` is no escape in any version: on CONNECT it must pass as text.
    c.send_raw(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:odd\\qname\n\n\0");
    assert_eq!(c.recv().command, Command::Connected);
}

#[test]
fn invalid_escape_after_connect_is_an_error() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.send_raw(b"SEND\ndestination:/queue/x\nbad:a\\qb\n\nx\0");
    let e = c.expect_error();
    assert!(e.get("message").unwrap().contains("escape"), "{e:?}");
}

#[test]
fn content_length_body_with_nuls_arrives_intact() {
    let broker = Broker::start();
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/nul", "auto");
    let mut producer = broker.client();
    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let mut raw = format!(
        "SEND\ndestination:/queue/nul\ncontent-length:{}\nreceipt:r\n\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    raw.push(0);
    producer.send_raw(&raw);
    assert_eq!(producer.recv().command, Command::Receipt);
    let m = consumer.recv();
    assert_eq!(&m.body[..], &body[..]);
    assert_eq!(m.get("content-length"), Some("5000"));
}

#[test]
fn body_without_content_length_ends_at_the_first_nul() {
    let broker = Broker::start();
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/nocl", "auto");
    let mut producer = broker.client();
    producer.send_raw(
        b"SEND\ndestination:/queue/nocl\n\nhello world\0SEND\ndestination:/queue/nocl\n\n\0",
    );
    let m = consumer.recv();
    assert_eq!(&m.body[..], b"hello world");
    let empty = consumer.recv();
    assert!(empty.body.is_empty(), "{empty:?}");
}

#[test]
fn repeated_headers_first_value_wins() {
    let broker = Broker::start();
    let mut a = broker.client();
    a.subscribe("a", "/queue/first", "auto");
    let mut b = broker.client();
    b.subscribe("b", "/queue/second", "auto");
    let mut producer = broker.client();
    producer.send_raw(
        b"SEND\ndestination:/queue/first\ndestination:/queue/second\nx:1\nx:2\nreceipt:r\n\nbody\0",
    );
    assert_eq!(producer.recv().command, Command::Receipt);
    let m = a.recv();
    assert_eq!(m.get("destination"), Some("/queue/first"));
    assert_eq!(m.get("x"), Some("1"));
    b.expect_silence(Duration::from_millis(300));
}

#[test]
fn every_client_frame_with_receipt_gets_a_receipt() {
    let broker = Broker::start();
    let mut c = broker.client();
    let sub = |id: &str| {
        Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", "/queue/rcpt")
            .header("ack", "client-individual")
    };
    c.send_with_receipt(sub("s"), "subscribe");
    let mut acks = Vec::new();
    for (i, receipt) in ["send-1", "send-2"].into_iter().enumerate() {
        c.send(
            Frame::new(Command::Send)
                .header("destination", "/queue/rcpt")
                .header("receipt", receipt)
                .body(format!("m{i}")),
        );
        // The MESSAGE and the RECEIPT may come in either order.
        let mut got_receipt = false;
        let mut got_message = false;
        while !(got_receipt && got_message) {
            let f = c.recv();
            match f.command {
                Command::Receipt => {
                    assert_eq!(f.get("receipt-id"), Some(receipt));
                    got_receipt = true;
                }
                Command::Message => {
                    acks.push(f.get("ack").unwrap().to_string());
                    got_message = true;
                }
                _ => panic!("{f:?}"),
            }
        }
    }
    c.send_with_receipt(Frame::new(Command::Ack).header("id", &acks[0]), "ack");
    // NACK of the other: it comes back, then ACK it.
    let mut got = c.send_collect(Frame::new(Command::Nack).header("id", &acks[1]), "nack");
    if got.is_empty() {
        got.push(c.recv());
    }
    let again = &got[0];
    assert_eq!(again.get("redelivered"), Some("true"));
    c.send_with_receipt(
        Frame::new(Command::Ack).header("id", again.get("ack").unwrap()),
        "ack-2",
    );
    c.send_with_receipt(
        Frame::new(Command::Begin).header("transaction", "t"),
        "begin",
    );
    c.send_with_receipt(
        Frame::new(Command::Commit).header("transaction", "t"),
        "commit",
    );
    c.send_with_receipt(
        Frame::new(Command::Begin).header("transaction", "u"),
        "begin-2",
    );
    c.send_with_receipt(
        Frame::new(Command::Abort).header("transaction", "u"),
        "abort",
    );
    c.send_with_receipt(Frame::new(Command::Unsubscribe).header("id", "s"), "unsub");
    c.send(Frame::new(Command::Disconnect).header("receipt", "bye"));
    let frames = c.recv_until_closed();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].command, Command::Receipt);
    assert_eq!(frames[0].get("receipt-id"), Some("bye"));
}

#[test]
fn subscribe_receipt_comes_before_any_message() {
    let broker = Broker::start();
    let mut producer = broker.client();
    for i in 0..50 {
        producer.send_message("/queue/early", &format!("m{i}"), &[]);
    }
    for round in 0..5 {
        let mut c = broker.client();
        c.send(
            Frame::new(Command::Subscribe)
                .header("id", "s")
                .header("destination", "/queue/early")
                .header("ack", "client-individual")
                .header("receipt", "sub"),
        );
        let first = c.recv();
        assert_eq!(first.command, Command::Receipt, "round {round}: {first:?}");
        assert_eq!(c.recv().command, Command::Message);
    }
}

#[test]
fn each_destination_prefix_works() {
    let broker = Broker::start();
    for dest in [
        "/queue/p.q",
        "/topic/p.t",
        "/temp-queue/p.tq",
        "/temp-topic/p.tt",
    ] {
        let mut c = broker.client();
        c.subscribe("s", dest, "auto");
        let send = Frame::new(Command::Send)
            .header("destination", dest)
            .body(dest.to_string());
        let mut got = c.send_collect(send, "r");
        if got.is_empty() {
            got.push(c.recv());
        }
        let m = &got[0];
        assert_eq!(m.command, Command::Message);
        assert_eq!(m.get("destination"), Some(dest));
        assert_eq!(&m.body[..], dest.as_bytes());
    }
}

#[test]
fn illegal_destination_error_names_the_prefixes() {
    let broker = Broker::start();
    for dest in ["/exchange/x", "queue/x", "/queue/", "/amq/queue/x"] {
        let mut c = broker.client();
        c.send(
            Frame::new(Command::Send)
                .header("destination", dest)
                .header("receipt", "r")
                .body("x"),
        );
        let e = c.expect_error();
        let message = e.get("message").unwrap();
        for prefix in ["/queue/", "/topic/", "/temp-queue/", "/temp-topic/"] {
            assert!(message.contains(prefix), "{dest}: {message}");
        }
        assert_eq!(e.get("receipt-id"), Some("r"));
    }
    broker.client().send_message("/queue/ok", "fine", &[]);
}

#[test]
fn temp_queue_is_private_and_reachable_through_reply_to() {
    let broker = Broker::start();
    let mut requester = broker.client();
    requester.subscribe("replies", "/temp-queue/replies", "auto");
    let mut responder = broker.client();
    responder.subscribe("req", "/queue/requests", "auto");
    requester.send_message(
        "/queue/requests",
        "ping",
        &[("reply-to", "/temp-queue/replies")],
    );
    let req = responder.recv();
    let reply_to = req.get("reply-to").unwrap().to_string();
    assert_ne!(
        reply_to, "/temp-queue/replies",
        "must be rewritten: {req:?}"
    );
    responder.send_message(&reply_to, "pong", &[]);
    let reply = requester.recv();
    assert_eq!(&reply.body[..], b"pong");
    assert_eq!(reply.get("destination"), Some("/temp-queue/replies"));

    // Another connection's /temp-queue/replies is a different queue.
    let mut other = broker.client();
    other.subscribe("x", "/temp-queue/replies", "auto");
    responder.send_message(&reply_to, "mine", &[]);
    assert_eq!(&requester.recv().body[..], b"mine");
    other.expect_silence(Duration::from_millis(200));

    // Once the owner leaves, its temporary queue is gone.
    drop(requester);
    std::thread::sleep(Duration::from_millis(200));
    responder.send(
        Frame::new(Command::Send)
            .header("destination", &reply_to)
            .header("receipt", "late")
            .body("too late"),
    );
    let e = responder.expect_error();
    assert!(e.get("message").unwrap().contains("temporary"), "{e:?}");
}

#[test]
fn frames_after_disconnect_are_ignored() {
    let broker = Broker::start();
    let mut watcher = broker.client();
    watcher.subscribe("w", "/queue/after-disconnect", "auto");
    let mut c = broker.client();
    c.send_raw(b"DISCONNECT\nreceipt:bye\n\n\0SEND\ndestination:/queue/after-disconnect\n\nlate\0");
    let frames = c.recv_until_closed();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].get("receipt-id"), Some("bye"));
    watcher.expect_silence(Duration::from_millis(300));
}

#[test]
fn frames_after_an_error_are_not_processed() {
    let broker = Broker::start();
    let mut watcher = broker.client();
    watcher.subscribe("w", "/queue/after-error", "auto");
    let mut c = broker.client();
    c.send_raw(b"BOGUS\n\n\0SEND\ndestination:/queue/after-error\n\nlate\0");
    c.expect_error();
    watcher.expect_silence(Duration::from_millis(300));
}

#[test]
fn ten_megabyte_message_round_trips_with_default_limits() {
    let broker = Broker::start();
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/big", "client-individual");
    let body: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut producer = broker.client();
    producer.send_with_receipt(
        Frame::new(Command::Send)
            .header("destination", "/queue/big")
            .body(body.clone()),
        "big",
    );
    let m = consumer.recv();
    assert_eq!(m.body.len(), body.len());
    assert!(m.body[..] == body[..], "body changed in transit");
}
